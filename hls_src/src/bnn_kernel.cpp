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
                U32* abi_id, const Word* params2) {
    // ---- interfaces -------------------------------------------------------------------------
    // DDR masters, one data width and one option set per bundle (tests/test_hls_structure.py):
    //   gmem0 (HP0): the parameter image: descriptors, thresholds, the first half of every
    //                dense layer's rows and of every conv filter group; 64-bit, read-only.
    //   gmem3 (HP2): the same parameter image again (params2: the driver passes the same
    //                buffer), the second half of those rows and filters: the weight streams
    //                run on two HP ports with separate DDR controller ports (ABI version 2).
    //   gmem1 (HP1): the input maps, 64-bit, read-only.
    //   gmem2 (HP1, shared through one interconnect): the scores, 32-bit, write-only.
    // gmem1 / gmem2 never run while the parameter ports stream (input loads and score writes
    // sit between the engine calls), so sharing HP1 (and HP0's DDR port) costs no bandwidth.
    // Bursts of 16 beats: the Zynq-7000 HP ports are AXI3 (at most 16 beats), the ZU+ AFI splits
    // longer ones into 16-beat bursts too; longer bursts buy nothing and cost buffer BRAM
    // (UG1399 "M_AXI Resources": read buffer = num_read_outstanding x max_read_burst_length x
    // width). gmem0: 8 outstanding x 16 beats = 128 words in flight, the HP port's own read
    // command acceptance (8) and its 128-entry read data FIFO; that covers a round trip of up to
    // 128 cycles (1.28 us at 100 MHz), three times the 40 cycles the ESTIMATE assumes. gmem1:
    // 4 x 16 (the input is 1% of the traffic). gmem2: 4 x 16 writes of 32 bits. Unused
    // directions get the minimum (1 outstanding, 2 beats). gmem3 is gmem0's twin. The depths
    // only size the co-simulation memories (full model: 221,032 parameter words; 16 images).
#pragma HLS INTERFACE m_axi port=params offset=slave bundle=gmem0 depth=262144 max_read_burst_length=16 num_read_outstanding=8 max_write_burst_length=2 num_write_outstanding=1
#pragma HLS INTERFACE m_axi port=params2 offset=slave bundle=gmem3 depth=262144 max_read_burst_length=16 num_read_outstanding=8 max_write_burst_length=2 num_write_outstanding=1
#pragma HLS INTERFACE m_axi port=input offset=slave bundle=gmem1 depth=32768 max_read_burst_length=16 num_read_outstanding=4 max_write_burst_length=2 num_write_outstanding=1
#pragma HLS INTERFACE m_axi port=scores offset=slave bundle=gmem2 depth=1024 max_read_burst_length=2 num_read_outstanding=1 max_write_burst_length=16 num_write_outstanding=4
    // Control: one AXI4-Lite slave with the block protocol, the four buffer addresses
    // (64-bit, _1 low / _2 high), n_images and the read-only abi_id (with its ap_vld bit).
    // Register offsets: see pynq_bnn/spec/abi.py and docs/ABI.md (bundles do not move them;
    // Vitis lays the arguments out in signature order, so params2, the last argument, adds
    // params2_1 / params2_2 after abi_id_ctrl and leaves every version-1 offset in place).
#pragma HLS INTERFACE s_axilite port=params bundle=control
#pragma HLS INTERFACE s_axilite port=input bundle=control
#pragma HLS INTERFACE s_axilite port=scores bundle=control
#pragma HLS INTERFACE s_axilite port=n_images bundle=control
#pragma HLS INTERFACE s_axilite port=abi_id bundle=control
#pragma HLS INTERFACE s_axilite port=params2 bundle=control
#pragma HLS INTERFACE s_axilite port=return bundle=control
#pragma HLS INTERFACE ap_ctrl_hs port=return

    // One engine of each kind: conv_layer, dense_layer, load_input and flatten_to_dense each
    // have exactly one call site (tests/test_hls_structure.py checks it); the ALLOCATION
    // pragma says the same to the tool for the conv engine (~22k LUT).
#pragma HLS ALLOCATION function instances=conv_layer limit=1

    *abi_id = bnn::abi::ABI_ID;
    if (n_images == 0) return;

    BNN_EST_LAYER("setup");
    LayerDesc desc[MAX_LAYERS];
    Topology topo;
    if (!read_descriptors(params, desc, topo)) return;
    if (!same_header(params, params2)) return;  // params2 must be the same image (2 words)

    // ---- on-chip buffers --------------------------------------------------------------------
    // Activation memory: two banks (even / odd pixel columns), each one read + one write per
    // cycle (simple dual port); maps are regions placed by make_plan (bnn_plan.hpp).
    Word act_e[ACT_BANK_WORDS];
#pragma HLS BIND_STORAGE variable=act_e type=ram_s2p impl=bram
    Word act_o[ACT_BANK_WORDS];
#pragma HLS BIND_STORAGE variable=act_o type=ram_s2p impl=bram
    // Conv weight double buffer, kept across conv_layer calls (the next layer's first group is
    // prefetched behind the current layer): bank = filter, row = half * 72 + tap word.
    Word wbuf[CONV_PE][2 * MAX_FILTER_WORDS];
#pragma HLS ARRAY_PARTITION variable=wbuf complete dim=1
#pragma HLS BIND_STORAGE variable=wbuf type=ram_s2p impl=bram
    // Prepared thresholds of the group loaded last (registers).
    Sum thr_t[CONV_PE];
#pragma HLS ARRAY_PARTITION variable=thr_t complete
    bool thr_neg[CONV_PE];
#pragma HLS ARRAY_PARTITION variable=thr_neg complete
    // Dense buffer of the chunk: one bank per image (all images read in the same cycle);
    // fc1's input at 0, the hidden layers ping-pong at DENSE_HID_A / DENSE_HID_B.
    Word dense_x[DENSE_BATCH][DENSE_BUF_WORDS];
#pragma HLS ARRAY_PARTITION variable=dense_x complete dim=1
#pragma HLS BIND_STORAGE variable=dense_x type=ram_s2p impl=bram
    // Scores of the chunk, one bank per dense unit (write_scores maps them to images).
    Score sbuf[DENSE_BATCH][MAX_CLASSES];
#pragma HLS ARRAY_PARTITION variable=sbuf complete dim=1
#pragma HLS BIND_STORAGE variable=sbuf type=ram_s2p impl=lutram

    const unsigned n_layers = topo.n_layers, n_conv = topo.n_conv;
    ap_uint<1> half = 0;
    // Running DDR offsets (adders, not 64-bit multipliers).
    ap_uint<64> in_off = 0;      // words into input
    ap_uint<64> score_off = 0;   // int32 elements into scores
chunks:
    for (ap_uint<33> base = 0; base < n_images; base += DENSE_BATCH) {
#pragma HLS LOOP_TRIPCOUNT min=1 max=64 avg=1
        const ap_uint<33> left = ap_uint<33>(n_images) - base;
        const unsigned n_img = left < DENSE_BATCH ? unsigned(left) : DENSE_BATCH;

        ActPlan plan;
        make_plan(desc, topo, n_img, plan);
        const unsigned p = plan.p;
        const unsigned per_img_slots = p > 0 ? p : 1;  // slots per image in phase 1

        // ---- conv phase: one slot per engine call, in this order:
        //   phase 0: preload group 0 of layer 0 (no compute)
        //   phase 1: per image k: load the input (slot l = 0), conv layers 0 .. p-1, and
        //            without staging the flatten of image k
        //   phase 2: conv layers p .. n_conv-1, each over the whole chunk
        //   phase 3: flatten the whole chunk (with staging)
        // One call site per function; each conv call prefetches the next call's first group.
        unsigned phase = 0, k = 0, l = 0;
    conv_slots:
        while (phase < 4) {
#pragma HLS LOOP_TRIPCOUNT min=3 max=130 avg=50
            const bool do_load = phase == 1 && l == 0;
            const bool do_conv = phase == 0 || (phase == 1 && l < p) || phase == 2;
            const bool do_flat = (phase == 1 && plan.flatten_each && l + 1 == p) || phase == 3;
            if (do_load) {
                BNN_EST_LAYER("input");
                const MapLoc& m0 = plan.map[0];
                load_input(input, in_off, m0, BankAddr(m0.base + k * m0.stride), act_e, act_o);
                in_off += topo.in_words;
            }
            if (do_conv) {
                ConvJob job;
                job.valid = phase != 0;
                job.d = desc[l];
                job.n_img = phase == 2 ? n_img : 1;
                job.in = plan.map[l];
                job.out = plan.map[l + 1];
                if (phase == 1) {  // this image's maps (staged maps have a stride)
                    job.in.base = plan.map[l].base + k * plan.map[l].stride;
                    job.out.base = plan.map[l + 1].base + k * plan.map[l + 1].stride;
                }
                // the layer of the next conv call, whose first group this call prefetches
                unsigned nxt = 0;
                bool has_next = true;
                if (phase == 1) {
                    if (l + 1 < p) nxt = l + 1;
                    else if (k + 1 < n_img) nxt = 0;
                    else if (p < n_conv) nxt = p;
                    else has_next = false;
                } else if (phase == 2) {
                    if (l + 1 < n_conv) nxt = l + 1;
                    else has_next = false;
                }
                const unsigned steps = job.valid ? unsigned(job.d.cout) / CONV_PE : 1;
                BNN_EST_LAYER(layer_label(l));
                if (!job.valid) BNN_EST_CYCLES(est::DDR_LATENCY);  // the preload's first word
                conv_layer(params, params2, job, steps, desc[nxt], has_next, wbuf, thr_t,
                           thr_neg, half, act_e, act_o);
                half ^= ap_uint<1>(steps & 1);
            }
            if (do_flat) {
                BNN_EST_LAYER("flatten");
                const MapLoc& mn = plan.map[n_conv];
                const unsigned k0 = phase == 3 ? 0 : k;
                flatten_to_dense(act_e, act_o, mn, BankAddr(mn.base + k0 * mn.stride), k0,
                                 phase == 3 ? n_img : 1, dense_x);
            }
            // next slot
            if (phase == 0) {
                phase = 1;
            } else if (phase == 1) {
                if (l + 1 < per_img_slots) {
                    ++l;
                } else if (k + 1 < n_img) {
                    ++k;
                    l = 0;
                } else {
                    l = p;
                    phase = p < n_conv ? 2 : 3;
                }
            } else if (phase == 2) {
                if (l + 1 < n_conv) ++l; else phase = 3;
            } else {
                phase = 4;
            }
            if (phase == 3 && plan.flatten_each) phase = 4;
        }

        // ---- dense layers, the whole chunk at once, one call site ----
        unsigned in_base = 0, out_base = DENSE_HID_A;
    dense_layers:
        for (unsigned dl = n_conv; dl < n_layers; ++dl) {
#pragma HLS LOOP_TRIPCOUNT min=1 max=8 avg=3
            BNN_EST_LAYER(layer_label(dl));
            dense_layer<DENSE_BATCH>(params, params2, desc[dl], n_img, dense_x, in_base,
                                     out_base, sbuf);
            in_base = out_base;
            out_base = out_base == DENSE_HID_A ? DENSE_HID_B : DENSE_HID_A;
        }

        BNN_EST_LAYER("scores");
        write_scores(scores, score_off, n_img, topo.n_classes,
                     dense_rows_port0(topo.n_classes, true, n_img, DENSE_BATCH), sbuf);
        score_off += n_img * topo.n_classes;
    }
}
