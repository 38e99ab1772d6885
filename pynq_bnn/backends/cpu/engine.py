"""The native CPU engine: layer 1 and the binary layers (layers 2..L), with numpy fallbacks.

``Engine(params).binary_scores(packed)`` is bit-exact with
:func:`pynq_bnn.spec.reference.binary_scores`; ``Layer1(params)(images, out=...)`` with
:func:`pynq_bnn.spec.first_layer.conv1_packed`. The work is done by a small C library
(``bnn_engine.c`` + ``bnn_layer1.c``, built by ``pip install .`` and loaded with ctypes) whose
vector path is chosen at run time: ``avx512``, ``avx2``, ``neon``, ``popcnt`` or ``portable``.
Without the library the engine runs the numpy reference and logs a warning once;
:func:`status` says which (for ``pynq-bnn info``). :func:`fit_area` is the exact integer area
resize of docs/FORMAT.md section 10 in C (``bnn_resize.c``), which
:func:`pynq_bnn.host.preprocess.fit_array` uses when the library is there.

Environment:

* ``PYNQ_BNN_ISA=auto|portable|popcnt|avx2|avx512|neon`` forces a vector path (default
  ``auto``: the best one this CPU supports) for the binary layers and layer 1 (layer 1 has no
  popcount: ``popcnt`` means its portable path). Forcing one the CPU lacks raises
  :class:`~pynq_bnn.errors.BackendUnavailable`.
* ``PYNQ_BNN_NATIVE=0`` disables the native library (numpy fallback).
* ``PYNQ_BNN_ENGINE_LIB=/path/to/lib.so`` loads the library from another place.
* ``PYNQ_BNN_THREADS=N`` default thread count of :class:`Engine` (otherwise one per usable CPU).

This module imports nothing above ``pynq_bnn.backends`` (``pynq_bnn.host`` uses it).
"""
from __future__ import annotations

import ctypes
import glob
import logging
import os
import threading
from typing import Literal, Optional, Union

import numpy as np

from ...errors import BackendUnavailable, ClosedError, ImageError
from ...spec import reference
from ...spec.first_layer import conv1_packed
from ...spec.network import WORD_BITS

__all__ = ["Engine", "Layer1", "native_available", "status", "supported_isas",
           "layer1_isas", "best_isa", "check_images", "check_layer1_out", "fit_area",
           "fit_area_available"]

log = logging.getLogger(__name__)

_ABI_VERSION = 2
ISA_CODES = {"portable": 0, "popcnt": 1, "avx2": 2, "avx512": 3, "neon": 4}
_ALIASES = {"avx512-vpopcntdq": "avx512", "avx512vpopcntdq": "avx512", "avx512-vnni": "avx512",
            "scalar": "portable"}
FALLBACK_ISA = "numpy-reference"
#: what layer 1 runs for each ISA code (its AVX-512 path needs VNNI + BW, not VPOPCNTDQ)
L1_ISA_NAMES = {0: "portable", 2: "avx2", 3: "avx512-vnni", 4: "neon"}
L1_FALLBACK = "numpy"

_lib = None
_lib_path = None
_lib_error = None
_lib_lock = threading.Lock()
_warned = False


def _disabled() -> bool:
    return os.environ.get("PYNQ_BNN_NATIVE", "1").strip().lower() in ("0", "off", "false", "no")


def _candidates():
    env = os.environ.get("PYNQ_BNN_ENGINE_LIB")
    if env:
        return [env]
    here = os.path.dirname(os.path.abspath(__file__))
    found = []
    for pattern in ("_bnn_engine*.so", "_bnn_engine*.dylib", "_bnn_engine*.pyd"):
        found += sorted(glob.glob(os.path.join(here, pattern)))
    return found


def _load():
    """The ctypes library, or None (reason in _lib_error). Loaded once per process."""
    global _lib, _lib_error, _lib_path
    if _disabled():
        return None
    with _lib_lock:
        if _lib is not None or _lib_error is not None:
            return _lib
        errors = []
        for path in _candidates():
            try:
                lib = ctypes.CDLL(path)
                if lib.bnn_abi_version() != _ABI_VERSION:
                    raise OSError(f"ABI version {lib.bnn_abi_version()} (expected {_ABI_VERSION}:"
                                  " rebuild with `pip install .` or `python setup.py build_ext "
                                  "--inplace`)")
                _declare(lib)
            except (OSError, AttributeError) as e:
                errors.append(f"{path}: {e}")
                continue
            _lib, _lib_path = lib, path
            return lib
        _lib_error = "; ".join(errors) or "native library not built (no _bnn_engine*.so)"
        return None


