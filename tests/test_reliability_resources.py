"""Resources under load and on every error path (issue #8).

* 10,000 classifications on the mock keep exactly the steady set of DMA buffers (the simulated
  memory counts live allocations) and do not grow process memory (tracemalloc, RSS).
* Every failing path frees what it allocated: a load that fails midway, a timeout during the
  load probe, a failed first submit, a failed Classifier.open.
* close() and context-manager exit are idempotent, in every order.
"""
import gc
import os
import time
import tracemalloc

import numpy as np
import pytest

from pynq_bnn.backends import accelerated, open_backend
from pynq_bnn.backends.driver import Accelerator
from pynq_bnn.backends.sim.hardware import MockHardware
from pynq_bnn.errors import BnnError, HardwareError, HardwareTimeout
from pynq_bnn.host.classifier import Classifier
from pynq_bnn.spec import reference
from pynq_bnn.spec.first_layer import conv1_packed
from pynq_bnn.spec.network import Network
from pynq_bnn.testing import random_images, random_params

# Tiny so that 10,000 classifications take seconds: 4x4 images, one binary conv, 2 classes.
TINY = Network(conv_channels=(64, 64), pool_after=(False, True), fc_units=(), n_classes=2,
               image_size=4)
PARAMS = random_params(TINY, seed=21, images=random_images(4, 4, seed=22))
IMAGES = random_images(16, 4, seed=23)
EXPECTED = reference.scores(PARAMS, IMAGES)
STEADY_BUFFERS = 3   # parameters, input, scores (driver.Accelerator.load)
SOAK = int(os.environ.get("PYNQ_BNN_SOAK", "10000"))


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        pytest.skip("no /proc/self/statm")


