/**
 * \file bnn_kernel.hpp
 * \brief Umbrella header of the pynq-bnn kernel and the top-level prototype.
 */
#ifndef BNN_KERNEL_HPP
#define BNN_KERNEL_HPP

#include "bnn_abi.hpp"
#include "bnn_config.hpp"
#include "bnn_conv.hpp"
#include "bnn_ddr.hpp"
#include "bnn_dense.hpp"
#include "bnn_descriptor.hpp"
#include "bnn_estimate.hpp"
#include "bnn_plan.hpp"
#include "bnn_popcount.hpp"
#include "bnn_threshold.hpp"
#include "bnn_types.hpp"

/**
 * \brief Run the binary layers of a network over a batch of images (one ap_ctrl_hs start).
 *
 * \param params   parameter image (pynq_bnn/spec/abi.py build_param_image): header,
 *                 descriptor table, weights, thresholds. m_axi gmem0.
 * \param input    packed layer-1 output, uint64 [n_images][H][W][C1/64]. m_axi gmem1.
 * \param scores   raw scores, int32 [n_images][n_classes]. m_axi gmem2.
 * \param n_images images in the batch; 0 only reports the ABI id.
 * \param abi_id   ABI_ID, written at every start (s_axilite output register).
 * \param params2  the same parameter image (the driver passes the buffer twice), read through
 *                 a second master, m_axi gmem3 (HP2): half of the weight rows and filters.
 *                 Last in the signature, so its registers follow abi_id_ctrl (ABI version 2).
 *
 * A parameter image whose header or descriptor table fails the checks of
 * bnn::read_descriptors, or whose params2 header differs (bnn::same_header), is not run:
 * abi_id is written, scores are left untouched.
 */
void bnn_kernel(const bnn::Word* params, const bnn::Word* input, bnn::Score* scores,
                bnn::U32 n_images, bnn::U32* abi_id, const bnn::Word* params2);

#endif  // BNN_KERNEL_HPP
