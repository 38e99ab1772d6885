/**
 * \file bnn_descriptor.hpp
 * \brief The layer descriptor table: parse it from the parameter image and check it against
 *        this build's limits, so that no descriptor can drive a buffer out of bounds.
 */
#ifndef BNN_DESCRIPTOR_HPP
#define BNN_DESCRIPTOR_HPP

#include "bnn_abi.hpp"
#include "bnn_config.hpp"
#include "bnn_estimate.hpp"
#include "bnn_types.hpp"

namespace bnn {

/// One binary layer, as decoded from its DESCRIPTOR_WORDS words.
struct LayerDesc {
    bool dense;           ///< KIND_DENSE (else KIND_CONV)
    bool pool;            ///< FLAG_POOL: a 2x2 max-pool follows the conv
    bool last;            ///< FLAG_LAST: raw scores, no threshold
    ap_uint<14> cin;      ///< input channels (conv) or inputs (dense)
    ap_uint<14> cout;     ///< output channels (conv) or outputs (dense)
    ap_uint<7> size;      ///< input side of a conv (square map)
    ap_uint<32> w_off;    ///< weight block, word offset into the parameter image
    ap_uint<32> t_off;    ///< threshold block, word offset (unused for the last layer)
    ap_uint<32> w_words;  ///< weight block length in words
};

static_assert(abi::MAX_DENSE_IN < (1u << 14) && abi::MAX_CONV_SIZE < (1u << 7),
              "LayerDesc fields too narrow for the ABI limits");

/// The whole table plus what the top level derives from it.
struct Topology {
    unsigned n_layers;   ///< binary layers in the table
    unsigned n_conv;     ///< leading conv layers; the rest are dense
    unsigned in_words;   ///< words of kernel input per image
    unsigned flat_words; ///< words of the first dense layer's input per image
    unsigned n_classes;  ///< outputs of the last layer
};

/// \brief True if [off, off + n) lies inside an image of \p total words, after the table.
inline bool block_ok(ap_uint<32> off, ap_uint<32> n, ap_uint<32> total) {
#pragma HLS INLINE
    return off >= abi::DATA_BASE && ap_uint<33>(off) + n <= ap_uint<33>(total);
}

/**
 * \brief Read the header and descriptor table; check every field against the limits.
 *
 * Rules: word 0 carries ABI_ID; 2..MAX_LAYERS layers; one or more convs first, then one or
 * more dense layers, the last one (only) flagged last; every channel count a multiple of 64
 * within the limits (the last layer: 1..MAX_CLASSES outputs); each layer's input matches the
 * previous layer's output; weight and threshold blocks lie inside the image.
 * \param params  the parameter image (m_axi)
 * \param desc    decoded table (out)
 * \param topo    derived sizes (out)
 * \return false if the image must not be run (the kernel then computes nothing)
 */
inline bool read_descriptors(const Word* params, LayerDesc desc[MAX_LAYERS], Topology& topo) {
    const Word h0 = params[0];
    const Word h1 = params[1];
    if (ap_uint<32>(h0(31, 0)) != abi::ABI_ID) return false;
    const ap_uint<32> n_layers = h0(63, 32);
    if (n_layers < 2 || n_layers > MAX_LAYERS) return false;
    if (h1(63, 32) != 0) return false;  // images are < 2^32 words
    const ap_uint<32> total = h1(31, 0);

    BNN_EST_DDR_LOOP(est_loop, "descriptors", 1, "gmem0");
read_table:
    for (unsigned l = 0; l < n_layers; ++l) {
#pragma HLS LOOP_TRIPCOUNT min=2 max=16 avg=8
        Word w[abi::DESCRIPTOR_WORDS];
#pragma HLS ARRAY_PARTITION variable=w complete
    read_words:
        for (unsigned j = 0; j < abi::DESCRIPTOR_WORDS; ++j) {
#pragma HLS PIPELINE II=1
            BNN_EST_TICK(est_loop);
            w[j] = params[abi::DESCRIPTOR_BASE + l * abi::DESCRIPTOR_WORDS + j];
        }
        LayerDesc d;
        const ap_uint<32> kind = w[abi::D_KIND](31, 0);
        d.dense = (kind & abi::KIND_MASK) == abi::KIND_DENSE;
        d.pool = (kind & abi::FLAG_POOL) != 0;
        d.last = (kind & abi::FLAG_LAST) != 0;
        const bool kind_ok = (kind & abi::KIND_MASK) <= abi::KIND_DENSE &&
                             (kind & ~ap_uint<32>(abi::KIND_MASK | abi::FLAG_POOL |
                                                  abi::FLAG_LAST)) == 0;
        const Word cin = w[abi::D_CIN], cout = w[abi::D_COUT], size = w[abi::D_SIZE];
        const Word woff = w[abi::D_WOFF], toff = w[abi::D_TOFF], wwords = w[abi::D_WWORDS];
        // Everything must fit the narrow fields before it is narrowed (the exact per-kind
        // limits are checked below; these bounds only keep the narrowing lossless).
        if (!kind_ok || cin > abi::MAX_DENSE_IN || cout > abi::MAX_DENSE_IN ||
            size > abi::MAX_CONV_SIZE || woff > 0xFFFFFFFFu ||
            toff > 0xFFFFFFFFu || wwords > 0xFFFFFFFFu)
            return false;
        d.cin = cin;
        d.cout = cout;
        d.size = size;
        d.w_off = woff;
        d.t_off = toff;
        d.w_words = wwords;
        desc[l] = d;
    }

    // ---- structure and limits ----
    unsigned n_conv = 0;
count_convs:
    for (unsigned l = 0; l < MAX_LAYERS; ++l) {
        if (l < n_layers && !desc[l].dense && n_conv == l) n_conv = l + 1;
    }
    if (n_conv < 1 || n_conv >= n_layers) return false;
    unsigned size = desc[0].size, ch = desc[0].cin;
check_layers:
    for (unsigned l = 0; l < n_layers; ++l) {
#pragma HLS LOOP_TRIPCOUNT min=2 max=16 avg=8
        const LayerDesc& d = desc[l];
        const bool is_last = l + 1 == n_layers;
        if (d.last != is_last || d.dense != (l >= n_conv)) return false;
        const ap_uint<32> wwords = d.w_words;
        if (!d.dense) {
            if (d.cin != ch || d.size != size) return false;
            if (d.cin % WORD_BITS || d.cin < WORD_BITS || d.cin > MAX_CHANNELS) return false;
            if (d.cout % WORD_BITS || d.cout < WORD_BITS || d.cout > MAX_CHANNELS) return false;
            if (d.size < 1 || d.size > MAX_CONV_SIZE || (d.pool && (d.size % 2))) return false;
            if (wwords != ap_uint<32>(d.cout) * 9 * (d.cin / WORD_BITS)) return false;
            if (!block_ok(d.w_off, wwords, total)) return false;
            if (!block_ok(d.t_off, d.cout / 2, total)) return false;
            ch = d.cout;
            size = d.pool ? size / 2 : size;
        } else {
            const unsigned in = (l == n_conv) ? size * size * ch : ch;
            if (d.cin != in || d.cin % WORD_BITS || d.cin < WORD_BITS) return false;
            if (d.cin > ((l == n_conv) ? MAX_DENSE_IN : MAX_DENSE_OUT)) return false;
            if (is_last) {
                if (d.cout < 1 || d.cout > MAX_CLASSES) return false;
            } else {
                if (d.cout % WORD_BITS || d.cout < WORD_BITS || d.cout > MAX_DENSE_OUT)
                    return false;
                if (!block_ok(d.t_off, d.cout / 2, total)) return false;
            }
            if (wwords != ap_uint<32>(d.cout) * (d.cin / WORD_BITS)) return false;
            if (!block_ok(d.w_off, wwords, total)) return false;
            ch = d.cout;
        }
    }
    topo.n_layers = n_layers;
    topo.n_conv = n_conv;
    topo.in_words = unsigned(desc[0].size) * unsigned(desc[0].size) * (desc[0].cin / WORD_BITS);
    topo.flat_words = desc[n_conv].cin / WORD_BITS;
    topo.n_classes = desc[n_layers - 1].cout;
    return true;
}

/**
 * \brief True if the second parameter port (params2, m_axi gmem3) shows the same two header
 *        words (ABI id | layers, total words) as params: the driver passes one buffer twice
 *        (ABI version 2). An unset or wrong params2 is refused like a corrupted image (abi_id
 *        written, nothing computed), before any weight is read through it.
 */
inline bool same_header(const Word* params, const Word* params2) {
    return params2[0] == params[0] && params2[1] == params[1];
}

}  // namespace bnn

#endif  // BNN_DESCRIPTOR_HPP