@pytest.mark.slow
def test_ten_thousand_classifications_keep_buffers_and_memory_flat():
    """SOAK single-image calls (about 1 ms each on an idle core). Python objects are counted
    over the whole run, RSS compared before/after, and tracemalloc (which triples the cost
    of a call) watches the last 300 calls byte by byte."""
    traced_calls = min(300, SOAK // 10)
    with Classifier(PARAMS, backend="mock", kernel="reference", max_batch=4) as c:
        c.open()
        be = c.backend
        memory, log = be.memory, be.log
        assert memory.live_allocations == STEADY_BUFFERS

        def burst(start, count):
            for i in range(start, start + count):
                k = i % len(IMAGES)
                r = c.classify(IMAGES[k:k + 1])
                if i % 997 == 0:     # spot checks: still the right answer, same buffers
                    np.testing.assert_array_equal(r.scores, EXPECTED[k:k + 1])
                    assert memory.live_allocations == STEADY_BUFFERS
                if i % 500 == 499:
                    # The simulator records register accesses for tests (SimLog, up to 100,000
                    # events); forget them so only the package's own memory is measured.
                    log.clear()

        warm = min(500, SOAK // 10)
        burst(0, warm)                      # caches, lazy imports, allocator high-water marks
        log.clear()
        gc.collect()
        objects0, rss0, allocs0 = len(gc.get_objects()), _rss_bytes(), memory.allocations
        t0 = time.perf_counter()
        burst(warm, SOAK - warm - traced_calls)
        tracemalloc.start()
        try:
            traced0 = tracemalloc.get_traced_memory()[0]
            burst(SOAK - traced_calls, traced_calls)
            log.clear()
            gc.collect()
            growth = tracemalloc.get_traced_memory()[0] - traced0
            top = tracemalloc.take_snapshot().statistics("lineno")[:5]
        finally:
            tracemalloc.stop()
        elapsed = time.perf_counter() - t0
        objects = len(gc.get_objects()) - objects0
        rss_growth = _rss_bytes() - rss0
        assert memory.live_allocations == STEADY_BUFFERS
        # The same buffers all along: SimMemory counts every allocate() (even one freed again).
        assert memory.allocations == allocs0, "buffers were allocated during the soak"
        assert objects < 200, f"{objects} more Python objects after {SOAK - warm} calls"
        # A leak of even 64 bytes per call would show here.
        assert growth < 64 * traced_calls, f"{growth} bytes more after {traced_calls} calls: {top}"
        assert rss_growth < 16 << 20, f"RSS grew by {rss_growth} bytes"
        print(f"{SOAK - warm} classifications in {elapsed:.1f} s wall; objects +{objects}, "
              f"traced +{growth} B over the last {traced_calls}, RSS +{rss_growth} B")
    assert memory.live_allocations == 0


def test_simulator_log_keeps_only_the_latest_events(monkeypatch):
    """The SimLog records every register access (about 15 events per start) for
    check_transactions; a mock left running (a camera loop) keeps only the latest ones."""
    from pynq_bnn.backends.sim.kernel import SimLog
    monkeypatch.setattr(SimLog, "MAX_EVENTS", 100)
    with open_backend("mock", kernel="reference") as be:
        be.load(PARAMS)
        packed = conv1_packed(PARAMS, IMAGES[:1])
        for _ in range(20):
            np.testing.assert_array_equal(be.run(packed), EXPECTED[:1])
        log = be.log
        events = log.events
        assert len(events) == 100 and log.dropped > 100
        assert ("done", 1) in events[-5:]                   # the newest are kept
        assert sum(e == ("start", 1) for e in events) >= 5  # the last few starts, whole
        log.clear()
        assert len(log.events) == 0 and log.dropped == 0


# ----------------------------------------------------------------------------- error paths

def test_load_failing_midway_frees_what_it_allocated():
    """The scores buffer (third allocation) cannot be had: the first two are given back."""
    hw = MockHardware(kernel="reference")
    calls = []
    real = hw.allocate

    def allocate(shape, dtype):
        calls.append(shape)
        if len(calls) == 3:
            raise MemoryError("simulated CMA exhaustion")
        return real(shape, dtype)
    hw.allocate = allocate
    acc = Accelerator(hw)
    with pytest.raises(MemoryError):
        acc.load(PARAMS)
    assert hw.memory.live_allocations == 0 and not acc.loaded
    hw.allocate = real                     # memory is back: the same accelerator loads
    acc.load(PARAMS)
    np.testing.assert_array_equal(acc.run(conv1_packed(PARAMS, IMAGES[:2])), EXPECTED[:2])
    acc.close()
    assert hw.memory.live_allocations == 0


def test_timeout_during_load_probe_frees_everything():
    with open_backend("mock", kernel="reference", timeout=0.1,
                      faults={"never_done": True}) as be:
        with pytest.raises(HardwareTimeout):
            be.load(PARAMS)
        assert be.memory.live_allocations == 0 and not be.accelerator.loaded
        # Hung IP: a second load is refused until reset(), and allocates nothing meanwhile.
        with pytest.raises(HardwareError, match="reset"):
            be.load(PARAMS)
        assert be.memory.live_allocations == 0
        be.sim.faults.never_done = False
        be.reset()
        be.load(PARAMS)
        assert be.memory.live_allocations == STEADY_BUFFERS
    assert be.memory.live_allocations == 0


def test_replacing_a_model_with_a_failing_one_leaves_no_model_and_no_buffers():
    with open_backend("mock", kernel="reference") as be:
        be.load(PARAMS)
        be.sim.faults.wrong_id = 0x424E0063
        with pytest.raises(HardwareError):
            be.load(PARAMS)
        assert be.memory.live_allocations == 0 and not be.accelerator.loaded
        with pytest.raises(BnnError, match="no model"):
            be.run(conv1_packed(PARAMS, IMAGES[:1]))


def test_failed_submit_allocation_keeps_the_steady_set():
    """The second buffer set of submit() is allocated on first use; if that fails, nothing
    is in flight and run() still works."""
    hw = MockHardware(kernel="reference")
    acc = Accelerator(hw, max_batch=4)
    if not hasattr(acc, "submit"):
        pytest.skip("no submit() in this driver")
    acc.load(PARAMS)
    packed = conv1_packed(PARAMS, IMAGES[:4])
    first = acc.submit(packed)            # buffer set 0
    real = hw.allocate
    hw.allocate = lambda shape, dtype: (_ for _ in ()).throw(MemoryError("no CMA"))
    with pytest.raises(MemoryError):
        acc.submit(packed)                # needs buffer set 1
    hw.allocate = real
    np.testing.assert_array_equal(acc.wait(first), EXPECTED[:4])
    assert acc.in_flight == 0
    np.testing.assert_array_equal(acc.run(packed), EXPECTED[:4])
    acc.close()
    assert hw.memory.live_allocations == 0


def test_failed_classifier_open_closes_its_backend(monkeypatch):
    opened = []
    real = accelerated.open_mock

    def spy(*args, **kw):
        opened.append(real(*args, **kw))
        return opened[-1]
    monkeypatch.setattr(accelerated, "open_mock", spy)
    c = Classifier(PARAMS, backend="mock", kernel="reference", faults={"wrong_id": 7})
    with pytest.raises(HardwareError):
        c.open()
    assert opened[0].closed and opened[0].memory.live_allocations == 0
    c.close()


# ----------------------------------------------------------------------------- idempotent close

def test_close_and_exit_are_idempotent_in_every_order():
    # Accelerator: close, close, exit
    hw = MockHardware(kernel="reference")
    with Accelerator(hw) as acc:
        acc.load(PARAMS)
        acc.close()
        acc.close()
    assert hw.memory.live_allocations == 0
    with pytest.raises(BnnError, match="closed"):
        acc.load(PARAMS)
    with pytest.raises(BnnError, match="closed"):
        acc.reset()
    # Backend: exit after close, close after exit, an exception inside the with
    with pytest.raises(RuntimeError, match="user code"):
        with open_backend("mock", kernel="reference") as be:
            be.load(PARAMS)
            be.close()
            raise RuntimeError("user code")
    be.close()
    assert be.closed and be.memory.live_allocations == 0
    # Classifier: never opened, opened, failed, each closed twice and exited
    for options in ({}, {"open": True}, {"faults": {"wrong_id": 1}, "open": True}):
        should_open = options.pop("open", False)
        c = Classifier(PARAMS, backend="mock", kernel="reference", **options)
        with c:
            if should_open:
                try:
                    c.open()
                except HardwareError:
                    pass
            c.close()
        c.close()
        with pytest.raises(BnnError, match="closed"):
            c.classify(IMAGES[:1])


def test_close_while_hung_resets_and_frees_through_the_classifier():
    with Classifier(PARAMS, backend="mock", kernel="reference", timeout=0.1) as c:
        c.open()
        be = c.backend
        be.sim.faults.never_done = True
        with pytest.raises(HardwareTimeout):
            c.classify(IMAGES[:1])
    assert be.closed and be.memory.live_allocations == 0
    assert ("reset",) in be.log.events[-10:]     # reset before the buffers went back


@pytest.mark.slow
def test_repeated_faults_and_recoveries_accumulate_nothing():
    """100 rounds of: corrupt output, a bad image in the batch, a timeout, reset (after 10
    rounds of warm-up for one-time caches). The buffers stay the steady set, no Python
    objects accumulate, and the answers stay right."""
    with Classifier(PARAMS, backend="mock", kernel="reference", timeout=0.01) as c:
        c.open()
        be = c.backend
        sim, memory = be.sim, be.memory

        def rounds(n):
            for _ in range(n):
                sim.faults.corrupt_output = True
                with pytest.raises(HardwareError):
                    c.classify(IMAGES[:2])
                sim.faults.corrupt_output = False
                r = c.classify_many([IMAGES[0], np.zeros((4, 4), np.uint8), IMAGES[1]])
                np.testing.assert_array_equal(r.scores[[0, 2]], EXPECTED[:2])
                sim.faults.never_done = True
                with pytest.raises(HardwareTimeout):
                    c.classify(IMAGES[:1])
                sim.faults.never_done = False
                be.reset()
                be.log.clear()
        rounds(10)
        gc.collect()
        allocs0, objects0 = memory.allocations, len(gc.get_objects())
        rounds(100)
        np.testing.assert_array_equal(c.classify(IMAGES).scores, EXPECTED)
        be.log.clear()
        gc.collect()
        assert memory.live_allocations == STEADY_BUFFERS and memory.allocations == allocs0
        assert len(gc.get_objects()) - objects0 < 100
    assert memory.live_allocations == 0


# ----------------------------------------------------------------------------- long runs (issue 17)

@pytest.mark.slow
def test_full_model_loads_past_the_old_limit_reuse_the_address_space():
    """The bump allocator ran out after ~1,522 full-model loads on one backend (2.8 MB each,
    4 GiB space); now freed ranges are reused once the space has been handed out. 2,000 loads:
    answers stay right, three buffers stay live, the addresses wrap round."""
    from pynq_bnn.backends.sim.kernel import DEFAULT_MEM_SIZE
    full = random_params(Network.full(), seed=3)
    packed = conv1_packed(full, random_images(2, 32, seed=4))
    expected = reference.binary_scores(full, packed)
    loads = int(os.environ.get("PYNQ_BNN_FULL_LOADS", "2000"))
    with open_backend("mock", kernel="reference") as be:
        memory = be.memory
        addresses = set()
        for i in range(loads):
            be.load(full)
            addresses.add(min(a.address for a in memory._allocs))
            if i % 500 == 499:
                np.testing.assert_array_equal(be.run(packed), expected)
                be.log.clear()
            assert memory.live_allocations == STEADY_BUFFERS
        assert memory.live_bytes * loads > 1.3 * DEFAULT_MEM_SIZE    # past the old limit
        assert len(addresses) < loads                                  # so addresses were reused
    assert memory.live_allocations == 0
    assert memory.free_ranges == [(memory.base, memory.base + memory.size)]


def test_five_thousand_load_cycles_in_a_small_address_space(monkeypatch):
    """5,000 load cycles (with runs and submit/wait, which add a second buffer set) on one
    backend whose simulated space holds about 80 loads: it wraps round some 60 times."""
    from pynq_bnn.backends.sim import kernel
    monkeypatch.setattr(kernel, "DEFAULT_MEM_SIZE", 1 << 20)
    packed = conv1_packed(PARAMS, IMAGES[:4])
    cycles = int(os.environ.get("PYNQ_BNN_LOAD_CYCLES", "5000"))
    t0 = time.perf_counter()
    with open_backend("mock", kernel="reference", max_batch=4) as be:
        memory = be.memory
        assert memory.size == 1 << 20
        for i in range(cycles):
            be.load(PARAMS)
            if i % 50 == 0:
                np.testing.assert_array_equal(be.run(packed), EXPECTED[:4])
                np.testing.assert_array_equal(be.wait(be.submit(packed)), EXPECTED[:4])
                be.log.clear()
        assert memory.allocations >= 3 * cycles
        assert memory.allocations * 4096 > 50 * memory.size
    assert memory.live_allocations == 0
    assert memory.free_ranges == [(memory.base, memory.base + memory.size)]
    print(f"{cycles} load cycles in {time.perf_counter() - t0:.1f} s")


def test_sim_memory_free_list_keeps_its_invariants_under_random_traffic():
    """Seeded random allocate/free on a small space: live and free ranges always tile the
    space exactly, free ranges are coalesced, MemoryError only when no free range fits."""
    import random

    from pynq_bnn.backends.sim.kernel import PAGE, SimMemory
    m = SimMemory(size=64 * PAGE)
    rng = random.Random(17)
    live = []
    for step in range(20_000):
        if live and (rng.random() < 0.45 or len(live) > 40):
            m.free(live.pop(rng.randrange(len(live))))
        else:
            n = rng.randrange(1, 6 * PAGE)
            try:
                live.append(m.allocate(n))
            except MemoryError:
                need = -(-n // PAGE) * PAGE
                assert all(e - s < need for s, e in m.free_ranges)
        used = sorted((a.address, a.address + -(-a.nbytes // PAGE) * PAGE) for a in live)
        free = m.free_ranges
        tiles = sorted(used + free)
        assert tiles[0][0] == m.base and tiles[-1][1] == m.base + m.size
        assert all(b == c for (_, b), (c, _) in zip(tiles, tiles[1:]))
        assert all(b < c for (_, b), (c, _) in zip(free, free[1:]))      # coalesced
    for a in live:
        m.free(a)
    assert m.free_ranges == [(m.base, m.base + m.size)]


def test_reused_memory_is_fresh_and_stale_pointers_fault_until_reuse():
    """What the tests rely on, with reuse: addresses above 4 GiB, new allocations read 0xA5
    even at a reused address, a freed buffer's address is a bus error until the space has
    wrapped round to it (next-fit), and freeing twice is harmless."""
    from pynq_bnn.backends.sim.kernel import PAGE, UNINITIALISED, SimMemory
    from pynq_bnn.errors import SimBusError
    m = SimMemory(size=8 * PAGE)
    assert m.base >= 1 << 32
    a = m.allocate(PAGE)
    m.write(a.address, np.full(16, 7, np.uint8))
    m.free(a)
    m.free(a)
    with pytest.raises(SimBusError):
        m.read(a.address, 16)                       # use after free
    b = m.allocate(PAGE)
    assert b.address != a.address                   # not reused while fresh space remains
    rest = m.allocate(6 * PAGE)                     # the top of the space
    c = m.allocate(PAGE)                            # wraps round: a's range again
    assert c.address == a.address
    assert np.all(m.read(c.address, 16) == UNINITIALISED)
    with pytest.raises(MemoryError, match="no free range"):
        m.allocate(PAGE)
    for x in (b, rest, c):
        m.free(x)
    assert m.live_allocations == 0
