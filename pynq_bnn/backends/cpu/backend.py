"""The "cpu" backend: no FPGA; layers 2..L on the ARM (or any PC).

Runs :class:`pynq_bnn.backends.cpu.engine.Engine` (the native XNOR-popcount engine, which
itself falls back to the numpy reference without its C library); if the engine module is
missing or fails to construct, :func:`pynq_bnn.spec.reference.binary_scores` (bit-exact,
about 0.1 s per image for the full network on a PC). ``engine=False`` forces the reference.

Threads: any number may :meth:`~CpuBackend.run` at once; :meth:`~CpuBackend.load` and
:meth:`~CpuBackend.close` wait until the running calls have finished and hold new ones back
while they swap or free the engine (freeing it under a running call crashed the process:
issue 17), so a run started after close() raises :class:`~pynq_bnn.errors.ClosedError`.
"""
from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Optional

from ...errors import BnnError
from ...spec import reference
from ..base import Backend, check_packed

if TYPE_CHECKING:  # engine.py is imported when a model loads; here only its type is needed
    from .engine import Engine

logger = logging.getLogger(__name__)


def _engine_name(isa: str) -> str:
    return "numpy reference" if isa == "numpy-reference" else f"native engine ({isa})"


class CpuBackend(Backend):
    """Runs the binary layers on the CPU (options: :class:`pynq_bnn.backends.options.CpuOptions`).

    Parameters
    ----------
    engine : bool
        Use the native engine where it is available (default True).
    max_batch : int
        Images per :meth:`submit` (the pipeline's batch size); :meth:`run` takes any number.
    """

    name = "cpu"

    def __init__(self, engine: bool = True, max_batch: int = 64):
        super().__init__()
        self._use_engine = bool(engine)
        self.max_batch = int(max_batch)
        self._engine: Optional[Engine] = None
        self._gate = threading.Condition()
        self._runs = 0             # run() calls in progress
        self._exclusive = False    # load() or close() is swapping the engine

    @property
    def kernel(self) -> str:
        """What runs the layers: the loaded engine's ISA, or (before load) what load will use."""
        if self._engine is not None:
            return _engine_name(self._engine.isa)
        if self._use_engine and self._params is None:
            try:
                from . import engine
                return _engine_name(engine.best_isa())
            except Exception:  # describe() must not fail; load() reports the reason
                pass
        return "numpy reference"

    @contextmanager
    def _exclusively(self):
        """Wait for running calls to finish and keep new ones out (load / close)."""
        with self._gate:
            while self._exclusive:
                self._gate.wait()
            self._exclusive = True      # from here on new runs wait (no writer starvation)
            while self._runs:
                self._gate.wait()
        try:
            yield
        finally:
            with self._gate:
                self._exclusive = False
                self._gate.notify_all()

    def load(self, params) -> None:
        with self._exclusively():
            self._check_open()
            self._close_engine()
            self._params = params
            if self._use_engine:
                try:
                    from .engine import Engine
                    self._engine = Engine(params)
                except Exception as e:  # the reference is always there and always exact
                    logger.warning("cpu backend: native engine unavailable (%s: %s); numpy "
                                   "reference", type(e).__name__, e)
                    self._engine = None

    def run(self, packed):
        with self._gate:
            while self._exclusive:
                self._gate.wait()
            self._check_open()
            params, engine = self._params, self._engine
            if params is None:
                raise BnnError("no model loaded: call load(params) first")
            self._runs += 1
        try:
            x = check_packed(params.network, packed)
            t0 = time.perf_counter()
            if engine is not None:
                scores = engine.binary_scores(x)
            else:
                scores = reference.binary_scores(params, x)
        finally:
            with self._gate:
                self._runs -= 1
                self._gate.notify_all()
        self._timings.value = {"transfer": 0.0, "kernel": time.perf_counter() - t0}
        return scores

    def describe(self):
        return {"backend": "cpu", "board": None, "bitstream": None, "kernel": self.kernel,
                "abi_id": None, "model_loaded": self._params is not None}

    def _close_engine(self) -> None:
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.close()

    def close(self) -> None:
        """Free the engine once running calls have finished; later calls raise ClosedError."""
        with self._exclusively():
            self._close_engine()
            self._params = None
            self._closed = True
