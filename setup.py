"""pynq-bnn's setuptools hooks: what pyproject.toml cannot say statically.

The metadata, dependencies and entry points are in pyproject.toml (PEP 517 build). This file adds
the package list, since the top-level notebooks/ folder IS the package ``pynq_bnn.notebooks``
(one copy of the notebooks in the source tree, inside the wheel for
``pynq get-notebooks pynq-bnn``), and the native CPU engine (pynq_bnn/backends/cpu/build.py:
a ctypes library; a failed compile fails the install unless PYNQ_BNN_ALLOW_NO_NATIVE=1, and
PYNQ_BNN_NO_NATIVE=1 skips it), and the license field, whose form depends on the setuptools
version (license_metadata).

Nothing here imports pynq or reads a BOARD variable: the same wheel installs on an x86 PC
and on a PYNQ board image (which brings its own pynq).
"""
import os

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def load_engine_build():
    """pynq_bnn/backends/cpu/build.py, loaded by path (importing pynq_bnn needs numpy)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        "pynq_bnn_engine_build", os.path.join(HERE, "pynq_bnn", "backends", "cpu", "build.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def license_metadata():
    """BSD-3-Clause as a PEP 639 License-Expression where setuptools has it (>= 77, Python >= 3.9),
    as the classic License field before (Python 3.8's last setuptools is 75.3).

    pyproject.toml cannot say it for both: setuptools < 77 rejects the SPDX string there, and
    >= 77 deprecates the ``{text = ...}`` table.
    """
    import setuptools
    major = int(setuptools.__version__.split(".")[0])
    return {"license_expression": "BSD-3-Clause"} if major >= 77 else {"license": "BSD-3-Clause"}


_engine_build = load_engine_build()

setup(
    packages=find_packages(include=["pynq_bnn", "pynq_bnn.*"]) + ["pynq_bnn.notebooks"],
    package_dir={"pynq_bnn.notebooks": "notebooks"},
    ext_modules=_engine_build.ext_modules(),
    cmdclass={"build_ext": _engine_build.OptionalBuildExt},
    **license_metadata(),
)
