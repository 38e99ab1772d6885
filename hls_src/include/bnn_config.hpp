/**
 * \file bnn_config.hpp
 * \brief The one place for the kernel's compile-time limits and parallelism.
 *
 * Limits (mirrored by pynq_bnn/abi.py, which refuses networks beyond them):
 *   MAX_LAYERS 16, MAX_CHANNELS 512, MAX_CONV_SIZE 32, MAX_DENSE_IN 8192, MAX_DENSE_OUT 1024,
 *   MAX_CLASSES 64.
 *
 * Parallelism for the XC7Z020 (53,200 LUT, 106,400 FF, 140 BRAM36, 220 DSP) at 100 MHz. The
 * resource ESTIMATE (measured unit models, buffer shapes, the UG1399 m_axi formula) is made by
 * hls_src/resource_model/resource_model.py and carried in reports/cycle_estimate*.json; it is
 * not a synthesis result (no Vitis HLS here).
 *
 *  - Conv engine: CONV_PE = 64 filters x CONV_PIX = 2 horizontally adjacent output pixels, one
 *    64-bit input word (CONV_SIMD = 1) per pixel per cycle: 128 XNOR-popcount-accumulate-
 *    threshold units. 64 filters = one output word per pixel (no read-modify-write).
 *  - Conv weight buffer: 64 banks (one per filter) x 2 halves (the next filter group streams in
 *    while the current one computes; across layers too: the next layer's first group is
 *    prefetched behind the current layer's last) x MAX_FILTER_WORDS = 72 words. Reading
 *    64 x 64 bits per cycle makes it width-bound: 64 BRAM36.
 *  - Activation memory: one map store of two banks (even / odd pixel columns), ACT_BANK_WORDS
 *    each. The two pixels of a pair always fall into different banks, so each bank sees one
 *    read and at most one write per cycle (simple dual port); input and output maps are
 *    regions of it (bnn_plan.hpp), which is what lets one conv_layer call site serve every
 *    layer and lets conv5/conv6 hold a whole chunk of images (weights reused across images).
 *    2 x 8192 x 64 bits = 2 x 16 BRAM36.
 *  - Dense engine: DENSE_BATCH = 16 units; a chunk of more than 8 images shares every weight
 *    word among 16 images (one row per cycle), a smaller chunk runs two rows per cycle on 8
 *    units each, one weight word from each parameter port (gmem0, gmem3). Its input
 *    (fc1's 128 words) and the hidden layers' ping-pong (16 + 16 words) are regions of one
 *    buffer partitioned by image: 16 x 1 BRAM36, one dense_layer call site.
 *  - DDR: every m_axi port bursts 16 beats (Zynq-7000 HP ports are AXI3: ARLEN <= 15; ZU+ AFI
 *    also splits into 16-beat bursts), several outstanding (src/bnn_kernel.cpp); the weights
 *    stream through two parameter ports at once (params on gmem0 / HP0, params2 on gmem3 /
 *    HP2: ABI version 2).
 */
#ifndef BNN_CONFIG_HPP
#define BNN_CONFIG_HPP

#include "bnn_abi.hpp"
#include "bnn_types.hpp"

namespace bnn {

// ---- limits of this build (pynq_bnn/spec/abi.py MAX_*, via the generated bnn_abi.hpp) -------
constexpr unsigned MAX_LAYERS = abi::MAX_LAYERS;
constexpr unsigned MAX_CHANNELS = abi::MAX_CHANNELS;
constexpr unsigned MAX_CONV_SIZE = abi::MAX_CONV_SIZE;
constexpr unsigned MAX_DENSE_IN = abi::MAX_DENSE_IN;
constexpr unsigned MAX_DENSE_OUT = abi::MAX_DENSE_OUT;
constexpr unsigned MAX_CLASSES = abi::MAX_CLASSES;

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
/// Stream FIFO depth between the conv weight reader and the conv engine (two 16-beat bursts).
constexpr unsigned WEIGHT_FIFO_DEPTH = 32;
/// Words of one bank of the activation memory (two banks: even / odd pixel columns). A map of
/// side s with cw words per pixel takes s * ceil(s / 2) * cw words per bank: at most 4096
/// (32 x 16 x 8); a conv's input and output map always fit together.
constexpr unsigned ACT_BANK_WORDS = MAX_ACT_WORDS;
/// Words per image of the dense buffer: fc1's input, then two hidden-layer regions.
constexpr unsigned DENSE_HID_A = MAX_DENSE_IN_WORDS;
constexpr unsigned DENSE_HID_B = MAX_DENSE_IN_WORDS + MAX_HIDDEN_WORDS;
constexpr unsigned DENSE_BUF_WORDS = MAX_DENSE_IN_WORDS + 2 * MAX_HIDDEN_WORDS;

static_assert(CONV_PE == WORD_BITS, "the conv engine writes one whole output word per group");
static_assert(CONV_PIX == 2, "the conv engine is written for a pair of pixels");
static_assert(CONV_SIMD == 1, "the conv engine reads one word per pixel per cycle");
static_assert(MAX_CLASSES <= MAX_DENSE_OUT, "classes are dense outputs");
static_assert(2 * MAX_CONV_SIZE * ((MAX_CONV_SIZE + 1) / 2) * MAX_CIN_WORDS <= ACT_BANK_WORDS,
              "a conv's input and output map fit one bank together");

}  // namespace bnn

#endif  // BNN_CONFIG_HPP
