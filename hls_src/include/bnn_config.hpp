/**
 * \file bnn_config.hpp
 * \brief The one place for the kernel's compile-time limits and parallelism.
 *
 * Limits (mirrored by pynq_bnn/abi.py, which refuses networks beyond them):
 *   MAX_LAYERS 16, MAX_CHANNELS 512, MAX_CONV_SIZE 32, MAX_DENSE_IN 8192, MAX_DENSE_OUT 1024,
 *   MAX_CLASSES 64.
 *
 * Parallelism and resource reasoning for the XC7Z020 (53,200 LUT, 106,400 FF, 140 BRAM36,
 * 220 DSP), at 100 MHz. These are design estimates, not synthesis results (no Vitis HLS here).
 *
 *  - Conv engine: CONV_PE = 64 filters x CONV_PIX = 2 horizontally adjacent output pixels, one
 *    64-bit input word (CONV_SIMD = 1) per pixel per cycle: 128 XNOR-popcount-accumulate units
 *    of 64 bits. A 64-bit popcount is ~50-60 LUT6 as a compressor/adder tree, plus a 16-bit
 *    accumulator and the contribution mux: ~90 LUT per unit, ~12k LUT for the array, ~2k LUT of
 *    128 16-bit threshold comparators. 64 filters = one output word per pixel, so outputs are
 *    written as whole words (no read-modify-write); 2 pixels share every weight read and use
 *    the two ports of the true dual-port activation BRAM for their input reads.
 *  - Conv weight buffer: 64 banks (one per filter) x 2 halves (double buffer: the next filter
 *    group streams in while the current one computes) x 9 * MAX_CHANNELS / 64 = 72 words.
 *    Reading 64 x 64 = 4096 bits per cycle makes it width-bound: 64 BRAM36 (one 512x72 BRAM36
 *    per bank, 144 of 512 rows used). LUTRAM would cost ~16k LUT (SLICEM LUTs are ~17k).
 *  - Activation ping-pong buffers: 2 x MAX_ACT_WORDS = 2 x 8192 x 64 bits = 2 x 16 BRAM36,
 *    true dual port (two reads per cycle for the two pixels). The full model needs only 2048
 *    words; 8192 is what the ABI limits allow (512 channels at 32x32).
 *  - Dense engine: DENSE_BATCH = 16 images share every weight word read from DDR: 16 units of
 *    64 bits (~1.5k LUT). Its input buffer (fc1 input, 16 images x 128 words) is partitioned
 *    by image: 16 x 1 BRAM36 (again width-bound); the hidden-layer buffers (16 x 16 words each)
 *    go to LUTRAM (~1.4k LUT for both).
 *  - Estimated total: ~25k LUT (47%), ~117 BRAM36 (84%), DSP ~0-10 (address arithmetic),
 *    including 2 m_axi adapters (~3k LUT, ~4 BRAM36) and the s_axilite block. BRAM is the scarce
 *    resource; the first thing to give back if place-and-route is tight is MAX_ACT_WORDS
 *    (the full model needs 2048: -24 BRAM36), which would be an ABI limit change.
 *  - DDR: conv weights per filter group stream in while the previous group computes, so a
 *    conv layer costs max(compute, weight load) per group; dense weights are read once per
 *    chunk of DENSE_BATCH images at one 64-bit word per cycle (800 MB/s per HP port at
 *    100 MHz; the Pynq-Z1/Z2 16-bit DDR3-1050 peaks at 2.1 GB/s).
 */
#ifndef BNN_CONFIG_HPP
#define BNN_CONFIG_HPP

#include "bnn_abi.hpp"
#include "bnn_types.hpp"

namespace bnn {

// ---- limits of this build (pynq_bnn/abi.py MAX_*) -------------------------------------------
constexpr unsigned MAX_LAYERS = abi::MAX_LAYERS;
constexpr unsigned MAX_CHANNELS = 512;
constexpr unsigned MAX_CONV_SIZE = 32;
constexpr unsigned MAX_DENSE_IN = 8192;
constexpr unsigned MAX_DENSE_OUT = 1024;
constexpr unsigned MAX_CLASSES = 64;

// ---- parallelism ------------------------------------------------------------------------------
/// Conv filters computed in parallel: exactly one output word per pixel (must be 64).
constexpr unsigned CONV_PE = 64;
/// Conv output pixels (horizontal neighbours) computed in parallel, sharing weight reads.
constexpr unsigned CONV_PIX = 2;
/// Conv input words (64 channels each) per pixel per cycle. Fixed at 1: a 64-channel layer
/// (the narrowest) keeps every unit busy, and the activation BRAM's two ports feed the pixels.
constexpr unsigned CONV_SIMD = 1;
/// Images whose dense layers run together, sharing every weight word read from DDR.
constexpr unsigned DENSE_BATCH = 16;

// ---- derived sizes ----------------------------------------------------------------------------
/// Words per input pixel at most (512 channels).
constexpr unsigned MAX_CIN_WORDS = MAX_CHANNELS / WORD_BITS;
/// Weight words of one filter at most: 3 x 3 taps x MAX_CIN_WORDS.
constexpr unsigned MAX_FILTER_WORDS = 9 * MAX_CIN_WORDS;
/// Largest feature map held on chip (input of a conv or its pooled output), in words.
constexpr unsigned MAX_ACT_WORDS = MAX_CONV_SIZE * MAX_CONV_SIZE * MAX_CIN_WORDS;
/// Words of the first dense layer's input per image.
constexpr unsigned MAX_DENSE_IN_WORDS = MAX_DENSE_IN / WORD_BITS;
/// Words of a hidden dense layer's output per image.
constexpr unsigned MAX_HIDDEN_WORDS = MAX_DENSE_OUT / WORD_BITS;
/// Threshold words of one conv filter group (two 32-bit entries per word).
constexpr unsigned GROUP_THRESHOLD_WORDS = CONV_PE / 2;
/// Stream FIFO depth between the conv weight reader and the conv engine.
constexpr unsigned WEIGHT_FIFO_DEPTH = 64;

static_assert(CONV_PE == WORD_BITS, "the conv engine writes one whole output word per group");
static_assert(CONV_PIX == 2, "the conv engine is written for a pair of pixels");
static_assert(CONV_SIMD == 1, "the conv engine reads one word per pixel per cycle");
static_assert(MAX_CLASSES <= MAX_DENSE_OUT, "classes are dense outputs");

}  // namespace bnn

#endif  // BNN_CONFIG_HPP
