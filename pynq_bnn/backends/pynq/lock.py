"""One pynq-bnn process per board: a cross-process advisory lock on the programmable logic.

PYNQ records *which* bitstream is loaded (``pynq.PL.bitfile_name`` / ``Device.bitfile_name``,
``PL.timestamp``, and since 3.0 a global state file, ``pynq/pl_server/global_state.py``), but
not *who* uses it: a second process may download its own overlay over a running one, or start
the same kernel while the first is waiting for it, and both then get garbage or a hang. So the
pynq backend takes this lock before it downloads anything and keeps it until ``close()``.

The lock is ``fcntl.flock`` on ``<dir>/pynq-bnn-<board>.lock`` (``dir``: ``$PYNQ_BNN_LOCK_DIR``,
else the system temporary directory, shared by every user of the board). The kernel releases
it when the holder exits or crashes, so a stale file never blocks anyone; the file only tells
the next process who holds it (pid, program, bitstream, time). It is advisory: it stops other
pynq-bnn processes, not a foreign program that loads an overlay.

Nothing here blocks without a deadline: anything but a regular file at the lock path (a FIFO,
a symlink, a socket, a directory, a device, planted by another user of /tmp) is refused
before and after the open (``O_NOFOLLOW | O_NONBLOCK``), and waiting for the holder is
bounded by the (finite) ``timeout``.
"""
from __future__ import annotations

import errno
import math
import os
import re
import stat
import sys
import tempfile
import time
from types import ModuleType
from typing import Optional

from ...errors import HardwareError
from ...files import check_fd, file_kind

fcntl: Optional[ModuleType]
try:
    import fcntl
except ImportError:  # Windows: no PYNQ board runs it; the lock becomes a no-op
    fcntl = None

LOCK_DIR_ENV = "PYNQ_BNN_LOCK_DIR"

__all__ = ["OverlayLock", "lock_path", "LOCK_DIR_ENV"]


def lock_path(key: str, directory: Optional[str] = None) -> str:
    """The lock file for ``key`` (a board name): ``<dir>/pynq-bnn-<key>.lock``."""
    directory = directory or os.environ.get(LOCK_DIR_ENV) or tempfile.gettempdir()
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", str(key)) or "pl"
    return os.path.join(directory, f"pynq-bnn-{safe}.lock")


# Never follow a link planted at the path, never wait for a FIFO's other end.
_FLAGS = getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
HOLDER_MAX_BYTES = 4096  # what is read of the holder's note


def _refuse_special(path: str) -> None:
    """A lock path that exists as anything but a regular file (a FIFO, a symlink, a socket, a
    directory, a device) is refused before it is opened: opening a FIFO could block."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as e:
        raise HardwareError(f"cannot stat the board lock {path}: {e.strerror or e}") from None
    if not stat.S_ISREG(st.st_mode):
        raise HardwareError(f"cannot open the board lock {path}: it is {file_kind(st.st_mode)}, "
                            f"not a regular file; remove it or set ${LOCK_DIR_ENV} to another "
                            "directory")


def _open(path: str):
    """(fd, writable) for the lock file, created world-writable if it does not exist.

    An existing file is opened without O_CREAT first: with ``fs.protected_regular`` (the
    default on many distributions) O_CREAT on another user's file in a sticky /tmp fails
    even when its mode allows writing. A file we may not write is still lockable read-only.
    The path is checked to be a regular file before the open and the descriptor after it
    (the path may be swapped in between); O_NONBLOCK keeps either open from waiting.
    """
    for _ in range(3):
        _refuse_special(path)
        try:
            return os.open(path, os.O_RDWR | _FLAGS), True
        except FileNotFoundError:
            try:
                fd = os.open(path, os.O_RDWR | _FLAGS | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                continue  # created by someone else meanwhile: open theirs
            try:
                os.fchmod(fd, 0o666)  # every user of the board may take it later (umask)
            except OSError:
                pass
            return fd, True
        except PermissionError:
            return os.open(path, os.O_RDONLY | _FLAGS), False
    raise HardwareError(f"cannot create the lock file {path}")


def _holder(fd: int) -> str:
    """The holder's note, read from our own descriptor (never by opening the path again)."""
    try:
        return os.pread(fd, HOLDER_MAX_BYTES, 0).decode("utf-8", "replace")
    except OSError:
        return ""


