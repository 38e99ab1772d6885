"""Shared pytest configuration.

pyproject.toml ([tool.pytest.ini_options]) registers the markers and puts the repository root
(pynq_bnn from the tree, and training/, which is no installed package) and tests/ (helpers.py,
textbook.py) on sys.path, for ``pytest`` and ``python -m pytest`` alike. Shared constants
(``SMALL``, ``CIFAR_DIR``) live in tests/helpers.py.

Markers: ``slow`` (the quick loop is ``-m "not slow"``), ``needs_hls``, ``needs_torch``,
``needs_pynq``: each test that carries one also skips itself, with the reason, where the thing
is missing; the markers are for selecting (``-m "not needs_hls"``).
"""
import importlib.util
import os
import signal

import pytest


def pytest_configure(config):
    """Python's Ctrl-C handler, whatever the run was started from.

    The Ctrl-C tests (camera, driver, backends) send SIGINT to the main thread and expect a
    KeyboardInterrupt. A run started in the background (``cmd &`` in a script, nohup) inherits
    SIGINT as ignored, so Python installs no handler and those tests would wait forever.
    """
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _optional(name):
    """'<version>' of an installed distribution, or 'absent' (without importing it)."""
    if importlib.util.find_spec(name) is None:
        return "absent"
    try:
        from importlib.metadata import version
        return version(name)
    except Exception:  # installed without metadata (a source tree on sys.path)
        return "present"


def pytest_report_header(config):
    """One line saying which optional parts this run has: what its skips mean."""
    try:
        from pynq_bnn.backends.cpu import engine
        from pynq_bnn.backends.sim import hls_lib
    except Exception as e:  # the tests that import pynq_bnn will show the error in full
        return f"pynq-bnn: import failed ({type(e).__name__}: {e})"
    hls = "built" if os.path.isfile(hls_lib.default_path()) else "not built (make -C hls_src lib)"
    native = "yes" if engine.native_available() else "no (numpy reference)"
    return (f"pynq-bnn: numpy {_optional('numpy')}, torch {_optional('torch')}, "
            f"pynq {_optional('pynq')}, native CPU engine {native}, HLS C-sim library {hls}")


@pytest.fixture(scope="session")
def cifar10_test():
    """Path of the CIFAR-10 test set (``../shared/data/cifar10/test.npz``); skips without it."""
    from helpers import CIFAR_DIR
    path = os.path.join(CIFAR_DIR, "test.npz")
    if not os.path.exists(path):
        pytest.skip(f"CIFAR-10 test set not at {path}")
    return path
