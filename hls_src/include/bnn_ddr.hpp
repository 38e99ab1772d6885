/**
 * \file bnn_ddr.hpp
 * \brief DDR movers: every m_axi access of the kernel is in one of these burst loops (one
 *        64-bit word per cycle, sequential addresses, no conditional accesses).
 *
 * Ports: gmem0 = parameter image (descriptors, thresholds, half of the weights); gmem3 = the
 * same image (the other half of the weights); gmem1 = input; gmem2 = scores (one data width
 * and one option set per bundle: src/bnn_kernel.cpp).
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
 * \brief Producer of a conv engine call, one per parameter port (DATAFLOW, concurrent with
 *        conv_compute): per group step, the weights of half of the group being loaded,
 *        filters [PORT * PE / 2, (PORT + 1) * PE / 2) (PE / 2 x 9 x Cin/64 words, contiguous
 *        in DDR), and on port 0 then the group's thresholds (PE / 2 words).
 *
 * Port 0 reads through params (m_axi gmem0), port 1 through params2 (gmem3, the same image):
 * the two halves of a group stream on two HP ports at once, so a load-bound group step takes
 * half the time. Step s of a call with \p steps steps loads group s + 1 of \p cur, or, after
 * the last group, group 0 of \p next (the prefetch across layers); a call without a current
 * layer (the preload) has one step that loads group 0 of \p next. Running offsets, no
 * multiplies.
 * \tparam PE   filters per group
 * \tparam PORT 0: first half + thresholds (gmem0), 1: second half (gmem3)
 */
template <unsigned PE, unsigned PORT>
void conv_weight_reader(const Word* params, const LayerDesc cur, bool has_cur, unsigned steps,
                        const LayerDesc next, bool has_next, hls::stream<Word>& out) {
#pragma HLS INLINE off
    BNN_EST_BG_LOOP(est_w, PORT ? "conv_weight_reader_gmem3" : "conv_weight_reader_gmem0",
                    PORT ? "gmem3" : "gmem0");
    BNN_EST_BG_LOOP(est_t, "conv_threshold_reader", "gmem0");
    const unsigned cur_gwords = PE * 9 * (cur.cin / WORD_BITS);     // a whole group
    const unsigned cur_hwords = (PE / 2) * 9 * (cur.cin / WORD_BITS);   // half a group
    const unsigned next_hwords = (PE / 2) * 9 * (next.cin / WORD_BITS);
    // this port's half of group 1 of cur
    ap_uint<32> woff = cur.w_off + cur_gwords + (PORT ? cur_hwords : 0u);
    ap_uint<32> toff = cur.t_off + PE / 2;
reader_steps:
    for (unsigned s = 0; s < steps; ++s) {
#pragma HLS LOOP_TRIPCOUNT min=1 max=8 avg=4
        const bool own = has_cur && s + 1 < steps;  // group s + 1 of the current layer
        const bool pre = !own && has_next;          // group 0 of the next layer
        if (!own && !pre) continue;
        const ap_uint<32> wo = own ? woff : ap_uint<32>(next.w_off + (PORT ? next_hwords : 0u));
        const ap_uint<32> to = own ? toff : next.t_off;
        const unsigned hwords = own ? cur_hwords : next_hwords;
    read_weights:
        for (unsigned i = 0; i < hwords; ++i) {
#pragma HLS PIPELINE II=1
#pragma HLS LOOP_TRIPCOUNT min=288 max=2304 avg=1152
            BNN_EST_TICK(est_w);
            out.write(params[wo + i]);
        }
        if (PORT == 0) {
        read_thresholds:
            for (unsigned j = 0; j < PE / 2; ++j) {
#pragma HLS PIPELINE II=1
                BNN_EST_TICK(est_t);
                out.write(params[to + j]);
            }
        }
        woff += cur_gwords;
        toff += PE / 2;
    }
}

