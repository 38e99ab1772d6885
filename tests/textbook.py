"""A plain float implementation of BinaryNet from the textbook definition.

float +1/-1 convolutions with zero padding, max-pool, batch norm, sign. Written independently
of the packed code (no bit packing, no thresholds) so the reference can be tested against it.
"""
import numpy as np

from pynq_bnn.spec.bitpack import unpack_signs
from pynq_bnn.spec.folding import fold_affine, fold_threshold
from pynq_bnn.spec.network import Network
from pynq_bnn.spec.params import LayerParams, Params

EPS = 1e-5


def conv3x3(x, w):
    """x float64 [N,H,W,Cin], w float64 [Cout,3,3,Cin] -> [N,H,W,Cout], zero padding 1."""
    n, h, wd, _ = x.shape
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    out = np.zeros((n, h, wd, w.shape[0]))
    for ky in range(3):
        for kx in range(3):
            out += np.einsum("nhwc,oc->nhwo", padded[:, ky:ky + h, kx:kx + wd, :], w[:, ky, kx, :])
    return out


def max_pool(x):
    n, h, w, c = x.shape
    return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def batch_norm(x, bn):
    gamma, beta, mean, var = bn
    return gamma * (x - mean) / np.sqrt(var + EPS) + beta


def sign(x):
    return np.where(x >= 0, 1.0, -1.0)


def forward(model, images):
    """Returns (last-layer sums before batch norm, float scores after it)."""
    net = model["network"]
    x = images.astype(np.float64) * 2 - 255
    for layer in net.layers:
        w = model["weights"][layer.name]
        if layer.kind in ("conv1", "conv"):
            s = conv3x3(x, w)
            if layer.pool:
                s = max_pool(s)
        else:
            s = x.reshape(x.shape[0], -1) @ w.T
        if layer.last:
            return s, batch_norm(s, model["bn"][layer.name])
        x = sign(batch_norm(s, model["bn"][layer.name]))


def random_model(net: Network, seed: int, images):
    """Random float model whose BN thresholds sit between integers (never ambiguous in float),
    with some negative and some zero gammas."""
    rng = np.random.default_rng(seed)
    model = {"network": net, "weights": {}, "bn": {}}
    x = images.astype(np.float64) * 2 - 255
    for layer in net.layers:
        if layer.kind == "conv1":
            w = rng.integers(-127, 128, size=layer.weight_shape).astype(np.float64)
        else:
            shape = layer.weight_shape[:-1] + (layer.weight_shape[-1] * 64,)
            w = rng.choice([-1.0, 1.0], size=shape)
        model["weights"][layer.name] = w
        if layer.kind in ("conv1", "conv"):
            s = conv3x3(x, w)
            s = max_pool(s) if layer.pool else s
        else:
            s = x.reshape(x.shape[0], -1) @ w.T
        c = layer.out_channels
        flat = s.reshape(-1, c)
        observed = flat[rng.integers(0, flat.shape[0], c), np.arange(c)]
        gamma = rng.uniform(0.2, 2.0, c) * np.where(rng.random(c) < 0.3, -1, 1)
        var = rng.uniform(0.5, 4.0, c)
        beta = rng.normal(0, 1, c)
        if not layer.last:
            gamma[rng.random(c) < 0.05] = 0.0
            beta[rng.random(c) < 0.02] = 0.0
        sigma = np.sqrt(var + EPS)
        t = observed + rng.uniform(0.1, 0.9, c)  # the float threshold, never an integer
        safe_gamma = np.where(gamma == 0, 1.0, gamma)
        mean = t + beta * sigma / safe_gamma
        # store as float32 like a trained model would, then use exactly those values
        bn = tuple(a.astype(np.float32).astype(np.float64) for a in (gamma, beta, mean, var))
        model["bn"][layer.name] = bn
        if layer.last:
            break
        x = sign(batch_norm(s, bn))
    return model


def to_params(model) -> Params:
    """Fold and pack a textbook model into the parameter format."""
    from pynq_bnn.spec.bitpack import pack_signs
    net = model["network"]
    layers = {}
    for layer in net.layers:
        w = model["weights"][layer.name]
        gamma, beta, mean, var = model["bn"][layer.name]
        if layer.kind == "conv1":
            lp = LayerParams(w.astype(np.int8))
        else:
            lp = LayerParams(pack_signs(w))
        if not layer.last:
            lp.thresholds, lp.directions = fold_threshold(gamma, beta, mean, var, EPS, layer.fan_in)
        layers[layer.name] = lp
    k, h = fold_affine(gamma, beta, mean, var, EPS)
    names = tuple(f"c{i}" for i in range(net.n_classes))
    return Params(net, names, layers, k, h)


def unpacked_weights(params, name):
    layer = {lay.name: lay for lay in params.network.layers}[name]
    w = params.layers[name].weights
    return unpack_signs(w, layer.weight_shape[-1] * 64)
