"""Optional build of the native CPU engine (pynq_bnn/backends/cpu/bnn_engine.c).

setup.py loads this file by path (it must not import the ``pynq_bnn`` package, whose
dependencies may be missing at build time) and passes :func:`ext_modules` and
:class:`OptionalBuildExt` to ``setup()``. The library is a plain C shared object loaded with
ctypes (no Python.h API). If there is no C compiler, or the compile fails, the build prints a
warning and goes on: ``pip install .`` still succeeds and :mod:`pynq_bnn.backends.cpu.engine` falls back to
the numpy reference.

Set ``PYNQ_BNN_NO_NATIVE=1`` to skip the native build altogether.
"""
from __future__ import annotations

import os
import platform
import sys

from setuptools import Extension
from setuptools.command.build_ext import build_ext

EXT_NAME = "pynq_bnn.backends.cpu._bnn_engine"
SOURCE = "pynq_bnn/backends/cpu/bnn_engine.c"


def _compile_args():
    args = ["-O3", "-std=gnu11", "-fno-strict-aliasing", "-fvisibility=hidden", "-pthread"]
    machine = platform.machine().lower()
    # Cortex-A9 (Zynq-7000, armv7l): every part has NEON, but armhf compilers default to VFP only.
    if machine.startswith("armv7") or machine == "armv7l":
        args += ["-mfpu=neon"]
    return args


def ext_modules():
    """The extension list for ``setup(ext_modules=...)`` (empty if disabled)."""
    if os.environ.get("PYNQ_BNN_NO_NATIVE", "").strip() not in ("", "0"):
        return []
    if sys.platform.startswith("win"):
        return []  # MSVC has neither pthreads nor GCC builtins: use the numpy fallback
    return [Extension(EXT_NAME, sources=[SOURCE], extra_compile_args=_compile_args(),
                      extra_link_args=["-pthread"], libraries=[], optional=True)]


class OptionalBuildExt(build_ext):
    """build_ext that turns a failed native build into a warning."""

    def get_export_symbols(self, ext):
        # A ctypes library, not a Python module: there is no PyInit_ symbol to export.
        return ext.export_symbols or []

    def run(self):
        try:
            super().run()
        except Exception as e:  # no compiler at all (DistutilsPlatformError, ...)
            self._warn(e)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as e:  # CompileError, LinkError, ...
            self._warn(e)

    @staticmethod
    def _warn(e):
        sys.stderr.write(
            "WARNING: pynq-bnn's native CPU engine was not built "
            f"({type(e).__name__}: {e}); the numpy reference will be used instead.\n")
