/**
 * \file bnn_kernel.cpp
 * \brief Top level of the pynq-bnn HLS kernel: interfaces, on-chip buffers, layer sequencing.
 *
 * Per chunk of up to DENSE_BATCH images: each image is loaded, run through every conv layer
 * (activations ping-pong between two on-chip maps; conv weights stream from DDR per filter
 * group) and its last map copied into the dense input buffer; then every dense layer runs
 * once for the whole chunk (each dense weight word is read once per chunk) and the chunk's
 * scores are written back in one burst.
 */
#include "bnn_kernel.hpp"

#ifndef __SYNTHESIS__
#include <string>
namespace {
std::string layer_label(unsigned l) { return "layer" + std::to_string(l); }
}  // namespace
#endif

using namespace bnn;

void bnn_kernel(const Word* params, const Word* input, Score* scores, U32 n_images,
                U32* abi_id) {
    // ---- interfaces -------------------------------------------------------------------------
    // DDR masters. gmem0 (HP0) carries everything the parameter image holds: descriptors,
    // weights, thresholds (the bandwidth-critical port). gmem1 (HP1) carries the input maps
    // and the scores. Long bursts, several outstanding reads to hide DDR latency. The depths
    // only size the co-simulation memories (full model: 221,032 parameter words; 16 images).
#pragma HLS INTERFACE m_axi port=params offset=slave bundle=gmem0 depth=262144 max_read_burst_length=256 num_read_outstanding=16 max_write_burst_length=2 num_write_outstanding=1
#pragma HLS INTERFACE m_axi port=input offset=slave bundle=gmem1 depth=32768 max_read_burst_length=256 num_read_outstanding=8
#pragma HLS INTERFACE m_axi port=scores offset=slave bundle=gmem1 depth=1024 max_write_burst_length=256 num_write_outstanding=4
    // Control: one AXI4-Lite slave with the block protocol, the three buffer addresses
    // (64-bit, _1 low / _2 high), n_images and the read-only abi_id (with its ap_vld bit).
    // Register offsets: see pynq_bnn/abi.py and docs/ABI.md.
#pragma HLS INTERFACE s_axilite port=params bundle=control
#pragma HLS INTERFACE s_axilite port=input bundle=control
#pragma HLS INTERFACE s_axilite port=scores bundle=control
#pragma HLS INTERFACE s_axilite port=n_images bundle=control
#pragma HLS INTERFACE s_axilite port=abi_id bundle=control
#pragma HLS INTERFACE s_axilite port=return bundle=control
#pragma HLS INTERFACE ap_ctrl_hs port=return

    // One engine of each kind, shared by the ping-pong call sites below (the conv engine is
    // ~15k LUT: it must not be duplicated). The two call sites of the hidden dense layer
    // (dense_layer<MAX_HIDDEN_WORDS, ...>) may be duplicated by HLS: ~1.5k LUT + 1 BRAM18.
#pragma HLS ALLOCATION function instances=conv_layer limit=1
#pragma HLS ALLOCATION function instances=flatten_to_dense limit=1

    *abi_id = bnn::abi::ABI_ID;
    if (n_images == 0) return;

    BNN_EST_LAYER("setup");
    LayerDesc desc[MAX_LAYERS];
    Topology topo;
    if (!read_descriptors(params, desc, topo)) return;

    // ---- on-chip buffers --------------------------------------------------------------------
    // Conv activation ping-pong: true dual port, the conv engine reads two words per cycle.
    Word act_a[MAX_ACT_WORDS];
#pragma HLS BIND_STORAGE variable=act_a type=ram_t2p impl=bram
    Word act_b[MAX_ACT_WORDS];
#pragma HLS BIND_STORAGE variable=act_b type=ram_t2p impl=bram
    // Dense input of the chunk: one bank per image (all images read in the same cycle).
    Word dense_x[DENSE_BATCH][MAX_DENSE_IN_WORDS];
#pragma HLS ARRAY_PARTITION variable=dense_x complete dim=1
#pragma HLS BIND_STORAGE variable=dense_x type=ram_s2p impl=bram
    // Hidden dense activations (ping-pong), 16 words per image: LUTRAM.
    Word hid_a[DENSE_BATCH][MAX_HIDDEN_WORDS];
#pragma HLS ARRAY_PARTITION variable=hid_a complete dim=1
#pragma HLS BIND_STORAGE variable=hid_a type=ram_s2p impl=lutram
    Word hid_b[DENSE_BATCH][MAX_HIDDEN_WORDS];
#pragma HLS ARRAY_PARTITION variable=hid_b complete dim=1
#pragma HLS BIND_STORAGE variable=hid_b type=ram_s2p impl=lutram
    // Scores of the chunk.
    Score sbuf[DENSE_BATCH][MAX_CLASSES];
#pragma HLS ARRAY_PARTITION variable=sbuf complete dim=1
#pragma HLS BIND_STORAGE variable=sbuf type=ram_s2p impl=lutram

    const unsigned n_layers = topo.n_layers, n_conv = topo.n_conv;
    // Running DDR offsets (adders, not 64-bit multipliers).
    ap_uint<64> in_off = 0;      // words into input
    ap_uint<64> score_off = 0;   // int32 elements into scores
chunks:
    for (ap_uint<33> base = 0; base < n_images; base += DENSE_BATCH) {
#pragma HLS LOOP_TRIPCOUNT min=1 max=64 avg=1
        const ap_uint<33> left = ap_uint<33>(n_images) - base;
        const unsigned n_img = left < DENSE_BATCH ? unsigned(left) : DENSE_BATCH;

        // ---- conv layers, image by image ----
    chunk_images:
        for (unsigned k = 0; k < n_img; ++k) {
#pragma HLS LOOP_TRIPCOUNT min=1 max=16 avg=16
            BNN_EST_LAYER("input");
            load_input(input, in_off, topo.in_words, act_a);
            in_off += topo.in_words;
        conv_layers:
            for (unsigned l = 0; l < n_conv; l += 2) {
#pragma HLS LOOP_TRIPCOUNT min=1 max=4 avg=3
                BNN_EST_LAYER(layer_label(l));
                conv_layer(params, desc[l], act_a, act_b);
                if (l + 1 < n_conv) {
                    BNN_EST_LAYER(layer_label(l + 1));
                    conv_layer(params, desc[l + 1], act_b, act_a);
                }
            }
            BNN_EST_LAYER("flatten");
            if (n_conv % 2)
                flatten_to_dense(act_b, dense_x, k, topo.flat_words);
            else
                flatten_to_dense(act_a, dense_x, k, topo.flat_words);
        }

        // ---- dense layers, the whole chunk at once ----
        BNN_EST_LAYER(layer_label(n_conv));
        dense_layer<MAX_DENSE_IN_WORDS, DENSE_BATCH>(params, desc[n_conv], dense_x, hid_a, sbuf);
    dense_layers:
        for (unsigned l = n_conv + 1; l < n_layers; l += 2) {
#pragma HLS LOOP_TRIPCOUNT min=0 max=7 avg=1
            BNN_EST_LAYER(layer_label(l));
            dense_layer<MAX_HIDDEN_WORDS, DENSE_BATCH>(params, desc[l], hid_a, hid_b, sbuf);
            if (l + 1 < n_layers) {
                BNN_EST_LAYER(layer_label(l + 1));
                dense_layer<MAX_HIDDEN_WORDS, DENSE_BATCH>(params, desc[l + 1], hid_b, hid_a,
                                                           sbuf);
            }
        }

        BNN_EST_LAYER("scores");
        write_scores(scores, score_off, n_img, topo.n_classes, sbuf);
        score_off += n_img * topo.n_classes;
    }
}
