"""The NEON paths of the native engine (layer 1 and the binary layers), bit-exact under
emulation: tests/arm/harness.c is cross-compiled with the engine sources and run under
qemu-user (armhf as on the Pynq-Z2's Cortex-A9; aarch64 too where its cross compiler is
installed), and its output is compared with the numpy spec.

Needs ``gcc-arm-linux-gnueabihf`` and ``qemu-user`` (Debian); skipped without them. On
AArch32 the binary layers run an inline-assembly step loop; ``-DBNN_NEON_NO_ASM`` builds the
intrinsics version of the same loop, tested here too (it is what AArch64 runs).
"""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest

from pynq_bnn import Network
from pynq_bnn.spec import reference
from pynq_bnn.spec.first_layer import conv1_packed
from pynq_bnn.testing import random_images, random_params

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "arm"))
import qemu_harness as qh  # noqa: E402

ARMHF = qh.missing("armhf")
AARCH64 = qh.missing("aarch64")
pytestmark = pytest.mark.skipif(ARMHF is not None, reason=f"armhf emulation: {ARMHF}")

#: (arch, extra cflags): the paths a board can run
TARGETS = [("armhf", ()), ("armhf", ("-DBNN_NEON_NO_ASM",))]
if AARCH64 is None:
    TARGETS.append(("aarch64", ()))
TARGET_IDS = ["armhf-asm", "armhf-intrinsics", "aarch64"][:len(TARGETS)]


def first_layer_net(c1: int, size: int = 32) -> Network:
    return Network(conv_channels=(c1, 64), pool_after=(False, False), fc_units=(),
                   n_classes=2, image_size=size)


# ------------------------------------------------------------------------------ layer 1

@pytest.mark.parametrize("c1", [64, 128, 256])
@pytest.mark.parametrize("threads", [1, 2])
def test_layer1_neon_random_networks(c1, threads):
    images = random_images(5, 32, seed=c1 + threads)
    params = random_params(first_layer_net(c1), seed=c1, images=images[:3])
    out, _ = qh.layer1(params, images, "neon", threads)
    np.testing.assert_array_equal(out, conv1_packed(params, images))


@pytest.mark.parametrize("fill", [0, 255, 127, 128])
def test_layer1_neon_flat_images_and_ties(fill):
    """Flat images: every interior sum equal, thresholds drawn from those sums (exact ties),
    borders and corners with their own sums, both directions, constant channels."""
    images = np.full((3, 32, 32, 3), fill, dtype=np.uint8)
    images[1] = random_images(1, 32, seed=fill)[0]
    params = random_params(first_layer_net(128), seed=fill + 1, images=images)
    for isa in ("neon", "portable"):
        out, _ = qh.layer1(params, images, isa, 2)
        np.testing.assert_array_equal(out, conv1_packed(params, images), err_msg=isa)


def test_layer1_neon_extreme_weights_and_thresholds():
    """|sum| at its bound 27*255*127, thresholds at the clip bound and at +-bound exactly."""
    params = random_params(first_layer_net(64), seed=7)
    lp = params.layers["conv1"]
    lp.weights[:] = 127
    lp.weights[::2] = -127
    bound = 27 * 255 * 127
    lp.thresholds[:] = np.resize(np.array([bound + 1, -bound - 1, bound, -bound, 0, 1, -1],
                                          dtype=np.int32), lp.thresholds.shape)
    lp.directions[:] = np.resize(np.array([1, -1, -1], dtype=np.int8), lp.directions.shape)
    images = np.zeros((3, 32, 32, 3), dtype=np.uint8)
    images[1] = 255
    images[2, ::2] = 255
    out, _ = qh.layer1(params, images, "neon", 1)
    np.testing.assert_array_equal(out, conv1_packed(params, images))


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7])
@pytest.mark.parametrize("n", [1, 3])
def test_layer1_neon_small_and_odd_sizes(size, n):
    """Odd widths (the last pixel runs in a pair with itself), 1x1 (every tap is padding but
    the centre), batch 1 split across threads."""
    images = random_images(n, size, seed=size)
    params = random_params(first_layer_net(64, size), seed=size, images=images)
    for threads in (1, 2):
        out, _ = qh.layer1(params, images, "neon", threads)
        np.testing.assert_array_equal(out, conv1_packed(params, images))


