"""pynq_bnn.backends API (open_backend, available_backends, auto), the cpu backend, overlay
discovery, and abi.parse_param_image (the parser the simulated kernel executes)."""
import importlib.util
import logging
import os

import numpy as np
import pytest

from helpers import SMALL
from pynq_bnn.backends import available_backends, board_status, open_backend
from pynq_bnn.backends.pynq import overlay_files
from pynq_bnn.errors import BackendUnavailable, BnnError, ImageError
from pynq_bnn.spec import abi, reference
from pynq_bnn.spec.first_layer import conv1_packed
from pynq_bnn.spec.network import Network
from pynq_bnn.testing import random_images, random_params

HAVE_PYNQ = importlib.util.find_spec("pynq") is not None


@pytest.fixture(scope="module")
def small():
    params = random_params(SMALL, seed=41)
    packed = conv1_packed(params, random_images(9, SMALL.image_size, seed=42))
    return params, packed, reference.binary_scores(params, packed)


# ----------------------------------------------------------------------------- the API

@pytest.mark.parametrize("name", ["cpu", "mock"])
def test_every_backend_same_api_same_scores(small, name):
    params, packed, expected = small
    with open_backend(name, max_batch=4, timeout=5.0) as be:
        assert be.name == name
        be.load(params)
        np.testing.assert_array_equal(be.run(packed), expected)
        assert set(be.last_timings) == {"transfer", "kernel"}
        d = be.describe()
        for key in ("backend", "board", "bitstream", "kernel", "abi_id"):
            assert key in d
        assert d["backend"] == name and d["bitstream"] is None
        assert (d["kernel"] in ("numpy reference", "hls-lib")
                or d["kernel"].startswith("native engine"))
    assert be.closed
    be.close()


def test_mock_describe_names_abi_and_kernel(small):
    with open_backend("mock", kernel="reference") as be:
        assert be.describe()["abi_id"] is None
        be.load(small[0])
        d = be.describe()
        assert d["kernel"] == "numpy reference"
        assert d["abi_id"].startswith(f"0x{abi.ABI_ID:08x}") and d["abi_expected"] == d["abi_id"]
        assert "simulated" in d["board"]


def test_cpu_reference_forced_and_errors(small):
    params, packed, expected = small
    with open_backend("cpu", engine=False, overlay="ignored.bit") as be:
        assert be.describe()["kernel"] == "numpy reference"
        with pytest.raises(BnnError, match="load"):
            be.run(packed)
        be.load(params)
        np.testing.assert_array_equal(be.run(packed[:2]), expected[:2])
        with pytest.raises(ImageError):
            be.run(packed.astype(np.uint32))
    with pytest.raises(BnnError, match="closed"):
        be.run(packed)


def test_unknown_backend():
    with pytest.raises(BackendUnavailable, match="unknown backend"):
        open_backend("fpga")


def test_mock_rejects_unknown_faults():
    with pytest.raises(ValueError, match="unknown fault"):
        open_backend("mock", faults={"explode": True})


@pytest.mark.parametrize("kernel", ["engine", "reference"])
def test_mock_cpu_kernels_match_reference(small, kernel):
    from pynq_bnn.backends.cpu import engine
    if kernel == "engine" and not engine.native_available():
        pytest.skip("native CPU engine not built")
    params, packed, expected = small
    with open_backend("mock", kernel=kernel, max_batch=4) as be:
        be.load(params)
        assert be.describe()["kernel"] == {"engine": "native engine",
                                           "reference": "numpy reference"}[kernel]
        np.testing.assert_array_equal(be.run(packed), expected)
        np.testing.assert_array_equal(be.run(packed[:1]), expected[:1])  # engine reused


def test_mock_hls_lib_kernel_when_built_else_unavailable(small):
    from pynq_bnn.backends.sim.kernel import resolve_kernel
    kernel, lib = resolve_kernel("auto")
    if lib is None:
        assert kernel in ("native engine", "numpy reference")
        with pytest.raises(BackendUnavailable, match="not built"):
            open_backend("mock", kernel="hls-lib")
        return
    params, packed, expected = small                 # the HLS C model behind the registers
    with open_backend("mock", kernel="hls-lib", max_batch=4) as be:
        be.load(params)
        assert be.describe()["kernel"] == "hls-lib"
        np.testing.assert_array_equal(be.run(packed), expected)


@pytest.mark.skipif(HAVE_PYNQ, reason="checks the pynq-free behaviour")
def test_without_pynq(caplog):
    assert available_backends() == ["cpu", "mock"]
    ok, reason = board_status()
    assert not ok and "pynq is not installed" in reason
    with caplog.at_level(logging.INFO, logger="pynq_bnn.backends"):
        with open_backend("auto") as be:
            assert be.name == "cpu"
    assert "cpu, because pynq is not installed" in caplog.text
    with pytest.raises(BackendUnavailable, match="pynq"):
        open_backend("pynq")
    with pytest.raises(BackendUnavailable, match="pynq"):
        open_backend("mock", via_pynq=True)


def test_auto_off_board_is_cpu(caplog):
    with caplog.at_level(logging.INFO, logger="pynq_bnn.backends"):
        with open_backend("auto", max_batch=8, timeout=1.0) as be:
            assert be.name == "cpu"
    assert "backend auto: cpu, because" in caplog.text
    assert "pynq" not in available_backends()


