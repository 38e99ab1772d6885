"""Progress bars for long work: tqdm when it is installed, a plain one otherwise.

tqdm is optional on purpose. pynq-bnn is often installed on a board from a copied wheel,
without an index to fetch dependencies from, and a progress bar is not worth a failed install;
with tqdm (``pip install tqdm``, or ``pip install pynq-bnn[progress]``) the bars are tqdm's,
without it a one-line bar of our own does the same job.

* :func:`terminal_bar` (the CLI): drawn on **stderr**, and only when stderr is a terminal,
  so that redirected output and CI logs get nothing but results.
* :func:`notebook_bar` (the notebooks): ``tqdm.auto`` (a widget with ipywidgets, else a text
  bar), or a plain line rewritten in place.

Both return an object with ``update(n)`` and ``close()`` that is also a context manager.
"""
from __future__ import annotations

import sys
import time
import warnings
from typing import Optional, TextIO

__all__ = ["terminal_bar", "notebook_bar", "have_tqdm"]


def have_tqdm() -> bool:
    try:
        import tqdm  # noqa: F401
    except ImportError:
        return False
    return True


class _Silent:
    """No output at all (stderr is not a terminal)."""

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _PlainBar(_Silent):
    """``\\r[#####.....] done/total rate`` on one line, redrawn at most 10 times a second."""

    def __init__(self, total: int, desc: str, file: TextIO, unit: str):
        self.total, self.desc, self.file, self.unit = max(int(total), 1), desc, file, unit
        self.done = 0
        self.start = self._last = time.perf_counter()
        self._closed = False

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.perf_counter()
        if now - self._last >= 0.1 or self.done >= self.total:
            self._last = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        width = 30
        filled = min(width, int(width * self.done / self.total))
        rate = self.done / max(now - self.start, 1e-9)
        self.file.write(f"\r{self.desc}: [{'#' * filled}{'.' * (width - filled)}] "
                        f"{self.done}/{self.total} {rate:.1f} {self.unit}/s")
        self.file.flush()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._draw(time.perf_counter())
            self.file.write("\n")
            self.file.flush()


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def terminal_bar(total: int, desc: str, *, unit: str = "img", file: Optional[TextIO] = None,
                 enabled: Optional[bool] = None):
    """A progress bar on ``file`` (default: the current ``sys.stderr``).

    ``enabled`` defaults to "``file`` is a terminal": nothing at all is written otherwise.
    """
    file = sys.stderr if file is None else file
    if enabled is None:
        enabled = _isatty(file)
    if not enabled:
        return _Silent()
    if have_tqdm():
        from tqdm import tqdm
        return tqdm(total=total, desc=desc, unit=unit, file=file, leave=True, dynamic_ncols=True)
    return _PlainBar(total, desc, file, unit)


def notebook_bar(total: int, desc: str, *, unit: str = "img"):
    """A progress bar for a notebook cell: ``tqdm.auto``, else a plain bar on stdout."""
    if have_tqdm():
        with warnings.catch_warnings():
            # tqdm.auto warns when ipywidgets is missing, then uses its text bar: that is fine
            warnings.simplefilter("ignore")
            from tqdm.auto import tqdm
        return tqdm(total=total, desc=desc, unit=unit)
    return _PlainBar(total, desc, sys.stdout, unit)