def test_layer1_neon_batch16_two_threads_split_inside_an_image():
    images = random_images(17, 32, seed=3)  # 17 x 32 rows over 2 threads: a split mid-image
    params = random_params(first_layer_net(128), seed=4, images=images[:4])
    out, counts = qh.layer1(params, images, "neon", 2, count=True)
    np.testing.assert_array_equal(out, conv1_packed(params, images))


@pytest.mark.skipif(AARCH64 is not None, reason=f"aarch64 emulation: {AARCH64}")
def test_layer1_neon_aarch64():
    images = random_images(4, 32, seed=9)
    images[0] = 0
    images[1] = 255
    params = random_params(first_layer_net(128), seed=9, images=images)
    out, _ = qh.layer1(params, images, "neon", 2, arch="aarch64")
    np.testing.assert_array_equal(out, conv1_packed(params, images))


# ------------------------------------------------------------------------------ binary layers

NARROW64 = Network(conv_channels=(64,) * 6, fc_units=(64, 64), n_classes=10)
ODD = Network(conv_channels=(64, 128, 64), pool_after=(False, True, False), fc_units=(128,),
              n_classes=37, image_size=6)
TINY = Network(conv_channels=(64, 64, 64, 128), pool_after=(False, True, True, True),
               fc_units=(), n_classes=64, image_size=8)
WIDE_IN = Network(conv_channels=(192, 64), pool_after=(False, False), fc_units=(64,),
                  n_classes=2, image_size=4)
# 3x3 and 1x1 maps, 320 channels (segments of 15 words: 4-word steps + a 2-word + a 1-word
# tail), a 5x5 map whose 4-pixel groups straddle rows
MIXED = Network(conv_channels=(64, 320, 128), pool_after=(False, False, True),
                fc_units=(192,), n_classes=5, image_size=5 * 2)
NETS = {"narrow64": NARROW64, "odd": ODD, "tiny": TINY, "wide_in": WIDE_IN, "mixed": MIXED,
        "half": Network.half()}


def _case(net, n, seed, fill=None):
    images = random_images(n, net.image_size, seed)
    params = random_params(net, seed=seed, images=images[:3], fill=fill)
    packed = conv1_packed(params, images)
    return params, packed, reference.binary_scores(params, packed)


@pytest.mark.slow
@pytest.mark.parametrize("target", TARGETS, ids=TARGET_IDS)
@pytest.mark.parametrize("name", list(NETS))
def test_engine_neon_networks(target, name):
    arch, cflags = target
    net = NETS[name]
    params, packed, ref = _case(net, 5, seed=len(name))
    for threads, n in ((1, 5), (2, 5), (2, 1), (3, 2)):
        out, _ = qh.binary_scores(params, packed[:n], "neon", threads, arch=arch, cflags=cflags)
        np.testing.assert_array_equal(out, ref[:n], err_msg=f"threads={threads} n={n}")


@pytest.mark.parametrize("target", TARGETS, ids=TARGET_IDS)
@pytest.mark.parametrize("fill", ["ones", "zeros"])
def test_engine_neon_constant_maps(target, fill):
    arch, cflags = target
    params, packed, ref = _case(NARROW64, 4, seed=3, fill=fill)
    out, _ = qh.binary_scores(params, packed, "neon", 2, arch=arch, cflags=cflags)
    np.testing.assert_array_equal(out, ref)


@pytest.mark.slow
def test_engine_neon_full_network():
    params, packed, ref = _case(Network.full(), 2, seed=11)
    out, _ = qh.binary_scores(params, packed, "neon", 2)
    np.testing.assert_array_equal(out, ref)
    out, _ = qh.binary_scores(params, packed, "portable", 1)
    np.testing.assert_array_equal(out, ref)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(6))
