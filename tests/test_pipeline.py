"""Overlapped layer 1 + accelerator (pynq_bnn.host.pipeline) and the driver's submit/wait protocol.

Exactness only: overlapped scores equal sequential ones (and the numpy reference) on the mock
and the cpu backend, leftover batches included; at most two batches in flight; errors reach
the caller and leave no batch in flight. No timing assertions (the benchmarks measure speed).
"""
import json
import os

import numpy as np
import pytest

from helpers import SMALL
from pynq_bnn.backends import open_backend
from pynq_bnn.backends.driver import Submission
from pynq_bnn.errors import BnnError, HardwareError, HardwareTimeout, ImageError
from pynq_bnn.host.layer1 import FirstLayer, writing_into
from pynq_bnn.host.pipeline import overlap_mode, run_pipelined, run_sequential
from pynq_bnn.spec import abi, reference
from pynq_bnn.spec.first_layer import conv1_packed
from pynq_bnn.spec.network import Network
from pynq_bnn.testing import random_images, random_params
from pynq_bnn.tools.bench import CYCLE_ESTIMATE_DIRS, bench_report, cycle_estimate, format_report


@pytest.fixture(scope="module")
def small():
    params = random_params(SMALL, seed=21)
    images = random_images(23, SMALL.image_size, seed=22)
    packed = conv1_packed(params, images)
    return params, images, packed, reference.binary_scores(params, packed)


def mock(**options):
    options.setdefault("kernel", "reference")
    return open_backend("mock", **options)


# ----------------------------------------------------------------------------- pipeline

@pytest.mark.parametrize("n,batch", [(23, 4), (23, 23), (8, 4), (1, 4), (5, 64), (0, 4)])
@pytest.mark.parametrize("interrupt", [False, True])
def test_overlapped_equals_sequential_on_mock(small, n, batch, interrupt):
    params, images, _, expected = small
    layer1 = FirstLayer(params)
    with mock(max_batch=min(batch, 16), interrupt=interrupt,
              faults={"latency_per_image": 2e-4}) as be:
        be.load(params)
        seq = run_sequential(images[:n], layer1, be, batch)
        pipe, t = run_pipelined(images[:n], layer1, be, batch, return_timings=True)
        assert pipe.dtype == np.int32 and pipe.shape == (n, SMALL.n_classes)
        np.testing.assert_array_equal(seq, expected[:n])
        np.testing.assert_array_equal(pipe, expected[:n])
        assert set(t) == {"layer1", "wait", "transfer", "kernel", "total"}
        assert be.accelerator.in_flight == 0
        assert not be.log.violations          # never AP_START or an argument write while busy
        assert not be.log.errors


@pytest.mark.parametrize("mode", ["auto", "thread", "none"])
def test_overlapped_equals_sequential_on_cpu(small, mode):
    params, images, _, expected = small
    with open_backend("cpu") as be:
        be.load(params)
        assert overlap_mode(be) == "none"           # the engine already fills the cores
        for n, batch in ((23, 4), (23, 5), (3, 64), (0, 4)):
            got = run_pipelined(images[:n], FirstLayer(params), be, batch, mode=mode)
            np.testing.assert_array_equal(got, expected[:n])


def test_thread_mode_on_the_mock_and_spec_layer1(small):
    params, images, _, expected = small
    with mock(max_batch=4) as be:
        be.load(params)
        assert overlap_mode(be) == "submit"
        spec = writing_into(lambda x: conv1_packed(params, x))
        np.testing.assert_array_equal(run_pipelined(images, spec, be, 4, mode="thread"), expected)
        np.testing.assert_array_equal(run_pipelined(images, spec, be, mode="submit"), expected)


def test_batch_is_capped_at_max_batch(small):
    params, images, _, expected = small
    with mock(max_batch=3) as be:
        be.load(params)
        np.testing.assert_array_equal(run_pipelined(images, FirstLayer(params), be, 100), expected)
        assert all(e[1] <= 3 for e in be.log.events if e[0] == "start")


def test_bad_arguments(small):
    params, images, _, _ = small
    with mock() as be:
        be.load(params)
        with pytest.raises(ValueError, match="mode"):
            run_pipelined(images, FirstLayer(params), be, mode="fast")
        with pytest.raises(ValueError, match="uint8"):
            run_pipelined(images.astype(np.float32), FirstLayer(params), be)
        with pytest.raises(ValueError, match="batch"):
            run_pipelined(images, FirstLayer(params), be, batch=0)


def test_layer1_error_mid_pipeline_leaves_nothing_in_flight(small):
    params, images, _, expected = small
    layer1 = FirstLayer(params)
    calls = []

    def failing(x, out=None):
        calls.append(len(x))
        if len(calls) == 3:
            raise RuntimeError("layer 1 failed")
        return layer1(x, out=out)

    with mock(max_batch=4, faults={"latency_per_image": 1e-3}) as be:
        be.load(params)
        with pytest.raises(RuntimeError, match="layer 1 failed"):
            run_pipelined(images, failing, be, 4)
        assert be.accelerator.in_flight == 0
        np.testing.assert_array_equal(run_pipelined(images, layer1, be, 4), expected)


