"""Files the package opens (issue 17, items 3 and 10).

* Every kind of non-regular file (FIFO, socket, directory, character device, links to them,
  dangling links) given as a model is refused with ParamsError at once, never opened in a
  way that blocks; so is the same path swapped for a FIFO between the check and the open.
* The same kinds planted at the board-lock path make ``open_backend(..., lock=True)`` fail
  with HardwareError at once (``lock_timeout=0``), never block.
* ``save_params`` never writes through a name planted in the target directory (symlinks at
  ``P.tmp`` or at the very name mkstemp picks), leaves no temporary file behind on failure,
  and gives the file ordinary permissions.
"""
import os
import socket
import stat
import threading
import time

import numpy as np
import pytest

from pynq_bnn import ParamsError, load_params, save_params
from pynq_bnn.backends import open_backend
from pynq_bnn.backends.pynq import lock as lock_module
from pynq_bnn.backends.pynq.lock import LOCK_DIR_ENV, OverlayLock, lock_path
from pynq_bnn.errors import BnnError, HardwareError
from pynq_bnn.files import open_regular, read_regular
from pynq_bnn.spec import params as params_module
from pynq_bnn.spec.network import Network
from pynq_bnn.testing import random_images, random_params

NET = Network(conv_channels=(64, 64), pool_after=(False, True), fc_units=(), n_classes=2,
              image_size=4)
PARAMS = random_params(NET, seed=41, images=random_images(2, 4, seed=42))
DEADLINE_S = 10


def _special(kind: str, where) -> str:
    """Create a non-regular file of ``kind`` at ``where`` (a pathlib path); returns its path."""
    path = str(where)
    d = os.path.dirname(path)
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        os.mkdir(path)
    elif kind == "socket":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(path)
        s.close()
    elif kind == "link to /dev/null":
        os.symlink("/dev/null", path)
    elif kind == "link to a fifo":
        os.mkfifo(os.path.join(d, "the-fifo"))
        os.symlink(os.path.join(d, "the-fifo"), path)
    elif kind == "dangling link":
        os.symlink(os.path.join(d, "nothing-here"), path)
    else:
        raise AssertionError(kind)
    return path


KINDS = ["fifo", "directory", "socket", "link to /dev/null", "link to a fifo", "dangling link"]


