"""Concurrency (issue #8): threads sharing one Classifier, processes sharing one board.

* Several threads on one Classifier each get their own correct result: the driver serialises
  the accelerator (one IP, one set of DMA buffers) with a lock.
* A second process is told "overlay in use by pid N": the cross-process board lock
  (pynq_bnn.backends.pynq.lock.OverlayLock), which the pynq backend always takes and the mock takes
  with ``lock=True``. Tested with real processes; the lock directory is a temporary one.
"""
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from pynq_bnn.backends import accelerated
from pynq_bnn.backends.pynq.lock import LOCK_DIR_ENV, OverlayLock, lock_path
from pynq_bnn.errors import HardwareError
from pynq_bnn.host.classifier import Classifier
from pynq_bnn.spec import reference
from pynq_bnn.spec.network import Network
from pynq_bnn.spec.params import save_params
from pynq_bnn.testing import random_images, random_params

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NET = Network(conv_channels=(64, 64), pool_after=(False, True), fc_units=(), n_classes=4,
              image_size=8)
PARAMS = random_params(NET, seed=31, images=random_images(4, 8, seed=32))
THREADS, CALLS = 4, 50


@pytest.fixture
def lock_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(LOCK_DIR_ENV, str(tmp_path))
    return tmp_path


def _run_threads(target, n):
    errors, threads = [], []

    def wrap(i):
        try:
            target(i)
        except BaseException as e:  # surfaced in the main thread below
            errors.append((i, e))
    for i in range(n):
        threads.append(threading.Thread(target=wrap, args=(i,), daemon=True))
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
        assert not t.is_alive(), "a thread hung"
    if errors:
        raise AssertionError(f"{len(errors)} thread(s) failed, first: {errors[0][1]!r}") \
            from errors[0][1]


@pytest.mark.parametrize("options", [{"max_batch": 2, "faults": {"latency": 2e-4}},
                                     {"max_batch": 4, "interrupt": True}],
                         ids=["latency-chunked", "interrupt"])
def test_threads_sharing_a_classifier_each_get_their_own_result(options):
    """4 threads x 50 calls, each thread its own images and batch sizes (1..3 images, so
    chunked starts interleave), all on one mock accelerator whose kernel takes time."""
    images = random_images(THREADS * 8, 8, seed=33).reshape(THREADS, 8, 8, 8, 3)
    expected = [reference.scores(PARAMS, images[t]) for t in range(THREADS)]
    with Classifier(PARAMS, backend="mock", kernel="reference", **options) as c:
        c.open()     # concurrent first use is tested below
        be = c.backend

        def worker(t):
            rng = np.random.default_rng(t)
            for _ in range(CALLS):
                k = int(rng.integers(0, 8))
                n = int(rng.integers(1, 4))
                idx = [(k + j) % 8 for j in range(n)]
                r = c.classify(images[t][idx])
                np.testing.assert_array_equal(r.scores, expected[t][idx])
                assert list(r.indices) == list(reference.predict(PARAMS, expected[t][idx]))
        _run_threads(worker, THREADS)
        assert be.log.violations == []          # never a start while busy, never a mid-run write
        sets = sum(s is not None for s in be.accelerator._slots)   # one or two (input, scores)
        assert be.memory.live_allocations == 1 + 2 * sets          # plus the parameters


@pytest.mark.parametrize("backend", ["cpu", "mock"])
def test_last_timings_belong_to_the_calling_thread(backend):
    """A thread reading last_timings after its run sees its own run, not another thread's."""
    from pynq_bnn.backends import open_backend
    from pynq_bnn.spec.first_layer import conv1_packed
    small = conv1_packed(PARAMS, random_images(1, 8, seed=40))
    big = conv1_packed(PARAMS, random_images(64, 8, seed=41))
    with open_backend(backend, **({"kernel": "reference"} if backend == "mock" else {})) as be:
        be.load(PARAMS)
        be.run(big)
        mine = be.last_timings
        assert mine["kernel"] > 0
        seen = {}

        def other():
            seen["before"] = be.last_timings     # this thread has not run yet
            be.run(small)
            seen["after"] = be.last_timings
        t = threading.Thread(target=other)
        t.start()
        t.join(60)
        assert seen["before"] == {"transfer": 0.0, "kernel": 0.0}
        assert seen["after"]["kernel"] > 0 and seen["after"] != mine
        assert be.last_timings == mine               # untouched by the other thread's run


