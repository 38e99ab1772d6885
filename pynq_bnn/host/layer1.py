"""Layer 1 on the host: uint8 images -> packed uint64 words, the kernel's input.

:class:`FirstLayer` runs the native layer 1 of the CPU engine
(:class:`pynq_bnn.backends.cpu.engine.Layer1`: int8 arithmetic, NEON on the ARM core,
AVX2/AVX-512 on a PC, threshold and packing fused, written straight into ``out``) where the
library is built, and otherwise (``PYNQ_BNN_NATIVE=0``, no library, ``native=False``) the
numpy/BLAS path below, which stays as the reference implementation. Both are bit-exact with
:func:`pynq_bnn.spec.first_layer.conv1_packed` (docs/FORMAT.md sections 4 and 6).

The numpy path: im2col into preallocated buffers + one float32 BLAS matmul with the
thresholds folded in, then one compare-and-pack step:

* the threshold rule ``d > 0: s >= T``, ``d < 0: s <= T`` is ``d*s - d*T >= 0``; the kernel
  columns are multiplied by ``d`` and a 28th im2col column of ones carries ``-d*T``, so the
  matmul output is already ``d*(s - T)`` and the bit is ``out >= 0`` (no batch-norm pass);
* every product and partial sum is an integer of magnitude at most
  ``27*255*127 + (27*255*127 + 1) < 2**24``, so float32 BLAS is exact in any summation order
  (``>= 0`` also maps a possible ``-0.0`` to bit 1, like the integer rule).
"""
from __future__ import annotations

import ctypes
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, Optional

import numpy as np

from ..backends.cpu import engine as _engine
from ..errors import BackendUnavailable

__all__ = ["FirstLayer", "blas_thread_control", "writing_into"]