def _declare(lib):
    c_int, c_void_p, c_int64 = ctypes.c_int, ctypes.c_void_p, ctypes.c_int64
    lib.bnn_isa_name.restype = ctypes.c_char_p
    lib.bnn_isa_name.argtypes = [c_int]
    lib.bnn_isa_supported.argtypes = [c_int]
    lib.bnn_best_isa.argtypes = []
    lib.bnn_default_threads.argtypes = []
    lib.bnn_create.restype = c_void_p
    lib.bnn_create.argtypes = [c_int, c_void_p, c_void_p, c_void_p, c_void_p]
    lib.bnn_destroy.restype = None
    lib.bnn_destroy.argtypes = [c_void_p]
    lib.bnn_run.argtypes = [c_void_p, c_void_p, c_int64, c_void_p, c_int, c_int]
    lib.bnn_l1_isa_supported.argtypes = [c_int]
    lib.bnn_l1_best_isa.argtypes = []
    lib.bnn_l1_create.restype = c_void_p
    lib.bnn_l1_create.argtypes = [c_int, c_int, c_void_p, c_void_p, c_void_p]
    lib.bnn_l1_destroy.restype = None
    lib.bnn_l1_destroy.argtypes = [c_void_p]
    lib.bnn_l1_run.argtypes = [c_void_p, c_void_p, c_int64, c_void_p, c_int, c_int]


def native_available() -> bool:
    """True if the native library is built, loadable and not disabled."""
    return _load() is not None


def supported_isas():
    """Binary-layer paths this CPU can run with the native library (best first); [] without it."""
    lib = _load()
    if lib is None:
        return []
    order = ["avx512", "avx2", "neon", "popcnt", "portable"]
    return [n for n in order if lib.bnn_isa_supported(ISA_CODES[n])]


def layer1_isas():
    """Layer-1 paths this CPU can run (names as :attr:`Layer1.isa`, best first); [] without
    the library."""
    lib = _load()
    if lib is None:
        return []
    return [L1_ISA_NAMES[c] for c in (3, 2, 4, 0) if lib.bnn_l1_isa_supported(c)]


def best_isa():
    lib = _load()
    if lib is None:
        return FALLBACK_ISA
    return _name_of(lib.bnn_best_isa())


def status() -> dict:
    """What the CPU engine runs here, for ``pynq-bnn info`` and logs.

    ``{"native": bool, "summary": str, "isa": ..., "layer1_isa": ..., "supported_isas": [...],
    "layer1_isas": [...], "library": path or None, "reason": why not native (or None),
    "threads": default thread count}``; ``isa``/``layer1_isa`` are the paths ``auto`` picks
    (``PYNQ_BNN_ISA`` not applied), ``"numpy fallback"`` without the library.
    """
    lib = _load()
    threads = _default_threads()
    if lib is None:
        reason = "disabled by PYNQ_BNN_NATIVE" if _disabled() else _lib_error
        return {"native": False, "summary": f"numpy fallback ({reason})",
                "isa": "numpy fallback", "layer1_isa": "numpy fallback", "supported_isas": [],
                "layer1_isas": [], "library": None, "reason": reason, "threads": threads}
    isa = lib.bnn_isa_name(lib.bnn_best_isa()).decode()
    l1 = L1_ISA_NAMES[lib.bnn_l1_best_isa()]
    return {"native": True, "summary": f"native ({isa}; layer 1 {l1})", "isa": isa,
            "layer1_isa": l1, "supported_isas": supported_isas(), "layer1_isas": layer1_isas(),
            "library": _lib_path, "reason": None, "threads": threads}


def _name_of(code: int) -> str:
    for name, c in ISA_CODES.items():
        if c == code:
            return name
    raise ValueError(code)


def _normalise_isa(isa):
    isa = (isa or "auto").strip().lower()
    isa = _ALIASES.get(isa, isa)
    if isa != "auto" and isa not in ISA_CODES:
        raise ValueError(f"unknown ISA {isa!r}; expected auto or one of {sorted(ISA_CODES)}")
    return isa


def _default_threads() -> int:
    env = os.environ.get("PYNQ_BNN_THREADS")
    if env:
        return max(1, int(env))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


