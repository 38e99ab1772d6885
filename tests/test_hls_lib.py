"""The HLS kernel's shared-library build (make -C hls_src lib) through
pynq_bnn.backends.sim.hls_lib.

Builds the library into a temporary directory with g++ (skipped, with the reason, when g++ or
the ap_types headers are missing) and checks it against the numpy reference.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

from pynq_bnn.backends.sim import hls_lib
from pynq_bnn.spec import abi, reference
from pynq_bnn.spec.first_layer import conv1_packed
from pynq_bnn.spec.network import Network
from pynq_bnn.testing import random_images, random_params
from test_hls_csim import MODEL, make, needs_toolchain


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    d = tmp_path_factory.mktemp("hls_lib")
    r = make(f"BUILD={d}", "lib")
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    loaded = hls_lib.load(str(d / hls_lib.LIB_NAME))
    assert loaded is not None
    return loaded


def _case(network, n, seed, fill=None):
    images = random_images(n, network.image_size, seed + 100)
    params = random_params(network, seed=seed, images=images, fill=fill)
    packed = conv1_packed(params, images)
    return params, packed, reference.binary_scores(params, packed)


# ----------------------------------------------------------------------- no library needed

def test_load_returns_none_when_not_built(tmp_path):
    assert hls_lib.load(str(tmp_path / "missing.so")) is None


def test_default_path_env_and_source_tree(monkeypatch, tmp_path):
    monkeypatch.setenv(hls_lib.ENV_VAR, str(tmp_path / "x.so"))
    assert hls_lib.default_path() == str(tmp_path / "x.so")
    assert hls_lib.load() is None
    monkeypatch.delenv(hls_lib.ENV_VAR)
    path = hls_lib.default_path()
    assert path.endswith(os.path.join("hls_src", "build", "libbnn_kernel.so"))


def test_not_a_library_is_an_error(tmp_path):
    bogus = tmp_path / "libbnn_kernel.so"
    bogus.write_bytes(b"not an ELF file")
    with pytest.raises(hls_lib.HlsLibError, match="cannot load"):
        hls_lib.load(str(bogus))


# ----------------------------------------------------------------------- the library

@needs_toolchain
def test_build_reports_abi_and_config(lib):
    assert lib.abi_id == abi.ABI_ID
    for name in ("MAX_CHANNELS", "MAX_CONV_SIZE", "MAX_DENSE_IN", "MAX_DENSE_OUT",
                 "MAX_CLASSES", "MAX_LAYERS"):
        assert lib.config[name] == getattr(abi, name)
    assert lib.config["CONV_PE"] == 64


@needs_toolchain
@pytest.mark.parametrize("network, n, seed, fill", [
    (Network.half(), 3, 1, None),
    (Network(conv_channels=(64,) * 6, fc_units=(64, 64)), 2, 2, None),
    (Network(conv_channels=(64,) * 6, fc_units=(128,), n_classes=7), 17, 3, None),  # 2 chunks
    (Network.half(), 2, 4, "ones"),
    (Network.half(), 2, 5, "zeros"),
    # the two parameter ports, uneven splits: two rows per cycle (5 images), one row (10)
    (Network(conv_channels=(64, 192, 128), pool_after=(False, True, False), fc_units=(192, 320, 64),
             n_classes=7, image_size=8), 5, 10, None),
    (Network(conv_channels=(64, 192, 128), pool_after=(False, True, False), fc_units=(192, 320, 64),
             n_classes=7, image_size=8), 10, 11, None),
])
def test_run_matches_reference(lib, network, n, seed, fill):
    params, packed, expected = _case(network, n, seed, fill)
    scores = np.zeros((n, network.n_classes), dtype=np.int32)
    abi_id = lib.run(abi.build_param_image(params), packed.reshape(-1), scores.reshape(-1), n)
    assert abi_id == abi.ABI_ID and lib.last_status == "ok"
    np.testing.assert_array_equal(scores, expected)


@needs_toolchain
def test_run_full_model_one_image(lib):
    params, packed, expected = _case(Network.full(), 1, 6, None)
    scores = np.zeros((1, 10), dtype=np.int32)
    assert lib.run(abi.build_param_image(params), packed, scores, 1) == abi.ABI_ID
    np.testing.assert_array_equal(scores, expected)


@needs_toolchain
@pytest.mark.skipif(not os.path.exists(MODEL), reason="shipped model not trained yet")
def test_run_shipped_model(lib):
    from pynq_bnn.spec.params import load_params
    params = load_params(MODEL)
    images = random_images(2, params.network.image_size, 9)
    packed = conv1_packed(params, images)
    scores = np.zeros((2, params.network.n_classes), dtype=np.int32)
    lib.run(abi.build_param_image(params), packed, scores, 2)
    np.testing.assert_array_equal(scores, reference.binary_scores(params, packed))


@needs_toolchain
def test_zero_images_only_reports_abi_id(lib):
    scores = np.full(4, 77, dtype=np.int32)
    assert lib.run(np.zeros(0, np.uint64), np.zeros(0, np.uint64), scores, 0) == abi.ABI_ID
    assert (scores == 77).all()


@needs_toolchain
def test_refused_image_leaves_scores_untouched(lib):
    params, packed, _ = _case(Network(conv_channels=(64,) * 6, fc_units=(64, 64)), 1, 7, None)
    image = abi.build_param_image(params)
    for corrupt in ("magic", "channels", "offset"):
        bad = image.copy()
        if corrupt == "magic":
            bad[0] ^= np.uint64(1)
        elif corrupt == "channels":
            bad[abi.DESCRIPTOR_BASE + 1] = np.uint64(96)
        else:
            bad[abi.DESCRIPTOR_BASE + 4] = bad[1]
        scores = np.full(10, 77, dtype=np.int32)
        assert lib.run(bad, packed, scores, 1) == abi.ABI_ID
        assert lib.last_status == "refused", corrupt
        assert (scores == 77).all()


@needs_toolchain
def test_argument_errors(lib):
    params, packed, _ = _case(Network(conv_channels=(64,) * 6, fc_units=(64, 64)), 2, 8, None)
    image = abi.build_param_image(params)
    with pytest.raises(hls_lib.HlsLibError, match="too short"):
        lib.run(image, packed, np.zeros(10, np.int32), 2)             # scores for 1 image
    with pytest.raises(hls_lib.HlsLibError, match="too short"):
        lib.run(image, packed.reshape(-1)[:-1], np.zeros(20, np.int32), 2)
    with pytest.raises(hls_lib.HlsLibError, match="too short"):
        lib.run(image[:-8], packed, np.zeros(20, np.int32), 2)
    with pytest.raises(hls_lib.HlsLibError, match="int32"):
        lib.run(image, packed, np.zeros(20, np.int64), 2)
    with pytest.raises(hls_lib.HlsLibError, match="contiguous"):
        lib.run(image, packed, np.zeros(40, np.int32)[::2], 2)
    with pytest.raises(hls_lib.HlsLibError, match="n_images"):
        lib.run(image, packed, np.zeros(20, np.int32), -1)