def test_importing_backends_does_not_import_pynq():
    import subprocess
    import sys
    code = ("import sys, pynq_bnn.backends, pynq_bnn.backends.driver, "
            "pynq_bnn.backends.sim.hardware; "
            "sys.exit('pynq' in sys.modules)")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    assert subprocess.run([sys.executable, "-c", code], cwd=root).returncode == 0


# ----------------------------------------------------------------------------- overlays

def test_find_overlay_messages(tmp_path, monkeypatch):
    monkeypatch.setattr(overlay_files, "OVERLAY_DIR", str(tmp_path))
    monkeypatch.setattr(overlay_files, "detect_board", lambda: None)
    with pytest.raises(BackendUnavailable, match="overlays/README.md"):
        overlay_files.find_overlay()
    with pytest.raises(BackendUnavailable, match=r"Pynq-Z2.*bnn\.bit"):
        overlay_files.find_overlay("Pynq-Z2")
    board = tmp_path / "Pynq-Z2"
    board.mkdir()
    (board / "bnn.bit").write_bytes(b"")
    with pytest.raises(BackendUnavailable, match="bnn.hwh"):
        overlay_files.find_overlay("Pynq-Z2")
    (board / "bnn.hwh").write_text("<EDKSYSTEM/>")
    assert overlay_files.find_overlay("Pynq-Z2") == str(board / "bnn.bit")
    assert overlay_files.installed_boards() == ["Pynq-Z2"]
    with pytest.raises(BackendUnavailable, match="installed: Pynq-Z2"):
        overlay_files.find_overlay("ZCU104")


def test_board_from_environment(monkeypatch):
    if HAVE_PYNQ:
        pytest.skip("pynq would be asked first")
    monkeypatch.setenv("BOARD", "Pynq-Z1")
    assert overlay_files.detect_board() == "Pynq-Z1"
    monkeypatch.delenv("BOARD")
    assert overlay_files.detect_board() is None


# ----------------------------------------------------------------------------- parameter image

@pytest.mark.parametrize("network", [SMALL, Network.half(), Network.full()],
                         ids=["small", "half", "full"])
def test_parse_param_image_round_trip(network):
    params = random_params(network, seed=5) if network is SMALL else _cheap_params(network)
    image = abi.build_param_image(params)
    model = abi.parse_param_image(image)
    assert model.network == network and model.abi_id == abi.ABI_ID
    for layer in network.binary_layers:
        a, b = params.layers[layer.name], model.layers[layer.name]
        np.testing.assert_array_equal(a.weights, b.weights)
        if not layer.last:
            assert b.thresholds.dtype == np.int32 and b.directions.dtype == np.int8
            np.testing.assert_array_equal(a.thresholds, b.thresholds)
            np.testing.assert_array_equal(a.directions, b.directions)


def _cheap_params(network):
    """Random weights and thresholds without calibration (no reference run needed)."""
    from pynq_bnn.spec.params import LayerParams, Params
    rng = np.random.default_rng(0)
    layers = {}
    for layer in network.layers:
        if layer.kind == "conv1":
            w = rng.integers(-127, 128, size=layer.weight_shape, dtype=np.int8)
        else:
            w = rng.integers(0, 2**64, size=layer.weight_shape, dtype=np.uint64)
        lp = LayerParams(w)
        if not layer.last:
            b = layer.fan_in + 1
            lp.thresholds = rng.integers(-b, b + 1, size=layer.out_channels).astype(np.int32)
            lp.directions = rng.choice(np.array([-1, 1], dtype=np.int8), size=layer.out_channels)
        layers[layer.name] = lp
    names = tuple(f"c{i}" for i in range(network.n_classes))
    ones = np.ones(network.n_classes, np.float32)
    return Params(network, names, layers, ones, ones * 0)


def test_parse_param_image_rejects_bad_images():
    image = abi.build_param_image(random_params(SMALL, seed=6))
    with pytest.raises(abi.AbiError, match="shorter"):
        abi.parse_param_image(image[:10])
    bad = image.copy()
    bad[0] = np.uint64(0x1234 | (4 << 32))
    with pytest.raises(abi.AbiError, match="ABI id"):
        abi.parse_param_image(bad)
    with pytest.raises(abi.AbiError, match="words"):
        abi.parse_param_image(image[:-8])
    bad = image.copy()
    bad[abi.DESCRIPTOR_BASE + 1] += np.uint64(64)           # conv2 in_channels
    with pytest.raises(abi.AbiError):
        abi.parse_param_image(bad)
    bad = image.copy()
    bad[abi.DESCRIPTOR_BASE + 4] = np.uint64(image.size)     # weights out of bounds
    with pytest.raises(abi.AbiError, match="outside"):
        abi.parse_param_image(bad)
    bad = image.copy()
    last = abi.DESCRIPTOR_BASE + (len(SMALL.binary_layers) - 1) * abi.DESCRIPTOR_WORDS
    bad[last] &= ~np.uint64(abi.FLAG_LAST)
    with pytest.raises(abi.AbiError, match="LAST"):
        abi.parse_param_image(bad)
