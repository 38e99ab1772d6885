/**
 * \file bnn_popcount.hpp
 * \brief XNOR-popcount of 64-bit words: the binary multiply-accumulate primitive.
 */
#ifndef BNN_POPCOUNT_HPP
#define BNN_POPCOUNT_HPP

#include "bnn_types.hpp"

namespace bnn {

/**
 * \brief Number of set bits of a 6-bit field, 0..6, as three 6-input logic functions.
 *
 * Written as two full adders and a 2-bit add, in plain logic (XOR / AND / OR): each of the
 * three result bits depends on the 6 inputs only, so Vivado maps each to exactly one LUT6
 * (what hls_src/resource_model/units.v models and yosys measures).
 */
inline ap_uint<3> popcount6(const ap_uint<6>& f) {
#pragma HLS INLINE
    const bool a0 = f[0], a1 = f[1], a2 = f[2], b0 = f[3], b1 = f[4], b2 = f[5];
    const bool sa = a0 ^ a1 ^ a2, ca = (a0 & a1) | (a0 & a2) | (a1 & a2);  // a0+a1+a2
    const bool sb = b0 ^ b1 ^ b2, cb = (b0 & b1) | (b0 & b2) | (b1 & b2);  // b0+b1+b2
    const bool s0 = sa ^ sb, k0 = sa & sb;                                  // ones, carry
    const bool s1 = ca ^ cb ^ k0, s2 = (ca & cb) | (ca & k0) | (cb & k0);   // twos, fours
    ap_uint<3> r;
    r[0] = s0;
    r[1] = s1;
    r[2] = s2;
    return r;
}

/**
 * \brief Number of set bits of a 64-bit word as a LUT6 compressor tree (the hardware form).
 *
 * Level 1: ten 6-bit fields counted by popcount6 (3 LUT6 each) and one 4-bit field; then a
 * balanced tree of small adders: 3+3 -> 4 bits (x5), 4+4 -> 5 bits (x2), 4+3 -> 5 bits,
 * 5+5 -> 6 bits, 6+5 -> 7 bits. Measured as a model (resource_model/units.v,
 * xnor_popcount64_lut6, XNOR included): 127 LUT + 13 CARRY4 with yosys synth_xilinx -abc9,
 * against 161 LUT + 34 CARRY4 for the former SWAR mask-and-add form.
 */
inline PopCount popcount64_tree(const Word& x) {
#pragma HLS INLINE
    ap_uint<3> c[11];
#pragma HLS ARRAY_PARTITION variable=c complete
    for (unsigned i = 0; i < 10; ++i) {
#pragma HLS UNROLL
        c[i] = popcount6(ap_uint<6>(x(6 * i + 5, 6 * i)));
    }
    c[10] = ap_uint<3>(ap_uint<3>(x[60]) + ap_uint<3>(x[61]) + ap_uint<3>(x[62]) +
                       ap_uint<3>(x[63]));
    const ap_uint<4> s0 = ap_uint<4>(c[0]) + c[1], s1 = ap_uint<4>(c[2]) + c[3],
                     s2 = ap_uint<4>(c[4]) + c[5], s3 = ap_uint<4>(c[6]) + c[7],
                     s4 = ap_uint<4>(c[8]) + c[9];
    const ap_uint<5> t0 = ap_uint<5>(s0) + s1, t1 = ap_uint<5>(s2) + s3,
                     t2 = ap_uint<5>(s4) + c[10];
    const ap_uint<6> u0 = ap_uint<6>(t0) + t1;
    return PopCount(ap_uint<7>(u0) + t2);
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