class _RunGuard:
    """Counts native calls in progress so that close() waits for them before freeing the
    native object (freeing it under a running call crashed the process: issue 17)."""

    def __init__(self):
        self._cond = threading.Condition()
        self._active = 0
        self.closed = False

    def enter(self, what: str):
        with self._cond:
            if self.closed:
                raise ClosedError(f"{what} is closed")
            self._active += 1

    def leave(self):
        with self._cond:
            self._active -= 1
            if self._active == 0:
                self._cond.notify_all()

    def close(self) -> bool:
        """Mark closed (new calls refuse) and wait for running ones; True the first time."""
        with self._cond:
            first = not self.closed
            self.closed = True
            while self._active:
                self._cond.wait()
        return first


# ------------------------------------------------------------------------------ resize

_resize_declared = None


def _resize_lib():
    """The library if it has the resize (bnn_resize.c), else None. Declared on first use, so
    that a library built before the resize existed still loads for the layers."""
    global _resize_declared
    lib = _load()
    if lib is None:
        return None
    if _resize_declared is None:
        try:
            f = lib.bnn_fit_area_u8_isa
            f.restype = ctypes.c_int
            f.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                          ctypes.c_ssize_t, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p,
                          ctypes.c_int]
            _resize_declared = True
        except AttributeError:
            _resize_declared = False
    return lib if _resize_declared else None


def fit_area_available() -> bool:
    """True if :func:`fit_area` runs in native code here (library built, not disabled)."""
    return _resize_lib() is not None


def fit_area(src, size: int, out: Optional[np.ndarray] = None,
             isa: Optional[str] = None) -> Optional[np.ndarray]:
    """Centre square + exact integer area average to ``size x size`` in C (docs/FORMAT.md
    section 10), bit-identical to :func:`pynq_bnn.host.preprocess.fit_array`.

    ``src``: uint8 ``H x W x C`` with ``min(H, W) >= size`` (downscaling or a plain crop;
    any row stride, a negative one included; a non-contiguous pixel or channel layout is
    copied first). ``out``: an optional C-contiguous writeable uint8 ``[size, size, C]``.
    ``isa``: ``None``/``"auto"``, ``"neon"`` or ``"portable"`` (tests).

    Returns the ``[size, size, C]`` result, or **None when the native library is missing or
    disabled** (``PYNQ_BNN_NATIVE=0``): the caller then runs the numpy reference. Raises
    ValueError for arguments the C function refuses (wrong dtype or shape, ``min(H, W) <
    size``), BackendUnavailable for an ``isa`` this CPU lacks.
    """
    lib = _resize_lib()
    if lib is None:
        return None
    a = np.asarray(src)
    if a.dtype != np.uint8 or a.ndim != 3 or 0 in a.shape:
        raise ValueError(f"fit_area: expected a uint8 H x W x C image, got {a.dtype} "
                         f"{a.shape}")
    size = int(size)
    h, w, c = a.shape
    if size < 1 or min(h, w) < size:
        raise ValueError(f"fit_area: size {size} must be in [1, min(H, W) = {min(h, w)}]")
    if a.strides[2] != 1 or a.strides[1] != c:
        a = np.ascontiguousarray(a)
    if out is None:
        out = np.empty((size, size, c), np.uint8)
    elif (not isinstance(out, np.ndarray) or out.dtype != np.uint8
          or out.shape != (size, size, c) or not out.flags.c_contiguous
          or not out.flags.writeable):
        raise ValueError(f"fit_area: out must be a writeable C-contiguous uint8 array "
                         f"{(size, size, c)}")
    code = -1 if isa in (None, "auto") else {"portable": 0, "neon": 4}.get(isa)
    if code is None:
        raise ValueError(f"fit_area: unknown isa {isa!r} (auto, neon, portable)")
    rc = lib.bnn_fit_area_u8_isa(a.ctypes.data, h, w, c, a.strides[0], size, out.ctypes.data,
                                 None, code)
    if rc == -3:
        raise BackendUnavailable(f"fit_area: this CPU cannot run the {isa!r} path")
    if rc == -2:
        raise MemoryError("fit_area: out of memory")
    if rc != 0:
        raise ValueError(f"fit_area: the native resize refused {a.shape} -> {size} ({rc})")
    return out


# ------------------------------------------------------------------------------ layer 1

