"""The native CPU engine for the binary layers (layers 2..L), with a numpy fallback.

``Engine(params).binary_scores(packed)`` is bit-exact with
:func:`pynq_bnn.spec.reference.binary_scores`. The work is done by a small C library
(``pynq_bnn/backends/cpu/bnn_engine.c``, built by ``pip install .`` when a C compiler is present and
loaded with ctypes) whose popcount path is chosen at run time: ``avx512-vpopcntdq``, ``avx2``,
``neon``, ``popcnt`` or ``portable``. Without the library the engine runs the numpy reference
and logs a warning once.

Environment:

* ``PYNQ_BNN_ISA=auto|portable|popcnt|avx2|avx512|neon`` forces a popcount path (default
  ``auto``: the best one this CPU supports). Forcing one the CPU lacks raises
  :class:`~pynq_bnn.errors.BackendUnavailable`.
* ``PYNQ_BNN_NATIVE=0`` disables the native library (numpy fallback).
* ``PYNQ_BNN_ENGINE_LIB=/path/to/lib.so`` loads the library from another place.
* ``PYNQ_BNN_THREADS=N`` default thread count (otherwise one per usable CPU).
"""
from __future__ import annotations

import ctypes
import glob
import logging
import os
import threading

import numpy as np

from ...spec import reference
from ...errors import BackendUnavailable
from ...host.layer1 import FirstLayer

__all__ = ["Engine", "FirstLayer", "native_available", "supported_isas", "best_isa"]

log = logging.getLogger(__name__)

_ABI_VERSION = 1
ISA_CODES = {"portable": 0, "popcnt": 1, "avx2": 2, "avx512": 3, "neon": 4}
_ALIASES = {"avx512-vpopcntdq": "avx512", "avx512vpopcntdq": "avx512", "scalar": "portable"}
FALLBACK_ISA = "numpy-reference"

_lib = None
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
    global _lib, _lib_error
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
                    raise OSError(f"ABI version {lib.bnn_abi_version()} (expected {_ABI_VERSION})")
            except (OSError, AttributeError) as e:
                errors.append(f"{path}: {e}")
                continue
            _declare(lib)
            _lib = lib
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


def native_available() -> bool:
    """True if the native library is built, loadable and not disabled."""
    return _load() is not None


def supported_isas():
    """Popcount paths this CPU can run with the native library (best first); [] without it."""
    lib = _load()
    if lib is None:
        return []
    order = ["avx512", "avx2", "neon", "popcnt", "portable"]
    return [n for n in order if lib.bnn_isa_supported(ISA_CODES[n])]


def best_isa():
    lib = _load()
    if lib is None:
        return FALLBACK_ISA
    return _name_of(lib.bnn_best_isa())


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
    """

    def __init__(self, params, threads: int | None = None, isa: str | None = None,
                 native: bool = True):
        global _warned
        self.params = params
        self.network = params.network
        self.threads = _default_threads() if threads is None else max(1, int(threads))
        self._handle = None
        self._lib = None
        self._first = None
        first = self.network.first_layer
        self.input_shape = (first.out_size, first.out_size, first.out_channels // 64)
        isa = _normalise_isa(isa if isa is not None else os.environ.get("PYNQ_BNN_ISA"))
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
        if self._handle is not None and self._lib is not None:
            self._lib.bnn_destroy(self._handle)
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
        return (f"Engine(isa={self.isa!r}, threads={self.threads}, "
                f"network={self.network.conv_channels}/{self.network.fc_units})")

    # -------------------------------------------------------------------------- running
    def binary_scores(self, packed: np.ndarray) -> np.ndarray:
        """Layers 2..L on packed layer-1 output uint64 [N, H, W, C1/64] -> int32 [N, n_classes]."""
        x = np.asarray(packed)
        if x.ndim != 4 or tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"expected packed uint64 [N, {', '.join(map(str, self.input_shape))}]"
                             f", got shape {x.shape}")
        if not self.available:
            return reference.binary_scores(self.params, x)
        if x.dtype.kind not in "ui":
            raise ValueError(f"expected packed uint64 words, got dtype {x.dtype}")
        x = np.ascontiguousarray(x, dtype=np.uint64)
        n = x.shape[0]
        out = np.empty((n, self.network.n_classes), dtype=np.int32)
        if n == 0:
            return out
        if self._handle is None:
            raise RuntimeError("engine is closed")
        # Fewer images than threads: one image split across threads layer by layer costs more
        # in barriers than it gains (batch 1: 526 img/s on 2 threads vs 1,660 on 1, measured).
        threads = min(self.threads, n)
        rc = self._lib.bnn_run(self._handle, x.ctypes.data, n, out.ctypes.data, threads,
                               self._isa_code)
        if rc != 0:
            raise RuntimeError(f"native engine failed (code {rc})")
        return out

    def first_layer(self, images: np.ndarray) -> np.ndarray:
        """Layer 1 (fast numpy/BLAS path), uint8 NHWC images -> packed uint64 map."""
        if self._first is None:
            self._first = FirstLayer(self.params, threads=self.threads)
        return self._first(images)

    def scores(self, images: np.ndarray) -> np.ndarray:
        """Integer class scores for uint8 NHWC images (layer 1 + binary layers)."""
        return self.binary_scores(self.first_layer(images))

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Class indices (first maximum of the per-class affine, docs/FORMAT.md s.7)."""
        return reference.predict(self.params, self.scores(images))
