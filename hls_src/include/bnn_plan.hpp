/**
 * \file bnn_plan.hpp
 * \brief Where each conv feature map lives in the activation memory, and which conv layers run
 *        over the whole chunk of images at once (weights read once per chunk, not per image).
 *
 * The activation memory is two banks (even / odd pixel columns) of ACT_BANK_WORDS words. Pixel
 * (y, x) of a map of side s with cw words per pixel is in bank x & 1 at
 *     base + k * stride + (y * ceil(s / 2) + x / 2) * cw + c        (image k of the chunk, word c)
 * so a map takes W = s * ceil(s / 2) * cw words per bank and per image.
 *
 * Maps are numbered j = 0 .. n_conv: map j is the input of conv j, map n_conv the last conv's
 * output (the dense input). Conv layers 0 .. p-1 run image by image, layers p .. n_conv-1 run
 * once per chunk with the images inner (filter group outer: every weight group read from DDR
 * serves all the chunk's images). The smallest p for which everything fits is chosen:
 *   - map p holds all images ("staging", base 0, stride W_p), written image by image by
 *     conv p-1 (or by the input loader when p = 0);
 *   - chunk maps j > p alternate between the top (base D - n_img * W_j) and the bottom (0) of
 *     the bank, so a chunk conv's input and output never overlap: n_img * (W_l + W_{l+1}) <= D;
 *   - per-image maps j < p alternate between the top (D - W_j) and just above the staging
 *     region (S = n_img * W_p): S + W_j + W_{j+1} <= D.
 * If no p fits (a map near the limits), p = n_conv with no staging: every image's last map is
 * flattened into the dense input right after its convs (the former image-by-image order).
 * Full model, 16 images: p = 3 (conv5, conv6 per chunk); half model: p = 1 (conv3 .. conv6).
 */
#ifndef BNN_PLAN_HPP
#define BNN_PLAN_HPP

#include "bnn_config.hpp"
#include "bnn_descriptor.hpp"
#include "bnn_estimate.hpp"
#include "bnn_types.hpp"

namespace bnn {

/// Bank word offsets (14 bits: < 2 * ACT_BANK_WORDS).
using BankAddr = ap_uint<15>;

/// Geometry and place of one feature map.
struct MapLoc {
    BankAddr base;     ///< image 0's first word, per bank
    BankAddr stride;   ///< words between consecutive images (0: one image at a time)
    ap_uint<7> size;   ///< side in pixels
    ap_uint<4> cw;     ///< words per pixel (channels / 64)
    BankAddr words;    ///< words per bank of one image: size * ceil(size / 2) * cw
};

/// The plan of one chunk.
struct ActPlan {
    unsigned p;             ///< first conv layer run over the whole chunk (n_conv: none)
    bool flatten_each;      ///< no staging: flatten each image right after its convs
    MapLoc map[MAX_LAYERS + 1];
};

/// \brief Words per bank of one map of side \p s with \p cw words per pixel.
inline unsigned map_bank_words(unsigned s, unsigned cw) {
#pragma HLS INLINE
    return s * ((s + 1) / 2) * cw;
}

/**
 * \brief Decide the plan for a chunk of \p n_img images (see the file comment).
 * Runs once per chunk, outside every pipeline (a few hundred cycles, multiplies allowed).
 */
inline void make_plan(const LayerDesc desc[MAX_LAYERS], const Topology& topo, unsigned n_img,
                      ActPlan& plan) {
    const unsigned n = topo.n_conv;
    const unsigned D = ACT_BANK_WORDS;
    unsigned W[MAX_LAYERS + 1];
    unsigned s = desc[0].size;
    plan.map[0].size = s;
    plan.map[0].cw = desc[0].cin / WORD_BITS;
    W[0] = map_bank_words(s, desc[0].cin / WORD_BITS);
plan_geometry:
    for (unsigned l = 0; l < MAX_LAYERS; ++l) {
        if (l < n) {
            s = desc[l].pool ? s / 2 : s;
            plan.map[l + 1].size = s;
            plan.map[l + 1].cw = desc[l].cout / WORD_BITS;
            W[l + 1] = map_bank_words(s, desc[l].cout / WORD_BITS);
        }
    }
    unsigned p = n;
    bool found = false;
    BNN_EST_LOOP(est_loop, "plan", 0);
plan_search:
    for (unsigned q = 0; q <= MAX_LAYERS; ++q) {
        if (q > n || found) continue;
        const unsigned S = n_img * W[q];
        bool ok = S <= D;
    plan_check:
        for (unsigned j = 0; j < MAX_LAYERS; ++j) {
            BNN_EST_TICK(est_loop);
            if (j >= q && j < n && n_img * (W[j] + W[j + 1]) > D) ok = false;      // chunk conv j
            if (j + 1 < q && S + W[j] + W[j + 1] > D) ok = false;                // per-image conv j
            if (j + 1 == q && S + W[j] > D) ok = false;                          // conv q-1 -> staging
        }
        if (ok) {
            p = q;
            found = true;
        }
    }
    plan.p = p;
    plan.flatten_each = !found;
    const unsigned S = found ? n_img * W[p] : 0;
plan_place:
    for (unsigned j = 0; j <= MAX_LAYERS; ++j) {
        if (j > n) continue;
        MapLoc& m = plan.map[j];
        m.words = W[j];
        if (j == p) {                       // staging (or, without staging, image by image)
            m.base = 0;
            m.stride = found ? W[j] : 0;
        } else if (j > p) {                 // chunk maps: top, bottom, top, ...
            const bool top = (j - p) % 2 == 1;
            m.base = top ? D - n_img * W[j] : 0;
            m.stride = W[j];
        } else {                            // per-image maps: map p-1 at the top, then above S
            const bool top = (p - 1 - j) % 2 == 0;
            m.base = top ? D - W[j] : S;
            m.stride = 0;
        }
    }
}

}  // namespace bnn

#endif  // BNN_PLAN_HPP
