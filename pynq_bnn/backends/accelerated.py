"""The hardware-like backends ("pynq" and "mock"): a Hardware + the driver."""
from __future__ import annotations

import logging
from typing import Dict

from ..spec import abi
from .driver import DEFAULT_MAX_BATCH, DEFAULT_TIMEOUT, Accelerator, describe_abi_id
from .base import Backend, Hardware

logger = logging.getLogger(__name__)


class AcceleratorBackend(Backend):
    """A :class:`~pynq_bnn.backends.base.Backend` that runs :class:`pynq_bnn.backends.driver.Accelerator`.

    Parameters
    ----------
    name : str
        "pynq" or "mock".
    hardware : Hardware
        Registers, buffers and interrupt of the IP.
    max_batch, timeout, use_interrupt
        Passed to :class:`~pynq_bnn.backends.driver.Accelerator`.
    on_close : callable, optional
        Called once by :meth:`close`, after the hardware is closed.
    """

    def __init__(self, name: str, hardware: Hardware, max_batch: int = DEFAULT_MAX_BATCH,
                 timeout: float = DEFAULT_TIMEOUT, use_interrupt: bool = True, on_close=None):
        super().__init__()
        self.name = name
        self.hardware = hardware
        self.accelerator = Accelerator(hardware, max_batch=max_batch, timeout=timeout,
                                       use_interrupt=use_interrupt)
        self._on_close = on_close

    def load(self, params) -> None:
        self._check_open()
        self.accelerator.load(params)

    def run(self, packed):
        self._check_open()
        return self.accelerator.run(packed)

    @property
    def last_timings(self) -> Dict[str, float]:
        return self.accelerator.last_timings  # per thread, kept by the driver

    @property
    def max_batch(self) -> int:
        """Images per kernel start (the most one :meth:`submit` takes)."""
        return self.accelerator.max_batch

    def submit(self, packed):
        """Start one batch of at most ``max_batch`` images without waiting (Accelerator.submit)."""
        self._check_open()
        return self.accelerator.submit(packed)

    def wait(self, submission, timeout=None):
        """Scores of a submitted batch (Accelerator.wait)."""
        self._check_open()
        return self.accelerator.wait(submission, timeout)

    def reset(self) -> None:
        """Make the accelerator usable after a HardwareTimeout (see Accelerator.reset)."""
        self._check_open()
        self.accelerator.reset()

    def describe(self) -> Dict[str, object]:
        info = {"backend": self.name, "board": None, "bitstream": None, "kernel": None}
        info.update(self.hardware.describe())
        abi_id = self.accelerator.abi_id
        info.update({
            "abi_id": describe_abi_id(abi_id) if abi_id is not None else None,
            "abi_expected": describe_abi_id(abi.ABI_ID),
            "max_batch": self.accelerator.max_batch,
            "timeout_s": self.accelerator.timeout,
            "interrupt": self.hardware.interrupt is not None and self.accelerator.use_interrupt,
            "model_loaded": self.accelerator.loaded,
        })
        return info

    def close(self) -> None:
        if self._closed:
            return
        try:
            self.accelerator.close()
            self.hardware.close()
        finally:
            self._closed = True
            if self._on_close is not None:
                on_close, self._on_close = self._on_close, None
                on_close()


class MockBackend(AcceleratorBackend):
    """The "mock" backend; ``sim`` (the simulated IP: faults, log, starts), ``memory`` (live
    allocations) and ``log`` (register traffic, violations) are there for tests."""

    def __init__(self, hardware: Hardware, sim, memory, **kwargs):
        super().__init__("mock", hardware, **kwargs)
        self.sim = sim
        self.memory = memory
        self.log = memory.log

    def describe(self):
        info = super().describe()
        info["kernel"] = self.sim.kernel
        if info.get("board") and "simulated" not in str(info["board"]):
            info["board"] = f"{info['board']} (simulated)"
        info["bitstream"] = None   # a simulation, whatever fixture pynq was shown
        return info


_DRIVER_OPTIONS = ("max_batch", "timeout", "use_interrupt")


def _split(options: dict):
    driver = {k: options.pop(k) for k in _DRIVER_OPTIONS if k in options}
    return driver, options


def open_pynq(**options) -> AcceleratorBackend:
    """The "pynq" backend: options of PynqHardware (overlay, board, device, download,
    ignore_version, reset_timeout) and of the driver (max_batch, timeout, use_interrupt)."""
    from .pynq.hardware import PynqHardware

    driver, hw_options = _split(dict(options))
    return AcceleratorBackend("pynq", PynqHardware(**hw_options), **driver)


def open_mock(via_pynq: bool = False, **options) -> MockBackend:
    """The "mock" backend.

    Options: ``faults``, ``kernel`` ("auto" | "hls-lib" | "reference"), ``board``, ``mem_base``,
    ``interrupt`` (pynq-free only), ``lock`` (take the board's cross-process lock, as the pynq
    backend always does), ``overlay`` (with via_pynq: the .bit whose .hwh describes
    the simulated PL; default the test fixture; ignored otherwise), the driver's (max_batch,
    timeout, use_interrupt), and ``via_pynq``: run the real pynq backend code on a SimDevice (needs pynq; makes the
    SimDevice pynq's active device until close, so never use it on a real board's session).
    """
    driver, sim_options = _split(dict(options))
    overlay = sim_options.pop("overlay", None)
    if not via_pynq:
        from .sim.hardware import MockHardware

        if overlay:
            logger.info("mock backend: overlay %s ignored (pass via_pynq=True to load its "
                        ".hwh into a simulated pynq device)", overlay)

        hw = MockHardware(**sim_options)
        return MockBackend(hw, hw.sim, hw.memory, **driver)
    from .pynq.hardware import import_pynq

    import_pynq()
    from .sim import pynq_device as simdevice

    overlay = overlay or simdevice.FIXTURE_BITSTREAM
    lock = bool(sim_options.pop("lock", False))  # the board lock only when asked for
    if "board" in sim_options:
        sim_options["name"] = sim_options.pop("board")
    device = simdevice.SimDevice(**sim_options)
    activation = simdevice.activated(device)
    try:
        from .pynq.hardware import PynqHardware

        hw = PynqHardware(overlay=overlay, device=device, lock=lock)
        return MockBackend(hw, device.kernel_model, device.memory, on_close=activation.restore,
                           **driver)
    except BaseException:
        activation.restore()
        raise
