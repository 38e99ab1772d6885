/**
 * \file bnn_popcount.hpp
 * \brief XNOR-popcount of 64-bit words: the binary multiply-accumulate primitive.
 */
#ifndef BNN_POPCOUNT_HPP
#define BNN_POPCOUNT_HPP

#include "bnn_types.hpp"

namespace bnn {

/**
 * \brief Number of set bits of a 32-bit field, as a 5-level adder tree on bit fields.
 *
 * Level k adds neighbouring fields: 1-bit pairs -> 2-bit sums -> ... -> one 6-bit sum. In
 * hardware each level is a row of small adders (HLS maps it to LUT compressors); no field
 * overflows into its neighbour, so every level fits 32 bits (the casts only drop the
 * always-zero carry that ap_uint addition adds). 32-bit halves keep the C simulation on
 * single-word arithmetic (fast enough for whole-network tests).
 */
inline ap_uint<6> popcount32(const ap_uint<32>& x) {
#pragma HLS INLINE
    typedef ap_uint<32> U32;
    U32 v = x;
    v = U32((v & U32(0x55555555u)) + ((v >> 1) & U32(0x55555555u)));  // 16 x 2-bit sums
    v = U32((v & U32(0x33333333u)) + ((v >> 2) & U32(0x33333333u)));  // 8 x 4-bit sums
    v = U32((v & U32(0x0F0F0F0Fu)) + ((v >> 4) & U32(0x0F0F0F0Fu)));  // 4 x 8-bit sums
    v = U32((v & U32(0x00FF00FFu)) + ((v >> 8) & U32(0x00FF00FFu)));  // 2 x 16-bit sums
    return ap_uint<6>(v(5, 0) + v(21, 16));                             // 0..32
}

/**
 * \brief Number of set bits of a 64-bit word: two 32-bit trees and a final adder (the
 *        hardware form; see popcount64).
 */
inline PopCount popcount64_tree(const Word& x) {
#pragma HLS INLINE
    return PopCount(ap_uint<7>(popcount32(x(31, 0))) + ap_uint<7>(popcount32(x(63, 32))));
}

/**
 * \brief Number of set bits of a 64-bit word.
 *
 * Synthesis uses popcount64_tree. The C simulation uses the compiler's popcount, because
 * ap_uint arithmetic is ~50x slower and whole-network tests run millions of popcounts; the
 * testbench (tb/bnn_kernel_tb.cpp, popcount_selftest) checks popcount64_tree against it on
 * edge cases and a million random words before any case runs.
 * \param x the word
 * \return popcount(x), 0..64
 */
inline PopCount popcount64(const Word& x) {
#pragma HLS INLINE
#ifdef __SYNTHESIS__
    return popcount64_tree(x);
#else
    return PopCount(__builtin_popcountll(x.to_uint64()));
#endif
}

/**
 * \brief Signed contribution of one word pair to a binary dot product.
 *
 * +1 is bit 1, -1 is bit 0, so the product of two elements is +1 where the bits agree
 * (XNOR = 1): sum over 64 elements = 2 * popcount(XNOR) - 64.
 * \param x activation word
 * \param w weight word
 * \return 2 * popcount(~(x ^ w)) - 64, in -64..64
 */
inline Contrib xnor_contrib(const Word& x, const Word& w) {
#pragma HLS INLINE
    const PopCount p = popcount64(~(x ^ w));
    return Contrib((ap_int<9>(p) << 1) - ap_int<9>(WORD_BITS));
}

}  // namespace bnn

#endif  // BNN_POPCOUNT_HPP
