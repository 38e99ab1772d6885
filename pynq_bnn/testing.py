"""Seeded random networks for tests, with the awkward cases built in.

Thresholds are drawn around the median of the sums the layer really sees on the given images,
so bits are balanced and some sums sit exactly on a threshold; some channels get direction -1,
some are constant (the folded form of gamma = 0: always 1 or always 0), and the generator can
force all-ones / all-zeros feature maps.
"""
from __future__ import annotations

import numpy as np

from .spec import reference
from .spec.bitpack import pack_bits
from .spec.first_layer import conv1_sums
from .spec.folding import apply_threshold
from .spec.network import Network
from .spec.params import LayerParams, Params

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")


def random_images(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)


def _thresholds_from_sums(rng, sums: np.ndarray, fan_in: int, constant_frac=0.05,
                          negative_frac=0.3):
    """Per-channel thresholds taken from observed sums (sums: [..., C])."""
    c = sums.shape[-1]
    flat = sums.reshape(-1, c)
    # Pick an observed value per channel so that exact ties really occur.
    rows = rng.integers(0, flat.shape[0], size=c)
    t = flat[rows, np.arange(c)].astype(np.int64)
    directions = np.where(rng.random(c) < negative_frac, -1, 1).astype(np.int8)
    bound = fan_in + 1
    constant = rng.random(c) < constant_frac
    t[constant] = np.where(rng.random(constant.sum()) < 0.5, -bound, bound)
    return np.clip(t, -bound, bound).astype(np.int32), directions


def random_params(network: Network | None = None, seed: int = 0,
                  images: np.ndarray | None = None, fill: str | None = None) -> Params:
    """A random but well-conditioned model for ``network``.

    ``images`` (uint8 NHWC) calibrate the thresholds; random images are used if omitted.
    ``fill="ones"``/``"zeros"`` makes every conv layer's thresholds constant so the maps are
    all +1 / all -1.
    """
    network = network or Network.full()
    rng = np.random.default_rng(seed)
    if images is None:
        images = random_images(2, network.image_size, seed + 1)
    layers = {}
    l1 = network.first_layer
    w1 = rng.integers(-127, 128, size=l1.weight_shape, dtype=np.int8)
    sums = conv1_sums(w1, images).astype(np.int64)
    t, d = _thresholds_from_sums(rng, sums, l1.fan_in)
    layers[l1.name] = LayerParams(w1, t, d)
    x = pack_bits(apply_threshold(sums, t, d))
    for layer in network.binary_layers:
        words = rng.integers(0, 2**64, size=layer.weight_shape, dtype=np.uint64)
        lp = LayerParams(words)
        sums = reference.layer_sums(layer, lp, x)
        if not layer.last:
            t, d = _thresholds_from_sums(rng, sums, layer.fan_in)
            if fill in ("ones", "zeros") and layer.kind == "conv":
                bound = layer.fan_in + 1
                t = np.full(layer.out_channels, -bound if fill == "ones" else bound, np.int32)
                d = np.ones(layer.out_channels, np.int8)
            lp.thresholds, lp.directions = t, d
            x = pack_bits(apply_threshold(sums, t, d))
        layers[layer.name] = lp
    scale = rng.uniform(0.01, 1.0, network.n_classes).astype(np.float32)
    scale[rng.random(network.n_classes) < 0.2] *= -1
    bias = rng.normal(0, 5, network.n_classes).astype(np.float32)
    names = (CIFAR10_CLASSES if network.n_classes == 10
             else tuple(f"class{i}" for i in range(network.n_classes)))
    return Params(network, names, layers, scale, bias, description=f"random network, seed {seed}")
