"""Batch norm + sign folded into integer thresholds (docs/FORMAT.md section 4).

Used by the training export and the tests; the reference and every backend only ever see the
folded integers.
"""
from __future__ import annotations

import numpy as np


def fold_threshold(gamma, beta, mean, var, eps: float, fan_in: int):
    """Fold ``sign(gamma * (s - mean) / sqrt(var + eps) + beta)`` into integer rules.

    Parameters
    ----------
    gamma, beta, mean, var : 1-D float arrays, one entry per output channel.
    eps : batch-norm epsilon.
    fan_in : largest possible |s|; thresholds are clipped to ``[-(fan_in+1), fan_in+1]``.

    Returns
    -------
    thresholds : int32 array; directions : int8 array (+1: ``s >= T``, -1: ``s <= T``).
    """
    gamma = np.asarray(gamma, dtype=np.float32).astype(np.float64)
    beta = np.asarray(beta, dtype=np.float32).astype(np.float64)
    mean = np.asarray(mean, dtype=np.float32).astype(np.float64)
    var = np.asarray(var, dtype=np.float32).astype(np.float64)
    sigma = np.sqrt(var + float(np.float32(eps)))
    bound = fan_in + 1
    thresholds = np.empty(gamma.shape, dtype=np.int64)
    directions = np.ones(gamma.shape, dtype=np.int8)
    pos, neg, zero = gamma > 0, gamma < 0, gamma == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        t = mean - beta * sigma / np.where(zero, 1.0, gamma)
    t = np.clip(t, -bound, bound)  # also tames +-inf from tiny gammas
    thresholds[pos] = np.ceil(t[pos])
    thresholds[neg] = np.floor(t[neg])
    directions[neg] = -1
    # gamma == 0: the output is sign(beta), a constant.
    thresholds[zero] = np.where(beta[zero] >= 0, -bound, bound)
    return np.clip(thresholds, -bound, bound).astype(np.int32), directions


def fold_affine(gamma, beta, mean, var, eps: float):
    """Last layer: batch norm as ``score = k * s + h`` (float32 ``k``, ``h``)."""
    gamma = np.asarray(gamma, dtype=np.float64)
    sigma = np.sqrt(np.asarray(var, dtype=np.float64) + eps)
    k = gamma / sigma
    h = np.asarray(beta, dtype=np.float64) - k * np.asarray(mean, dtype=np.float64)
    return k.astype(np.float32), h.astype(np.float32)


def apply_threshold(sums: np.ndarray, thresholds: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """The integer rule: bool bits from integer sums (channel on the last axis)."""
    sums = np.asarray(sums)
    return np.where(directions > 0, sums >= thresholds, sums <= thresholds)
