"""Build of the native CPU engine (bnn_engine.c, bnn_layer1.c, bnn_resize.c in this folder).

setup.py loads this file by path (it must not import the ``pynq_bnn`` package, whose
dependencies may be missing at build time) and passes :func:`ext_modules` and
:class:`OptionalBuildExt` to ``setup()``. The library is a plain C shared object loaded with
ctypes (no Python.h API).

A failed build (no C compiler, a compile or link error) **fails the install**, because the
numpy fallback is 100-200x slower and a board user would not notice otherwise:

* ``PYNQ_BNN_ALLOW_NO_NATIVE=1``: a failed build prints a warning and the install goes on
  (the engine then uses the numpy reference; ``engine.status()`` says so);
* ``PYNQ_BNN_NO_NATIVE=1``: do not even try (explicit opt-out, e.g. for a pure-Python wheel).

No global vector flags (-march, -mfpu): every vector function carries its own
``__attribute__((target(...)))`` (bnn_cpu.h) and the path is chosen at run time, so one
binary runs on every CPU of its architecture and the portable path is really portable. On
32-bit ARM (any userland: armv7l, armv8l) the NEON functions are compiled with
``target("fpu=neon")`` and enabled when the kernel reports HWCAP_NEON.
"""
from __future__ import annotations

import os
import sys

from setuptools import Extension
from setuptools.command.build_ext import build_ext

EXT_NAME = "pynq_bnn.backends.cpu._bnn_engine"
_DIR = "pynq_bnn/backends/cpu"
SOURCES = [f"{_DIR}/bnn_engine.c", f"{_DIR}/bnn_layer1.c", f"{_DIR}/bnn_resize.c"]
HEADERS = [f"{_DIR}/bnn_cpu.h"]
SOURCE = SOURCES[0]  # kept for callers that name "the" engine source

ALLOW_ENV = "PYNQ_BNN_ALLOW_NO_NATIVE"
SKIP_ENV = "PYNQ_BNN_NO_NATIVE"


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "no", "false", "off")


def _compile_args():
    return ["-O3", "-std=gnu11", "-fno-strict-aliasing", "-fvisibility=hidden", "-pthread"]


def ext_modules():
    """The extension list for ``setup(ext_modules=...)`` (empty if skipped on purpose)."""
    if _flag(SKIP_ENV):
        return []
    if sys.platform.startswith("win") and _flag(ALLOW_ENV):
        return []  # MSVC has neither pthreads nor GCC builtins: the numpy fallback
    return [Extension(EXT_NAME, sources=list(SOURCES), depends=list(HEADERS),
                      extra_compile_args=_compile_args(), extra_link_args=["-pthread"],
                      libraries=[])]


class NativeBuildError(RuntimeError):
    """The native engine did not build and PYNQ_BNN_ALLOW_NO_NATIVE is not set."""


class OptionalBuildExt(build_ext):
    """build_ext for the ctypes library: a failed build raises, unless PYNQ_BNN_ALLOW_NO_NATIVE
    is set, when it prints a warning and the install goes on."""

    def get_export_symbols(self, ext):
        # A ctypes library, not a Python module: there is no PyInit_ symbol to export.
        return ext.export_symbols or []

    def run(self):
        try:
            super().run()
        except NativeBuildError:
            raise
        except Exception as e:  # no compiler at all (DistutilsPlatformError, ...)
            self._failed(e)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as e:  # CompileError, LinkError, ...
            self._failed(e)

    @staticmethod
    def _failed(e):
        what = f"{type(e).__name__}: {e}"
        if _flag(ALLOW_ENV):
            sys.stderr.write(
                f"WARNING: pynq-bnn's native CPU engine was not built ({what}); {ALLOW_ENV} is "
                "set, so the install goes on and the numpy reference (100-200x slower) will be "
                "used instead.\n")
            return
        hint = ("it needs pthreads and a GCC-compatible compiler, which MSVC is not"
                if sys.platform.startswith("win") else
                "install a C compiler, e.g. `sudo apt-get install build-essential`, and retry")
        raise NativeBuildError(
            f"pynq-bnn's native CPU engine did not build ({what}): {hint}; or set "
            f"{ALLOW_ENV}=1 to install with the numpy fallback (100-200x slower), or "
            f"{SKIP_ENV}=1 to skip the native build on purpose.") from e