def _within_deadline(fn, fifos=()):
    """Run ``fn`` in a thread; fail (and unblock it by opening the FIFOs) if it blocks."""
    out = {}

    def run():
        try:
            out["value"] = fn()
        except BaseException as e:   # noqa: B902 - handed to the test thread
            out["error"] = e
    t = threading.Thread(target=run, daemon=True)
    t0 = time.monotonic()
    t.start()
    t.join(DEADLINE_S)
    if t.is_alive():
        for f in fifos:   # give the blocked open its writer, so the thread can end
            try:
                os.close(os.open(f, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass
        t.join(5)
        pytest.fail(f"blocked for more than {DEADLINE_S} s")
    return out, time.monotonic() - t0


# ----------------------------------------------------------------------------- model files

@pytest.mark.parametrize("kind", KINDS)
def test_every_non_regular_model_path_is_refused_at_once(tmp_path, kind):
    path = _special(kind, tmp_path / "model.npz")
    fifos = [path, str(tmp_path / "the-fifo")]
    out, seconds = _within_deadline(lambda: load_params(path), fifos)
    assert isinstance(out.get("error"), ParamsError), out
    msg = str(out["error"])
    assert msg.startswith(path)
    if kind != "dangling link":
        assert "not a regular file" in msg
    assert seconds < 2


@pytest.mark.parametrize("path", ["/dev/zero", "/dev/null", "/dev/tty", "/proc/self/status",
                                  "/proc/self/fd/0", "bad\0name.npz"])
def test_system_special_files_are_refused(path):
    """Devices (infinite or empty), a tty, /proc (size 0 but content), stdin, a NUL byte."""
    out, _ = _within_deadline(lambda: load_params(path))
    assert isinstance(out.get("error"), ParamsError), out


def test_a_path_swapped_for_a_fifo_after_the_check_is_refused_without_blocking(tmp_path,
                                                                                monkeypatch):
    """The race between os.stat and open: the stat sees a regular file, the open finds a
    FIFO. O_NONBLOCK makes the open return and fstat refuses the descriptor."""
    regular = tmp_path / "regular"
    regular.write_bytes(b"x")
    fifo = str(tmp_path / "fifo.npz")
    os.mkfifo(fifo)
    real_stat = os.stat
    monkeypatch.setattr(os, "stat", lambda p, *a, **k: real_stat(regular) if os.fspath(p) == fifo
                        else real_stat(p, *a, **k))
    out, _ = _within_deadline(lambda: load_params(fifo), [fifo])
    assert isinstance(out.get("error"), ParamsError)
    assert "FIFO" in str(out["error"])


def test_open_regular_and_read_regular_bound_sizes(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(b"0123456789")
    with open_regular(p, max_bytes=10, what="data file") as f:
        assert f.read() == b"0123456789"
    with pytest.raises(BnnError, match=r"data file of 10 bytes exceeds the limit of 9"):
        open_regular(p, max_bytes=9, what="data file")
    assert read_regular(p, max_bytes=10) == b"0123456789"
    # /proc reports size 0 for files with content: the read itself is bounded
    with pytest.raises(BnnError, match="exceeds the limit of 16 bytes"):
        read_regular("/proc/self/status", max_bytes=16)
    with pytest.raises(ParamsError, match="cannot read"):
        open_regular(tmp_path / "missing", error=ParamsError)


def test_model_file_size_limit_is_checked_before_reading(tmp_path):
    big = tmp_path / "big.npz"
    with open(big, "wb") as f:
        f.truncate(params_module.MAX_FILE_BYTES + 1)     # sparse: costs no disk
    t0 = time.monotonic()
    with pytest.raises(ParamsError, match="exceeds the limit"):
        load_params(big)
    assert time.monotonic() - t0 < 1


# ----------------------------------------------------------------------------- board lock

@pytest.mark.parametrize("kind", KINDS + ["link to a regular file"])
def test_a_special_file_at_the_board_lock_path_fails_at_once(tmp_path, monkeypatch, kind):
    monkeypatch.setenv(LOCK_DIR_ENV, str(tmp_path))
    path = lock_path("Pynq-Z2")
    if kind == "link to a regular file":
        (tmp_path / "victim").write_text("keep")
        os.symlink(tmp_path / "victim", path)
    else:
        _special(kind, path)
    fifos = [path, str(tmp_path / "the-fifo")]
    out, seconds = _within_deadline(lambda: open_backend("mock", kernel="reference", lock=True),
                                    fifos)
    if kind == "dangling link":
        # O_NOFOLLOW refuses the link; nothing is created at its target
        assert isinstance(out.get("error"), HardwareError), out
        assert not os.path.exists(tmp_path / "nothing-here")
    else:
        assert isinstance(out.get("error"), HardwareError), out
        assert "not a regular file" in str(out["error"]) and path in str(out["error"])
    assert seconds < 2
    if kind == "link to a regular file":
        assert (tmp_path / "victim").read_text() == "keep"


def test_a_lock_path_swapped_for_a_fifo_after_the_check_is_refused(tmp_path, monkeypatch):
    """The race: the lstat saw nothing special, the open found a FIFO (O_RDWR|O_NONBLOCK does
    not wait for a peer); fstat on the descriptor refuses it."""
    monkeypatch.setenv(LOCK_DIR_ENV, str(tmp_path))
    path = lock_path("Pynq-Z2")
    os.mkfifo(path)
    monkeypatch.setattr(lock_module, "_refuse_special", lambda p: None)
    out, _ = _within_deadline(lambda: OverlayLock("Pynq-Z2").acquire(timeout=0), [path])
    assert isinstance(out.get("error"), HardwareError)
    assert "FIFO" in str(out["error"])


def test_the_lock_wait_is_always_finite(tmp_path, monkeypatch):
    monkeypatch.setenv(LOCK_DIR_ENV, str(tmp_path))
    for bad in (float("inf"), float("nan")):
        with pytest.raises(ValueError, match="finite"):
            OverlayLock("Pynq-Z2").acquire(timeout=bad)
    with OverlayLock("Pynq-Z2"):
        t0 = time.monotonic()
        with pytest.raises(HardwareError, match="overlay in use by this process"):
            OverlayLock("Pynq-Z2").acquire(timeout=0.3)
        assert 0.25 < time.monotonic() - t0 < 3


# ----------------------------------------------------------------------------- save_params

def _umask():
    old = os.umask(0)
    os.umask(old)
    return old


def test_save_params_never_follows_a_planted_name(tmp_path, monkeypatch):
    """Symlinks planted at the old fixed name (P.tmp) and at the name mkstemp tries first
    are never written through: mkstemp opens with O_CREAT|O_EXCL (and tries another name)."""
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    target = tmp_path / "model.npz"
    os.symlink(victim, str(target) + ".tmp")
    names = iter(["planted", "planted", "fresh", "fresh2"])
    monkeypatch.setattr(params_module.tempfile, "_get_candidate_names", lambda: names)
    os.symlink(victim, tmp_path / ".model.npz.planted.tmp")
    save_params(PARAMS, target)
    assert victim.read_bytes() == b"precious"
    assert load_params(target).checksum == PARAMS.checksum
    leftovers = sorted(p.name for p in tmp_path.iterdir())
    assert leftovers == [".model.npz.planted.tmp", "model.npz", "model.npz.tmp", "victim"]
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o666 & ~_umask()


def test_save_params_replaces_a_symlink_at_the_target_not_its_target(tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    target = tmp_path / "model.npz"
    os.symlink(victim, target)
    save_params(PARAMS, target)
    assert victim.read_bytes() == b"precious" and not os.path.islink(target)


def test_a_failed_save_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "model.npz"
    save_params(PARAMS, target)
    before = target.read_bytes()

    def broken(f, **arrays):
        f.write(b"partial")
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(params_module.np, "savez_compressed", broken)
    with pytest.raises(OSError, match="No space"):
        save_params(random_params(NET, seed=43), target)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz"]
    np.testing.assert_array_equal(load_params(target).out_bias, PARAMS.out_bias)
