"""The backend interfaces (backends/base.py), typed options, interrupts and deadlines.

* every backend declares the whole interface (no caller probes with hasattr);
* options are typed config objects: unknown names and out-of-range values are refused;
* timeouts are finite everywhere (an infinite one would hang for good);
* a KeyboardInterrupt inside wait() leaves the batch in flight and the queued one still runs;
  an interrupted run() does not make later calls refuse with "call reset() first";
* submit_into hands layer 1 the kernel's own DMA input buffer (no copy);
* closing a Classifier while another thread classifies waits for it, never crashes.
"""
import _thread
import threading
import time

import numpy as np
import pytest

from pynq_bnn import Classifier
from pynq_bnn.backends import (
    CpuOptions,
    MockOptions,
    PynqOptions,
    Submission,
    SubmissionState,
    open_backend,
)
from pynq_bnn.backends.base import MAX_TIMEOUT, Backend, Hardware
from pynq_bnn.backends.driver import Accelerator
from pynq_bnn.backends.sim.hardware import MockHardware
from pynq_bnn.errors import BnnError, ClosedError, HardwareTimeout
from pynq_bnn.host.layer1 import FirstLayer
from pynq_bnn.spec import reference
from pynq_bnn.spec.first_layer import conv1_packed
from pynq_bnn.spec.network import Network
from pynq_bnn.testing import random_images, random_params

SMALL = Network(conv_channels=(64, 64, 128), pool_after=(False, True, True), fc_units=(64,),
                n_classes=10, image_size=8)


@pytest.fixture(scope="module")
def small():
    params = random_params(SMALL, seed=41)
    images = random_images(12, SMALL.image_size, seed=42)
    packed = conv1_packed(params, images)
    return params, images, packed, reference.binary_scores(params, packed)


def mock(**options):
    options.setdefault("kernel", "reference")
    return open_backend("mock", **options)


def _interrupt_main_after(seconds: float) -> threading.Timer:
    timer = threading.Timer(seconds, _thread.interrupt_main)
    timer.start()
    return timer


# ----------------------------------------------------------------------------- interfaces

@pytest.mark.parametrize("name", ["mock", "cpu"])
def test_every_backend_has_the_whole_interface(name, small):
    params, _, packed, expected = small
    with open_backend(name, kernel="reference") as be:
        assert isinstance(be, Backend)
        assert be.network is None
        be.load(params)
        assert be.network == params.network
        assert isinstance(be.overlaps, bool) and be.max_batch >= 1
        sub = be.submit(packed[:3])
        assert isinstance(sub, Submission)
        np.testing.assert_array_equal(be.wait(sub), expected[:3])
        assert sub.state is SubmissionState.COLLECTED and sub.state == "collected"
        with pytest.raises(BnnError, match="waited for once"):
            be.wait(sub)
        sub = be.submit_into(2, lambda out: np.copyto(out, packed[3:5]))
        np.testing.assert_array_equal(be.wait(sub), expected[3:5])
        be.reset()
        assert be.describe()["backend"] == name
    with pytest.raises(ClosedError):
        be.run(packed[:1])


def test_hardware_objects_satisfy_the_protocol():
    hw = MockHardware()
    try:
        assert isinstance(hw, Hardware)
    finally:
        hw.close()


def test_abstract_backend_cannot_be_instantiated_half_done():
    class Half(Backend):
        def load(self, params):
            pass

    with pytest.raises(TypeError):
        Half()


def test_no_capability_probing_left_in_the_package():
    import os
    import re
    root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pynq_bnn")
    pattern = re.compile(r"(hasattr|getattr)\(\s*(be|backend|self\._backend|hw|hardware)\b")
    hits = []
    for dirpath, _, files in os.walk(root):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(dirpath, f)
                for i, line in enumerate(open(path, encoding="utf-8"), 1):
                    if pattern.search(line):
                        hits.append(f"{path}:{i}: {line.strip()}")
    assert not hits, "\n".join(hits)


# ----------------------------------------------------------------------------- options

def test_options_are_typed_and_checked():
    with pytest.raises(TypeError, match="no option.*bogus.*it takes"):
        open_backend("mock", bogus=1)
    with pytest.raises(TypeError, match="no option"):
        open_backend("cpu", bogus=1)
    with pytest.raises(ValueError, match="max_batch"):
        MockOptions(max_batch=0)
    with pytest.raises(TypeError, match="either"):
        open_backend("mock", MockOptions(), kernel="reference")
    be = open_backend("mock", MockOptions(kernel="reference", max_batch=3))
    with be:
        assert be.max_batch == 3 and "reference" in be.sim.kernel
    with open_backend("cpu", overlay="ignored.bit", timeout=5) as be:   # the auto fallback's case
        assert be.name == "cpu"
    assert CpuOptions().engine is True and PynqOptions().lock is True


@pytest.mark.parametrize("bad", [float("inf"), float("nan"), 0, -1, MAX_TIMEOUT * 2, "soon"])
def test_timeouts_are_finite_everywhere(bad, small):
    params, _, packed, _ = small
    with pytest.raises(ValueError, match="timeout"):
        open_backend("mock", kernel="reference", timeout=bad)
    hw = MockHardware(kernel="reference")
    try:
        with pytest.raises(ValueError, match="timeout"):
            Accelerator(hw, timeout=bad)
    finally:
        hw.close()
    with mock() as be:
        be.load(params)
        sub = be.submit(packed[:1])
        with pytest.raises(ValueError, match="timeout"):
            be.wait(sub, timeout=bad)
        be.wait(sub)


