/**
 * \file bnn_conv.hpp
 * \brief Binary 3x3 convolution (stride 1, zero padding 1, in-bounds taps only) with the
 *        batch-norm threshold and an optional 2x2 max-pool fused in (docs/FORMAT.md s.3-5).
 *
 * One call of conv_layer = one "conv job": one layer over one image, or over every image of
 * the chunk (bnn_plan.hpp), in group steps. Step s computes filter group s from one half of
 * the weight double buffer while the two conv_weight_readers (bnn_ddr.hpp, DATAFLOW producers,
 * one per parameter port: filters 0-31 through gmem0, 32-63 through gmem3) stream the next
 * group into the other half: group s + 1 of this layer, or, in the last step, group 0 of the
 * next job's layer (the prefetch across layers). The weight buffer and the thresholds
 * therefore live in the top level, across calls; the top has one conv_layer call site.
 */
#ifndef BNN_CONV_HPP
#define BNN_CONV_HPP

#include <hls_stream.h>

#include "bnn_config.hpp"
#include "bnn_ddr.hpp"
#include "bnn_descriptor.hpp"
#include "bnn_estimate.hpp"
#include "bnn_plan.hpp"
#include "bnn_popcount.hpp"
#include "bnn_threshold.hpp"
#include "bnn_types.hpp"

