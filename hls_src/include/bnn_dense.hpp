/**
 * \file bnn_dense.hpp
 * \brief Binary dense layer over a chunk of images: every weight word read from DDR is used
 *        by all the chunk's images in the same cycle; small chunks run two rows per cycle, one
 *        from each parameter port (docs/FORMAT.md s.2-4, s.7).
 */
#ifndef BNN_DENSE_HPP
#define BNN_DENSE_HPP

#include <hls_stream.h>

#include "bnn_config.hpp"
#include "bnn_ddr.hpp"
#include "bnn_descriptor.hpp"
#include "bnn_plan.hpp"
#include "bnn_estimate.hpp"
#include "bnn_popcount.hpp"
#include "bnn_threshold.hpp"
#include "bnn_types.hpp"

namespace bnn {

/**
 * \brief Rows of a dense layer read through gmem0 (rows 0 .. split-1); the rest, rows
 *        split .. cout-1, come through gmem3.
 *
 * A chunk of more than BATCH / 2 images runs one row per cycle on all BATCH units (every row
 * through gmem0: split = cout). A smaller chunk (batch 1 .. 8: the latency case, bound by the
 * weight traffic) runs two rows per cycle, each on BATCH / 2 units: the weights stream through
 * both HP ports at once. Then split is half the outputs, rounded up; for a hidden layer up to
 * a multiple of 64, so that each half packs whole output words (1024 -> 512 + 512,
 * 192 -> 128 + 64, 64 -> 64 + 0); the last layer keeps raw scores (10 classes -> 5 + 5). Each
 * port's rows are one contiguous block of the weights, i.e. one sequential burst stream per
 * port (interleaved even / odd rows would leave a one-row gap in both address streams: a new
 * burst, and its DDR latency, per row).
 */
inline unsigned dense_rows_port0(unsigned cout, bool last, unsigned n_img, unsigned batch) {
#pragma HLS INLINE
    if (n_img > batch / 2) return cout;
    const unsigned h = (cout + 1) / 2;
    return last ? h : (h + WORD_BITS - 1) / WORD_BITS * WORD_BITS;
}

/**
 * \brief The dense engine: BATCH XNOR-popcount units, each accumulating one output of one
 *        image per cycle: sum = 2 * popcount(XNOR(x, w)) - Nin.
 *
 * One flattened pipelined loop over (row m, input word iw), m < split. Unit k < BATCH / 2 is
 * always image k, row m (weights from \p ws0). Unit k >= BATCH / 2 is image k, row m as well
 * when split == cout (one row per cycle); otherwise (two rows per cycle, split < cout) it is
 * image k - BATCH / 2, row split + m (weights from \p ws1, while m < cout - split): the same
 * input word as unit k - BATCH / 2, another row. Hidden layers threshold each output
 * (prepared entries, one table per row half, both read every cycle) and pack 64 outputs into
 * a word per unit. Image k's outputs all go to its bank x[k] (the layout of one row per
 * cycle): in two-row mode the two words of an image finish in the same cycle (split is a
 * multiple of 64); the first is written at once, the second one cycle later (the next word is
 * 64 rows away), so each bank sees one write per cycle (simple dual port). The last layer
 * keeps the raw sums, each unit in its own score bank (write_scores maps them back). Input and
 * output are regions of one buffer (fc1 input at 0, hidden layers ping-pong at DENSE_HID_A /
 * DENSE_HID_B).
 *
 * \tparam BATCH  units = images of a chunk (DENSE_BATCH)
 * \param ws0, ws1 the weights of rows 0 .. split-1 and split .. cout-1 (dense_weight_reader)
 * \param split   dense_rows_port0 (cout: one row per cycle)
 * \param total   iterations: split x input words (the words of ws0)
 * \param thr     prepared thresholds of rows < split (thr[0]) and >= split (thr[1])
 * \param x       dense buffer, [image][word]: input at in_base, output at out_base
 * \param sbuf    raw scores (last layer), [unit][class - (unit's row half) * split]
 */
template <unsigned BATCH>
void dense_compute(hls::stream<Word>& ws0, hls::stream<Word>& ws1, const LayerDesc d,
                   unsigned split, unsigned total, const ThresholdPair thr[2][MAX_DENSE_OUT / 2],
                   Word x[BATCH][DENSE_BUF_WORDS], unsigned in_base, unsigned out_base,
                   Score sbuf[BATCH][MAX_CLASSES]) {
#pragma HLS INLINE off
    constexpr unsigned HALF = BATCH / 2;
    Sum acc[BATCH];
#pragma HLS ARRAY_PARTITION variable=acc complete
    Word ob[BATCH];
#pragma HLS ARRAY_PARTITION variable=ob complete
    Word pend[HALF];  // second-half words waiting one cycle for their bank's write port
#pragma HLS ARRAY_PARTITION variable=pend complete
init_acc:
    for (unsigned k = 0; k < BATCH; ++k) {
#pragma HLS UNROLL
        acc[k] = 0;
        ob[k] = 0;
        if (k < HALF) pend[k] = 0;
    }

    const unsigned ninw = d.cin / WORD_BITS;
    const bool two = split < unsigned(d.cout);      // two rows per cycle
    const unsigned n1 = unsigned(d.cout) - split;   // rows from ws1
    unsigned iw = 0, m = 0;
    unsigned in_addr = in_base;                      // in_base + iw
    unsigned out0 = out_base;                        // out_base + m / 64
    unsigned out1 = out_base + split / WORD_BITS;    // out_base + (split + m) / 64
    bool pend_v = false;
    unsigned pend_addr = 0;
    BNN_EST_LOOP(est_loop, "dense_mac", est::DEPTH_DENSE);
dense_mac:
    for (unsigned i = 0; i < total; ++i) {
#pragma HLS PIPELINE II=1
#pragma HLS LOOP_TRIPCOUNT min=32 max=131072 avg=16384
// input and output regions of x are disjoint (in_base, out_base)
#pragma HLS DEPENDENCE variable=x type=inter dependent=false
        BNN_EST_TICK(est_loop);
        const bool v1 = m < n1;  // a second row this cycle (two-row mode only)
        const Word w0 = ws0.read();
        Word w1 = 0;
        if (v1) w1 = ws1.read();
        const bool first = iw == 0;
        const bool last_word = iw + 1 == ninw;
        const bool word_end = last_word && !d.last && m % WORD_BITS == WORD_BITS - 1;
        ThresholdEntry q0, q1;
        q0.t = q1.t = 0;
        q0.neg = q1.neg = false;
        if (!d.last) {
            q0 = unpack_prepared(thr[0][m / 2], m % 2);
            q1 = unpack_prepared(thr[1][m / 2], m % 2);
        }
        // the upper units: their own image and row m, or the lower image and row split + m
        const Word w_hi = two ? w1 : w0;
        const ThresholdEntry q_hi = two ? q1 : q0;
        Word xin[BATCH];
#pragma HLS ARRAY_PARTITION variable=xin complete
        Word bits[BATCH];
#pragma HLS ARRAY_PARTITION variable=bits complete
    dense_read:
        for (unsigned k = 0; k < BATCH; ++k) {
#pragma HLS UNROLL
            xin[k] = x[k][in_addr];
        }
    dense_units:
        for (unsigned k = 0; k < BATCH; ++k) {
#pragma HLS UNROLL
            const bool hi = k >= HALF;
            const Word xv = (hi && two) ? xin[k % HALF] : xin[k];
            const Word w = hi ? w_hi : w0;
            const Sum s = (first ? Sum(0) : acc[k]) + xnor_contrib(xv, w);
            acc[k] = s;
            Word b = ob[k];
            if (last_word) {
                if (d.last) {
                    if (!hi || !two || v1) sbuf[k][m % MAX_CLASSES] = Score(s);
                } else {
                    b[m % WORD_BITS] = threshold_bit_prepared(s, hi ? q_hi : q0);
                    ob[k] = b;
                }
            }
            bits[k] = b;
        }
        // one write per bank and cycle: the finished word of the unit, or (lower banks, two-row
        // mode) the upper unit's word of the cycle before
        const bool wr_lo = word_end || pend_v;
        const unsigned wa_lo = word_end ? out0 : pend_addr;
    dense_write:
        for (unsigned k = 0; k < BATCH; ++k) {
#pragma HLS UNROLL
            if (k < HALF) {
                if (wr_lo) x[k][wa_lo] = word_end ? bits[k] : pend[k];
                if (word_end) pend[k] = bits[k + HALF];
            } else {
                if (word_end && !two) x[k][out0] = bits[k];
            }
        }
        pend_v = word_end && v1;
        if (word_end) pend_addr = out1;
        if (last_word) {
            iw = 0;
            in_addr = in_base;
            if (m % WORD_BITS == WORD_BITS - 1) {
                ++out0;
                ++out1;
            }
            ++m;
        } else {
            ++iw;
            ++in_addr;
        }
    }
    if (pend_v) {  // the upper units' last words
    dense_last_word:
        for (unsigned k = 0; k < HALF; ++k) {
#pragma HLS UNROLL
            x[k][pend_addr] = pend[k];
        }
    }
}

/**
 * \brief The streaming part of a dense layer: a weight reader per parameter port and the
 *        engine as a DATAFLOW region (canonical: streams and three process calls; the caller
 *        computes every offset and count).
 * \param n0, n1   weight words read through gmem0 (rows 0 .. split-1) and gmem3 (the rest)
 * \param off1     word offset of row split (d.w_off + n0)
 */
template <unsigned BATCH>
void dense_stream(const Word* params, const Word* params2, const LayerDesc d, unsigned split,
                  unsigned n0, unsigned n1, ap_uint<32> off1,
                  const ThresholdPair thr[2][MAX_DENSE_OUT / 2], Word x[BATCH][DENSE_BUF_WORDS],
                  unsigned in_base, unsigned out_base, Score sbuf[BATCH][MAX_CLASSES]) {
#pragma HLS INLINE off
#pragma HLS DATAFLOW
    hls::stream<Word> ws0("dense_weights_gmem0");
#pragma HLS STREAM variable=ws0 depth=32  // two 16-beat bursts
    hls::stream<Word> ws1("dense_weights_gmem3");
#pragma HLS STREAM variable=ws1 depth=32
    dense_weight_reader<0>(params, d.w_off, n0, ws0);
    dense_weight_reader<1>(params2, off1, n1, ws1);
    dense_compute<BATCH>(ws0, ws1, d, split, n0, thr, x, in_base, out_base, sbuf);
}

/**
 * \brief Dense layer over a chunk of images: each weight word read from DDR is used by all
 *        the images of the chunk in the same cycle; a chunk of up to BATCH / 2 images runs
 *        two rows per cycle, one through each parameter port (dense_rows_port0).
 *
 * \tparam BATCH     images processed together (DENSE_BATCH)
 * \param params   parameter image (m_axi gmem0): thresholds, rows 0 .. split-1
 * \param params2  the same image (m_axi gmem3): rows split .. cout-1
 * \param d        the layer
 * \param n_img    images in the chunk
 * \param x        dense buffer, [image][word]: input at in_base, output at out_base
 * \param in_base  first input word
 * \param out_base first output word (hidden layers)
 * \param sbuf     raw scores (last layer), one bank per unit (write_scores)
 */
template <unsigned BATCH>
void dense_layer(const Word* params, const Word* params2, const LayerDesc d, unsigned n_img,
                 Word x[BATCH][DENSE_BUF_WORDS], unsigned in_base, unsigned out_base,
                 Score sbuf[BATCH][MAX_CLASSES]) {
#pragma HLS INLINE off
    // Prepared thresholds of the two row halves (one BRAM18 each).
    ThresholdPair thr[2][MAX_DENSE_OUT / 2];
#pragma HLS ARRAY_PARTITION variable=thr complete dim=1
#pragma HLS BIND_STORAGE variable=thr type=ram_s2p impl=bram
    const unsigned split = dense_rows_port0(d.cout, d.last, n_img, BATCH);
    if (!d.last) load_dense_thresholds(params, d, split, thr);
    const unsigned ninw = d.cin / WORD_BITS;
    const unsigned n0 = split * ninw;               // one multiply per layer, not per cycle
    const unsigned n1 = unsigned(d.w_words) - n0;
    // ESTIMATE: one cycle per iteration of dense_mac (its loop counter), the first beat
    // DDR_LATENCY, and gmem0 (never fewer words than gmem3) delivers 90% of a word per cycle.
    BNN_EST_CYCLES(est::hp_cycles(n0) - n0 + est::DDR_LATENCY);
    dense_stream<BATCH>(params, params2, d, split, n0, n1, ap_uint<32>(d.w_off + n0), thr, x,
                        in_base, out_base, sbuf);
}

/**
 * \brief Copy the last conv map of \p count images (from image \p k0 of the chunk) into the
 *        dense input: NHWC order (fc1's (y, x, c) order), read from the two banks.
 * \param m     the last map (geometry, base and stride per image)
 * \param k0    first image slot in the chunk; count images
 */
inline void flatten_to_dense(const Word act_e[ACT_BANK_WORDS], const Word act_o[ACT_BANK_WORDS],
                             const MapLoc m, BankAddr base, unsigned k0, unsigned count,
                             Word x[DENSE_BATCH][DENSE_BUF_WORDS]) {
#pragma HLS INLINE off
    const unsigned size = m.size, cw = m.cw;
    const unsigned per_img = unsigned(m.size) * unsigned(m.size) * cw;
    const unsigned n = count * per_img;
    const unsigned rs = ((size + 1) / 2) * cw;  // bank words per pixel row
    BNN_EST_LOOP(est_loop, "flatten", est::DEPTH_COPY);
    unsigned k = k0, i_img = 0, c = 0, xx = 0;
    BankAddr img = base, row = base, pix = base;
flatten_words:
    for (unsigned i = 0; i < n; ++i) {
#pragma HLS PIPELINE II=1
#pragma HLS LOOP_TRIPCOUNT min=1 max=2048 avg=128
        BNN_EST_TICK(est_loop);
        const BankAddr addr = pix + c;
        x[k][i_img] = (xx & 1) ? act_o[addr] : act_e[addr];
        if (i_img + 1 < per_img) {
            ++i_img;
        } else {
            i_img = 0;
            ++k;
        }
        if (c + 1 < cw) {
            ++c;
        } else {
            c = 0;
            if (xx + 1 < size) {
                if (xx & 1) pix += cw;
                ++xx;
            } else {
                xx = 0;
                row += rs;
                if (i_img == 0) {  // next image
                    img += m.stride;
                    row = img;
                }
                pix = row;
            }
        }
    }
}

}  // namespace bnn

#endif  // BNN_DENSE_HPP
