"""Packing round trips and the documented bit order (docs/FORMAT.md section 2)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pynq_bnn.spec import bitpack


@settings(max_examples=200, deadline=None)
@given(hnp.arrays(bool, st.tuples(st.integers(1, 3), st.integers(1, 4).map(lambda k: 64 * k))))
def test_bits_round_trip(bits):
    words = bitpack.pack_bits(bits)
    assert words.dtype == np.uint64 and words.shape == bits.shape[:-1] + (bits.shape[-1] // 64,)
    np.testing.assert_array_equal(bitpack.unpack_bits(words), bits)


@settings(max_examples=200, deadline=None)
@given(hnp.arrays(np.uint64, st.tuples(st.integers(1, 3), st.integers(1, 4))))
def test_words_round_trip(words):
    np.testing.assert_array_equal(bitpack.pack_bits(bitpack.unpack_bits(words)), words)


@settings(max_examples=100, deadline=None)
@given(hnp.arrays(np.float32, 128, elements=st.floats(-2, 2, width=32)))
def test_signs_round_trip(values):
    signs = bitpack.unpack_signs(bitpack.pack_signs(values))
    np.testing.assert_array_equal(signs, np.where(values >= 0, 1, -1))


def test_documented_order():
    bits = np.zeros(128, bool)
    bits[0] = bits[65] = bits[127] = True
    words = bitpack.pack_bits(bits)
    assert words.tolist() == [1, (1 << 1) | (1 << 63)]
    # and the words are little-endian in memory
    assert bitpack.pack_bits(bits).tobytes()[:8] == b"\x01" + b"\x00" * 7


def test_sign_of_zero_is_plus_one():
    assert bitpack.pack_signs(np.zeros(64)).tolist() == [2**64 - 1]


@settings(max_examples=100, deadline=None)
@given(hnp.arrays(np.uint64, st.integers(1, 16)))
def test_popcount_matches_python(words):
    expected = [bin(int(w)).count("1") for w in words]
    assert bitpack.popcount(words).tolist() == expected


def test_popcount_fallback_for_numpy1(monkeypatch):
    monkeypatch.setattr(bitpack, "_HAS_BITWISE_COUNT", False)
    words = np.array([0, 1, 2**64 - 1, 0x8000000000000001], dtype=np.uint64)
    assert bitpack.popcount(words).tolist() == [0, 1, 64, 2]


@pytest.mark.parametrize("n", [0, 1, 63, 65])
def test_pack_rejects_bad_lengths(n):
    with pytest.raises(ValueError, match="multiple of 64"):
        bitpack.pack_bits(np.zeros(n, bool))