_BLAS_SYMBOLS = (  # (set, get): numpy 2.x wheels, numpy 1.x wheels, plain OpenBLAS
    ("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
    ("scipy_openblas_set_num_threads", "scipy_openblas_get_num_threads"),
    ("openblas_set_num_threads64_", "openblas_get_num_threads64_"),
    ("openblas_set_num_threads", "openblas_get_num_threads"),
)
_blas = None
_blas_lock = threading.Lock()


def blas_thread_control():
    """(set, get) of the OpenBLAS numpy uses, or None (other BLAS, not Linux, not loaded).

    The layer-1 matmuls are small (K = 28): OpenBLAS's own threads gain little on them and
    collapse when the machine is busy (measured: 125 images/s instead of 3,000 at batch 1 on
    a 2-core machine running a training job), so FirstLayer runs them on one BLAS thread and
    parallelises over images itself.
    """
    global _blas
    with _blas_lock:
        if _blas is None:
            _blas = False
            try:
                with open("/proc/self/maps") as f:
                    paths = sorted({line.split()[-1] for line in f
                                    if "openblas" in line.lower() and "/" in line})
            except OSError:
                paths = []
            for path in paths:
                try:
                    lib = ctypes.CDLL(path)
                except OSError:
                    continue
                for set_name, get_name in _BLAS_SYMBOLS:
                    if hasattr(lib, set_name) and hasattr(lib, get_name):
                        setter, getter = getattr(lib, set_name), getattr(lib, get_name)
                        setter.argtypes, setter.restype = [ctypes.c_int], None
                        getter.argtypes, getter.restype = [], ctypes.c_int
                        _blas = (setter, getter)
                        break
                if _blas:
                    break
        return _blas or None


def writing_into(fn):
    """A layer 1 with ``out=`` from a plain ``fn(images) -> packed`` (e.g. the spec's
    ``conv1_packed``): the result is copied into ``out``. For reference paths and tests; the
    package's own :class:`FirstLayer` writes ``out`` directly."""
    def layer1(images, out=None):
        packed = fn(images)
        if out is None:
            return packed
        _engine.check_layer1_out(out, tuple(np.shape(packed)))[...] = packed
        return out
    return layer1


class FirstLayer:
    """Layer 1 of ``params``: ``FirstLayer(params)(images, out=None)``.

    Takes uint8 NHWC ``[N, S, S, 3]`` and returns packed uint64 ``[N, S, S, C1/64]``, equal
    to ``first_layer.conv1_packed(params, images)``. With ``out`` (a C-contiguous, writeable,
    aligned native uint64 array of exactly that shape, e.g. a slice ``buf[a:b]`` of the
    kernel's DMA input buffer) the words are written there and ``out`` is returned; the
    native path writes them directly (no intermediate array, no copy).

    Parameters
    ----------
    threads : worker threads per call (default 1). Native: they split the rows of the batch,
        so every batch size (batch 1 included) uses them all; numpy: they split the images.
    native : ``None`` (default) the native layer 1 where the library is available, else
        numpy; ``True`` requires it (BackendUnavailable otherwise); ``False`` numpy.
    isa : the native path to force (``"avx512"``, ``"avx2"``, ``"neon"``, ``"portable"``;
        default ``PYNQ_BNN_ISA`` or the best one).
    chunk : numpy path: images per matmul (bounds its float32 buffers).
    blas_threads : numpy path: the OpenBLAS thread count during a call (restored afterwards;
        None leaves it alone).

    Attributes
    ----------
    isa : what runs: ``"avx512-vnni"``, ``"avx2"``, ``"neon"``, ``"portable"`` (native) or
        ``"numpy"``.
    native : True for the native path.

    Calls on one instance are serialised on the numpy path; the native path takes concurrent
    calls.
    """

    def __init__(self, params, chunk: int = 16, threads: int = 1, blas_threads: int | None = 1,
                 native: bool | None = None, isa: str | None = None):
        layer = params.network.first_layer
        lp = params.layers[layer.name]
        self.size = layer.in_size
        self.c1 = layer.out_channels
        self.out_shape = (self.size, self.size, self.c1 // 64)
        self.chunk = max(1, int(chunk))
        self.threads = max(1, int(threads))
        self.blas_threads = blas_threads
        self._native = None
        if native is None or native:
            try:
                self._native = _engine.Layer1(params, threads=self.threads, isa=isa)
            except BackendUnavailable:
                if native or isa is not None:
                    raise
        self.native = self._native is not None
        self.isa = self._native.isa if self._native is not None else _engine.L1_FALLBACK
        w = lp.weights.reshape(self.c1, 27).astype(np.int64)  # (ky, kx, rgb) order
        d = lp.directions.astype(np.int64)
        t = lp.thresholds.astype(np.int64)
        kernel = np.empty((28, self.c1), dtype=np.float32)
        kernel[:27] = (w * d[:, None]).T
        kernel[27] = -(d * t)
        self.kernel = kernel
        self._bufs: Dict[int, tuple] = {}  # worker index -> (capacity, pad, cols, acc, bits)
        self._pool: Optional[ThreadPoolExecutor] = None
        self._pool_size = 0
        self._lock = threading.Lock()

    def __repr__(self):
        return f"FirstLayer(isa={self.isa!r}, threads={self.threads}, c1={self.c1})"

    def close(self) -> None:
        """Free the native object (waits for running calls); the numpy path has nothing."""
        if self._native is not None:
            self._native.close()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _buffers(self, n: int, worker: int = 0):
        cap = self._bufs.get(worker)
        if cap is None or n > cap[0]:
            s, c1 = self.size, self.c1
            pad = np.zeros((n, s + 2, s + 2, 3), dtype=np.float32)
            cols = np.empty((n, s, s, 28), dtype=np.float32)
            cols[..., 27] = 1.0
            acc = np.empty((n * s * s, c1), dtype=np.float32)
            bits = np.empty((n * s * s, c1), dtype=bool)
            cap = self._bufs[worker] = (n, pad, cols, acc, bits)
        _, pad, cols, acc, bits = cap
        m = n * self.size * self.size
        return pad[:n], cols[:n], acc[:m], bits[:m]

    def _windows(self, pad: np.ndarray) -> np.ndarray:
        """View [n, S, S, 3, 9]: for output (y, x) and ky, the 9 floats of padded row y+ky,
        columns x..x+2 (contiguous in NHWC)."""
        n, s = pad.shape[0], self.size
        st = pad.strides
        return np.lib.stride_tricks.as_strided(
            pad, shape=(n, s, s, 3, 9), strides=(st[0], st[1], st[2], st[1], st[3]),
            writeable=False)

    def _run(self, images: np.ndarray, out_bytes: np.ndarray, worker: int) -> None:
        """numpy path for ``images`` into ``out_bytes`` (uint8 [n, S, S, C1/8] view of out)."""
        s = self.size
        n = images.shape[0]
        for i in range(0, n, self.chunk):
            b = min(self.chunk, n - i)
            pad, cols, acc, bits = self._buffers(b, worker)
            inner = pad[:, 1:-1, 1:-1, :]
            np.multiply(images[i:i + b], np.float32(2.0), out=inner, dtype=np.float32,
                        casting="unsafe")
            np.subtract(inner, np.float32(255.0), out=inner)
            cols[..., :27].reshape(b, s, s, 3, 9)[...] = self._windows(pad)
            np.matmul(cols.reshape(b * s * s, 28), self.kernel, out=acc)
            np.greater_equal(acc, np.float32(0.0), out=bits)
            out_bytes[i:i + b] = np.packbits(bits, axis=-1, bitorder="little").reshape(b, s, s, -1)

    def __call__(self, images: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Packed layer 1 of ``images``; written into ``out`` (uint64 ``[N, S, S, C1/64]``,
        C-contiguous, e.g. the kernel's DMA input buffer) when given, and returned.

        Raises ImageError (a ValueError) for images that are not uint8 ``[N, S, S, 3]`` and
        for an ``out`` of the wrong dtype, shape or layout.
        """
        if self._native is not None:
            return self._native(images, out=out, threads=self.threads)
        images = _engine.check_images(images, self.size)
        n = images.shape[0]
        shape = (n,) + self.out_shape
        out = (np.empty(shape, dtype=np.uint64) if out is None
               else _engine.check_layer1_out(out, shape))
        if n == 0:
            return out
        out_bytes = out.view(np.uint8).reshape(n, self.size, self.size, self.c1 // 8)
        blas = blas_thread_control() if self.blas_threads is not None else None
        with self._lock:
            old = blas[1]() if blas else None
            if blas and self.blas_threads is not None and old != self.blas_threads:
                blas[0](int(self.blas_threads))
            try:
                workers = min(self.threads, n)
                if workers <= 1:
                    self._run(images, out_bytes, 0)
                else:
                    if self._pool is None or self._pool_size < workers:
                        if self._pool is not None:
                            self._pool.shutdown(wait=True)
                        self._pool = ThreadPoolExecutor(max_workers=workers,
                                                        thread_name_prefix="pynq-bnn-layer1")
                        self._pool_size = workers
                    bounds = [n * w // workers for w in range(workers + 1)]
                    futures = [self._pool.submit(self._run, images[a:b], out_bytes[a:b], w)
                               for w, (a, b) in enumerate(zip(bounds, bounds[1:]))]
                    for f in futures:
                        f.result()
            finally:
                if blas and old != self.blas_threads:
                    blas[0](old)
        return out
