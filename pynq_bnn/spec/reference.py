"""The bit-exact numpy model of the whole network: THE SPEC (docs/FORMAT.md).

Built only from the packed representation: XNOR + popcount over in-bounds taps, max-pool of
integer sums, integer thresholds. Every other implementation (HLS kernel, CPU engine, mock,
PyTorch eval mode) is tested against :func:`scores`. Written for clarity, not speed.
"""
from __future__ import annotations

import numpy as np

from .bitpack import WORD_BITS, pack_bits, popcount
from .first_layer import conv1_packed
from .folding import apply_threshold
from .network import Layer

_CHUNK_WORDS = 1 << 22  # bound the temporary XNOR array to ~32 MB


def conv_sums(x: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Binary 3x3 conv, zero padding, in-bounds taps only.

    x: uint64 [N, H, W, Cw]; weights: uint64 [Cout, 3, 3, Cw]; returns int32 [N, H, W, Cout].
    """
    n, h, w, cw = x.shape
    cout = weights.shape[0]
    padded = np.zeros((n, h + 2, w + 2, cw), dtype=np.uint64)
    padded[:, 1:-1, 1:-1, :] = x
    valid = np.zeros((h + 2, w + 2), dtype=bool)
    valid[1:-1, 1:-1] = True
    sums = np.zeros((n, h, w, cout), dtype=np.int32)
    per_image = h * w * cout * cw
    step = max(1, _CHUNK_WORDS // max(per_image, 1))
    for ky in range(3):
        for kx in range(3):
            inside = valid[ky:ky + h, kx:kx + w][None, :, :, None]
            wt = weights[:, ky, kx, :]  # [Cout, Cw]
            for i in range(0, n, step):
                taps = padded[i:i + step, ky:ky + h, kx:kx + w, :]  # [b, H, W, Cw]
                agree = popcount(~(taps[:, :, :, None, :] ^ wt)).sum(axis=-1, dtype=np.int32)
                sums[i:i + step] += np.where(inside, 2 * agree - cw * WORD_BITS, 0).astype(np.int32)
    return sums


def dense_sums(x: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Binary dense layer: x uint64 [N, Nw], weights uint64 [Nout, Nw] -> int32 [N, Nout]."""
    n, nw = x.shape
    agree = popcount(~(x[:, None, :] ^ weights[None, :, :])).sum(axis=-1, dtype=np.int32)
    return 2 * agree - nw * WORD_BITS


def max_pool(sums: np.ndarray) -> np.ndarray:
    """2x2 stride-2 max-pool of integer sums [N, H, W, C]."""
    n, h, w, c = sums.shape
    return sums.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def layer_sums(layer: Layer, lp, x: np.ndarray) -> np.ndarray:
    """Integer sums of one binary layer (after the pool, before the threshold)."""
    if layer.kind == "conv":
        sums = conv_sums(x, lp.weights)
        return max_pool(sums) if layer.pool else sums
    return dense_sums(x.reshape(x.shape[0], -1), lp.weights)


def binary_scores(params, packed: np.ndarray, return_activations: bool = False):
    """Run layers 2..L on packed layer-1 output uint64 [N, H, W, C1/64] -> int32 [N, n_classes].

    With ``return_activations`` also returns a dict of each layer's packed output bits.
    """
    x = np.asarray(packed, dtype=np.uint64)
    acts = {}
    for layer in params.network.binary_layers:
        lp = params.layers[layer.name]
        sums = layer_sums(layer, lp, x)
        if layer.last:
            out = sums.astype(np.int32)
            break
        x = pack_bits(apply_threshold(sums, lp.thresholds, lp.directions))
        acts[layer.name] = x
    return (out, acts) if return_activations else out


def scores(params, images: np.ndarray) -> np.ndarray:
    """Integer class scores for uint8 NHWC images [N, S, S, 3] (S = network.image_size)."""
    images = np.asarray(images)
    return binary_scores(params, conv1_packed(params, images))


def affine_scores(params, int_scores: np.ndarray) -> np.ndarray:
    """Per-class affine of the last batch norm: float64 ``k * s + h`` (docs/FORMAT.md s.7)."""
    return (params.out_scale.astype(np.float64) * np.asarray(int_scores, dtype=np.float64)
            + params.out_bias.astype(np.float64))


def predict(params, int_scores: np.ndarray) -> np.ndarray:
    """Class indices (first maximum of the affine scores)."""
    return np.argmax(affine_scores(params, int_scores), axis=-1)