class OverlayLock:
    """An exclusive, cross-process lock on one board's programmable logic.

    Parameters
    ----------
    key : str
        What is locked: the board (pynq device) name, so that two processes with different
        bitstreams exclude each other too (there is one PL).
    directory : str, optional
        Where the lock file lives (default ``$PYNQ_BNN_LOCK_DIR`` or the temporary directory).
    description : str
        Written into the lock file for the next process's error message (e.g. the bitstream).

    Use :meth:`acquire` / :meth:`release` (idempotent) or ``with``. A forked child does not
    release its parent's lock.
    """

    def __init__(self, key: str, directory: Optional[str] = None, description: str = ""):
        self.key = str(key)
        self.path = lock_path(key, directory)
        self.description = description
        self._fd: Optional[int] = None
        self._owner_pid: Optional[int] = None

    @property
    def held(self) -> bool:
        return self._fd is not None and self._owner_pid == os.getpid()

    def acquire(self, timeout: float = 0.0) -> "OverlayLock":
        """Take the lock, waiting up to ``timeout`` seconds for its holder to let go.

        Raises
        ------
        HardwareError
            "overlay in use by pid N": another process (or another open backend of this
            process) holds it; the message names the holder and the lock file.
        """
        timeout = float(timeout)
        if not math.isfinite(timeout):
            raise ValueError(f"lock_timeout={timeout}: must be a finite number of seconds")
        if self.held or fcntl is None:
            return self
        try:
            fd, writable = _open(self.path)
        except OSError as e:
            raise HardwareError(f"cannot open the board lock {self.path}: "
                                f"{e.strerror or e}") from None
        try:
            check_fd(fd, self.path, "board lock", error=HardwareError)
        except HardwareError:
            os.close(fd)
            raise
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise HardwareError(f"cannot lock {self.path}: {e.strerror or e}") from None
                if time.monotonic() >= deadline:
                    try:
                        message = self._in_use_message(fd)
                    finally:
                        os.close(fd)
                    raise HardwareError(message) from None
                time.sleep(0.05)
        self._fd, self._owner_pid = fd, os.getpid()
        if writable:
            argv = list(sys.argv) or ["?"]
            if argv[0] in ("", "-c", "-m"):
                argv[0] = f"{os.path.basename(sys.executable)} {argv[0]}".strip()
            info = (f"{os.getpid()}\n{' '.join(argv)[:200]}\n{self.description}\n"
                    f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n")
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, info.encode("utf-8", "replace"), 0)
            except OSError:
                pass  # the lock is what matters; the note is a courtesy
        return self

    def _in_use_message(self, fd: int) -> str:
        lines = _holder(fd).splitlines()
        pid = lines[0].strip() if lines and lines[0].strip().isdigit() else None
        if pid is None:
            who = "another process (pid unknown)"
        elif int(pid) == os.getpid():
            who = (f"this process (pid {pid}): another pynq-bnn backend or Classifier of it "
                   "is still open; close it first")
        else:
            program = lines[1].strip() if len(lines) > 1 and lines[1].strip() else "?"
            since = f" since {lines[3].strip()}" if len(lines) > 3 and lines[3].strip() else ""
            what = f", {lines[2].strip()}" if len(lines) > 2 and lines[2].strip() else ""
            who = f"pid {pid} ({program}{what}){since}; close that program or notebook kernel"
        return f"overlay in use by {who} [board {self.key}, lock {self.path}]"

    def release(self) -> None:
        """Let go of the lock (idempotent). In a forked child it only closes the inherited
        descriptor: unlocking would release the parent's lock too (flock locks belong to the
        open file, which parent and child share)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if self._owner_pid == os.getpid() and fcntl is not None:
                try:
                    os.ftruncate(fd, 0)
                except OSError:
                    pass
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
        return False

    def __del__(self):
        try:
            self.release()
        except Exception:
            pass

    def __repr__(self):
        return f"<OverlayLock {self.path}{' held' if self.held else ''}>"
