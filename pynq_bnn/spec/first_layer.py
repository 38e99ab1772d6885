"""Layer 1 as the ARM core runs it: integer-exact float32 conv, threshold, bit packing.

Input pixels ``p`` become ``x = 2*p - 255`` and the weights are int8, so every sum is an
integer below 2^24 and float32 BLAS computes it exactly in any summation order
(docs/FORMAT.md section 6). The output is packed NHWC exactly as the kernel reads it.
"""
from __future__ import annotations

import numpy as np

from .bitpack import pack_bits
from .folding import apply_threshold


def normalise(images: np.ndarray) -> np.ndarray:
    """uint8 NHWC pixels -> float32 ``2*p - 255`` (exact small integers)."""
    return images.astype(np.float32) * 2.0 - 255.0


def im2col(x: np.ndarray) -> np.ndarray:
    """float32 [N, H, W, C] -> patches [N*H*W, 9*C] in (ky, kx, c) order, zero padding 1."""
    n, h, w, c = x.shape
    padded = np.zeros((n, h + 2, w + 2, c), dtype=x.dtype)
    padded[:, 1:-1, 1:-1, :] = x
    cols = np.empty((n, h, w, 3, 3, c), dtype=x.dtype)
    for ky in range(3):
        for kx in range(3):
            cols[:, :, :, ky, kx, :] = padded[:, ky:ky + h, kx:kx + w, :]
    return cols.reshape(n * h * w, 9 * c)


def conv1_sums(weights_int8: np.ndarray, images: np.ndarray) -> np.ndarray:
    """Integer conv1 sums as float32 [N, H, W, C1] (exact integers)."""
    n, h, w, _ = images.shape
    kernel = weights_int8.reshape(weights_int8.shape[0], -1).T.astype(np.float32)  # [27, C1]
    sums = im2col(normalise(images)) @ kernel
    return sums.reshape(n, h, w, -1)


def conv1_packed(params, images: np.ndarray) -> np.ndarray:
    """Layer 1 for a uint8 NHWC batch: packed uint64 [N, H, W, C1/64], the kernel's input."""
    lp = params.layers[params.network.first_layer.name]
    sums = conv1_sums(lp.weights, images)
    return pack_bits(apply_threshold(sums, lp.thresholds, lp.directions))
