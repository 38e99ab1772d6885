"""Overlap layer 1 on the host with layers 2..L on the accelerator.

Sequentially, a batch costs ``layer1 + kernel``; overlapped, about ``max(layer1, kernel)``::

    host (ARM):   L1(0) | L1(1)          | L1(2)          | L1(3) ...
    kernel:               | run(0)       | run(1)         | run(2) ...

How (``mode="submit"``, the hardware backends, one thread): the accelerator runs by itself
once AP_START is written, so the host needs no second thread; it submits batch i, computes
layer 1 of batch i+1 while the kernel runs, submits i+1 (queued behind i in the driver's second
buffer set) and only then waits for i. The driver starts i+1 the moment it sees i finish, so
the kernel is not left idle while the host turns around. At most two batches are in flight
(:attr:`pynq_bnn.backends.driver.Accelerator.MAX_IN_FLIGHT`).

``mode="thread"`` works for any backend, including the cpu one, which has no ``submit``: one
worker thread runs ``backend.run(i)`` while the calling thread computes layer 1 of i+1. It
overlaps because numpy/BLAS (layer 1) and the ctypes engine release the GIL, but the cpu
engine already uses every core, so it gains nothing there (measured 0.90-0.96x on 2 cores):
"auto" runs such backends sequentially.

Scores are identical to :func:`run_sequential` in every mode: the same functions run on the
same batches, only in a different order in time.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Dict, Optional

import numpy as np

__all__ = ["run_pipelined", "run_sequential", "overlap_mode"]

MODES = ("auto", "submit", "thread", "none")


def overlap_mode(backend) -> str:
    """What "auto" does: "submit" for backends with ``submit``/``wait`` (pynq, mock), else
    "none" (the cpu backend: its engine already keeps every core busy)."""
    if callable(getattr(backend, "submit", None)) and callable(getattr(backend, "wait", None)):
        return "submit"
    return "none"


def _batch_size(backend, batch: Optional[int]) -> int:
    limit = getattr(backend, "max_batch", None)
    if batch is None:
        batch = limit or 64
    batch = int(batch)
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    return min(batch, int(limit)) if limit else batch


def _check_images(images) -> np.ndarray:
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected uint8 images [N, S, S, 3], got {images.dtype} {images.shape}")
    return images


def run_sequential(images, layer1: Callable[[np.ndarray], np.ndarray], backend,
                   batch: Optional[int] = None, return_timings: bool = False):
    """The plain path: per batch, layer 1 then ``backend.run``. Same arguments and result as
    :func:`run_pipelined`."""
    images = _check_images(images)
    batch = _batch_size(backend, batch)
    n = images.shape[0]
    t = {"layer1": 0.0, "backend": 0.0}
    out = None
    t_all = time.perf_counter()
    for s in range(0, n, batch):
        t0 = time.perf_counter()
        packed = layer1(images[s:s + batch])
        t1 = time.perf_counter()
        scores = np.asarray(backend.run(packed))
        t["backend"] += time.perf_counter() - t1
        t["layer1"] += t1 - t0
        if out is None:
            out = np.empty((n, scores.shape[1]), dtype=np.int32)
        out[s:s + scores.shape[0]] = scores
    t["total"] = time.perf_counter() - t_all
    out = _no_images(images, layer1, backend) if out is None else out
    return (out, t) if return_timings else out


def _no_images(images, layer1, backend) -> np.ndarray:
    """Scores of an empty batch, shaped by the backend (no kernel start)."""
    return np.asarray(backend.run(layer1(images[:0])), dtype=np.int32)


def run_pipelined(images, layer1: Callable[[np.ndarray], np.ndarray], backend,
                  batch: Optional[int] = None, mode: str = "auto",
                  return_timings: bool = False):
    """Integer scores of ``images``, layer 1 of the next batch overlapping the current one.

    Parameters
    ----------
    images : numpy.ndarray
        uint8 ``[N, S, S, 3]`` (any N >= 0; the last batch may be shorter).
    layer1 : callable
        ``uint8 [n, S, S, 3] -> uint64 [n, S, S, C1/64]``, e.g.
        :class:`pynq_bnn.host.layer1.FirstLayer` ``(params)``. It must return a new
        array per call (FirstLayer and ``first_layer.conv1_packed`` do).
    backend : Backend
        A loaded backend (``open_backend(...)`` then ``load(params)``).
    batch : int, optional
        Images per kernel start; default and upper bound ``backend.max_batch`` where the
        backend has one (64 otherwise).
    mode : str
        "auto" (:func:`overlap_mode`), "submit", "thread" or "none" (= :func:`run_sequential`).
    return_timings : bool
        Also return ``{"layer1": s, "wait": s, "total": s}``: host seconds in layer 1, seconds
        blocked waiting for the backend, wall time.

    Returns
    -------
    numpy.ndarray
        int32 ``[N, n_classes]``, identical to :func:`run_sequential`.

    Raises
    ------
    Whatever layer 1 or the backend raises; batches still in flight are waited for (their
    errors dropped) before it propagates, so the backend is left idle and reusable.
    """
    if mode not in MODES:
        raise ValueError(f"mode {mode!r}: use one of {', '.join(MODES)}")
    if mode == "auto":
        mode = overlap_mode(backend)
    if mode == "none":
        return run_sequential(images, layer1, backend, batch, return_timings)
    images = _check_images(images)
    batch = _batch_size(backend, batch)
    run = _run_submit if mode == "submit" else _run_thread
    t: Dict[str, float] = {"layer1": 0.0, "wait": 0.0}
    t0 = time.perf_counter()
    out = run(images, layer1, backend, batch, t)
    t["total"] = time.perf_counter() - t0
    out = _no_images(images, layer1, backend) if out is None else out
    return (out, t) if return_timings else out


def _layer1(layer1, images, t) -> np.ndarray:
    t0 = time.perf_counter()
    packed = layer1(images)
    t["layer1"] += time.perf_counter() - t0
    return packed


def _store(out, n, s, scores):
    if out is None:
        out = np.empty((n, scores.shape[1]), dtype=np.int32)
    out[s:s + scores.shape[0]] = scores
    return out


def _run_submit(images, layer1, backend, batch, t):
    """submit(i) ; layer1(i+1) ; submit(i+1) ; wait(i) -- one thread, two batches in flight."""
    n = images.shape[0]
    starts = list(range(0, n, batch))
    if not starts:
        return None
    out = None
    pending = []   # (first image, submission), oldest first
    try:
        pending.append((0, backend.submit(_layer1(layer1, images[:batch], t))))
        for s in starts[1:]:
            packed = _layer1(layer1, images[s:s + batch], t)   # the kernel runs meanwhile
            pending.append((s, backend.submit(packed)))        # queued behind the running one
            first, sub = pending.pop(0)
            t0 = time.perf_counter()
            scores = backend.wait(sub)                         # starts the queued batch
            t["wait"] += time.perf_counter() - t0
            out = _store(out, n, first, scores)
        first, sub = pending.pop(0)
        t0 = time.perf_counter()
        out = _store(out, n, first, backend.wait(sub))
        t["wait"] += time.perf_counter() - t0
    finally:
        for _, sub in pending:        # an error: leave the accelerator idle, buffers free
            try:
                backend.wait(sub)
            except Exception:
                pass
    return out


def _run_thread(images, layer1, backend, batch, t):
    """backend.run(i) on a worker thread while this thread computes layer1(i+1)."""
    n = images.shape[0]
    starts = list(range(0, n, batch))
    if not starts:
        return None
    out = None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="pynq-bnn-pipeline") as pool:
        future = pool.submit(backend.run, _layer1(layer1, images[:batch], t))
        prev = 0
        try:
            for s in starts[1:]:
                packed = _layer1(layer1, images[s:s + batch], t)
                t0 = time.perf_counter()
                scores = np.asarray(future.result())
                t["wait"] += time.perf_counter() - t0
                out = _store(out, n, prev, scores)
                future, prev = pool.submit(backend.run, packed), s
            t0 = time.perf_counter()
            out = _store(out, n, prev, np.asarray(future.result()))
            t["wait"] += time.perf_counter() - t0
        except BaseException:
            future.cancel()
            raise
    return out
