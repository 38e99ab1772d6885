"""Backends: where layers 2..L run.

    from pynq_bnn.backends import open_backend, available_backends

    with open_backend("auto") as be:      # "pynq" | "mock" | "cpu" | "auto"
        be.load(params)                   # once per model
        scores = be.run(packed)           # uint64 [N, H, W, C1/64] -> int32 [N, n_classes]
        be.last_timings                   # {'transfer': s, 'kernel': s}
        be.describe()                     # for `pynq-bnn info`

* ``pynq``: the board (pynq.Overlay, BnnKernelIP bound by VLNV, pynq.allocate).
  Options: :class:`~.options.PynqOptions` (overlay, board, device, download, ignore_version,
  reset_timeout, lock, lock_timeout, and the driver's max_batch, timeout, use_interrupt).
* ``mock``: the accelerator simulated at register level (pynq_bnn.backends.sim), same driver.
  Options: :class:`~.options.MockOptions` (kernel, faults, interrupt, board, mem_base, lock,
  via_pynq, overlay, and the driver's).
* ``cpu``: no FPGA: the native XNOR-popcount engine, else the numpy reference. Options:
  :class:`~.options.CpuOptions` (engine, max_batch); the other backends' options are ignored.
* ``auto``: pynq on a PYNQ board with an installed (or given) bitstream, else cpu; the choice
  and the reason are logged, and kept as ``backend.reason`` (every backend open_backend
  returns has one, e.g. ``"auto: pynq is not installed"`` or ``"backend 'cpu' requested"``).

Nothing here imports pynq until a backend that needs it is asked for.
"""
from __future__ import annotations

import importlib.util
import logging
import os
import warnings
from typing import List, Optional, Tuple

from ..errors import BackendUnavailable, HardwareError
from .base import Backend, Hardware, Submission, SubmissionState
from .options import CpuOptions, MockOptions, PynqOptions, options_for

logger = logging.getLogger(__name__)

BACKEND_NAMES = ("pynq", "mock", "cpu")

__all__ = ["open_backend", "available_backends", "board_status", "Backend", "Hardware",
           "Submission", "SubmissionState", "PynqOptions", "MockOptions", "CpuOptions",
           "BACKEND_NAMES"]


def board_status(overlay: Optional[str] = None, board: Optional[str] = None) -> Tuple[bool, str]:
    """Can the "pynq" backend run here? ``(ok, reason)``, without loading anything.

    ok needs: pynq importable, a pynq device found (a PYNQ board), and a bitstream (``overlay``
    or the installed one for the board, pynq_bnn.backends.pynq.overlay_files.find_overlay).
    """
    if importlib.util.find_spec("pynq") is None:
        return False, "pynq is not installed"
    try:
        import pynq
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            devices = pynq.Device.devices
    except Exception as e:  # a broken pynq install is a reason, not a crash
        return False, f"pynq cannot probe for devices ({type(e).__name__}: {e})"
    if not devices:
        return False, "pynq finds no device (this is not a PYNQ board)"
    if overlay:
        path = os.path.abspath(os.fspath(overlay))
        if not os.path.isfile(path):
            return False, f"overlay {path} does not exist"
    else:
        from .pynq.overlay_files import find_overlay
        try:
            path = find_overlay(board)
        except BackendUnavailable as e:
            return False, str(e)
    return True, f"{getattr(devices[0], 'name', 'a PYNQ device')} with bitstream {path}"


def available_backends() -> List[str]:
    """Backend names that can open here, in the order "auto" prefers them ("mock" last)."""
    ok, _ = board_status()
    return (["pynq"] if ok else []) + ["cpu", "mock"]


def open_backend(name: str = "auto", options=None, **kwargs) -> Backend:
    """Open a backend by name.

    Parameters
    ----------
    name : str
        "auto", "pynq", "mock" or "cpu".
    options : PynqOptions, MockOptions or CpuOptions, optional
        The backend's options as a config object (then no keyword options).
    **kwargs
        Or the same options as keywords (see the module docstring), e.g. ``overlay=path``,
        ``max_batch=64``, ``timeout=10.0``, ``faults={"latency": 0.01}``.

    Returns
    -------
    Backend
        Call ``load(params)`` next; close it (or use ``with``) when done.

    Raises
    ------
    BackendUnavailable
        Unknown name, or the backend cannot run here (no pynq, no board, no bitstream).
    TypeError
        An option the backend does not take (the message lists the ones it does).
    ValueError
        An option value out of range (max_batch < 1, a timeout that is not finite, ...).
    """
    key = str(name).lower()
    if key not in ("auto",) + BACKEND_NAMES:
        raise BackendUnavailable(f"unknown backend {name!r}: choose one of auto, "
                                 f"{', '.join(BACKEND_NAMES)}")
    if options is not None:
        if kwargs:
            raise TypeError("pass backend options either as an options object or as keywords")
        kwargs = {f: getattr(options, f) for f in options.__dataclass_fields__}
    if key == "auto":
        return _open_auto(kwargs)
    if key == "pynq":
        from .accelerated import open_pynq
        return _chosen(open_pynq(options_for("pynq", kwargs)), f"backend {key!r} requested")
    if key == "mock":
        from .accelerated import open_mock
        return _chosen(open_mock(options_for("mock", kwargs)), f"backend {key!r} requested")
    return _chosen(_open_cpu(options_for("cpu", kwargs)), f"backend {key!r} requested")


def _open_cpu(opts: CpuOptions) -> Backend:
    from .cpu.backend import CpuBackend
    return CpuBackend(engine=opts.engine, max_batch=opts.max_batch)


def _open_auto(kwargs) -> Backend:
    pynq_opts = options_for("pynq", {k: v for k, v in kwargs.items() if k not in _CPU_ONLY})
    cpu_opts = options_for("cpu", kwargs)
    ok, reason = board_status(pynq_opts.overlay, pynq_opts.board)
    if ok:
        from .accelerated import open_pynq
        try:
            backend = open_pynq(pynq_opts)
        except (BackendUnavailable, HardwareError) as e:
            logger.warning("backend auto: pynq found %s but failed to open it (%s); using cpu",
                           reason, e)
            reason = f"pynq found {reason} but failed to open it ({e})"
        else:
            logger.info("backend auto: pynq (%s)", reason)
            return _chosen(backend, f"auto: {reason}")
    else:
        logger.info("backend auto: cpu, because %s", reason)
    return _chosen(_open_cpu(cpu_opts), f"auto: {reason}")


#: cpu options that the pynq backend does not take ("auto" passes them to cpu only).
_CPU_ONLY = ("engine",)


def _chosen(backend: Backend, reason: str) -> Backend:
    """Record why this backend was opened (``backend.reason``, shown by the CLI and info)."""
    backend.reason = reason
    return backend
