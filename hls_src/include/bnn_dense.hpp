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
 * outputs into a word; the last layer keeps the raw sums as scores.
 *
 * \tparam IN_WORDS  input buffer words per image (MAX_DENSE_IN_WORDS for the first dense
 *                   layer, MAX_HIDDEN_WORDS after it)
 * \tparam BATCH     images processed together (DENSE_BATCH)
 * \param params parameter image (m_axi gmem0)
 * \param d      the layer
 * \param in     input bits of each image, [image][word]
 * \param out    output bits of each image (hidden layers), [image][word]
 * \param sbuf   raw scores of each image (last layer), [image][class]
 */
template <unsigned IN_WORDS, unsigned BATCH>
void dense_layer(const Word* params, const LayerDesc d, const Word in[BATCH][IN_WORDS],
                 Word out[BATCH][MAX_HIDDEN_WORDS], Score sbuf[BATCH][MAX_CLASSES]) {
#pragma HLS INLINE off
    Sum thr_t[MAX_DENSE_OUT];
    bool thr_neg[MAX_DENSE_OUT];
    if (!d.last) load_dense_thresholds(params, d, thr_t, thr_neg);

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
    BNN_EST_DDR_LOOP(est_loop, "dense_mac", est::DEPTH_DENSE, "gmem0");
dense_mac:
    for (unsigned i = 0; i < total; ++i) {
#pragma HLS PIPELINE II=1
#pragma HLS LOOP_TRIPCOUNT min=64 max=131072 avg=16384
        BNN_EST_TICK(est_loop);
        const Word w = params[d.w_off + i];
        const bool first = iw == 0;
        const bool last_word = iw + 1 == ninw;
        const Sum t = d.last ? Sum(0) : thr_t[n];
        const bool neg = d.last ? false : thr_neg[n];
    dense_images:
        for (unsigned k = 0; k < BATCH; ++k) {
#pragma HLS UNROLL
            const Sum s = (first ? Sum(0) : acc[k]) + xnor_contrib(in[k][iw], w);
            acc[k] = s;
            if (last_word) {
                if (d.last) {
                    sbuf[k][n % MAX_CLASSES] = Score(s);
                } else {
                    Word ob = obits[k];
                    ob[n % WORD_BITS] = threshold_bit(s, t, neg);
                    obits[k] = ob;
                    if (n % WORD_BITS == WORD_BITS - 1) out[k][n / WORD_BITS] = ob;
                }
            }
        }
        if (last_word) { iw = 0; ++n; } else { ++iw; }
    }
}

/**
 * \brief Copy one image's last conv map (NHWC = fc1's (y, x, c) order) into the dense input.
 * \param act   the map
 * \param x     dense input buffer, [image][word]
 * \param k     image slot in the chunk
 * \param n     words per image
 */
inline void flatten_to_dense(const Word act[MAX_ACT_WORDS],
                             Word x[DENSE_BATCH][MAX_DENSE_IN_WORDS], unsigned k, unsigned n) {
#pragma HLS INLINE off
    BNN_EST_LOOP(est_loop, "flatten", est::DEPTH_COPY);
flatten_words:
    for (unsigned i = 0; i < n; ++i) {
#pragma HLS PIPELINE II=1
#pragma HLS LOOP_TRIPCOUNT min=1 max=128 avg=128
        BNN_EST_TICK(est_loop);
        x[k][i] = act[i];
    }
}

}  // namespace bnn

#endif  // BNN_DENSE_HPP
