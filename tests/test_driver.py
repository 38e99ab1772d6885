"""pynq_bnn.backends.driver on the simulated accelerator (pynq-free mock): exact scores, the HLS
register protocol, cache maintenance, buffer lifetime, fault handling.

The mock runs the numpy reference inside the simulated kernel, so every test here also checks
that the driver, the parameter image (abi.build_param_image / parse_param_image) and the
reference agree bit for bit.
"""
import time

import numpy as np
import pytest

from helpers import SMALL
from pynq_bnn.backends import open_backend
from pynq_bnn.backends.driver import SCORE_POISON, Accelerator, describe_abi_id
from pynq_bnn.backends.sim.hardware import MockHardware, SimBuffer
from pynq_bnn.errors import BnnError, HardwareError, HardwareTimeout, ImageError, ParamsError
from pynq_bnn.spec import abi, reference
from pynq_bnn.spec.first_layer import conv1_packed
from pynq_bnn.spec.network import Network
from pynq_bnn.testing import random_images, random_params

# A small network with every feature (pooling convs, two dense layers) that runs in ms.


@pytest.fixture(scope="module")
def small():
    params = random_params(SMALL, seed=11)
    packed = conv1_packed(params, random_images(64, SMALL.image_size, seed=12))
    return params, packed, reference.binary_scores(params, packed)


def mock(**options):
    options.setdefault("kernel", "reference")
    return open_backend("mock", **options)


# ----------------------------------------------------------------------------- exact scores

