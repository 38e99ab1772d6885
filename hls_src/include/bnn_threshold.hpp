/**
 * \file bnn_threshold.hpp
 * \brief Batch-norm thresholds and max-pooling on bits (docs/FORMAT.md s.4, s.5).
 */
#ifndef BNN_THRESHOLD_HPP
#define BNN_THRESHOLD_HPP

#include "bnn_types.hpp"

namespace bnn {

/**
 * \brief One packed threshold entry (32 bits): int16 threshold in bits 0-15, int8 direction
 *        in bits 16-23. Direction -1 is 0xFF, so bit 23 alone tells the direction.
 */
struct ThresholdEntry {
    Sum t;     ///< integer threshold T, |T| <= fan_in + 1
    bool neg;  ///< direction -1: bit = (sum <= T); otherwise bit = (sum >= T)
};

/// \brief Unpack the even (half = 0) or odd (half = 1) entry of a threshold word.
inline ThresholdEntry unpack_threshold(const Word& w, unsigned half) {
#pragma HLS INLINE
    const ap_uint<32> e = half ? ap_uint<32>(w(63, 32)) : ap_uint<32>(w(31, 0));
    ThresholdEntry r;
    r.t = Sum(ap_int<16>(e(15, 0)));
    r.neg = e[23] == 1;
    return r;
}

/**
 * \brief The integer rule: bit = (sum >= T) for direction +1, (sum <= T) for direction -1.
 * \param sum the integer dot product (after pooling, if any)
 * \param t   threshold
 * \param neg true for direction -1
 */
inline bool threshold_bit(const Sum& sum, const Sum& t, bool neg) {
#pragma HLS INLINE
    return neg ? (sum <= t) : (sum >= t);
}

/**
 * \brief A threshold entry prepared for the datapath: t' = t + 1 for direction -1, so that
 *        every unit needs one ">=" comparator and an XOR: bit = neg ^ (sum >= t').
 *
 * sum <= t  <=>  !(sum >= t + 1) for integers; |t| <= 8193, so t + 1 fits the 16 bits. Done
 * once per entry when a threshold block is loaded (two incrementers on the load side), not in
 * each of the 128 conv / 16 dense units (resource_model: acc_threshold_xor 36 LUT against
 * acc_threshold_dir 41).
 */
inline ThresholdEntry prepare_threshold(const ThresholdEntry& e) {
#pragma HLS INLINE
    ThresholdEntry r;
    r.t = e.neg ? Sum(e.t + 1) : e.t;
    r.neg = e.neg;
    return r;
}

/// Two prepared threshold entries in 34 bits (what the dense threshold tables hold): entry h
/// at bits 17h .. 17h + 16, t' in the low 16 bits and the direction bit above it. 512 pairs
/// fit one BRAM18 (512 x 36), where 64-bit words would take a whole BRAM36.
using ThresholdPair = ap_uint<34>;

/// \brief Both entries of a threshold word, prepared (prepare_threshold), as a ThresholdPair.
inline ThresholdPair prepare_threshold_pair(const Word& w) {
#pragma HLS INLINE
    const ThresholdEntry q0 = prepare_threshold(unpack_threshold(w, 0));
    const ThresholdEntry q1 = prepare_threshold(unpack_threshold(w, 1));
    const ap_uint<17> e0 = (ap_uint<17>(q0.neg) << 16) | ap_uint<17>(ap_uint<16>(q0.t));
    const ap_uint<17> e1 = (ap_uint<17>(q1.neg) << 16) | ap_uint<17>(ap_uint<16>(q1.t));
    return (ThresholdPair(e1) << 17) | ThresholdPair(e0);
}

/// \brief Entry \p half (0 or 1) of a ThresholdPair, ready for threshold_bit_prepared.
inline ThresholdEntry unpack_prepared(const ThresholdPair& p, unsigned half) {
#pragma HLS INLINE
    const ap_uint<17> e = half ? ap_uint<17>(p(33, 17)) : ap_uint<17>(p(16, 0));
    ThresholdEntry r;
    r.t = Sum(ap_int<16>(e(15, 0)));
    r.neg = e[16] == 1;
    return r;
}

/// \brief The integer rule on a prepared entry (prepare_threshold): neg ^ (sum >= t').
inline bool threshold_bit_prepared(const Sum& sum, const ThresholdEntry& q) {
#pragma HLS INLINE
    return q.neg ^ (sum >= q.t);
}

/**
 * \brief 2x2 max-pool on thresholded bits, combining two bit words of one output pixel.
 *
 * max(s) >= T iff any s >= T (OR, direction +1); max(s) <= T iff all s <= T (AND,
 * direction -1). Pooling the integer sums then thresholding is the same as this.
 * \param a, b     thresholded words of two pixels of the same pooling window
 * \param negmask  bit c set where channel c has direction -1
 */
inline Word pool_combine(const Word& a, const Word& b, const Word& negmask) {
#pragma HLS INLINE
    return ((a | b) & ~negmask) | ((a & b) & negmask);
}

}  // namespace bnn

#endif  // BNN_THRESHOLD_HPP