def check_images(images, size: int) -> np.ndarray:
    """uint8 NHWC ``[N, size, size, 3]`` as a C-contiguous array, or ImageError."""
    a = np.asarray(images)
    if a.dtype != np.uint8:
        raise ImageError(f"layer 1: expected uint8 images [N, {size}, {size}, 3], got dtype "
                         f"{a.dtype}")
    if a.ndim != 4 or a.shape[1:] != (size, size, 3):
        raise ImageError(f"layer 1: expected uint8 images [N, {size}, {size}, 3], got shape "
                         f"{tuple(a.shape)}")
    return np.ascontiguousarray(a)


def check_layer1_out(out, shape: tuple) -> np.ndarray:
    """``out`` if packed layer-1 output of ``shape`` can be written into it in place:
    a writeable, aligned, C-contiguous native uint64 array (a slice of the kernel's DMA input
    buffer, say). ImageError naming the problem otherwise (never a silent copy)."""
    shape = tuple(int(s) for s in shape)
    if not isinstance(out, np.ndarray):
        raise ImageError(f"out: expected a numpy uint64 array {shape}, got {type(out).__name__}")
    if out.dtype != np.uint64:
        raise ImageError(f"out: dtype {out.dtype.str}, expected native uint64 (<u8 here) "
                         f"of shape {shape}")
    if tuple(out.shape) != shape:
        raise ImageError(f"out: shape {tuple(out.shape)}, expected {shape}")
    if not out.flags.c_contiguous:
        raise ImageError("out: not C-contiguous (layer 1 writes the packed words in place; "
                         "pass a contiguous slice such as buf[a:b])")
    if not out.flags.writeable:
        raise ImageError("out: read-only array")
    if not out.flags.aligned:
        raise ImageError("out: not aligned to 8 bytes")
    return out


