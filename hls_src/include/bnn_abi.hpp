/**
 * \file bnn_abi.hpp
 * \brief The kernel ABI as C++ constants. Mirrors pynq_bnn/abi.py (the binding statement) and
 *        docs/ABI.md; tests/test_hls_csim.py checks that the two agree.
 *
 * Parameter image (uint64 words):
 *   word 0                 ABI_ID (bits 0-31) | n_layers << 32
 *   word 1                 total words of the image
 *   words 8 .. 8+16*8      descriptor table, DESCRIPTOR_WORDS words per binary layer:
 *                          [0] kind | flags, [1] in_channels, [2] out_channels, [3] in_size,
 *                          [4] weight offset, [5] threshold offset, [6] weight words, [7] 0
 *   DATA_BASE ..           weights and packed thresholds, each block 64-byte aligned
 * Thresholds: two 32-bit entries per word (even entry in the low half); an entry is an int16
 * threshold in bits 0-15 and an int8 direction (+1 / -1) in bits 16-23.
 */
#ifndef BNN_ABI_HPP
#define BNN_ABI_HPP

namespace bnn {
namespace abi {

constexpr unsigned ABI_MAGIC = 0x424E;  // "BN"
constexpr unsigned ABI_VERSION = 1;
constexpr unsigned ABI_ID = (ABI_MAGIC << 16) | ABI_VERSION;

constexpr unsigned HEADER_WORDS = 8;
constexpr unsigned DESCRIPTOR_WORDS = 8;
constexpr unsigned DESCRIPTOR_BASE = HEADER_WORDS;
constexpr unsigned MAX_LAYERS = 16;
constexpr unsigned DATA_BASE = DESCRIPTOR_BASE + MAX_LAYERS * DESCRIPTOR_WORDS;
constexpr unsigned ALIGN_WORDS = 8;

constexpr unsigned KIND_CONV = 0;
constexpr unsigned KIND_DENSE = 1;
constexpr unsigned KIND_MASK = 0xFF;
constexpr unsigned FLAG_POOL = 1u << 8;
constexpr unsigned FLAG_LAST = 1u << 9;

/// Descriptor word indices.
constexpr unsigned D_KIND = 0, D_CIN = 1, D_COUT = 2, D_SIZE = 3, D_WOFF = 4, D_TOFF = 5,
                   D_WWORDS = 6;

/// s_axilite register offsets, as Vitis HLS lays them out for the top-level signature.
constexpr unsigned REG_CTRL = 0x00, REG_GIER = 0x04, REG_IP_IER = 0x08, REG_IP_ISR = 0x0C,
                   REG_PARAMS_LO = 0x10, REG_PARAMS_HI = 0x14, REG_INPUT_LO = 0x1C,
                   REG_INPUT_HI = 0x20, REG_SCORES_LO = 0x28, REG_SCORES_HI = 0x2C,
                   REG_N_IMAGES = 0x34, REG_ABI_ID = 0x3C, REG_ABI_ID_CTRL = 0x40;

}  // namespace abi
}  // namespace bnn

#endif  // BNN_ABI_HPP
