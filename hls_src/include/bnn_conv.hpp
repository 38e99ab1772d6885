/**
 * \file bnn_conv.hpp
 * \brief Binary 3x3 convolution (stride 1, zero padding 1, in-bounds taps only) with the
 *        batch-norm threshold and an optional 2x2 max-pool fused in (docs/FORMAT.md s.3-5).
 *
 * Dataflow of one layer: conv_weight_reader (bnn_ddr.hpp) streams each group of CONV_PE
 * filters from DDR; conv_compute keeps two groups on chip (double buffer) and, in one
 * pipelined loop per group step, computes group g-1 while it stores group g as it arrives.
 */
#ifndef BNN_CONV_HPP
#define BNN_CONV_HPP

#include <hls_stream.h>

#include "bnn_config.hpp"
#include "bnn_ddr.hpp"
#include "bnn_descriptor.hpp"
#include "bnn_estimate.hpp"
#include "bnn_popcount.hpp"
#include "bnn_threshold.hpp"
#include "bnn_types.hpp"

namespace bnn {

/**
 * \brief The conv engine: PE filters x 2 adjacent output pixels per cycle, one input word
 *        (64 channels) per pixel per cycle.
 *
 * Iteration space of one group step (flattened, II = 1), innermost first:
 *   cw (input word, Cin/64) -> kx -> ky (the 9 taps) -> dy (pool row, 2 if pooled) ->
 *   b (pixel pair / pooled column) -> a (row / pooled row).
 * A tap outside the map contributes 0 (exact zero padding: only in-bounds taps count).
 * At the last tap word of a pixel pair the PE sums of both pixels are thresholded; without a
 * pool both words are written, with a pool the two words are combined (OR for direction +1,
 * AND for -1) with the other row of the window and written once per pooled pixel.
 *
 * \tparam PE   filters per group; one group fills one output word (PE = 64)
 * \param wstream weights and thresholds, group by group (from conv_weight_reader)
 * \param in    input map, NHWC words: (y * size + x) * Cin/64 + cw
 * \param out   output map (pooled if d.pool), NHWC words
 * \param d     the layer
 */
template <unsigned PE>
void conv_compute(hls::stream<Word>& wstream, const Word in[MAX_ACT_WORDS],
                  Word out[MAX_ACT_WORDS], const LayerDesc d) {
#pragma HLS INLINE off
    // Weight double buffer: bank pe = filter of the group; row = half * MAX_FILTER_WORDS + tap
    // word. Each bank sees one read (compute, half h) and at most one write (load, half 1-h)
    // per cycle: a simple dual-port BRAM, and the two halves never alias.
    Word wbuf[PE][2 * MAX_FILTER_WORDS];
#pragma HLS ARRAY_PARTITION variable=wbuf complete dim=1
#pragma HLS BIND_STORAGE variable=wbuf type=ram_s2p impl=bram
#pragma HLS DEPENDENCE variable=wbuf inter false
#pragma HLS DEPENDENCE variable=wbuf intra false
    // Thresholds of the two buffered groups, in registers.
    Sum thr_t[2][PE];
#pragma HLS ARRAY_PARTITION variable=thr_t complete dim=0
    bool thr_neg[2][PE];
#pragma HLS ARRAY_PARTITION variable=thr_neg complete dim=0
    // Running sums of the two pixels, one per filter.
    Sum acc_a[PE], acc_b[PE];
#pragma HLS ARRAY_PARTITION variable=acc_a complete
#pragma HLS ARRAY_PARTITION variable=acc_b complete
init_thresholds:
    for (unsigned pe = 0; pe < PE; ++pe) {
#pragma HLS UNROLL
        thr_t[0][pe] = thr_t[1][pe] = 0;
        thr_neg[0][pe] = thr_neg[1][pe] = false;
        acc_a[pe] = acc_b[pe] = 0;
    }

    const unsigned size = d.size;
    const unsigned cinw = d.cin / WORD_BITS;     // input words per pixel
    const unsigned groups = d.cout / PE;         // filter groups = output words per pixel
    const unsigned fw = 9 * cinw;                // weight words per filter
    const bool pool = d.pool;
    const unsigned na = pool ? size / 2 : size;         // rows (pooled rows)
    const unsigned nb = pool ? size / 2 : (size + 1) / 2;  // pixel pairs per row
    const unsigned ndy = pool ? 2 : 1;                   // conv rows per output row
    const unsigned out_w = pool ? size / 2 : size;
    const unsigned n_comp = na * nb * ndy * fw;          // compute iterations per group
    const unsigned n_wload = PE * fw;                    // weight words per group
    const unsigned n_load = n_wload + PE / 2;            // plus threshold words

    // Step s computes group s - 1 (s >= 1) while loading group s (s < groups) into the other
    // half: max(compute, load) cycles per step, so DDR and compute overlap.
conv_steps:
    for (unsigned s = 0; s <= groups; ++s) {
#pragma HLS LOOP_TRIPCOUNT min=2 max=9 avg=5
        const unsigned lhalf = s & 1;     // half being loaded (group s)
        const unsigned chalf = lhalf ^ 1; // half being computed (group s - 1)
        const unsigned cg = s - 1;        // output word index of the computed group
        const unsigned nc = s > 0 ? n_comp : 0;
        const unsigned nl = s < groups ? n_load : 0;
        const unsigned n = nc > nl ? nc : nl;

        Word negmask = 0;
    build_negmask:
        for (unsigned pe = 0; pe < PE; ++pe) {
#pragma HLS UNROLL
            negmask[pe] = thr_neg[chalf][pe];
        }

        // ESTIMATE: when loading is the longer side, the consumer drains the FIFO faster than
        // the reader refills it across its two burst starts (weights, thresholds) per group.
        if (nl > nc) BNN_EST_CYCLES(2 * est::DDR_LATENCY);

        unsigned lpe = 0, lt = 0, lthr = 0;                     // load counters
        unsigned cw = 0, kx = 0, ky = 0, dy = 0, b = 0, a = 0;  // compute counters
        Word pool_word = 0;
        BNN_EST_LOOP(est_loop, "conv_mac", est::DEPTH_CONV);
    conv_step:
        for (unsigned i = 0; i < n; ++i) {
#pragma HLS PIPELINE II=1
#pragma HLS LOOP_TRIPCOUNT min=576 max=36864 avg=4608
            BNN_EST_TICK(est_loop);
            // ---- load side: next group's weights, then its thresholds ----
            if (i < nl) {
                const Word v = wstream.read();
                if (i < n_wload) {
                    wbuf[lpe][lhalf * MAX_FILTER_WORDS + lt] = v;
                    if (lt + 1 == fw) { lt = 0; ++lpe; } else { ++lt; }
                } else {
                    const ThresholdEntry e0 = unpack_threshold(v, 0);
                    const ThresholdEntry e1 = unpack_threshold(v, 1);
                    thr_t[lhalf][2 * lthr] = e0.t;
                    thr_neg[lhalf][2 * lthr] = e0.neg;
                    thr_t[lhalf][2 * lthr + 1] = e1.t;
                    thr_neg[lhalf][2 * lthr + 1] = e1.neg;
                    ++lthr;
                }
            }
            // ---- compute side: one tap word of two adjacent output pixels, PE filters ----
            if (i < nc) {
                const unsigned y = pool ? 2 * a + dy : a;
                const unsigned x0 = 2 * b;
                const int yy = int(y) + int(ky) - 1;
                const int xa = int(x0) + int(kx) - 1;
                const int xb = xa + 1;
                const bool row_ok = yy >= 0 && yy < int(size);
                const bool va = row_ok && xa >= 0 && xa < int(size);
                const bool vb = row_ok && xb < int(size);
                const unsigned row = unsigned(row_ok ? yy : 0) * size;
                const unsigned addr_a = va ? (row + unsigned(xa)) * cinw + cw : 0;
                const unsigned addr_b = vb ? (row + unsigned(xb)) * cinw + cw : 0;
                const Word in_a = in[addr_a];  // port A of the activation BRAM
                const Word in_b = in[addr_b];  // port B
                const unsigned t = (ky * 3 + kx) * cinw + cw;
                const bool first = ky == 0 && kx == 0 && cw == 0;
                const bool last_word = ky == 2 && kx == 2 && cw + 1 == cinw;

                Word bits_a = 0, bits_b = 0;
            conv_pe:
                for (unsigned pe = 0; pe < PE; ++pe) {
#pragma HLS UNROLL
                    const Word w = wbuf[pe][chalf * MAX_FILTER_WORDS + t];
                    const Sum sa = (first ? Sum(0) : acc_a[pe]) +
                                   (va ? xnor_contrib(in_a, w) : Contrib(0));
                    const Sum sb = (first ? Sum(0) : acc_b[pe]) +
                                   (vb ? xnor_contrib(in_b, w) : Contrib(0));
                    acc_a[pe] = sa;
                    acc_b[pe] = sb;
                    bits_a[pe] = threshold_bit(sa, thr_t[chalf][pe], thr_neg[chalf][pe]);
                    bits_b[pe] = threshold_bit(sb, thr_t[chalf][pe], thr_neg[chalf][pe]);
                }
                if (last_word) {
                    if (pool) {
                        const Word pair = pool_combine(bits_a, bits_b, negmask);
                        const Word merged = dy == 0 ? pair : pool_combine(pool_word, pair, negmask);
                        pool_word = merged;
                        if (dy == 1) out[(a * out_w + b) * groups + cg] = merged;
                    } else {
                        out[(y * size + x0) * groups + cg] = bits_a;
                        if (x0 + 1 < size) out[(y * size + x0 + 1) * groups + cg] = bits_b;
                    }
                }
                // advance cw -> kx -> ky -> dy -> b -> a
                if (cw + 1 < cinw) {
                    ++cw;
                } else {
                    cw = 0;
                    if (kx < 2) {
                        ++kx;
                    } else {
                        kx = 0;
                        if (ky < 2) {
                            ++ky;
                        } else {
                            ky = 0;
                            if (dy + 1 < ndy) {
                                ++dy;
                            } else {
                                dy = 0;
                                if (b + 1 < nb) { ++b; } else { b = 0; ++a; }
                            }
                        }
                    }
                }
            }
        }
    }
}

/**
 * \brief One binary conv layer: weight reader and conv engine as a DATAFLOW pair.
 * \param params parameter image (m_axi gmem0)
 * \param d      the layer
 * \param in     input map (read)
 * \param out    output map (written)
 */
inline void conv_layer(const Word* params, const LayerDesc d, const Word in[MAX_ACT_WORDS],
                       Word out[MAX_ACT_WORDS]) {
#pragma HLS INLINE off
#pragma HLS DATAFLOW
    hls::stream<Word> wstream("conv_weights");
#pragma HLS STREAM variable=wstream depth=64  // WEIGHT_FIFO_DEPTH
    BNN_EST_CYCLES(est::DDR_LATENCY);  // the first weight word of the layer
    conv_weight_reader<CONV_PE>(params, d, wstream);
    conv_compute<CONV_PE>(wstream, in, out, d);
}

}  // namespace bnn

#endif  // BNN_CONV_HPP