/**
 * \brief Burst-read the thresholds of a hidden dense layer, one packed word (two entries,
 *        prepared: prepare_threshold_pair) per cycle, into the table of the engine half that
 *        computes those outputs: outputs < \p split into thr[0], the rest into thr[1] (each
 *        a plain BRAM18, one write per cycle: II = 1; the dense engine reads both per cycle).
 * \param params parameter image (m_axi gmem0)
 * \param d      the dense layer (not the last)
 * \param split  outputs read through gmem0 (dense_rows_port0; even)
 * \param thr    thr[h][j] = the two outputs of word j of half h (entry 0 the even output)
 */
inline void load_dense_thresholds(const Word* params, const LayerDesc d, unsigned split,
                                  ThresholdPair thr[2][MAX_DENSE_OUT / 2]) {
#pragma HLS INLINE off
    BNN_EST_DDR_LOOP(est_loop, "load_dense_thresholds", 3, "gmem0");
    const unsigned hw = split / 2;  // words of half 0
    unsigned h = 0, j = 0;
load_thresholds:
    for (unsigned i = 0; i < unsigned(d.cout) / 2; ++i) {
#pragma HLS PIPELINE II=1
#pragma HLS LOOP_TRIPCOUNT min=32 max=512 avg=512
        BNN_EST_TICK(est_loop);
        thr[h][j] = prepare_threshold_pair(params[d.t_off + i]);
        if (h == 0 && j + 1 == hw) { h = 1; j = 0; } else { ++j; }
    }
}

/**
 * \brief Stream \p n consecutive words of the parameter image from word \p off: one
 *        dense weight reader per parameter port (DATAFLOW producer of dense_compute). One
 *        linear burst loop, so each port's reads are one sequential burst stream.
 * \param params the image through this reader's port (gmem0 or gmem3)
 */
template <unsigned PORT>
void dense_weight_reader(const Word* params, ap_uint<32> off, unsigned n,
                         hls::stream<Word>& out) {
#pragma HLS INLINE off
    BNN_EST_BG_LOOP(est_w, PORT ? "dense_weight_reader_gmem3" : "dense_weight_reader_gmem0",
                    PORT ? "gmem3" : "gmem0");
read_dense_weights:
    for (unsigned i = 0; i < n; ++i) {
#pragma HLS PIPELINE II=1
#pragma HLS LOOP_TRIPCOUNT min=32 max=65536 avg=8192
        BNN_EST_TICK(est_w);
        out.write(params[off + i]);
    }
}

/**
 * \brief Burst-write the scores of a chunk of images: int32 [n_img][n_classes], contiguous.
 * \param scores  kernel output (m_axi gmem2)
 * \param offset  element offset of the chunk's first score
 * \param n_img   images in the chunk
 * \param n_cls   classes
 * \param split   classes whose rows came through gmem0 (dense_rows_port0 of the last layer):
 *                class c < split of image k is sbuf[k][c]; c >= split (the engine's two-row
 *                mode, n_img <= DENSE_BATCH / 2) is sbuf[k + DENSE_BATCH / 2][c - split]
 * \param sbuf    scores of the chunk, one bank per dense unit
 */
inline void write_scores(Score* scores, ap_uint<64> offset, unsigned n_img, unsigned n_cls,
                         unsigned split, const Score sbuf[DENSE_BATCH][MAX_CLASSES]) {
#pragma HLS INLINE off
    BNN_EST_DDR_WRITE_LOOP(est_loop, "write_scores", 2, "gmem2");
    unsigned img = 0, c = 0, bank = 0, idx = 0;
write_scores_loop:
    for (unsigned i = 0; i < n_img * n_cls; ++i) {
#pragma HLS PIPELINE II=1
#pragma HLS LOOP_TRIPCOUNT min=2 max=1024 avg=160
        BNN_EST_TICK(est_loop);
        scores[offset + i] = sbuf[bank][idx];
        if (c + 1 == n_cls) {
            c = 0;
            ++img;
            bank = img;
            idx = 0;
        } else {
            ++c;
            if (c == split) {  // the classes of the second row half
                bank = img + DENSE_BATCH / 2;
                idx = 0;
            } else {
                ++idx;
            }
        }
    }
}

}  // namespace bnn

#endif  // BNN_DDR_HPP
