/**
 * \file bnn_ddr.hpp
 * \brief DDR movers: every m_axi access of the kernel is in one of these burst loops (one
 *        64-bit word per cycle, sequential addresses, no conditional accesses).
 *
 * Ports: gmem0 = parameter image (descriptors, weights, thresholds); gmem1 = input and scores.
 */
#ifndef BNN_DDR_HPP
#define BNN_DDR_HPP

#include <hls_stream.h>

#include "bnn_config.hpp"
#include "bnn_descriptor.hpp"
#include "bnn_estimate.hpp"
#include "bnn_threshold.hpp"
#include "bnn_types.hpp"

namespace bnn {

/**
 * \brief Burst-read one image of packed layer-1 output into an activation buffer.
 * \param input  kernel input (m_axi gmem1), packed NHWC words of all images
 * \param offset word offset of this image
 * \param n      words per image
 * \param act    on-chip activation buffer (out)
 */
inline void load_input(const Word* input, ap_uint<64> offset, unsigned n,
                       Word act[MAX_ACT_WORDS]) {
#pragma HLS INLINE off
    BNN_EST_DDR_LOOP(est_loop, "load_input", 2, "gmem1");
load_input_words:
    for (unsigned i = 0; i < n; ++i) {
#pragma HLS PIPELINE II=1
#pragma HLS LOOP_TRIPCOUNT min=64 max=8192 avg=2048
        BNN_EST_TICK(est_loop);
        act[i] = input[offset + i];
    }
}

/**
 * \brief Producer of a conv layer: streams, per filter group of CONV_PE filters, the group's
 *        weights (CONV_PE x 9 x Cin/64 words, contiguous in DDR) then its thresholds
 *        (CONV_PE / 2 words). Runs concurrently with conv_compute (DATAFLOW).
 * \tparam PE filters per group
 * \param params parameter image (m_axi gmem0)
 * \param d      the conv layer
 * \param out    weight/threshold words, in the order conv_compute consumes them
 */
template <unsigned PE>
void conv_weight_reader(const Word* params, const LayerDesc d, hls::stream<Word>& out) {
#pragma HLS INLINE off
    const unsigned groups = d.cout / PE;
    const unsigned gwords = PE * 9 * (d.cin / WORD_BITS);  // weight words of one group
    BNN_EST_BG_LOOP(est_w, "conv_weight_reader", "gmem0");
    BNN_EST_BG_LOOP(est_t, "conv_threshold_reader", "gmem0");
reader_groups:
    for (unsigned g = 0; g < groups; ++g) {
#pragma HLS LOOP_TRIPCOUNT min=1 max=8 avg=4
    read_weights:
        for (unsigned i = 0; i < gwords; ++i) {
#pragma HLS PIPELINE II=1
#pragma HLS LOOP_TRIPCOUNT min=576 max=4608 avg=2304
            BNN_EST_TICK(est_w);
            out.write(params[d.w_off + g * gwords + i]);
        }
    read_thresholds:
        for (unsigned j = 0; j < PE / 2; ++j) {
#pragma HLS PIPELINE II=1
            BNN_EST_TICK(est_t);
            out.write(params[d.t_off + g * (PE / 2) + j]);
        }
    }
}

/**
 * \brief Burst-read the thresholds of a hidden dense layer into on-chip tables.
 * \param params parameter image (m_axi gmem0)
 * \param d      the dense layer (not the last)
 * \param thr_t  thresholds (out), one per output
 * \param thr_neg directions (out), true for -1
 */
inline void load_dense_thresholds(const Word* params, const LayerDesc d,
                                  Sum thr_t[MAX_DENSE_OUT], bool thr_neg[MAX_DENSE_OUT]) {
#pragma HLS INLINE off
    BNN_EST_DDR_LOOP(est_loop, "load_dense_thresholds", 3, "gmem0");
load_thresholds:
    for (unsigned j = 0; j < unsigned(d.cout) / 2; ++j) {
#pragma HLS PIPELINE II=1
#pragma HLS LOOP_TRIPCOUNT min=32 max=512 avg=512
        BNN_EST_TICK(est_loop);
        const Word w = params[d.t_off + j];
        const ThresholdEntry e0 = unpack_threshold(w, 0), e1 = unpack_threshold(w, 1);
        thr_t[2 * j] = e0.t;
        thr_neg[2 * j] = e0.neg;
        thr_t[2 * j + 1] = e1.t;
        thr_neg[2 * j + 1] = e1.neg;
    }
}

/**
 * \brief Burst-write the scores of a chunk of images: int32 [n_img][n_classes], contiguous.
 * \param scores  kernel output (m_axi gmem1)
 * \param offset  element offset of the chunk's first score
 * \param n_img   images in the chunk
 * \param n_cls   classes
 * \param sbuf    scores of the chunk, [image][class]
 */
inline void write_scores(Score* scores, ap_uint<64> offset, unsigned n_img, unsigned n_cls,
                         const Score sbuf[DENSE_BATCH][MAX_CLASSES]) {
#pragma HLS INLINE off
    BNN_EST_DDR_WRITE_LOOP(est_loop, "write_scores", 2, "gmem1");
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