class Layer1:
    """Layer 1 of ``params`` in native code (int8 conv, threshold and packing in one pass).

    ``Layer1(params)(images, out=None)``: uint8 ``[N, S, S, 3]`` -> packed uint64
    ``[N, S, S, C1/64]``, written straight into ``out`` when given (see
    :func:`check_layer1_out`), else into a new array; equal to ``conv1_packed``.

    Parameters
    ----------
    threads : worker threads per call (default 1). They split the batch's rows, so every
        batch size, batch 1 included, uses them all.
    isa : ``"auto"`` (default, or ``PYNQ_BNN_ISA``), ``"avx512"``, ``"avx2"``, ``"neon"``,
        ``"portable"`` (``"popcnt"`` = portable).

    Attributes
    ----------
    isa : ``"avx512-vnni"``, ``"avx2"``, ``"neon"`` or ``"portable"``.

    Raises BackendUnavailable without the native library or for an ISA the CPU lacks.
    Calls may come from several threads; :meth:`close` waits for running ones.
    """

    def __init__(self, params, threads: int | None = None, isa: str | None = None):
        lib = _load()
        if lib is None:
            raise BackendUnavailable("native layer 1 unavailable: " + (
                "disabled by PYNQ_BNN_NATIVE" if _disabled() else str(_lib_error)))
        layer = params.network.first_layer
        lp = params.layers[layer.name]
        self.size = int(layer.in_size)
        self.c1 = int(layer.out_channels)
        self.out_shape = (self.size, self.size, self.c1 // WORD_BITS)
        self.threads = 1 if threads is None else max(1, int(threads))
        isa = _normalise_isa(isa if isa is not None else os.environ.get("PYNQ_BNN_ISA"))
        if isa == "auto":
            code = lib.bnn_l1_best_isa()
        else:
            code = 0 if isa == "popcnt" else ISA_CODES[isa]
            if not lib.bnn_l1_isa_supported(code):
                raise BackendUnavailable(
                    f"this CPU cannot run layer 1's {isa!r} path (it runs: {layer1_isas()})")
        self._isa_code = code
        self.isa = L1_ISA_NAMES[code]
        w = np.ascontiguousarray(lp.weights, dtype=np.int8).reshape(self.c1, 27)
        t = np.ascontiguousarray(lp.thresholds, dtype=np.int32)
        d = np.ascontiguousarray(lp.directions, dtype=np.int8)
        handle = lib.bnn_l1_create(self.c1, self.size, w.ctypes.data, t.ctypes.data,
                                   d.ctypes.data)
        if not handle:
            raise BackendUnavailable("native layer 1 refused the parameters (weights outside "
                                     "[-127, 127], directions not +-1, or out of memory)")
        self._lib = lib
        self._handle = handle
        self._guard = _RunGuard()

    def __call__(self, images, out=None, threads: int | None = None) -> np.ndarray:
        x = check_images(images, self.size)
        n = x.shape[0]
        shape = (n,) + self.out_shape
        out = np.empty(shape, dtype=np.uint64) if out is None else check_layer1_out(out, shape)
        if n == 0:
            return out
        threads = self.threads if threads is None else max(1, int(threads))
        self._guard.enter("native layer 1")
        try:
            rc = self._lib.bnn_l1_run(self._handle, x.ctypes.data, n, out.ctypes.data,
                                      threads, self._isa_code)
        finally:
            self._guard.leave()
        if rc != 0:
            raise MemoryError(f"native layer 1 failed (code {rc}: out of memory or no threads)")
        return out

    def close(self) -> None:
        """Free the native object (after running calls finish); later calls raise ClosedError."""
        guard = getattr(self, "_guard", None)
        if guard is not None and guard.close() and self._handle:
            self._lib.bnn_l1_destroy(self._handle)
            self._handle = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"Layer1(isa={self.isa!r}, threads={self.threads}, c1={self.c1}, size={self.size})"


# ------------------------------------------------------------------------------ binary layers

class Engine:
    """Binary layers of ``params`` on the CPU.

    Parameters
    ----------
    params : Params
    threads : worker threads per call (default: one per usable CPU, or ``PYNQ_BNN_THREADS``).
    isa : ``"auto"`` (default, or ``PYNQ_BNN_ISA``), ``"avx512"``, ``"avx2"``, ``"neon"``,
        ``"popcnt"`` or ``"portable"``.
    native : ``False`` forces the numpy fallback.

    Attributes
    ----------
    available : the native library runs this engine.
    isa : the popcount path in use, e.g. ``"avx512-vpopcntdq"``; ``"numpy-reference"`` for
        the fallback.

    Calls may come from several threads. :meth:`close` waits for the running ones and then
    frees the native engine; later calls raise :class:`~pynq_bnn.errors.ClosedError`.
    """

    def __init__(self, params, threads: int | None = None, isa: str | None = None,
                 native: bool = True):
        global _warned
        self.params = params
        self.network = params.network
        self.threads = _default_threads() if threads is None else max(1, int(threads))
        self._handle = None
        self._lib: Optional[ctypes.CDLL] = None   # set (by _create) exactly when available
        self._first: Union[None, Literal[False], Layer1] = None   # False: the numpy spec
        self._first_lock = threading.Lock()
        self._guard = _RunGuard()
        first = self.network.first_layer
        self.input_shape = (first.out_size, first.out_size, first.out_channels // WORD_BITS)
        isa = _normalise_isa(isa if isa is not None else os.environ.get("PYNQ_BNN_ISA"))
        self._isa_request = isa
        lib = _load() if native else None
        if lib is None:
            if native and not _warned:
                log.warning("pynq-bnn native CPU engine unavailable (%s); using the numpy "
                            "reference (slow)", "disabled by PYNQ_BNN_NATIVE" if _disabled()
                            else _lib_error)
                _warned = True
            if isa != "auto" and native:
                raise BackendUnavailable(f"ISA {isa!r} requested but the native engine is "
                                         f"unavailable ({_lib_error or 'disabled'})")
            self.available = False
            self.isa = FALLBACK_ISA
            self._isa_code = -1
            return
        code = lib.bnn_best_isa() if isa == "auto" else ISA_CODES[isa]
        if not lib.bnn_isa_supported(code):
            raise BackendUnavailable(f"this CPU does not support the {isa!r} popcount path "
                                     f"(supported: {supported_isas()})")
        self._isa_code = code
        self.isa = lib.bnn_isa_name(code).decode()
        self._create(lib)
        self.available = True

    # -------------------------------------------------------------------------- native setup
    def _create(self, lib):
        layers = self.network.binary_layers
        desc = np.zeros((len(layers), 6), dtype=np.int32)
        keep = []  # arrays whose pointers are passed; bnn_create copies what it needs
        wp = (ctypes.c_void_p * len(layers))()
        tp = (ctypes.c_void_p * len(layers))()
        dp = (ctypes.c_void_p * len(layers))()
        for i, layer in enumerate(layers):
            lp = self.params.layers[layer.name]
            desc[i] = (0 if layer.kind == "conv" else 1, layer.in_channels, layer.out_channels,
                       layer.in_size, int(layer.pool), int(layer.last))
            w = np.ascontiguousarray(lp.weights, dtype=np.uint64)
            keep.append(w)
            wp[i] = w.ctypes.data
            if not layer.last:
                t = np.ascontiguousarray(lp.thresholds, dtype=np.int32)
                d = np.ascontiguousarray(lp.directions, dtype=np.int8)
                keep += [t, d]
                tp[i], dp[i] = t.ctypes.data, d.ctypes.data
        handle = lib.bnn_create(len(layers), desc.ctypes.data, ctypes.addressof(wp),
                                ctypes.addressof(tp), ctypes.addressof(dp))
        if not handle:
            raise BackendUnavailable("native engine refused the network description "
                                     "(out of memory or unsupported topology)")
        self._lib = lib
        self._handle = handle

    def close(self):
        """Free the native engine once running calls have finished (idempotent)."""
        guard = getattr(self, "_guard", None)
        if guard is None:
            return
        if guard.close() and self._handle is not None and self._lib is not None:
            self._lib.bnn_destroy(self._handle)
            self._handle = None
        first = getattr(self, "_first", None)
        if first is not None and hasattr(first, "close"):
            first.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return (f"Engine(isa={self.isa!r}, threads={self.threads}, "
                f"network={self.network.conv_channels}/{self.network.fc_units})")

    # -------------------------------------------------------------------------- running
    def _check_packed(self, packed) -> np.ndarray:
        x = np.asarray(packed)
        # uint64 words only: uint8/int8/float input would be converted to different words
        # and give wrong scores (issue 17); a byte-swapped uint64 holds the same words.
        if x.dtype.kind != "u" or x.dtype.itemsize != 8:
            raise ImageError(f"packed input: dtype {x.dtype}, expected uint64 words "
                             "(pynq_bnn.spec.first_layer.conv1_packed makes them)")
        if x.ndim != 4 or tuple(x.shape[1:]) != self.input_shape:
            raise ImageError(f"packed input: shape {tuple(x.shape)}, expected (N,) + "
                             f"{self.input_shape}")
        return np.ascontiguousarray(x, dtype=np.uint64)

    def binary_scores(self, packed: np.ndarray) -> np.ndarray:
        """Layers 2..L on packed layer-1 output uint64 [N, H, W, C1/64] -> int32 [N, n_classes].

        Raises ImageError for another dtype or shape, ClosedError after :meth:`close`.
        """
        x = self._check_packed(packed)
        lib = self._lib
        if not self.available or lib is None:
            if self._guard.closed:
                raise ClosedError("engine is closed")
            return reference.binary_scores(self.params, x)
        n = x.shape[0]
        out = np.empty((n, self.network.n_classes), dtype=np.int32)
        if n == 0:
            return out
        # Fewer images than threads: one image split across threads layer by layer costs more
        # in barriers than it gains (batch 1: 526 img/s on 2 threads vs 1,660 on 1, measured).
        threads = min(self.threads, n)
        self._guard.enter("engine")
        try:
            rc = lib.bnn_run(self._handle, x.ctypes.data, n, out.ctypes.data, threads,
                             self._isa_code)
        finally:
            self._guard.leave()
        if rc != 0:
            raise MemoryError(f"native engine failed (code {rc}: out of memory or no threads)")
        return out

    def first_layer(self, images: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Layer 1: uint8 NHWC images -> packed uint64 map (native :class:`Layer1` on this
        engine's threads where the library is there, else the numpy spec)."""
        with self._first_lock:
            if self._first is None:
                if self.available:
                    isa = None if self._isa_request == "auto" else self._isa_request
                    try:
                        self._first = Layer1(self.params, threads=self.threads, isa=isa)
                    except BackendUnavailable:  # e.g. VPOPCNTDQ without VNNI: layer 1's best
                        self._first = Layer1(self.params, threads=self.threads, isa="auto")
                else:
                    self._first = False
            first = self._first
        if not isinstance(first, Layer1):
            if self._guard.closed:
                raise ClosedError("engine is closed")
            x = check_images(images, self.network.image_size)
            packed = conv1_packed(self.params, x)
            if out is None:
                return packed
            check_layer1_out(out, packed.shape)[...] = packed
            return out
        return first(images, out=out, threads=self.threads)

    def scores(self, images: np.ndarray) -> np.ndarray:
        """Integer class scores for uint8 NHWC images (layer 1 + binary layers)."""
        return self.binary_scores(self.first_layer(images))

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Class indices (first maximum of the per-class affine, docs/FORMAT.md s.7)."""
        return reference.predict(self.params, self.scores(images))
