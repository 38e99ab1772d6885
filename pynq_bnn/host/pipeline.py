"""The host batch loop: layer 1 on the host overlapped with layers 2..L on the backend.

One loop (:func:`stream`) serves the Classifier, the camera's live loop and the benchmarks.
Sequentially a batch costs ``prepare + layer1 + kernel``; overlapped, about
``max(prepare + layer1, kernel)``::

    host (ARM):   L1(0) | next(1) L1(1)  | next(2) L1(2)  | ...
    kernel:               | run(0)       | run(1)         | run(2) ...

``next(i)`` is whatever produces batch i (slicing an array, or capturing and preprocessing a
camera frame): it runs while the kernel works too, because the loop pulls the next batch from
its iterator only after the previous one has been handed to the backend.

Modes (``mode="auto"`` picks by :attr:`Backend.overlaps <pynq_bnn.backends.base.Backend.overlaps>`):

``"submit"`` (the hardware backends, one thread)
    the accelerator runs by itself once AP_START is written, so the host needs no second
    thread: it hands batch i over with ``submit_into`` (layer 1 writes its packed words
    straight into the kernel's DMA input buffer), pulls and computes batch i+1 while the kernel
    runs, submits i+1 (queued behind i in the driver's second buffer set) and only then waits
    for i. The driver starts i+1 the moment it sees i finish. At most two batches are in flight
    (:attr:`pynq_bnn.backends.driver.Accelerator.MAX_IN_FLIGHT`).
``"thread"`` (any backend)
    a worker thread runs ``backend.run(i)`` while the calling thread pulls and computes batch
    i+1. It overlaps because layer 1 and the ctypes engine release the GIL, but the cpu engine
    already uses every core, so it gains nothing there for arrays (measured 0.90-0.96x on 2
    cores); it does help where producing a batch waits on I/O (a camera).
``"none"``
    one batch after the other.

Scores are identical in every mode: the same functions run on the same batches, only in a
different order in time. ``layer1`` is a callable ``layer1(images, out=None) -> packed``
(:class:`pynq_bnn.host.layer1.FirstLayer`; wrap a plain function with
:func:`pynq_bnn.host.layer1.writing_into`).
"""
from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Generator, Iterable, Iterator, Optional

import numpy as np

__all__ = ["stream", "HostBatch", "BatchResult", "run_pipelined", "run_sequential",
           "overlap_mode", "array_batches", "MODES"]

MODES = ("auto", "submit", "thread", "none")

Layer1 = Callable[..., np.ndarray]   # layer1(images, out=None) -> uint64 [n, S, S, C1/64]


@dataclass
class HostBatch:
    """One batch for :func:`stream`: uint8 ``images [n, S, S, 3]`` and whatever the caller
    wants back with its result (``context``: frame numbers, capture times, ...)."""

    images: np.ndarray
    context: Any = None


@dataclass
class BatchResult:
    """What :func:`stream` yields per batch, in input order.

    ``timings``: ``layer1`` (host seconds), ``wait`` (seconds blocked on the backend),
    ``transfer`` and ``kernel`` (the backend's own split of its time).
    """

    batch: HostBatch
    scores: np.ndarray
    timings: Dict[str, float] = field(default_factory=dict)


def overlap_mode(backend) -> str:
    """What "auto" does: "submit" where the backend's work runs in the background (pynq,
    mock), else "none" (the cpu backend: its engine already keeps every core busy)."""
    return "submit" if backend.overlaps else "none"


def _check_images(images) -> np.ndarray:
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected uint8 images [N, S, S, 3], got {images.dtype} {images.shape}")
    return images


def _batch_size(backend, batch: Optional[int]) -> int:
    limit = int(backend.max_batch)
    if batch is None:
        return limit
    if isinstance(batch, bool) or int(batch) < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    return min(int(batch), limit)


def array_batches(images: np.ndarray, batch: int) -> Iterator[HostBatch]:
    """Slices of ``images`` of at most ``batch`` images (views, no copy); context = first index."""
    for s in range(0, images.shape[0], batch):
        yield HostBatch(images[s:s + batch], s)