@pytest.mark.parametrize("n", [1, 7, 64])
@pytest.mark.parametrize("max_batch", [64, 5])
def test_small_network_exact(small, n, max_batch):
    params, packed, expected = small
    with mock(max_batch=max_batch) as be:
        be.load(params)
        got = be.run(packed[:n])
        assert got.dtype == np.int32 and got.shape == (n, SMALL.n_classes)
        np.testing.assert_array_equal(got, expected[:n])
        assert be.sim.starts == 1 + -(-n // max_batch)  # the probe + one per chunk
        assert not be.log.violations and not be.log.errors
        t = be.last_timings
        assert set(t) == {"transfer", "kernel"} and t["transfer"] > 0 and t["kernel"] > 0


def test_half_network_exact():
    params = random_params(Network.half(), seed=21)
    packed = conv1_packed(params, random_images(7, 32, seed=22))
    with mock(max_batch=4) as be:
        be.load(params)
        np.testing.assert_array_equal(be.run(packed), reference.binary_scores(params, packed))


def test_full_network_exact():
    params = random_params(Network.full(), seed=31)
    packed = conv1_packed(params, random_images(2, 32, seed=32))
    with mock(max_batch=1) as be:
        be.load(params)
        np.testing.assert_array_equal(be.run(packed), reference.binary_scores(params, packed))


def test_empty_batch_starts_nothing(small):
    params, packed, _ = small
    with mock() as be:
        be.load(params)
        starts = be.sim.starts
        out = be.run(packed[:0])
        assert out.shape == (0, SMALL.n_classes) and out.dtype == np.int32
        assert be.sim.starts == starts


def test_second_model_replaces_first(small):
    params, packed, expected = small
    other = random_params(SMALL, seed=99)
    with mock() as be:
        be.load(other)
        be.load(params)
        np.testing.assert_array_equal(be.run(packed[:3]), expected[:3])
        assert be.memory.live_allocations == 3


def test_bad_input_refused(small):
    params, packed, _ = small
    with mock() as be:
        with pytest.raises(BnnError, match="load"):
            be.run(packed[:1])
        be.load(params)
        with pytest.raises(ImageError, match="dtype"):
            be.run(packed[:1].astype(np.int64))
        with pytest.raises(ImageError, match="shape"):
            be.run(packed[:1, :4])


def test_network_beyond_kernel_limits_is_a_params_error(small, monkeypatch):
    params = small[0]
    monkeypatch.setattr(abi, "MAX_CLASSES", 4)
    with mock() as be, pytest.raises(ParamsError, match="classes"):
        be.load(params)
    assert be.memory.live_allocations == 0


# ----------------------------------------------------------------------------- protocol

def test_probe_register_traffic_is_exact(small):
    """load(): one probe start with n_images=0, then the ABI id check (exact sequence)."""
    params = small[0]
    with mock() as be:
        be.log.clear()
        be.load(params)
        acc = be.accelerator
        bufs = (acc._param_buf, acc._input_buf, acc._scores_buf)
        addr = [int(b.device_address) for b in bufs]
        assert all(a >> 32 for a in addr), "the mock places buffers above 4 GiB"
        writes = []
        for (lo, hi), a in zip(((abi.PARAMS_LO, abi.PARAMS_HI), (abi.INPUT_LO, abi.INPUT_HI),
                                (abi.SCORES_LO, abi.SCORES_HI), (abi.PARAMS2_LO, abi.PARAMS2_HI)),
                               addr + addr[:1]):   # ABI 2: params2 = the parameter buffer
            writes += [(lo, a & 0xFFFFFFFF), (hi, a >> 32)]
        writes += [(abi.N_IMAGES, 0), (abi.CTRL, abi.AP_START)]
        idle = abi.AP_IDLE
        reads = [(abi.CTRL, idle), (abi.CTRL, abi.AP_DONE | abi.AP_IDLE | abi.AP_READY),
                 (abi.ABI_ID_REG, abi.ABI_ID), (abi.ABI_ID_CTRL, 1)]
        be.log.check_transactions(reads=reads, writes=writes)
        assert be.accelerator.abi_id == abi.ABI_ID


def test_run_follows_the_hls_protocol(small):
    """Per start: idle seen, inputs flushed, every argument written, AP_START, AP_DONE seen,
    and only then the scores invalidated. Chunks of 3 over 7 images (3 + 3 + 1)."""
    params, packed, expected = small
    with mock(max_batch=3) as be:
        be.load(params)
        be.log.clear()
        np.testing.assert_array_equal(be.run(packed[:7]), expected[:7])
        acc = be.accelerator
        in_addr, sc_addr = int(acc._input_buf.device_address), int(acc._scores_buf.device_address)
        ev = be.log.events
        starts = [i for i, e in enumerate(ev)
                  if e[0] == "write" and e[1] == abi.CTRL and e[2] & abi.AP_START]
        assert len(starts) == 3
        prev = 0
        for k, s in enumerate(starts):
            n = (3, 3, 1)[k]
            before = ev[prev:s]
            flushed = [e for e in before if e[0] == "flush"]
            assert ("flush", in_addr, n * SMALL.input_words_per_image * 8) in flushed
            assert ("flush", sc_addr, n * SMALL.n_classes * 4) in flushed
            written = {e[1]: e[2] for e in before if e[0] == "write"}
            assert written[abi.N_IMAGES] == n
            for lo, hi, a in ((abi.INPUT_LO, abi.INPUT_HI, in_addr),
                              (abi.SCORES_LO, abi.SCORES_HI, sc_addr)):
                assert (written[lo], written[hi]) == (a & 0xFFFFFFFF, a >> 32)
            assert abi.PARAMS_LO in written and abi.PARAMS_HI in written
            assert (written[abi.PARAMS2_LO], written[abi.PARAMS2_HI]) == \
                (written[abi.PARAMS_LO], written[abi.PARAMS_HI])
            ctrl_reads = [e for e in before if e[0] == "read" and e[1] == abi.CTRL]
            assert ctrl_reads and ctrl_reads[-1][2] & abi.AP_IDLE, "start without seeing idle"
            # after the start: AP_DONE read before the invalidate of the scores
            after = ev[s:starts[k + 1] if k + 1 < len(starts) else len(ev)]
            done_at = next(i for i, e in enumerate(after)
                           if e[0] == "read" and e[1] == abi.CTRL and e[2] & abi.AP_DONE)
            inval_at = next(i for i, e in enumerate(after) if e[0] == "invalidate")
            assert done_at < inval_at
            assert after[inval_at] == ("invalidate", sc_addr, n * SMALL.n_classes * 4)
            prev = s
        assert not be.log.violations


def test_driver_writes_params2_at_every_start(small):
    """ABI 2: params2 (0x44/0x48) holds the parameter buffer's address at every start, probe
    included, written before AP_START."""
    params, packed, expected = small
    with mock(max_batch=4) as be:
        be.load(params)
        np.testing.assert_array_equal(be.run(packed[:6]), expected[:6])
        a = int(be.accelerator._param_buf.device_address)
        assert a >> 32, "the mock places buffers above 4 GiB: the high word matters"
        assert (abi.PARAMS2_LO, abi.PARAMS2_HI) == (0x44, 0x48)
        ev = be.log.events
        starts = [i for i, e in enumerate(ev)
                  if e[:2] == ("write", abi.CTRL) and e[2] & abi.AP_START]
        assert len(starts) == 3                       # the probe + two chunks
        prev = 0
        for s in starts:
            written = {e[1]: e[2] for e in ev[prev:s] if e[0] == "write"}
            assert (written[abi.PARAMS2_LO], written[abi.PARAMS2_HI]) == abi.split64(a)
            prev = s
        assert not be.log.violations and not be.log.errors


def _start_with_params2(be, packed, value):
    """One start with the driver's arguments, but params2 = ``value`` (None: never written)."""
    hw = be.hardware
    real = hw.write

    def write(offset, v):
        if offset in (abi.PARAMS2_LO, abi.PARAMS2_HI):
            if value is None:
                return
            v = abi.split64(value)[offset == abi.PARAMS2_HI]
        real(offset, v)
    hw.write = write
    try:
        with pytest.raises(HardwareError, match="did not write|impossible output"):
            be.run(packed[:2])
    finally:
        del hw.write


@pytest.mark.parametrize("where", ["unset", "zero", "outside", "input", "other image"])
def test_mock_refuses_a_start_whose_params2_is_wrong(small, where):
    """The simulated IP reads params2 at AP_START: unset, 0, outside every allocation or not
    the parameter image is a bus error (no scores; the driver's poison check names it)."""
    params, packed, _ = small
    with mock() as be:
        be.load(params)
        acc = be.accelerator
        be.log.clear()
        other = None
        if where == "other image":   # a valid allocation holding another model's image
            image = abi.build_param_image(random_params(SMALL, seed=98))
            other = be.hardware.allocate(image.shape, np.uint64)
            other[:] = image
            other.flush()
        if where == "unset":         # power-on registers: params2 never written since
            be.sim.reset()
        value = {"unset": None, "zero": 0, "outside": 0x10,
                 "input": int(acc._input_buf.device_address),
                 "other image": other is not None and int(other.device_address)}[where]
        _start_with_params2(be, packed, value)
        if other is not None:
            other.freebuffer()
        assert any("no scores written" in e for e in be.log.errors), be.log.errors
        if where == "unset":
            assert any("0x44" in v and "0x48" in v for v in be.log.violations), be.log.violations


def test_mock_accepts_params2_on_an_identical_copy(small):
    """params2 on another buffer holding the same image is what the kernel can run (it only
    reads the same words through another port)."""
    params, packed, expected = small
    with mock() as be:
        be.load(params)
        image = abi.build_param_image(params)
        copy = be.hardware.allocate(image.shape, np.uint64)
        copy[:] = image
        copy.flush()
        real = be.hardware.write

        def write(offset, v):
            if offset in (abi.PARAMS2_LO, abi.PARAMS2_HI):
                v = abi.split64(int(copy.device_address))[offset == abi.PARAMS2_HI]
            real(offset, v)
        be.hardware.write = write
        np.testing.assert_array_equal(be.run(packed[:3]), expected[:3])
        assert not be.log.errors
        copy.freebuffer()


def test_register_writes_are_python_ints_of_32_bits():
    hw = MockHardware(kernel="reference")
    with pytest.raises(ValueError, match="int"):
        hw.write(abi.N_IMAGES, np.uint32(1))
    with pytest.raises(ValueError, match="32 bits"):
        hw.write(abi.PARAMS_LO, 1 << 32)


def test_refuses_to_start_while_busy(small):
    params, packed, expected = small
    with mock(timeout=2.0) as be:
        be.load(params)
        be.sim.faults.latency = 0.5
        be.hardware.write(abi.CTRL, abi.AP_START)   # someone else starts the kernel
        with pytest.raises(HardwareError, match="busy"):
            be.run(packed[:1])
        assert not be.log.violations                 # the driver never wrote AP_START
        be.sim.faults.latency = 0.0
        time.sleep(0.5)
        np.testing.assert_array_equal(be.run(packed[:2]), expected[:2])


def test_interrupt_path(small):
    params, packed, expected = small
    with mock(interrupt=True, max_batch=4, faults={"latency": 0.02}) as be:
        be.load(params)
        be.log.clear()
        np.testing.assert_array_equal(be.run(packed[:5]), expected[:5])
        writes = be.log.writes
        assert (abi.GIER, 1) in writes and (abi.IP_IER, 1) in writes
        assert writes.count((abi.IP_ISR, 1)) >= 2        # ISR cleared after each start
        assert be.describe()["interrupt"] is True
    with mock(interrupt=True, use_interrupt=False) as be:
        be.load(params)
        assert (abi.GIER, 1) not in be.log.writes


# ----------------------------------------------------------------------------- cache maintenance

def test_missing_input_flush_gives_wrong_scores(small, monkeypatch):
    params, packed, expected = small
    with mock() as be:
        be.load(params)
        monkeypatch.setattr(SimBuffer, "flush", lambda self: None)
        got = be.run(packed[:7])          # DDR holds garbage, not the images
        assert not np.array_equal(got, expected[:7])


def test_missing_parameter_flush_is_caught(small, monkeypatch):
    params, packed, _ = small
    monkeypatch.setattr(SimBuffer, "flush", lambda self: None)
    with mock() as be:
        be.load(params)                   # the probe reads no parameters
        with pytest.raises(HardwareError, match="impossible output"):
            be.run(packed[:2])
        assert any("no scores written" in e for e in be.log.errors)


def test_missing_invalidate_is_caught(small, monkeypatch):
    params, packed, _ = small
    with mock() as be:
        be.load(params)
        monkeypatch.setattr(SimBuffer, "invalidate", lambda self: None)
        with pytest.raises(HardwareError, match="did not write"):
            be.run(packed[:2])            # the host still sees the poison


def test_invalidate_before_done_reads_stale_data(small):
    """The simulated kernel commits its scores at completion, not at start."""
    params, packed, _ = small
    with mock(faults={"latency": 0.2}) as be:
        be.load(params)
        acc = be.accelerator
        acc._scores_buf[:1] = SCORE_POISON
        acc._scores_buf[:1].flush()
        acc._input_buf[:1] = packed[:1].reshape(1, -1)
        acc._input_buf[:1].flush()
        acc._start(1)
        acc._scores_buf[:1].invalidate()
        assert np.all(acc._scores_buf[:1] == SCORE_POISON)
        assert acc._poll_until(lambda: bool(acc._read_ctrl() & abi.AP_DONE), time.monotonic() + 5)
        acc._scores_buf[:1].invalidate()
        np.testing.assert_array_equal(acc._scores_buf[:1],
                                      reference.binary_scores(params, packed[:1]))


# ----------------------------------------------------------------------------- lifetime

def test_no_buffer_outlives_close(small):
    params, packed, _ = small
    be = mock()
    be.load(params)
    be.run(packed[:3])
    assert be.memory.live_allocations == 3
    be.close()
    assert be.memory.live_allocations == 0
    be.close()                                 # idempotent
    with pytest.raises(BnnError, match="closed"):
        be.run(packed[:1])
    with mock() as be2:
        be2.load(params)
    assert be2.closed and be2.memory.live_allocations == 0


def test_failed_load_frees_its_buffers(small):
    with mock(faults={"wrong_id": 0x424E0001}) as be:     # a version-1 bitstream
        with pytest.raises(HardwareError):
            be.load(small[0])
        assert be.memory.live_allocations == 0


def test_accelerator_directly_as_context_manager(small):
    params, packed, expected = small
    hw = MockHardware(kernel="reference")
    with Accelerator(hw, max_batch=8) as acc:
        acc.load(params)
        np.testing.assert_array_equal(acc.run(packed[:9]), expected[:9])
    assert hw.memory.live_allocations == 0
    with pytest.raises(ValueError):
        Accelerator(hw, max_batch=0)


# ----------------------------------------------------------------------------- faults

def test_never_done_times_out_quickly_then_reset_recovers(small):
    params, packed, expected = small
    with mock(timeout=0.05) as be:
        be.load(params)
        be.sim.faults.never_done = True
        t0 = time.monotonic()
        with pytest.raises(HardwareTimeout, match="reset"):
            be.run(packed[:2])
        assert time.monotonic() - t0 < 1.0
        assert isinstance(HardwareTimeout("x"), TimeoutError)
        with pytest.raises(HardwareError, match="reset"):
            be.run(packed[:2])               # refused until reset
        be.sim.faults.never_done = False
        be.reset()
        np.testing.assert_array_equal(be.run(packed[:2]), expected[:2])
        assert not be.log.violations


def test_never_done_at_load(small):
    with mock(timeout=0.05, faults=["never_done"]) as be:
        with pytest.raises(HardwareTimeout):
            be.load(small[0])
        assert be.memory.live_allocations == 0
    assert be.closed


def test_close_while_hung_resets_first(small):
    with mock(timeout=0.05) as be:
        be.load(small[0])
        be.sim.faults.never_done = True
        with pytest.raises(HardwareTimeout):
            be.run(small[1][:1])
    assert not be.sim.busy and be.memory.live_allocations == 0


@pytest.mark.parametrize("wrong, words", [
    # a version-1 bitstream (one parameter port) against this version-2 driver: abi_id sits
    # at the same offset in both versions, so the probe reads the old id and names both
    (0x424E0001, ["0x424e0001", "version 1", "0x424e0002", "version 2"]),
    (0x424E0003, ["0x424e0003", "version 3", "0x424e0002", "version 2"]),
    (0xDEADBEEF, ["0xdeadbeef", "not a pynq-bnn kernel", "0x424e0002"]),
])
def test_wrong_abi_id_names_both(small, wrong, words):
    with mock(faults={"wrong_id": wrong}) as be:
        with pytest.raises(HardwareError) as info:
            be.load(small[0])
    for w in words:
        assert w in str(info.value)


def test_describe_abi_id():
    assert describe_abi_id(abi.ABI_ID) == "0x424e0002 (magic 0x424e, version 2)"
    assert abi.ABI_VERSION == 2 and abi.ABI_ID == 0x424E0002


def test_corrupted_output_detected(small):
    params, packed, _ = small
    with mock(faults={"corrupt_output": True}) as be:
        be.load(params)
        with pytest.raises(HardwareError, match="impossible output"):
            be.run(packed[:3])


def test_out_of_range_output_detected(small, monkeypatch):
    params, packed, _ = small
    with mock() as be:
        be.load(params)
        fan_in = SMALL.last_layer.fan_in
        real_invalidate = SimBuffer.invalidate

        def tamper(self):
            real_invalidate(self)
            if self.dtype == np.int32:
                self.reshape(-1)[0] = fan_in + 2        # right parity, impossible magnitude
        monkeypatch.setattr(SimBuffer, "invalidate", tamper)
        with pytest.raises(HardwareError, match=f"within \\+-{fan_in}"):
            be.run(packed[:1])


def test_slow_kernel_still_exact(small):
    params, packed, expected = small
    with mock(max_batch=4, faults={"latency": 0.05}) as be:
        be.load(params)
        np.testing.assert_array_equal(be.run(packed[:7]), expected[:7])
        assert be.last_timings["kernel"] >= 0.1       # two starts of 50 ms


def test_timeout_shorter_than_latency_then_reset(small):
    params, packed, expected = small
    with mock(timeout=0.05) as be:
        be.load(params)
        be.sim.faults.latency = 1.0
        with pytest.raises(HardwareTimeout):
            be.run(packed[:1])
        be.sim.faults.latency = 0.0
        be.reset()
        np.testing.assert_array_equal(be.run(packed[:1]), expected[:1])


# ----------------------------------------------------------------------------- the HLS C model

def _hls_built():
    from pynq_bnn.backends.sim.kernel import resolve_kernel
    return resolve_kernel("auto")[1] is not None


@pytest.mark.skipif(not _hls_built(), reason="HLS C-simulation library not built")
def test_hls_kernel_behind_the_registers(small):
    """The same driver and simulated registers, with the HLS C model executing each start."""
    params, packed, expected = small
    with open_backend("mock", kernel="hls-lib", max_batch=3) as be:
        be.load(params)
        assert be.accelerator.abi_id == abi.ABI_ID       # the C kernel's own ID
        np.testing.assert_array_equal(be.run(packed[:7]), expected[:7])
        assert not be.log.violations and not be.log.errors
    half = random_params(Network.half(), seed=23)
    x = conv1_packed(half, random_images(2, 32, seed=24))
    with open_backend("mock", kernel="hls-lib") as be:
        be.load(half)
        np.testing.assert_array_equal(be.run(x), reference.binary_scores(half, x))


@pytest.mark.skipif(not _hls_built(), reason="HLS C-simulation library not built")
def test_hls_kernel_missing_parameter_flush_is_caught(small, monkeypatch):
    params, packed, _ = small
    monkeypatch.setattr(SimBuffer, "flush", lambda self: None)
    with open_backend("mock", kernel="hls-lib") as be:
        be.load(params)
        with pytest.raises(HardwareError, match="impossible output"):
            be.run(packed[:2])
