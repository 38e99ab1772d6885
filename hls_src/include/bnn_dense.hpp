/**
 * \file bnn_dense.hpp
 * \brief Binary dense layer over a chunk of images: every weight word read from DDR is used
 *        by all DENSE_BATCH images in the same cycle (docs/FORMAT.md s.2-4, s.7).
 */
#ifndef BNN_DENSE_HPP
#define BNN_DENSE_HPP

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
 * \brief Dense layer: sum_n = 2 * popcount(XNOR(x, w_n)) - Nin for each output n and image.
 *
 * One flattened pipelined loop over (output n, input word iw) reads the layer's weight block
 * as a single burst, one word per cycle. Hidden layers threshold each output and pack 64
 * outputs into a word; the last layer keeps the raw sums as scores. Input and output are
 * regions of one buffer (fc1 input at 0, hidden layers ping-pong at DENSE_HID_A /
 * DENSE_HID_B), so every dense layer runs on the same instance: one call site.
 *
 * \tparam BATCH     images processed together (DENSE_BATCH)
 * \param params   parameter image (m_axi gmem0)
 * \param d        the layer
 * \param x        dense buffer, [image][word]: input at in_base, output at out_base
 * \param in_base  first input word
 * \param out_base first output word (hidden layers)
 * \param sbuf     raw scores of each image (last layer), [image][class]
 */
template <unsigned BATCH>
void dense_layer(const Word* params, const LayerDesc d, Word x[BATCH][DENSE_BUF_WORDS],
                 unsigned in_base, unsigned out_base, Score sbuf[BATCH][MAX_CLASSES]) {
#pragma HLS INLINE off
    // Prepared thresholds, two per word: one BRAM, one write per cycle when loaded.
    Word thr[MAX_DENSE_OUT / 2];
    if (!d.last) load_dense_thresholds(params, d, thr);

    Sum acc[BATCH];
#pragma HLS ARRAY_PARTITION variable=acc complete
    Word obits[BATCH];
#pragma HLS ARRAY_PARTITION variable=obits complete
init_acc:
    for (unsigned k = 0; k < BATCH; ++k) {
#pragma HLS UNROLL
        acc[k] = 0;
        obits[k] = 0;
    }

    const unsigned ninw = d.cin / WORD_BITS;
    const unsigned total = unsigned(d.cout) * ninw;
    unsigned iw = 0, n = 0;
    unsigned in_addr = in_base;         // in_base + iw
    unsigned out_addr = out_base;       // out_base + n / 64
    BNN_EST_DDR_LOOP(est_loop, "dense_mac", est::DEPTH_DENSE, "gmem0");
dense_mac:
    for (unsigned i = 0; i < total; ++i) {
#pragma HLS PIPELINE II=1
#pragma HLS LOOP_TRIPCOUNT min=64 max=131072 avg=16384
// input and output regions of x are disjoint (in_base, out_base)
#pragma HLS DEPENDENCE variable=x type=inter dependent=false
        BNN_EST_TICK(est_loop);
        const Word w = params[d.w_off + i];
        const bool first = iw == 0;
        const bool last_word = iw + 1 == ninw;
        ThresholdEntry q;
        q.t = 0;
        q.neg = false;
        if (!d.last) q = unpack_threshold(thr[n / 2], n % 2);
    dense_images:
        for (unsigned k = 0; k < BATCH; ++k) {
#pragma HLS UNROLL
            const Sum s = (first ? Sum(0) : acc[k]) + xnor_contrib(x[k][in_addr], w);
            acc[k] = s;
            if (last_word) {
                if (d.last) {
                    sbuf[k][n % MAX_CLASSES] = Score(s);
                } else {
                    Word ob = obits[k];
                    ob[n % WORD_BITS] = threshold_bit_prepared(s, q);
                    obits[k] = ob;
                    if (n % WORD_BITS == WORD_BITS - 1) x[k][out_addr] = ob;
                }
            }
        }
        if (last_word) {
            iw = 0;
            in_addr = in_base;
            if (n % WORD_BITS == WORD_BITS - 1) ++out_addr;
            ++n;
        } else {
            ++iw;
            ++in_addr;
        }
    }
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