def _timed_layer1(layer1: Layer1, images: np.ndarray, out: Optional[np.ndarray],
                  t: Dict[str, float]) -> np.ndarray:
    t0 = time.perf_counter()
    packed = layer1(images, out=out)
    t["layer1"] = time.perf_counter() - t0
    return packed


def _backend_times(backend, t: Dict[str, float]) -> None:
    t.update({k: float(v) for k, v in backend.last_timings.items() if k in ("transfer", "kernel")})


def stream(batches: Iterable[HostBatch], layer1: Layer1, backend,
           mode: str = "auto") -> Generator[BatchResult, None, None]:
    """Run each batch through layer 1 and the backend, overlapping as ``mode`` says.

    Parameters
    ----------
    batches : iterable of HostBatch
        Each of at most ``backend.max_batch`` images (1 or more). Pulled lazily: the next one
        is asked for while the kernel runs the current one.
    layer1 : callable
        ``layer1(images, out=None)`` (see the module docstring).
    backend : Backend
        A loaded backend.
    mode : str
        "auto", "submit", "thread" or "none".

    Yields
    ------
    BatchResult
        In input order. If the consumer stops early (or an error propagates), batches still
        in flight are waited for (their errors dropped), so the backend is left idle.
    """
    if mode not in MODES:
        raise ValueError(f"mode {mode!r}: use one of {', '.join(MODES)}")
    if mode == "auto":
        mode = overlap_mode(backend)
    if mode == "submit":
        return _stream_submit(batches, layer1, backend)
    if mode == "thread":
        return _stream_thread(batches, layer1, backend)
    return _stream_sequential(batches, layer1, backend)


def _check_batch(b: HostBatch, backend) -> int:
    n = int(b.images.shape[0])
    if not 1 <= n <= backend.max_batch:
        raise ValueError(f"a batch holds 1..{backend.max_batch} images (max_batch), got {n}")
    return n


def _pulled(batches: Iterable[HostBatch], failure: list) -> Iterator[HostBatch]:
    """``batches``, but an error raised while producing the next batch (a camera read) is
    put in ``failure`` and ends the iteration: the loop first delivers the batches already
    in flight, then re-raises it (one bad item never costs the good ones)."""
    it = iter(batches)
    while True:
        try:
            b = next(it)
        except StopIteration:
            return
        except (Exception, KeyboardInterrupt) as e:   # Ctrl-C in a camera read: same, promptly
            failure.append(e)
            return
        yield b


def _reraise(failure: list) -> None:
    if failure:
        raise failure[0]


def _stream_sequential(batches, layer1, backend) -> Generator[BatchResult, None, None]:
    for b in batches:
        _check_batch(b, backend)
        t: Dict[str, float] = {}
        packed = _timed_layer1(layer1, b.images, None, t)
        t0 = time.perf_counter()
        scores = np.asarray(backend.run(packed), dtype=np.int32)
        t["wait"] = time.perf_counter() - t0
        _backend_times(backend, t)
        yield BatchResult(b, scores, t)


def _stream_submit(batches, layer1, backend) -> Generator[BatchResult, None, None]:
    """submit_into(i) ; next(i+1) ; layer1(i+1) into its DMA buffer ; submit(i+1) ; wait(i)."""
    pending: list = []   # (HostBatch, submission, timings), oldest first
    first_image = 0      # numbers images in the backend's error messages
    failure: list = []
    try:
        for b in _pulled(batches, failure):   # pulling the next batch overlaps the kernel
            n = _check_batch(b, backend)
            t: Dict[str, float] = {}
            sub = backend.submit_into(
                n, lambda view, b=b, t=t: _timed_layer1(layer1, b.images, view, t), first_image)
            first_image += n
            pending.append((b, sub, t))
            if len(pending) > 1:
                yield _collect(backend, *pending.pop(0))
        while pending:
            yield _collect(backend, *pending.pop(0))
        _reraise(failure)
    finally:
        for _, sub, _t in pending:   # an error or an early stop: leave the accelerator idle
            try:
                backend.wait(sub)
            except Exception:
                pass