def test_backend_error_mid_pipeline_propagates(small):
    params, images, _, expected = small
    with mock(max_batch=4) as be:
        be.load(params)
        be.sim.faults.corrupt_output = True
        with pytest.raises(HardwareError, match="impossible output"):
            run_pipelined(images, FirstLayer(params), be, 4)
        assert be.accelerator.in_flight == 0
        be.sim.faults.corrupt_output = False
        np.testing.assert_array_equal(run_pipelined(images, FirstLayer(params), be, 4), expected)


# ----------------------------------------------------------------------------- submit / wait

def test_two_in_flight_then_a_third_is_refused(small):
    params, _, packed, expected = small
    with mock(max_batch=8) as be:
        be.load(params)
        acc = be.accelerator
        be.sim.faults.latency = 0.3              # a runs long enough to queue b behind it
        a = be.submit(packed[:8])
        be.sim.faults.latency = 0.0
        b = be.submit(packed[8:16])
        assert isinstance(a, Submission) and acc.in_flight == 2
        assert a.slot != b.slot
        assert a.state == "running" and b.state == "queued"   # one kernel, one start at a time
        with pytest.raises(BnnError, match="in flight"):
            be.submit(packed[16:20])
        assert acc.in_flight == 2
        np.testing.assert_array_equal(be.wait(a), expected[:8])
        c = be.submit(packed[16:23])                           # a's buffer set is free again
        assert c.slot == a.slot
        np.testing.assert_array_equal(be.wait(b), expected[8:16])
        np.testing.assert_array_equal(be.wait(c), expected[16:23])
        assert acc.in_flight == 0
        assert be.sim.starts == 4                              # the probe + three batches
        assert not be.log.violations
        assert set(a.timings) == {"transfer", "kernel"} and a.state == "collected"


def test_wait_newest_first(small):
    params, _, packed, expected = small
    with mock(max_batch=8, interrupt=True, faults={"latency": 2e-3}) as be:
        be.load(params)
        a = be.submit(packed[:5])
        b = be.submit(packed[5:13])
        np.testing.assert_array_equal(be.wait(b), expected[5:13])   # a finishes, b starts
        assert a.state == "done"
        np.testing.assert_array_equal(be.wait(a), expected[:5])
        assert not be.log.violations


def test_submit_returns_while_the_kernel_runs(small):
    params, _, packed, expected = small
    with mock(max_batch=8, faults={"latency_per_image": 60.0}) as be:   # a minute per image
        be.load(params)
        sub = be.submit(packed[:2])              # would block for two minutes if it slept
        assert be.sim.busy and be.hardware.read(abi.CTRL) & abi.AP_IDLE == 0
        be.sim.faults.latency_per_image = 0.0
        be.reset()                               # the "reload": drops the batch
        with pytest.raises(HardwareError, match="reset"):
            be.wait(sub)
        np.testing.assert_array_equal(be.wait(be.submit(packed[:2])), expected[:2])


def test_each_submission_is_waited_for_once(small):
    params, _, packed, _ = small
    with mock(max_batch=8) as be:
        be.load(params)
        sub = be.submit(packed[:3])
        be.wait(sub)
        with pytest.raises(BnnError, match="once"):
            be.wait(sub)
    with mock(max_batch=8) as be2, mock(max_batch=8) as be3:
        be2.load(params)
        be3.load(params)
        sub = be2.submit(packed[:1])
        with pytest.raises(BnnError, match="not a batch in flight"):
            be3.wait(sub)
        be2.wait(sub)


def test_run_and_load_refused_while_in_flight(small):
    params, _, packed, expected = small
    with mock(max_batch=8) as be:
        be.load(params)
        sub = be.submit(packed[:4])
        with pytest.raises(BnnError, match="in flight"):
            be.run(packed[:1])
        with pytest.raises(BnnError, match="in flight"):
            be.load(params)
        np.testing.assert_array_equal(be.wait(sub), expected[:4])
        np.testing.assert_array_equal(be.run(packed), expected)   # run() works again


def test_submit_validates_its_batch(small):
    params, _, packed, _ = small
    with mock(max_batch=4) as be:
        with pytest.raises(BnnError, match="no model"):
            be.submit(packed[:1])
        be.load(params)
        with pytest.raises(ValueError, match="1..4"):
            be.submit(packed[:5])
        with pytest.raises(ValueError, match="1..4"):
            be.submit(packed[:0])
        with pytest.raises(ImageError):
            be.submit(packed[:2].astype(np.int64))
        assert be.accelerator.in_flight == 0 and be.sim.starts == 1


