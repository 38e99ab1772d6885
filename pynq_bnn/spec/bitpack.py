"""+1/-1 values <-> bits <-> 64-bit words, in the one order of docs/FORMAT.md section 2.

Bit 1 means +1, bit 0 means -1, ``sign(0) = +1``. Packing runs along the last axis: element
``i`` is bit ``i % 64`` of word ``i // 64``. Words are little-endian uint64.
"""
from __future__ import annotations

import numpy as np

WORD_BITS = 64
_WORD = np.dtype("<u8")

# numpy >= 2.0 has a native popcount; numpy 1.x gets a byte lookup table.
_HAS_BITWISE_COUNT = hasattr(np, "bitwise_count")
_BYTE_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def pack_bits(bits: np.ndarray) -> np.ndarray:
    """Pack a boolean (or 0/1) array along its last axis into uint64 words.

    Raises ValueError if the last axis is not a multiple of 64.
    """
    bits = np.asarray(bits)
    n = bits.shape[-1] if bits.ndim else 0
    if bits.ndim == 0 or n == 0 or n % WORD_BITS:
        raise ValueError(f"last axis ({n}) must be a positive multiple of {WORD_BITS}")
    packed = np.packbits(bits.astype(bool, copy=False), axis=-1, bitorder="little")
    packed = np.ascontiguousarray(packed)
    return packed.view(_WORD).astype(np.uint64, copy=False)


def unpack_bits(words: np.ndarray, n: int | None = None) -> np.ndarray:
    """Inverse of :func:`pack_bits`: uint64 words -> bool array (last axis ``64 * words``)."""
    words = np.ascontiguousarray(np.asarray(words, dtype=np.uint64)).astype(_WORD, copy=False)
    as_bytes = words.view(np.uint8).reshape(words.shape[:-1] + (words.shape[-1] * 8,))
    bits = np.unpackbits(as_bytes, axis=-1, bitorder="little").astype(bool)
    if n is not None:
        bits = bits[..., :n]
    return bits


def pack_signs(values: np.ndarray) -> np.ndarray:
    """Pack real values by sign: ``v >= 0`` (including 0) is +1 = bit 1."""
    return pack_bits(np.asarray(values) >= 0)


def unpack_signs(words: np.ndarray, n: int | None = None) -> np.ndarray:
    """uint64 words -> int8 array of +1/-1."""
    return np.where(unpack_bits(words, n), 1, -1).astype(np.int8)


def popcount(words: np.ndarray) -> np.ndarray:
    """Per-element popcount of a uint64 array (uint8 result), on numpy 1.x and 2.x."""
    words = np.asarray(words, dtype=np.uint64)
    if _HAS_BITWISE_COUNT:
        return np.bitwise_count(words)
    as_bytes = np.ascontiguousarray(words).view(np.uint8).reshape(words.shape + (8,))
    return _BYTE_POPCOUNT[as_bytes].sum(axis=-1, dtype=np.uint8)
