"""The board backend, unchanged, on real pynq with a simulated pynq.Device (SimDevice).

Runs only where pynq is installed (it pins numpy < 2, so not in every environment):

    python3 -m venv /tmp/venv-pynq && /tmp/venv-pynq/bin/pip install "pynq==4.0.0" pytest pillow
    PYTHONPATH=. /tmp/venv-pynq/bin/python -m pytest tests/test_pynq_sim.py

What runs for real: pynq.Overlay (HWH parsing through pynqmetadata, driver binding by VLNV),
pynq.DefaultIP / MMIO (REGISTER_RW path), pynq.allocate -> PynqBuffer (flush/invalidate/
freebuffer). Only the Device underneath is simulated.
"""
import os
import re
import shutil

import numpy as np
import pytest

pynq = pytest.importorskip("pynq")
pytestmark = pytest.mark.needs_pynq

from pynq.buffer import PynqBuffer  # noqa: E402

from helpers import SMALL  # noqa: E402
from pynq_bnn.backends import open_backend  # noqa: E402
from pynq_bnn.backends.sim.pynq_device import FIXTURE_BITSTREAM, SimDevice, activated  # noqa: E402
from pynq_bnn.errors import HardwareError, HardwareTimeout  # noqa: E402
from pynq_bnn.spec import abi, reference  # noqa: E402
from pynq_bnn.spec.first_layer import conv1_packed  # noqa: E402
from pynq_bnn.spec.network import Network  # noqa: E402
from pynq_bnn.testing import random_images, random_params  # noqa: E402


@pytest.fixture(scope="module")
def small():
    params = random_params(SMALL, seed=51)
    packed = conv1_packed(params, random_images(7, SMALL.image_size, seed=52))
    return params, packed, reference.binary_scores(params, packed)


@pytest.fixture
def sim():
    """A SimDevice as pynq's active device (as EmbeddedDevice is on a board), then restored."""
    device = SimDevice(kernel="reference")
    with activated(device):
        yield device
    assert "_active_device" not in pynq.Device.__dict__
    assert "_real_instance" not in pynq.ps.Clocks.__dict__


def test_bnn_kernel_ip_binds_by_vlnv(sim):
    from pynq_bnn.backends.pynq.ip import BnnKernelIP
    ol = pynq.Overlay(FIXTURE_BITSTREAM)
    assert ol.ip_dict["bnn_kernel_0"]["type"] == abi.KERNEL_VLNV
    ip = ol.bnn_kernel_0
    assert isinstance(ip, BnnKernelIP)
    assert ip.idle
    # pynq's own register map, built from the HWH, reaches the simulated registers
    assert int(ip.register_map.CTRL.AP_IDLE) == 1
    assert sim.downloads == 1


def test_board_backend_unchanged_on_simdevice(sim, small):
    """open_backend("pynq") exactly as on a board: no device passed, pynq's active device used."""
    params, packed, expected = small
    with open_backend("pynq", overlay=FIXTURE_BITSTREAM, max_batch=3) as be:
        assert be.name == "pynq"
        be.load(params)
        acc = be.accelerator
        assert all(type(b) is PynqBuffer for b in (acc._param_buf, acc._input_buf, acc._scores_buf))
        np.testing.assert_array_equal(be.run(packed), expected)
        d = be.describe()
        assert d["board"] == "Pynq-Z2" and d["bitstream"] == FIXTURE_BITSTREAM
        assert d["abi_id"].startswith(f"0x{abi.ABI_ID:08x}")
        assert d["pynq_version"] == pynq.__version__
        assert sim.memory.live_allocations == 3
        assert not sim.log.violations and not sim.log.errors
        assert any(e[0] == "flush" for e in sim.log.events)      # PynqBuffer.flush reached us
    assert sim.memory.live_allocations == 0                      # PynqBuffer.freebuffer too


def test_half_network_through_pynq(sim):
    params = random_params(Network.half(), seed=53)
    packed = conv1_packed(params, random_images(3, 32, seed=54))
    with open_backend("pynq", overlay=FIXTURE_BITSTREAM, max_batch=2) as be:
        be.load(params)
        np.testing.assert_array_equal(be.run(packed), reference.binary_scores(params, packed))


