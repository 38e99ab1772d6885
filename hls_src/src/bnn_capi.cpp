/**
 * \file bnn_capi.cpp
 * \brief A tiny C ABI around the C-simulation build of bnn_kernel, for the shared library
 *        (make lib -> build/libbnn_kernel.so; loaded by pynq_bnn/hls_lib.py).
 *
 * The buffers are plain little-endian uint64 / int32 arrays as the driver allocates them;
 * they are copied to and from the ap_int types the kernel takes. The parameter image is
 * passed as both params and params2, as the driver does on the board. Not for synthesis.
 */
#include <cstdint>
#include <cstring>
#include <vector>

#include "bnn_kernel.hpp"

namespace {

/// Decode the table of a (padded) copy of the image; false if the kernel would refuse it.
bool topology_of(const std::vector<bnn::Word>& p, bnn::Topology& topo) {
    bnn::LayerDesc desc[bnn::MAX_LAYERS];
    return bnn::read_descriptors(p.data(), desc, topo);
}

}  // namespace

extern "C" {

/// The ABI id this build reports (pynq_bnn.abi.ABI_ID).
uint32_t bnn_kernel_abi_id(void) { return bnn::abi::ABI_ID; }

/// Compile-time constants of this build, for cross-checks: 0 CONV_PE, 1 CONV_PIX,
/// 2 DENSE_BATCH, 3 MAX_LAYERS, 4 MAX_CHANNELS, 5 MAX_CONV_SIZE, 6 MAX_DENSE_IN,
/// 7 MAX_DENSE_OUT, 8 MAX_CLASSES; -1 for anything else.
int64_t bnn_kernel_config(int what) {
    switch (what) {
        case 0: return bnn::CONV_PE;
        case 1: return bnn::CONV_PIX;
        case 2: return bnn::DENSE_BATCH;
        case 3: return bnn::MAX_LAYERS;
        case 4: return bnn::MAX_CHANNELS;
        case 5: return bnn::MAX_CONV_SIZE;
        case 6: return bnn::MAX_DENSE_IN;
        case 7: return bnn::MAX_DENSE_OUT;
        case 8: return bnn::MAX_CLASSES;
        default: return -1;
    }
}

/**
 * Run the kernel once, as one start of the hardware would.
 *
 * \param params       parameter image, params_words uint64 words
 * \param input        packed layer-1 output, input_words uint64 words (n_images images)
 * \param scores       int32 output, scores_len elements (n_images * n_classes used)
 * \param n_images     batch; 0 only writes *abi_id
 * \param abi_id       written at every start
 * \return 0 ran (or n_images == 0); 1 the kernel refused the parameter image (only *abi_id
 *         written, scores untouched, as on the board); -1 a null pointer; -2 a buffer is
 *         shorter than the parameter image says it must be (nothing run).
 */
int bnn_kernel_run(const uint64_t* params, uint64_t params_words, const uint64_t* input,
                   uint64_t input_words, int32_t* scores, uint64_t scores_len,
                   uint32_t n_images, uint32_t* abi_id) {
    if (!abi_id || (n_images && (!params || !input || !scores))) return -1;
    std::vector<bnn::Word> p;
    bnn::U32 id = 0;
    if (n_images == 0) {
        bnn_kernel(p.data(), nullptr, nullptr, 0, &id, p.data());
        *abi_id = uint32_t(id);
        return 0;
    }
    // The table is read before anything is checked: pad short images with zeros.
    const uint64_t padded = params_words < bnn::abi::DATA_BASE ? bnn::abi::DATA_BASE
                                                               : params_words;
    p.assign(padded, bnn::Word(0));
    for (uint64_t i = 0; i < params_words; ++i) p[i] = params[i];
    bnn::Topology topo;
    if (!topology_of(p, topo)) {
        bnn_kernel(p.data(), nullptr, nullptr, n_images, &id, p.data());  // refuses
        *abi_id = uint32_t(id);
        return 1;
    }
    if (uint64_t(p[1](31, 0)) > params_words) return -2;
    const uint64_t n_in = uint64_t(n_images) * topo.in_words;
    const uint64_t n_sc = uint64_t(n_images) * topo.n_classes;
    if (input_words < n_in || scores_len < n_sc) return -2;

    std::vector<bnn::Word> x(n_in);
    for (uint64_t i = 0; i < n_in; ++i) x[i] = input[i];
    std::vector<bnn::Score> s(n_sc);
    for (uint64_t i = 0; i < n_sc; ++i) s[i] = scores[i];
    bnn_kernel(p.data(), x.data(), s.data(), n_images, &id, p.data());  // params twice
    for (uint64_t i = 0; i < n_sc; ++i) scores[i] = int32_t(s[i].to_int());
    *abi_id = uint32_t(id);
    return 0;
}

}  // extern "C"
