"""ctypes loader of the HLS kernel's C-simulation build (``make -C hls_src lib``).

``hls_src/build/libbnn_kernel.so`` is the very C++ source that Vitis HLS synthesizes
(hls_src/src/bnn_kernel.cpp), compiled with g++ and wrapped in a tiny C ABI
(hls_src/src/bnn_capi.cpp). The mock backend runs it on simulated DDR, so off-board tests
exercise the kernel's own code rather than a Python model of it.

Location: the environment variable ``PYNQ_BNN_HLS_LIB`` (a path to the .so), else
``hls_src/build/libbnn_kernel.so`` beside the package source (a source checkout). An installed
wheel has no library: :func:`load` returns None and callers fall back to the numpy reference.

Example::

    lib = hls_lib.load()
    if lib is not None:
        abi_id = lib.run(abi.build_param_image(params), packed.reshape(-1), scores.reshape(-1), n)
"""
from __future__ import annotations

import ctypes
import os
from typing import Optional

import numpy as np

from ...errors import BnnError
from ...resources import HLS_SRC_DIR

__all__ = ["HlsKernelLibrary", "HlsLibError", "load", "default_path", "ENV_VAR"]

ENV_VAR = "PYNQ_BNN_HLS_LIB"
LIB_NAME = "libbnn_kernel.so"

_RC_OK, _RC_REFUSED, _RC_NULL, _RC_SHORT = 0, 1, -1, -2
_CONFIG_KEYS = ("CONV_PE", "CONV_PIX", "DENSE_BATCH", "MAX_LAYERS", "MAX_CHANNELS",
                "MAX_CONV_SIZE", "MAX_DENSE_IN", "MAX_DENSE_OUT", "MAX_CLASSES")


class HlsLibError(BnnError, ValueError):
    """Bad arguments for the C-simulation kernel (dtype, size, buffers shorter than needed),
    or a library that cannot be loaded."""


def default_path() -> str:
    """Where :func:`load` looks: ``$PYNQ_BNN_HLS_LIB``, else hls_src/build/ beside the package."""
    env = os.environ.get(ENV_VAR)
    if env:
        return env
    return os.path.join(HLS_SRC_DIR, "build", LIB_NAME)


class HlsKernelLibrary:
    """The loaded C-simulation kernel. Build with :func:`load`, not directly.

    Attributes
    ----------
    path : str
        The shared library file.
    abi_id : int
        The ABI id the build reports (compare with :data:`pynq_bnn.spec.abi.ABI_ID`).
    config : dict
        Compile-time constants of the build (parallelism and limits of bnn_config.hpp).
    last_status : str
        "ok", or "refused" when the last :meth:`run` was given a parameter image the kernel
        rejects (on the board it would write only ``abi_id`` and leave the scores untouched;
        so does this).
    """

    def __init__(self, path: str):
        self.path = path
        try:
            self._lib = ctypes.CDLL(path)
        except OSError as e:
            raise HlsLibError(f"cannot load {path}: {e}") from None
        try:
            run = self._lib.bnn_kernel_run
            abi_fn = self._lib.bnn_kernel_abi_id
            cfg = self._lib.bnn_kernel_config
        except AttributeError as e:
            raise HlsLibError(f"{path} is not a bnn_kernel library: {e}") from None
        u64p = ctypes.POINTER(ctypes.c_uint64)
        run.argtypes = [u64p, ctypes.c_uint64, u64p, ctypes.c_uint64,
                        ctypes.POINTER(ctypes.c_int32), ctypes.c_uint64, ctypes.c_uint32,
                        ctypes.POINTER(ctypes.c_uint32)]
        run.restype = ctypes.c_int
        abi_fn.argtypes = []
        abi_fn.restype = ctypes.c_uint32
        cfg.argtypes = [ctypes.c_int]
        cfg.restype = ctypes.c_int64
        self._run = run
        self.abi_id = int(abi_fn())
        self.config = {k: int(cfg(i)) for i, k in enumerate(_CONFIG_KEYS)}
        self.last_status = "ok"

    def __repr__(self):
        return f"HlsKernelLibrary({self.path!r}, abi_id=0x{self.abi_id:08x})"

    def run(self, params_words, input_words, scores_out, n_images: int) -> int:
        """One start of the kernel on host memory.

        Parameters
        ----------
        params_words : array_like of uint64
            The parameter image (:func:`pynq_bnn.spec.abi.build_param_image`), at least as long as
            its header's total-words field.
        input_words : array_like of uint64
            Packed layer-1 output of ``n_images`` images (any shape; read in C order).
        scores_out : numpy.ndarray of int32, C-contiguous and writable
            Receives ``n_images * n_classes`` scores in place (any shape; C order).
        n_images : int
            Batch size, 0..2**32-1; 0 only reports the ABI id.

        Returns
        -------
        int
            The ABI id the kernel wrote (:data:`pynq_bnn.spec.abi.ABI_ID`).

        Raises
        ------
        HlsLibError
            ``scores_out`` not a writable C-contiguous int32 array, a buffer shorter than the
            parameter image requires, ``n_images`` out of range.
        """
        n = int(n_images)
        if not 0 <= n < 1 << 32:
            raise HlsLibError(f"n_images {n_images} outside 0..2**32-1")
        if not isinstance(scores_out, np.ndarray) or scores_out.dtype != np.int32:
            raise HlsLibError("scores_out must be a numpy int32 array")
        if not (scores_out.flags.c_contiguous and scores_out.flags.writeable):
            raise HlsLibError("scores_out must be C-contiguous and writable (written in place)")
        params = np.ascontiguousarray(params_words, dtype="<u8").reshape(-1)
        inputs = np.ascontiguousarray(input_words, dtype="<u8").reshape(-1)
        abi_id = ctypes.c_uint32(0)
        u64p = ctypes.POINTER(ctypes.c_uint64)
        rc = self._run(params.ctypes.data_as(u64p), params.size, inputs.ctypes.data_as(u64p),
                       inputs.size, scores_out.ctypes.data_as(ctypes.POINTER(ctypes.c_int32)),
                       scores_out.size, n, ctypes.byref(abi_id))
        if rc == _RC_SHORT:
            raise HlsLibError(
                f"buffers too short for the parameter image: params {params.size} words, "
                f"input {inputs.size} words, scores {scores_out.size} for {n} images")
        if rc == _RC_NULL:
            raise HlsLibError("null buffer passed to bnn_kernel_run")
        if rc not in (_RC_OK, _RC_REFUSED):
            raise HlsLibError(f"bnn_kernel_run returned {rc}")
        self.last_status = "refused" if rc == _RC_REFUSED else "ok"
        return int(abi_id.value)


def load(path: Optional[str] = None) -> Optional[HlsKernelLibrary]:
    """The C-simulation kernel library, or None when it is not built.

    Parameters
    ----------
    path : str, optional
        The .so to load; default :func:`default_path`.

    Raises
    ------
    HlsLibError
        The file exists but is not a loadable bnn_kernel library.
    """
    path = path or default_path()
    if not os.path.isfile(path):
        return None
    return HlsKernelLibrary(path)