def _collect(backend, b: HostBatch, sub, t: Dict[str, float]) -> BatchResult:
    t0 = time.perf_counter()
    scores = backend.wait(sub)
    t["wait"] = time.perf_counter() - t0
    _backend_times(backend, t)
    return BatchResult(b, scores, t)


def _stream_thread(batches, layer1, backend) -> Generator[BatchResult, None, None]:
    """backend.run(i) on a worker thread while this thread pulls and computes batch i+1."""

    def run(packed):
        scores = np.asarray(backend.run(packed), dtype=np.int32)
        return scores, backend.last_timings   # last_timings is per thread: read it there

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="pynq-bnn-pipeline") as pool:
        prev: Optional[tuple] = None   # (HostBatch, future, timings)
        failure: list = []
        try:
            for b in _pulled(batches, failure):
                _check_batch(b, backend)
                t: Dict[str, float] = {}
                packed = _timed_layer1(layer1, b.images, None, t)
                if prev is not None:
                    yield _result_of(*prev)
                prev = (b, pool.submit(run, packed), t)
            if prev is not None:
                last, prev = prev, None
                yield _result_of(*last)
            _reraise(failure)
        finally:
            if prev is not None:
                prev[1].cancel()
                try:
                    prev[1].result()
                except Exception:
                    pass


def _result_of(b: HostBatch, future: Future, t: Dict[str, float]) -> BatchResult:
    t0 = time.perf_counter()
    scores, lt = future.result()
    t["wait"] = time.perf_counter() - t0
    t.update({k: float(v) for k, v in lt.items() if k in ("transfer", "kernel")})
    return BatchResult(b, scores, t)


# ----------------------------------------------------------------------------- arrays

def run_pipelined(images, layer1: Layer1, backend, batch: Optional[int] = None,
                  mode: str = "auto", return_timings: bool = False):
    """Integer scores of an image array through :func:`stream`.

    Parameters
    ----------
    images : numpy.ndarray
        uint8 ``[N, S, S, 3]`` (any N >= 0; the last batch may be shorter).
    layer1 : callable
        ``layer1(images, out=None)``, e.g. :class:`pynq_bnn.host.layer1.FirstLayer` ``(params)``.
    backend : Backend
        A loaded backend (``open_backend(...)`` then ``load(params)``).
    batch : int, optional
        Images per kernel start; default and upper bound ``backend.max_batch``.
    mode : str
        "auto" (:func:`overlap_mode`), "submit", "thread" or "none" (= :func:`run_sequential`).
    return_timings : bool
        Also return ``{"layer1": s, "wait": s, "transfer": s, "kernel": s, "total": s}``,
        summed over batches (``total``: wall time).

    Returns
    -------
    numpy.ndarray
        int32 ``[N, n_classes]``, identical in every mode.

    Raises
    ------
    Whatever layer 1 or the backend raises; batches still in flight are waited for (their
    errors dropped) before it propagates, so the backend is left idle and reusable.
    """
    images = _check_images(images)
    batch = _batch_size(backend, batch)
    n = images.shape[0]
    network = backend.network
    n_classes = network.n_classes if network is not None else 0
    out = np.empty((n, n_classes), dtype=np.int32)
    t = {"layer1": 0.0, "wait": 0.0, "transfer": 0.0, "kernel": 0.0}
    t0 = time.perf_counter()
    for r in stream(array_batches(images, batch), layer1, backend, mode):
        s = r.batch.context
        out[s:s + r.scores.shape[0]] = r.scores
        for k in t:
            t[k] += r.timings.get(k, 0.0)
    t["total"] = time.perf_counter() - t0
    return (out, t) if return_timings else out


def run_sequential(images, layer1: Layer1, backend, batch: Optional[int] = None,
                   return_timings: bool = False):
    """The plain path, one batch after the other: :func:`run_pipelined` with ``mode="none"``."""
    return run_pipelined(images, layer1, backend, batch, "none", return_timings)