# ----------------------------------------------------------------------------- interrupts

def test_interrupt_inside_wait_keeps_the_batch_and_the_queue(small):
    params, _, packed, expected = small
    with mock(max_batch=4, faults={"latency": 0.4}) as be:
        be.load(params)
        a = be.submit(packed[:4])
        b = be.submit(packed[4:8])             # queued behind a
        timer = _interrupt_main_after(0.1)
        with pytest.raises(KeyboardInterrupt):
            be.wait(a)
        timer.join()
        assert be.accelerator.in_flight == 2   # neither batch was dropped
        np.testing.assert_array_equal(be.wait(a), expected[:4])   # a again: its scores
        np.testing.assert_array_equal(be.wait(b), expected[4:8])  # and b did start
        np.testing.assert_array_equal(be.run(packed[:2]), expected[:2])
        assert not be.log.violations


def test_interrupted_run_does_not_need_reset(small):
    params, _, packed, expected = small
    with mock(max_batch=4, faults={"latency": 0.3}) as be:
        be.load(params)
        timer = _interrupt_main_after(0.1)
        with pytest.raises(KeyboardInterrupt):
            be.run(packed[:4])
        timer.join()
        be.sim.faults.latency = 0.0
        np.testing.assert_array_equal(be.run(packed[:3]), expected[:3])   # no "reset() first"
        assert not be.log.violations               # it waited for the interrupted start


def test_a_real_timeout_still_needs_reset(small):
    params, _, packed, expected = small
    with mock(timeout=0.2) as be:
        be.load(params)
        be.sim.faults.never_done = True
        with pytest.raises(HardwareTimeout):
            be.run(packed[:1])
        be.sim.faults.never_done = False
        with pytest.raises(BnnError, match="reset"):
            be.run(packed[:1])
        be.reset()
        np.testing.assert_array_equal(be.run(packed[:1]), expected[:1])


# ----------------------------------------------------------------------------- no copy

def test_submit_into_writes_straight_into_the_dma_buffer(small):
    params, images, packed, expected = small
    layer1 = FirstLayer(params)
    seen = []

    def fill(view):
        seen.append(view)
        layer1(images[:4], out=view)

    with mock(max_batch=4) as be:
        be.load(params)
        sub = be.submit_into(4, fill)
        dma_input = be.accelerator._slots[sub.slot][0]
        assert np.shares_memory(seen[0], dma_input)
        assert seen[0].flags.c_contiguous and seen[0].dtype == np.uint64
        np.testing.assert_array_equal(be.wait(sub), expected[:4])


def test_classifier_overlaps_on_the_accelerator_and_matches_sequential(small):
    params, images, _, expected = small
    with Classifier(params, backend="mock", kernel="reference", max_batch=4) as c:
        starts = c.backend.sim.starts
        r = c.classify(images)
        assert c.backend.sim.starts - starts == 3         # 12 images in batches of 4
        assert c.backend.accelerator._slots[1] is not None   # both buffer sets were in flight
        assert not c.backend.log.violations
    with Classifier(params, backend="mock", kernel="reference", max_batch=4, overlap="none") as c:
        r2 = c.classify(images)
    np.testing.assert_array_equal(r.scores, r2.scores)
    np.testing.assert_array_equal(r.scores, expected)


def test_close_while_another_thread_classifies_waits(small):
    params, images, _, _ = small
    c = Classifier(params, backend="mock", kernel="reference", max_batch=2,
                   faults={"latency": 0.05})
    c.open()
    errors = []

    def work():
        try:
            for _ in range(5):
                c.classify(images)
        except ClosedError:
            pass                    # refused after close: allowed
        except BaseException as e:  # anything else is a failure
            errors.append(e)

    t = threading.Thread(target=work)
    t.start()
    time.sleep(0.1)
    c.close()                       # must wait for the running call, not free its buffers
    t.join(30)
    assert not t.is_alive() and not errors
    with pytest.raises(ClosedError):
        c.classify(images[:1])


def test_a_version_1_register_map_is_named_as_such():
    from pynq_bnn.backends.pynq.hardware import check_register_map
    from pynq_bnn.errors import HardwareError
    from pynq_bnn.spec import abi
    v1 = {n: {"address_offset": o} for n, o in abi.HWH_REGISTER_NAMES.items()
          if o <= abi.ABI_ID_CTRL}
    with pytest.raises(HardwareError, match=r"params2_1 missing.*ABI version 1.*needs version 2"):
        check_register_map(v1)
    moved = dict(v1, n_images={"address_offset": abi.N_IMAGES + 4})
    with pytest.raises(HardwareError) as e:
        check_register_map(moved)
    assert "version 1" not in str(e.value)          # not just the missing v2 registers
    assert check_register_map({n: {"address_offset": o} for n, o in abi.HWH_REGISTER_NAMES.items()})


@pytest.mark.parametrize("bad", [8.9, "8", True, None, 32.5])
def test_network_refuses_values_int_would_truncate(bad):
    from pynq_bnn.errors import NetworkError
    with pytest.raises(NetworkError, match="image_size"):
        Network(image_size=bad)
    assert Network(image_size=np.int64(32)).image_size == 32 == Network(image_size=32.0).image_size