def test_bad_scores_raise_and_free_the_buffer_set(small):
    params, _, packed, expected = small
    with mock(max_batch=8) as be:
        be.load(params)
        be.sim.faults.corrupt_output = True
        a = be.submit(packed[:3])
        b = be.submit(packed[3:6])
        with pytest.raises(HardwareError, match="impossible output"):
            be.wait(a)
        assert be.accelerator.in_flight == 1 and a.state == "failed"
        be.sim.faults.corrupt_output = False
        c = be.submit(packed[6:9])
        with pytest.raises(HardwareError):
            be.wait(b)                        # b ran with the fault still set
        np.testing.assert_array_equal(be.wait(c), expected[6:9])
        assert be.accelerator.in_flight == 0


def test_timeout_drops_every_batch_until_reset(small):
    params, _, packed, expected = small
    with mock(max_batch=8, timeout=0.05) as be:
        be.load(params)
        be.sim.faults.never_done = True
        a = be.submit(packed[:2])
        b = be.submit(packed[2:4])
        with pytest.raises(HardwareTimeout):
            be.wait(a)
        assert be.accelerator.in_flight == 0 and be.accelerator.busy
        with pytest.raises(HardwareTimeout):
            be.wait(b)                        # dropped with the same error
        with pytest.raises(HardwareError, match="reset"):
            be.submit(packed[:1])
        be.sim.faults.never_done = False
        be.reset()
        np.testing.assert_array_equal(be.wait(be.submit(packed[:4])), expected[:4])


def test_buffers_second_set_lazily_and_all_freed(small):
    params, _, packed, _ = small
    be = mock(max_batch=8)
    be.load(params)
    be.sim.faults.latency = 10.0
    assert be.memory.live_allocations == 3            # params, input, scores (as before)
    be.submit(packed[:2])
    be.submit(packed[2:4])
    assert be.memory.live_allocations == 5            # + the second input and scores set
    be.close()                                        # both in flight: reset, then free
    assert be.memory.live_allocations == 0 and not be.sim.busy


def test_submit_wait_through_real_pynq(small):
    pytest.importorskip("pynq")
    params, images, _, expected = small
    with open_backend("mock", via_pynq=True, kernel="reference", max_batch=4,
                      faults={"latency_per_image": 1e-4}) as be:
        be.load(params)
        np.testing.assert_array_equal(run_pipelined(images, FirstLayer(params), be, 4), expected)
        assert not be.log.violations


# ----------------------------------------------------------------------------- bench report

def test_cycle_estimate_is_labelled_and_the_shipped_copy_is_current():
    est = cycle_estimate()
    if est is None:
        pytest.skip("no cycle estimate in this tree")
    assert est["kind"] == "ESTIMATE" and "ESTIMATE" in est["caveat"]
    source_dir, shipped_dir = CYCLE_ESTIMATE_DIRS
    sources = sorted(f for f in os.listdir(source_dir) if f.startswith("cycle_estimate")) \
        if os.path.isdir(source_dir) else []
    for name in sources:  # every estimate in the source tree ships, identical
        source, shipped = os.path.join(source_dir, name), os.path.join(shipped_dir, name)
        assert os.path.isfile(shipped), f"{shipped} missing: copy {source} there"
        with open(source) as f, open(shipped) as g:
            assert json.load(f) == json.load(g), (
                f"{shipped} is stale: copy {source} over it (make -C hls_src estimate)")


def test_cycle_estimate_follows_the_model_topology():
    full = cycle_estimate(network=Network.full())
    if full is None:
        pytest.skip("no cycle estimate in this tree")
    half = cycle_estimate(network=Network.half())
    assert (full["case"], full["network_matches"]) == ("full_b16", True)
    assert (half["case"], half["network_matches"]) == ("half_b16", True)
    assert half["batch1_ms_per_image"] < full["batch1_ms_per_image"]
    other = cycle_estimate(network=Network(conv_channels=(64, 64), pool_after=(False, True),
                                           fc_units=(), image_size=8))
    assert (other["case"], other["network_matches"]) == ("full_b16", False)


@pytest.mark.slow
def test_bench_report_smoke(small):
    params, _, _, _ = small
    report = bench_report("mock", batch=4, model=params, n_batches=2, rounds=1)
    assert report["pipeline"]["scores_identical"] is True
    assert report["pipeline"]["overlap_mode"] == "submit"
    assert {"batch1", "batch4"} <= set(report["driver_overhead"])
    json.dumps(report)
    text = format_report(report)
    assert "overlapped" in text and "ESTIMATE" in text or "estimate" in text
    cpu = bench_report("cpu", batch=4, model=params, n_batches=2, rounds=1)
    assert cpu["pipeline"]["overlap_mode"] == "thread" and "driver_overhead" not in cpu