def test_engine_neon_random_topologies(seed):
    rng = np.random.default_rng(seed)
    size = int(rng.choice([2, 4, 6, 8, 12]))
    n_conv = int(rng.integers(2, 5))
    pools, s = [False], size
    for _ in range(n_conv - 1):
        p = s % 2 == 0 and s > 1 and bool(rng.integers(0, 2))
        pools.append(p)
        s = s // 2 if p else s
    net = Network(conv_channels=tuple(int(c) for c in rng.choice([64, 128, 192, 256], n_conv)),
                  pool_after=tuple(pools),
                  fc_units=tuple(int(c) for c in rng.choice([64, 128], int(rng.integers(0, 3)))),
                  n_classes=int(rng.integers(2, 65)), image_size=size)
    params, packed, ref = _case(net, 3, seed=seed + 50)
    out, _ = qh.binary_scores(params, packed, "neon", 2)
    np.testing.assert_array_equal(out, ref)


def extreme_sums_case():
    """conv3 sees an all-ones map (conv2's thresholds make every bit 1) and half its channels
    have all-ones weights (popcount 0 in the interior), half all-zero ones (popcount 64 k):
    sums at +-n, thresholds at +-(n+1), +-n, 0, both directions."""
    net = NARROW64
    images = random_images(3, net.image_size, 21)
    params = random_params(net, seed=21, images=images)
    conv2, conv3 = params.layers["conv2"], params.layers["conv3"]
    conv2.thresholds[:] = -(9 * 64 + 1)
    conv2.directions[:] = 1
    conv3.weights[::2] = np.uint64(2**64 - 1)
    conv3.weights[1::2] = 0
    n = 9 * 64
    conv3.thresholds[:] = np.resize(np.array([n + 1, -n - 1, n, -n, 0, n - 1, 1 - n],
                                             dtype=np.int32), 64)
    conv3.directions[:] = np.resize(np.array([1, -1, -1, 1, -1], dtype=np.int8), 64)
    packed = conv1_packed(params, images)
    return params, packed, reference.binary_scores(params, packed)


@pytest.mark.parametrize("target", TARGETS, ids=TARGET_IDS)
def test_engine_neon_sums_at_the_extremes(target):
    arch, cflags = target
    params, packed, ref = extreme_sums_case()
    out, _ = qh.binary_scores(params, packed, "neon", 1, arch=arch, cflags=cflags)
    np.testing.assert_array_equal(out, ref)


# ------------------------------------------------------------------------------ area resize

def _numpy_fit(image, n):
    """preprocess.fit_array's numpy code (the reference), whatever the host library does."""
    from pynq_bnn.host import preprocess
    saved = preprocess._use_native
    preprocess._use_native = False
    try:
        return preprocess.fit_array(image, n)
    finally:
        preprocess._use_native = saved


@pytest.mark.parametrize("h,w,c,n,pad", [
    (480, 640, 3, 32, 0), (481, 641, 3, 31, 5), (640, 480, 3, 32, 3), (17, 50, 3, 5, 1),
    (33, 16, 1, 7, 0), (600, 601, 3, 2, 0), (97, 40, 4, 13, 2), (1, 9, 3, 1, 0),
    (4200, 4200, 1, 32, 0)])
def test_fit_area_neon_matches_numpy(h, w, c, n, pad):
    """bnn_resize.c on the emulated A9 (NEON and portable paths; padded rows, 16-column blocks
    with tails, runs over 257 rows, the 64-bit sums past s = 4064) against fit_array's numpy."""
    image = np.random.default_rng(h * w + n).integers(0, 256, (h, w, c), dtype=np.uint8)
    ref = _numpy_fit(image, n).reshape(n, n, c)
    for isa in ("neon", "portable"):
        out, _ = qh.fit_area(image, n, isa, pad=pad)
        np.testing.assert_array_equal(out, ref, err_msg=isa)