namespace bnn {

/// One call of the conv engine: a layer over n_img images (maps placed by bnn_plan.hpp).
struct ConvJob {
    bool valid;      ///< false: no compute (the preload call)
    LayerDesc d;     ///< the layer
    unsigned n_img;  ///< images in this call (1: image by image; the chunk: images inner)
    MapLoc in;       ///< input map (base of this call's first image, stride between images)
    MapLoc out;      ///< output map
};

/**
 * \brief The conv engine: PE filters x 2 adjacent output pixels per cycle, one input word
 *        (64 channels) per pixel per cycle.
 *
 * Iteration space of one group step (flattened, II = 1), innermost first:
 *   cw (input word) -> kx -> ky (the 9 taps) -> dy (pool row) -> b (pixel pair / pooled
 *   column) -> a (row / pooled row) -> k (image of the job).
 * Pixel pair (y, 2b), (y, 2b + 1): for every tap one pixel reads the even bank, the other the
 * odd bank (kx = 1: pixel a even; kx = 0, 2: pixel a odd), so each bank sees one read per
 * cycle; the two outputs of a pair go one to each bank, a pooled output to one bank: at most
 * one write per bank per cycle. All addresses come from counters and adders.
 * A tap outside the map contributes 0 (exact zero padding). At the last tap word of a pixel
 * pair the sums are thresholded (prepared entries: neg ^ (sum >= t')); with a pool the two
 * words are combined (OR for direction +1, AND for -1) with the other row of the window.
 *
 * \param ws0     weights of filters 0 .. PE/2-1 then the thresholds, step by step
 *                (conv_weight_reader<PE, 0>, gmem0)
 * \param ws1     weights of filters PE/2 .. PE-1 (conv_weight_reader<PE, 1>, gmem3): the
 *                load side writes two banks per cycle, one word from each stream
 * \param wbuf    weight double buffer, [filter][half * MAX_FILTER_WORDS + tap word]
 * \param next_t, next_neg  prepared thresholds of the group loaded last (kept across calls:
 *                the group a step computes takes them over at the step's start)
 * \param half    the half of wbuf holding the group computed in step 0 (the caller flips it
 *                once per step: half ^ (steps & 1) after the call)
 * \param act_e, act_o  activation memory banks (even / odd pixel columns)
 * \param job     what to compute (job.valid false: the preload, no compute)
 * \param steps   group steps of this call (groups of job.d, or 1 for the preload)
 * \param next    the layer whose group 0 the last step loads (has_next)
 */
template <unsigned PE>
void conv_compute(hls::stream<Word>& ws0, hls::stream<Word>& ws1,
                  Word wbuf[PE][2 * MAX_FILTER_WORDS],
                  Sum next_t[PE], bool next_neg[PE], ap_uint<1> half,
                  Word act_e[ACT_BANK_WORDS], Word act_o[ACT_BANK_WORDS], const ConvJob job,
                  unsigned steps, const LayerDesc next, bool has_next) {
#pragma HLS INLINE off
    // Thresholds of the group computed in the current step.
    Sum cur_t[PE];
#pragma HLS ARRAY_PARTITION variable=cur_t complete
    bool cur_neg[PE];
#pragma HLS ARRAY_PARTITION variable=cur_neg complete
    // Running sums of the two pixels, one per filter.
    Sum acc_a[PE], acc_b[PE];
#pragma HLS ARRAY_PARTITION variable=acc_a complete
#pragma HLS ARRAY_PARTITION variable=acc_b complete
init_acc:
    for (unsigned pe = 0; pe < PE; ++pe) {
#pragma HLS UNROLL
        acc_a[pe] = acc_b[pe] = 0;
    }

    const LayerDesc d = job.d;
    const unsigned size = job.in.size;
    const unsigned cinw = job.in.cw;              // input words per pixel
    const unsigned groups = job.out.cw;           // filter groups = output words per pixel
    const unsigned fw = 9 * cinw;                 // weight words per filter
    const bool pool = d.pool;
    const unsigned na = pool ? size / 2 : size;              // rows (pooled rows)
    const unsigned nb = pool ? size / 2 : (size + 1) / 2;    // pixel pairs per row
    const unsigned ndy = pool ? 2 : 1;                       // conv rows per output row
    const unsigned rs = ((size + 1) / 2) * cinw;             // input row stride, per bank
    const unsigned arow_step = pool ? 2 * rs : rs;           // input rows per output row
    const unsigned ors = ((unsigned(job.out.size) + 1) / 2) * groups;  // output row stride
    const unsigned n_comp = job.valid ? job.n_img * na * nb * ndy * fw : 0;  // per group
    const unsigned fw_next = 9 * (next.cin / WORD_BITS);

    ap_uint<1> h = half;  // half computed in this step
conv_steps:
    for (unsigned s = 0; s < steps; ++s) {
#pragma HLS LOOP_TRIPCOUNT min=1 max=8 avg=5
        // the group loaded in this step: s + 1 of this layer, else group 0 of the next layer
        const bool own = job.valid && s + 1 < steps;
        const bool load = own || has_next;
        const unsigned lfw = own ? fw : fw_next;
        // load iterations: two weight words per cycle (one per port, filters lpe and
        // lpe + PE / 2), then the PE / 2 threshold words from port 0
        const unsigned n_wload = load ? (PE / 2) * lfw : 0;
        const unsigned nl = load ? n_wload + PE / 2 : 0;
        const unsigned nc = n_comp;
        const unsigned n = nc > nl ? nc : nl;
        const ap_uint<1> lh = h ^ 1;  // half being loaded
        const unsigned cbase = h ? MAX_FILTER_WORDS : 0;   // first row of the computed half
        const unsigned lbase = lh ? MAX_FILTER_WORDS : 0;  // first row of the loaded half

        // The group computed now: its thresholds move from the load side (registers with
        // enable, no per-unit multiplexer).
        Word negmask = 0;
    take_thresholds:
        for (unsigned pe = 0; pe < PE; ++pe) {
#pragma HLS UNROLL
            cur_t[pe] = next_t[pe];
            cur_neg[pe] = next_neg[pe];
            negmask[pe] = next_neg[pe];
        }

        // ESTIMATE: the step lasts max(compute, load at 90% of an HP port, nl being the words
        // of the busier port, 0); a load-bound step also pays port 0's two burst starts
        // (weights, thresholds).
        if (est::hp_cycles(nl) > nc) {
            BNN_EST_CYCLES(est::hp_cycles(nl) - n + 2 * est::DDR_LATENCY);
        }

        unsigned lpe = 0, lt = 0, lthr = 0;              // load counters
        unsigned cw = 0, kx = 0, ky = 0, dy = 0, t = 0;  // tap counters (t = tap word)
        unsigned b = 0, a = 0, k = 0, y = 0, x0 = 0;     // pixel counters (y: conv row)
        BankAddr img_in = job.in.base, img_out = job.out.base;  // image k's maps
        BankAddr arow = img_in;                          // input row y of dy = 0
        BankAddr colb = 0;                               // b * cinw
        BankAddr orow = img_out;                         // output row (a)
        BankAddr ocol = 0;                               // output column * groups
        Word pool_word = 0;
        BNN_EST_LOOP(est_loop, "conv_mac", est::DEPTH_CONV);
    conv_step:
        for (unsigned i = 0; i < n; ++i) {
#pragma HLS PIPELINE II=1
#pragma HLS LOOP_TRIPCOUNT min=576 max=36864 avg=4608
// Group s is read from half h while group s + 1 is written into half h ^ 1; the input and
// output maps are disjoint regions of the banks (bnn_plan.hpp): no dependence through memory.
#pragma HLS DEPENDENCE variable=wbuf type=inter dependent=false
#pragma HLS DEPENDENCE variable=wbuf type=intra dependent=false
#pragma HLS DEPENDENCE variable=act_e type=inter dependent=false
#pragma HLS DEPENDENCE variable=act_o type=inter dependent=false
            BNN_EST_TICK(est_loop);
            // ---- load side: the next group's weights (two banks per cycle), then its
            // thresholds ----
            if (i < nl) {
                const Word v = ws0.read();
                if (i < n_wload) {
                    const Word v1 = ws1.read();
                conv_load_banks:
                    for (unsigned pe = 0; pe < PE; ++pe) {
#pragma HLS UNROLL
                        // one write statement per bank (constant index): banks pe and
                        // pe + PE / 2 are written in the same cycle, from the two ports
                        if (pe % (PE / 2) == lpe) wbuf[pe][lbase + lt] = pe < PE / 2 ? v : v1;
                    }
                    if (lt + 1 == lfw) { lt = 0; ++lpe; } else { ++lt; }
                } else {
                    const ThresholdEntry e0 = prepare_threshold(unpack_threshold(v, 0));
                    const ThresholdEntry e1 = prepare_threshold(unpack_threshold(v, 1));
                    next_t[2 * lthr] = e0.t;
                    next_neg[2 * lthr] = e0.neg;
                    next_t[2 * lthr + 1] = e1.t;
                    next_neg[2 * lthr + 1] = e1.neg;
                    ++lthr;
                }
            }
            // ---- compute side: one tap word of two adjacent output pixels, PE filters ----
            if (i < nc) {
                const bool row_ok = !(ky == 0 && y == 0) && !(ky == 2 && y + 1 == size);
                const bool va = row_ok && !(kx == 0 && x0 == 0) && x0 + kx <= size;  // x0+kx-1
                const bool vb = row_ok && x0 + kx < size;                              // x0+kx
                // bank addresses: row of the tap, column b (+1 for the even bank at kx = 2,
                // -1 for the odd bank at kx = 0)
                const BankAddr dyoff = dy ? BankAddr(rs) : BankAddr(0);
                const BankAddr trow = arow + dyoff;  // row y
                const BankAddr tap_row = ky == 0 ? BankAddr(trow - rs)
                                                 : (ky == 1 ? trow : BankAddr(trow + rs));
                const BankAddr col_e = kx == 2 ? BankAddr(colb + cinw) : colb;
                const BankAddr col_o = kx == 0 ? BankAddr(colb - cinw) : colb;
                const bool a_even = kx == 1;
                const bool ve = a_even ? va : vb, vo = a_even ? vb : va;
                const BankAddr addr_e = ve ? BankAddr(tap_row + col_e + cw) : BankAddr(0);
                const BankAddr addr_o = vo ? BankAddr(tap_row + col_o + cw) : BankAddr(0);
                const Word in_e = act_e[addr_e];
                const Word in_o = act_o[addr_o];
                const Word in_a = a_even ? in_e : in_o;
                const Word in_b = a_even ? in_o : in_e;
                const bool first = t == 0;
                const bool last_word = t + 1 == fw;

                Word bits_a = 0, bits_b = 0;
            conv_pe:
                for (unsigned pe = 0; pe < PE; ++pe) {
#pragma HLS UNROLL
                    const Word w = wbuf[pe][cbase + t];
                    const Sum sa = (first ? Sum(0) : acc_a[pe]) +
                                   (va ? xnor_contrib(in_a, w) : Contrib(0));
                    const Sum sb = (first ? Sum(0) : acc_b[pe]) +
                                   (vb ? xnor_contrib(in_b, w) : Contrib(0));
                    acc_a[pe] = sa;
                    acc_b[pe] = sb;
                    ThresholdEntry q;
                    q.t = cur_t[pe];
                    q.neg = cur_neg[pe];
                    bits_a[pe] = threshold_bit_prepared(sa, q);
                    bits_b[pe] = threshold_bit_prepared(sb, q);
                }
                if (last_word) {
                    const BankAddr oaddr = orow + ocol + s;
                    if (pool) {
                        const Word pair = pool_combine(bits_a, bits_b, negmask);
                        const Word merged = dy == 0 ? pair : pool_combine(pool_word, pair, negmask);
                        pool_word = merged;
                        if (dy == 1) {
                            if (b & 1) act_o[oaddr] = merged; else act_e[oaddr] = merged;
                        }
                    } else {
                        act_e[oaddr] = bits_a;
                        if (x0 + 1 < size) act_o[oaddr] = bits_b;
                    }
                }
                // advance cw -> kx -> ky -> dy -> b -> a -> k
                if (cw + 1 < cinw) {
                    ++cw;
                    ++t;
                } else {
                    cw = 0;
                    if (kx < 2) {
                        ++kx;
                        ++t;
                    } else {
                        kx = 0;
                        if (ky < 2) {
                            ++ky;
                            ++t;
                        } else {
                            ky = 0;
                            t = 0;
                            if (dy + 1 < ndy) {
                                ++dy;
                                ++y;
                            } else {
                                dy = 0;
                                if (b + 1 < nb) {
                                    // next pixel pair / pooled column of the same row
                                    if (pool) {
                                        --y;
                                        if (b & 1) ocol += groups;
                                    } else {
                                        ocol += groups;
                                    }
                                    ++b;
                                    x0 += 2;
                                    colb += cinw;
                                } else {
                                    b = 0;
                                    x0 = 0;
                                    colb = 0;
                                    ocol = 0;
                                    if (a + 1 < na) {
                                        ++a;
                                        ++y;  // a -> a + 1, or pooled 2a + 1 -> 2(a + 1)
                                        arow += arow_step;
                                        orow += ors;
                                    } else {
                                        a = 0;
                                        y = 0;
                                        ++k;
                                        img_in += job.in.stride;
                                        img_out += job.out.stride;
                                        arow = img_in;
                                        orow = img_out;
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        h = lh;
    }
}

/**
 * \brief One conv engine call: two weight readers (one per parameter port) and the conv
 *        engine as a DATAFLOW region (canonical: only the streams and the three process calls;
 *        the caller computes \p steps).
 * \param params  parameter image (m_axi gmem0)
 * \param params2 the same image through the second port (m_axi gmem3)
 * \param job    the layer and images to compute (job.valid false: only preload \p next)
 * \param steps  group steps: job.d.cout / CONV_PE, or 1 for the preload
 * \param next   the layer of the next job, whose first group is prefetched (has_next)
 */
inline void conv_layer(const Word* params, const Word* params2, const ConvJob job,
                       unsigned steps, const LayerDesc next, bool has_next,
                       Word wbuf[CONV_PE][2 * MAX_FILTER_WORDS], Sum next_t[CONV_PE],
                       bool next_neg[CONV_PE], ap_uint<1> half, Word act_e[ACT_BANK_WORDS],
                       Word act_o[ACT_BANK_WORDS]) {
#pragma HLS INLINE off
#pragma HLS DATAFLOW
    hls::stream<Word> ws0("conv_weights_gmem0");
#pragma HLS STREAM variable=ws0 depth=32  // WEIGHT_FIFO_DEPTH: two 16-beat bursts
    hls::stream<Word> ws1("conv_weights_gmem3");
#pragma HLS STREAM variable=ws1 depth=32
    conv_weight_reader<CONV_PE, 0>(params, job.d, job.valid, steps, next, has_next, ws0);
    conv_weight_reader<CONV_PE, 1>(params2, job.d, job.valid, steps, next, has_next, ws1);
    conv_compute<CONV_PE>(ws0, ws1, wbuf, next_t, next_neg, half, act_e, act_o, job, steps,
                          next, has_next);
}

}  // namespace bnn

#endif  // BNN_CONV_HPP