def test_missing_flush_with_real_pynq_buffers(sim, small, monkeypatch):
    params, packed, expected = small
    with open_backend("pynq", overlay=FIXTURE_BITSTREAM) as be:
        be.load(params)
        monkeypatch.setattr(PynqBuffer, "flush", lambda self: None)
        try:
            got = be.run(packed)
        except HardwareError:
            return
        assert not np.array_equal(got, expected)


def test_timeout_then_reset_reloads_the_overlay(sim, small):
    params, packed, expected = small
    with open_backend("pynq", overlay=FIXTURE_BITSTREAM, timeout=0.05, reset_timeout=0.05) as be:
        be.load(params)
        downloads = sim.downloads
        sim.kernel_model.faults.never_done = True
        with pytest.raises(HardwareTimeout):
            be.run(packed[:2])
        sim.kernel_model.faults.never_done = False
        be.reset()                                   # still busy -> Overlay.download()
        assert sim.downloads == downloads + 1
        np.testing.assert_array_equal(be.run(packed[:2]), expected[:2])


def test_wrong_id_through_pynq(sim, small):
    sim.kernel_model.faults.wrong_id = 0x424E0001            # a version-1 kernel
    with open_backend("pynq", overlay=FIXTURE_BITSTREAM) as be:
        with pytest.raises(HardwareError, match=r"0x424e0001 .*version 1.*0x424e0002 .*version 2"):
            be.load(small[0])
    assert sim.memory.live_allocations == 0


def test_version1_hwh_is_refused_before_any_start(sim, tmp_path):
    """A version-1 bitstream's .hwh has no params2 registers (ABI 2 appended them after
    abi_id_ctrl): the pynq backend refuses it at open, naming the missing registers, before
    the driver could start a kernel whose second parameter pointer it cannot set."""
    hwh = open(os.path.splitext(FIXTURE_BITSTREAM)[0] + ".hwh").read()
    v1 = re.sub(r'\n *<REGISTER NAME="params2_[12]">.*?</REGISTER>', "", hwh, flags=re.S)
    assert 'NAME="params2' not in v1 and v1.count("<REGISTER ") == hwh.count("<REGISTER ") - 2
    (tmp_path / "v1.hwh").write_text(v1)
    shutil.copy(FIXTURE_BITSTREAM, tmp_path / "v1.bit")
    with pytest.raises(HardwareError, match=r"params2_1 missing \(abi.py: 0x44\); "
                                            r"params2_2 missing \(abi.py: 0x48\)"):
        open_backend("pynq", overlay=str(tmp_path / "v1.bit"))


def test_register_map_mismatch_is_refused(sim, tmp_path):
    hwh = open(os.path.splitext(FIXTURE_BITSTREAM)[0] + ".hwh").read()
    marker = ('<REGISTER NAME="n_images">\n'
              '              <PROPERTY NAME="DESCRIPTION" VALUE="Data signal of n_images"/>\n'
              '              <PROPERTY NAME="ADDRESS_OFFSET" VALUE="52"/>')
    assert marker in hwh
    (tmp_path / "moved.hwh").write_text(hwh.replace(marker, marker.replace('"52"', '"56"')))
    shutil.copy(FIXTURE_BITSTREAM, tmp_path / "moved.bit")
    with pytest.raises(HardwareError, match="n_images at 0x38 in the .hwh, 0x34 in abi.py"):
        open_backend("pynq", overlay=str(tmp_path / "moved.bit"))


def test_mock_via_pynq_restores_pynq_state(small):
    params, packed, expected = small
    with open_backend("mock", via_pynq=True, kernel="reference", max_batch=4) as be:
        assert pynq.Device.active_device is be.hardware.device
        be.load(params)
        np.testing.assert_array_equal(be.run(packed), expected)
        assert be.describe()["kernel"] == "numpy reference"
    assert "_active_device" not in pynq.Device.__dict__
    assert be.memory.live_allocations == 0


def test_auto_ignores_a_simulated_device(sim):
    """auto looks for a probed pynq device (a board), not for whatever is active."""
    with open_backend("auto") as be:
        assert be.name == "cpu"