def test_concurrent_first_use_opens_one_backend(monkeypatch):
    opened = []
    real = accelerated.open_mock

    def slow_open(*args, **kw):
        be = real(*args, **kw)
        opened.append(be)
        time.sleep(0.2)          # a real overlay download takes about a second
        return be
    monkeypatch.setattr(accelerated, "open_mock", slow_open)
    images = random_images(2, 8, seed=34)
    c = Classifier(PARAMS, backend="mock", kernel="reference")
    _run_threads(lambda i: c.classify(images[i:i + 1]), 2)
    c.close()
    try:
        assert len(opened) == 1, f"{len(opened)} backends opened"
    finally:
        leaked = sum(b.memory.live_allocations for b in opened)
        for b in opened:
            b.close()
    assert leaked == 0


# ----------------------------------------------------------------------------- processes

HOLDER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {root!r})
    from pynq_bnn.host.classifier import Classifier
    {how}
    print("locked", flush=True)
    sys.stdin.readline()          # hold until the parent says so (or is killed)
""")
HOW = {
    "lock": "from pynq_bnn.backends.pynq.lock import OverlayLock\n"
            "lock = OverlayLock('Pynq-Z2', description='holder test').acquire()",
    "mock": "c = Classifier({model!r}, backend='mock', kernel='reference', lock=True)\n"
            "c.open()",
}


def _holder(how, model=None):
    code = HOLDER.format(root=ROOT, how=HOW[how].format(model=model))
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ))
    line = proc.stdout.readline()
    if line.strip() != "locked":
        proc.kill()
        raise AssertionError(f"holder did not start: {line!r} {proc.stderr.read()}")
    return proc


def _finish(proc):
    try:
        proc.communicate("go\n", timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_second_process_is_told_the_overlay_is_in_use(lock_dir):
    proc = _holder("lock")
    try:
        t0 = time.monotonic()
        with pytest.raises(HardwareError, match=rf"overlay in use by pid {proc.pid}\b") as e:
            OverlayLock("Pynq-Z2").acquire()
        assert time.monotonic() - t0 < 5              # at once, no waiting by default
        assert "holder test" in str(e.value) and str(lock_dir) in str(e.value)
        # Other boards are independent.
        OverlayLock("ZCU104").acquire().release()
        # With a timeout it waits for the holder to let go.
        def let_go():
            proc.stdin.write("go\n")
            proc.stdin.flush()
        threading.Timer(0.3, let_go).start()
        with OverlayLock("Pynq-Z2").acquire(timeout=30) as lock:
            assert lock.held
    finally:
        _finish(proc)


def test_a_second_process_using_the_mock_with_lock_gets_a_clear_error(lock_dir, tmp_path):
    model = str(tmp_path / "m.npz")
    save_params(PARAMS, model)
    proc = _holder("mock", model)
    try:
        c = Classifier(model, backend="mock", kernel="reference", lock=True)
        with pytest.raises(HardwareError, match=rf"overlay in use by pid {proc.pid}\b"):
            c.classify(random_images(1, 8, seed=1))
        c.close()
        # The CLI says it in one line, exit code 1.
        code = (f"import sys; sys.path.insert(0, {ROOT!r}); import pynq_bnn.tools.cli as cli; "
                "cli._backend_options = lambda a: {'lock': True, 'kernel': 'reference'}; "
                f"sys.exit(cli.main(['classify', '--backend', 'mock', '--model', {model!r}, "
                f"{os.path.join(ROOT, 'pynq_bnn', 'samples', 'cat.png')!r}]))")
        cli = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=120)
        assert cli.returncode == 1 and cli.stdout == ""
        assert cli.stderr.startswith("pynq-bnn: error: overlay in use by pid "), cli.stderr
        assert len(cli.stderr.splitlines()) == 1
    finally:
        _finish(proc)
    # Released when the holder closed: this process can take the board now.
    with Classifier(model, backend="mock", kernel="reference", lock=True) as c:
        c.open()


def test_a_crashed_holder_releases_the_lock(lock_dir):
    proc = _holder("lock")
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    with OverlayLock("Pynq-Z2").acquire() as lock:   # the kernel dropped the flock
        assert lock.held
    proc.stdout.close()
    proc.stderr.close()
    proc.stdin.close()


def test_two_backends_in_one_process_and_release_on_close(lock_dir):
    with Classifier(PARAMS, backend="mock", kernel="reference", lock=True) as first:
        first.open()
        second = Classifier(PARAMS, backend="mock", kernel="reference", lock=True)
        with pytest.raises(HardwareError, match=rf"this process \(pid {os.getpid()}\)"):
            second.open()
        second.close()
    # first closed: the lock is free, and the lock file no longer names a holder
    assert open(lock_path("Pynq-Z2")).read() == ""
    with Classifier(PARAMS, backend="mock", kernel="reference", lock=True) as again:
        again.open()
        # mock without lock=True (the default) ignores the board lock
        with Classifier(PARAMS, backend="mock", kernel="reference") as free:
            free.open()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_does_not_release_its_parents_lock(lock_dir):
    lock = OverlayLock("Pynq-Z2").acquire()
    try:
        pid = os.fork()
        if pid == 0:                       # child: drop the inherited lock object, exit
            try:
                lock.release()
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        assert lock.held
        with pytest.raises(HardwareError, match="this process"):
            OverlayLock("Pynq-Z2").acquire()
    finally:
        lock.release()


def test_lock_file_is_shared_and_safe(lock_dir):
    """World-writable (every user of the board may take it), never followed as a symlink,
    and one file per board whatever characters the board name has."""
    with OverlayLock("Pynq-Z2") as lock:
        assert os.stat(lock.path).st_mode & 0o777 == 0o666
        assert open(lock.path).read().split("\n")[0] == str(os.getpid())
    assert lock_path("a/../b c") == str(lock_dir / "pynq-bnn-a_.._b_c.lock")
    target = lock_dir / "victim"
    target.write_text("keep")
    os.symlink(target, lock_path("evil"))
    with pytest.raises(HardwareError, match="cannot open the board lock"):
        OverlayLock("evil").acquire()
    assert target.read_text() == "keep"


# ----------------------------------------------------------------------------- the pynq backend

@pytest.fixture
def fake_pynq(monkeypatch, tmp_path):
    """Just enough of a pynq module for PynqHardware to reach pynq.Overlay (no pynq needed):
    records, at each Overlay() call, whether the board lock was held at that moment."""
    import types

    fake = types.ModuleType("pynq")
    fake.DefaultIP = type("DefaultIP", (), {"__init__": lambda self, description: None})
    fake.Device = type("Device", (), {"active_device": types.SimpleNamespace(name="FakeBoard")})
    fake.calls = []

    class Overlay:
        def __init__(self, path, **kwargs):
            try:
                OverlayLock("FakeBoard").acquire().release()
                fake.calls.append("lock free")
            except HardwareError:
                fake.calls.append("lock held")
            raise OSError("simulated download failure")
    fake.Overlay = Overlay
    monkeypatch.setitem(sys.modules, "pynq", fake)
    monkeypatch.delitem(sys.modules, "pynq_bnn.backends.pynq.ip", raising=False)
    bit = tmp_path / "bnn.bit"
    bit.write_bytes(b"")
    yield fake, str(bit)
    # forget the BnnKernelIP class built on the fake module
    import pynq_bnn.backends as backends
    sys.modules.pop("pynq_bnn.backends.pynq.ip", None)
    if hasattr(backends, "pynq_ip"):
        delattr(backends, "pynq_ip")


def test_pynq_backend_locks_before_download_and_releases_on_failure(lock_dir, fake_pynq):
    from pynq_bnn.backends.pynq.hardware import PynqHardware
    fake, bit = fake_pynq
    with pytest.raises(HardwareError, match="simulated download failure"):
        PynqHardware(overlay=bit)
    assert fake.calls == ["lock held"]          # the PL was locked while being programmed
    OverlayLock("FakeBoard").acquire().release()  # and released when the open failed


def test_pynq_backend_refuses_a_board_in_use_before_touching_the_pl(lock_dir, fake_pynq):
    from pynq_bnn.backends.pynq.hardware import PynqHardware
    fake, bit = fake_pynq
    code = HOLDER.format(root=ROOT, how="from pynq_bnn.backends.pynq.lock import OverlayLock\n"
                                         "lock = OverlayLock('FakeBoard').acquire()")
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(HardwareError, match=rf"overlay in use by pid {proc.pid}\b"):
            PynqHardware(overlay=bit)
        assert fake.calls == []                  # pynq.Overlay (the download) never ran
        with pytest.raises(HardwareError, match="in use"):
            PynqHardware(overlay=bit, lock_timeout=0.2)
    finally:
        _finish(proc)


def test_real_pynq_backend_on_the_simulated_device_takes_the_board_lock(lock_dir):
    """The unchanged pynq backend (pynq.Overlay on SimDevice): a second open of the same board
    is refused while the first is open, and allowed once it is closed."""
    pytest.importorskip("pynq")
    from pynq_bnn.backends import open_backend
    with open_backend("mock", via_pynq=True, lock=True, kernel="reference") as first:
        first.load(PARAMS)
        with pytest.raises(HardwareError, match=r"overlay in use by this process"):
            open_backend("mock", via_pynq=True, lock=True, kernel="reference")
    with open_backend("mock", via_pynq=True, lock=True, kernel="reference") as again:
        again.load(PARAMS)
        assert again.memory.live_allocations == 3
