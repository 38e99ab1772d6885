/**
 * \file bnn_ddr.hpp
 * \brief DDR movers: every m_axi access of the kernel is in one of these burst loops (one
 *        64-bit word per cycle, sequential addresses, no conditional accesses).
 *
 * Ports: gmem0 = parameter image (descriptors, weights, thresholds); gmem1 = input;
 * gmem2 = scores (one data width and one option set per bundle: src/bnn_kernel.cpp).
 */
#ifndef BNN_DDR_HPP
#define BNN_DDR_HPP

#include <hls_stream.h>

#include "bnn_config.hpp"
#include "bnn_descriptor.hpp"
#include "bnn_plan.hpp"
#include "bnn_estimate.hpp"
#include "bnn_threshold.hpp"
#include "bnn_types.hpp"

namespace bnn {

/**
 * \brief Burst-read one image of packed layer-1 output into the activation memory.
 *
 * DDR order is NHWC, word i = (y * size + x) * cw + c; pixel (y, x) goes to bank x & 1 at
 * base + (y * ceil(size / 2) + x / 2) * cw + c (bnn_plan.hpp). Counters, no multiplies.
 * \param input  kernel input (m_axi gmem1), packed NHWC words of all images
 * \param offset word offset of this image
 * \param m      the input map (size, cw, words) and \p base: where this image goes
 * \param act_e, act_o  the two banks (even / odd columns)
 */
inline void load_input(const Word* input, ap_uint<64> offset, const MapLoc m, BankAddr base,
                       Word act_e[ACT_BANK_WORDS], Word act_o[ACT_BANK_WORDS]) {
#pragma HLS INLINE off
    const unsigned size = m.size, cw = m.cw;
    const unsigned n = unsigned(m.size) * unsigned(m.size) * cw;
    const unsigned rs = ((size + 1) / 2) * cw;  // bank words per pixel row
    BNN_EST_DDR_LOOP(est_loop, "load_input", 2, "gmem1");
    unsigned c = 0, x = 0;
    BankAddr pix = base;   // bank address of word 0 of pixel (y, x)
    BankAddr row = base;   // bank address of pixel (y, 0)
load_input_words:
    for (unsigned i = 0; i < n; ++i) {
#pragma HLS PIPELINE II=1
#pragma HLS LOOP_TRIPCOUNT min=64 max=8192 avg=2048
        BNN_EST_TICK(est_loop);
        const Word v = input[offset + i];
        const BankAddr a = pix + c;
        if (x & 1) act_o[a] = v; else act_e[a] = v;
        if (c + 1 < cw) {
            ++c;
        } else {
            c = 0;
            if (x + 1 < size) {
                if (x & 1) pix += cw;  // both banks advance one column after an odd pixel
                ++x;
            } else {
                x = 0;
                row += rs;
                pix = row;
            }
        }
    }
}

/// What a conv group step loads: group \p g of layer \p d (valid == false: nothing).
struct LoadTarget {
    bool valid;
    LayerDesc d;
    unsigned g;
};

/**
 * \brief Producer of a conv engine call: streams, per group step, the weights of the group
 *        being loaded (CONV_PE x 9 x Cin/64 words, contiguous in DDR) then its thresholds
 *        (CONV_PE / 2 words). Runs concurrently with conv_compute (DATAFLOW).
 *
 * Step s of a call with \p steps steps loads group s + 1 of \p cur, or, after the last group,
 * group 0 of \p next (the prefetch across layers); a call without a current layer (the
 * preload) has one step that loads group 0 of \p next. Running offsets, no multiplies.
 * \tparam PE filters per group
 */
template <unsigned PE>
void conv_weight_reader(const Word* params, const LayerDesc cur, bool has_cur, unsigned steps,
                        const LayerDesc next, bool has_next, hls::stream<Word>& out) {
#pragma HLS INLINE off
    BNN_EST_BG_LOOP(est_w, "conv_weight_reader", "gmem0");
    BNN_EST_BG_LOOP(est_t, "conv_threshold_reader", "gmem0");
    const unsigned cur_gwords = PE * 9 * (cur.cin / WORD_BITS);
    const unsigned next_gwords = PE * 9 * (next.cin / WORD_BITS);
    ap_uint<32> woff = cur.w_off + cur_gwords, toff = cur.t_off + PE / 2;  // group 1 of cur
reader_steps:
    for (unsigned s = 0; s < steps; ++s) {
#pragma HLS LOOP_TRIPCOUNT min=1 max=8 avg=4
        const bool own = has_cur && s + 1 < steps;  // group s + 1 of the current layer
        const bool pre = !own && has_next;          // group 0 of the next layer
        if (!own && !pre) continue;
        const ap_uint<32> wo = own ? woff : next.w_off;
        const ap_uint<32> to = own ? toff : next.t_off;
        const unsigned gwords = own ? cur_gwords : next_gwords;
    read_weights:
        for (unsigned i = 0; i < gwords; ++i) {
#pragma HLS PIPELINE II=1
#pragma HLS LOOP_TRIPCOUNT min=576 max=4608 avg=2304
            BNN_EST_TICK(est_w);
            out.write(params[wo + i]);
        }
    read_thresholds:
        for (unsigned j = 0; j < PE / 2; ++j) {
#pragma HLS PIPELINE II=1
            BNN_EST_TICK(est_t);
            out.write(params[to + j]);
        }
        woff += cur_gwords;
        toff += PE / 2;
    }
}

/**
 * \brief Burst-read the thresholds of a hidden dense layer, one packed word (two prepared
 *        entries, prepare_threshold) per cycle into a table of words: one write per cycle to
 *        a plain BRAM (II = 1; the former two-entries-per-cycle table needed II = 2).
 * \param params parameter image (m_axi gmem0)
 * \param d      the dense layer (not the last)
 * \param thr    prepared entries, word j = outputs 2j (bits 0-31) and 2j+1 (bits 32-63)
 */
inline void load_dense_thresholds(const Word* params, const LayerDesc d,
                                  Word thr[MAX_DENSE_OUT / 2]) {
#pragma HLS INLINE off
    BNN_EST_DDR_LOOP(est_loop, "load_dense_thresholds", 3, "gmem0");
load_thresholds:
    for (unsigned j = 0; j < unsigned(d.cout) / 2; ++j) {
#pragma HLS PIPELINE II=1
#pragma HLS LOOP_TRIPCOUNT min=32 max=512 avg=512
        BNN_EST_TICK(est_loop);
        thr[j] = prepare_threshold_word(params[d.t_off + j]);
    }
}

/**
 * \brief Burst-write the scores of a chunk of images: int32 [n_img][n_classes], contiguous.
 * \param scores  kernel output (m_axi gmem2)
 * \param offset  element offset of the chunk's first score
 * \param n_img   images in the chunk
 * \param n_cls   classes
 * \param sbuf    scores of the chunk, [image][class]
 */
inline void write_scores(Score* scores, ap_uint<64> offset, unsigned n_img, unsigned n_cls,
                         const Score sbuf[DENSE_BATCH][MAX_CLASSES]) {
#pragma HLS INLINE off
    BNN_EST_DDR_WRITE_LOOP(est_loop, "write_scores", 2, "gmem2");
    unsigned img = 0, c = 0;
write_scores_loop:
    for (unsigned i = 0; i < n_img * n_cls; ++i) {
#pragma HLS PIPELINE II=1
#pragma HLS LOOP_TRIPCOUNT min=2 max=1024 avg=160
        BNN_EST_TICK(est_loop);
        scores[offset + i] = sbuf[img][c];
        if (c + 1 == n_cls) { c = 0; ++img; } else { ++c; }
    }
}

}  // namespace bnn

#endif  // BNN_DDR_HPP
