"""Opening files the package is given, safely: regular files only, bounded, never blocking.

Every file pynq-bnn reads on a user's behalf (model files, data files, the board lock's note)
goes through :func:`open_regular` or :func:`read_regular`:

1. ``os.stat`` the path: it must exist and be a *regular* file. A FIFO, a socket, a device
   (``/dev/zero``, a tty) or a directory is refused with a message naming what it is; it is
   never opened, so opening it cannot block or read forever.
2. The size on disk must not exceed ``max_bytes``.
3. The file is opened with ``O_NONBLOCK`` (and ``O_NOCTTY``): if the path was swapped for a
   FIFO after the stat, the open returns at once instead of waiting for a writer.
4. ``os.fstat`` on the opened descriptor repeats both checks, closing the race between 1
   and 3 (what is read is what was checked).

Errors are raised as ``error`` (a :class:`~pynq_bnn.errors.BnnError` subclass chosen by the
caller: ``ParamsError`` for models, ``ImageError``, the CLI's ``InputError``, ...), with a
message that starts with the path. Symbolic links are followed (a model may be a link); a
caller that must not follow them (the board lock) opens with ``O_NOFOLLOW`` itself and checks
the descriptor with :func:`check_fd`.
"""
from __future__ import annotations

import os
import stat
from typing import BinaryIO, Optional, Type

from .errors import BnnError

__all__ = ["open_regular", "read_regular", "check_fd", "file_kind"]

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISLNK, "a symbolic link"),
)


def file_kind(mode: int) -> str:
    """What a ``st_mode`` is, in words ("a regular file", "a FIFO (named pipe)", ...)."""
    if stat.S_ISREG(mode):
        return "a regular file"
    for test, words in _KINDS:
        if test(mode):
            return words
    return "a special file"


def _check(st: os.stat_result, path: str, what: str, max_bytes: Optional[int],
           error: Type[Exception]) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{path}: {what} is {file_kind(st.st_mode)}, not a regular file "
                    "(refused without reading, so it cannot block)")
    if max_bytes is not None and st.st_size > max_bytes:
        raise error(f"{path}: {what} of {st.st_size} bytes exceeds the limit of {max_bytes} bytes")


def check_fd(fd: int, path: str, what: str = "file", max_bytes: Optional[int] = None,
             error: Type[Exception] = BnnError) -> os.stat_result:
    """``fstat`` an open descriptor: a regular file of at most ``max_bytes``, else ``error``."""
    try:
        st = os.fstat(fd)
    except OSError as e:
        raise error(f"{path}: cannot stat {what} ({e.strerror or e})") from None
    _check(st, path, what, max_bytes, error)
    return st


def _open_flags() -> int:
    return (os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
            | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0))


def open_regular(path, *, max_bytes: Optional[int] = None, what: str = "file",
                 error: Type[Exception] = BnnError) -> BinaryIO:
    """Open ``path`` for binary reading if it is a regular file of at most ``max_bytes``.

    Parameters
    ----------
    path : str or os.PathLike
    max_bytes : int, optional
        Largest size on disk accepted (checked before and after opening). The caller still
        bounds what it *reads* (a file may grow after the check): :func:`read_regular` does.
    what : str
        What the file is, for messages ("model", "data file").
    error : exception class
        Raised for every refusal (missing, unreadable, not regular, too large); the message
        starts with the path.

    Returns
    -------
    A buffered binary file object (close it, or use ``with``).
    """
    path_s = os.fsdecode(os.fspath(path))
    if "\0" in path_s:
        raise error(f"{path_s!r}: {what} path contains a NUL character")
    try:
        st = os.stat(path_s)
    except OSError as e:
        raise error(f"{path_s}: cannot read {what} ({e.strerror or e})") from None
    _check(st, path_s, what, max_bytes, error)
    try:
        fd = os.open(path_s, _open_flags())
    except OSError as e:
        raise error(f"{path_s}: cannot open {what} ({e.strerror or e})") from None
    try:
        check_fd(fd, path_s, what, max_bytes, error)
        # O_NONBLOCK means nothing for a regular file; clear it anyway so that the file
        # object behaves as an ordinary one everywhere.
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path, *, max_bytes: int, what: str = "file",
                 error: Type[Exception] = BnnError) -> bytes:
    """The whole content of a regular file of at most ``max_bytes`` (:func:`open_regular`).

    Reads at most ``max_bytes + 1`` bytes, so a file that grows after the check (or a file
    whose size the kernel reports as 0, as in ``/proc``) is still refused at the limit.
    """
    with open_regular(path, max_bytes=max_bytes, what=what, error=error) as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise error(f"{os.fsdecode(os.fspath(path))}: {what} exceeds the limit of "
                    f"{max_bytes} bytes (it grew while being read)")
    return data
