/**
 * \file bnn_types.hpp
 * \brief Scalar and word types of the pynq-bnn kernel (docs/FORMAT.md, sections 2-4).
 *
 * Everything is a typed alias or a constexpr: no preprocessor configuration.
 */
#ifndef BNN_TYPES_HPP
#define BNN_TYPES_HPP

#include <ap_int.h>

namespace bnn {

/// Bits per packed word (docs/FORMAT.md s.2): element i is bit i % 64 of word i / 64.
constexpr unsigned WORD_BITS = 64;

/// One packed 64-bit word of activations or weights (little-endian uint64 in DDR).
using Word = ap_uint<WORD_BITS>;

/// popcount of one word: 0..64.
using PopCount = ap_uint<7>;

/// Signed contribution of one word to a dot product, 2 * popcount - 64: -64..64.
using Contrib = ap_int<8>;

/**
 * Accumulator of a binary dot product. |sum| <= 9 * 512 = 4608 for a conv and <= 8192 for a
 * dense layer (MAX_DENSE_IN); thresholds are clipped to +-(fan_in + 1) <= 8193. 16 bits signed
 * hold all of it (docs/FORMAT.md s.3, s.4).
 */
using Sum = ap_int<16>;

/// A raw score of the last layer as written to DDR (int32).
using Score = ap_int<32>;

/// A 32-bit register or descriptor field.
using U32 = ap_uint<32>;

}  // namespace bnn

#endif  // BNN_TYPES_HPP
