"""The hardware-like backends ("pynq" and "mock"): a Hardware + the driver."""
from __future__ import annotations

import logging
from typing import Callable, Dict, Optional

import numpy as np

from ..spec import abi
from .base import Backend, Hardware, Submission
from .driver import Accelerator, describe_abi_id
from .options import DriverOptions, MockOptions, PynqOptions

logger = logging.getLogger(__name__)


class AcceleratorBackend(Backend):
    """A :class:`~pynq_bnn.backends.base.Backend` that runs
    :class:`pynq_bnn.backends.driver.Accelerator`.

    The kernel runs in the background once started, so :attr:`overlaps` is True: ``submit``
    returns at once and the host can compute layer 1 of the next batch meanwhile.

    Parameters
    ----------
    name : str
        "pynq" or "mock".
    hardware : Hardware
        Registers, buffers and interrupt of the IP.
    options : DriverOptions
        max_batch, timeout, use_interrupt of the driver.
    on_close : callable, optional
        Called once by :meth:`close`, after the hardware is closed.
    """

    overlaps = True

    def __init__(self, name: str, hardware: Hardware, options: Optional[DriverOptions] = None,
                 on_close: Optional[Callable[[], None]] = None):
        super().__init__()
        options = options or DriverOptions()
        self.name = name
        self.hardware = hardware
        self.accelerator = Accelerator(hardware, **options.driver_kwargs())
        self._on_close = on_close

    def load(self, params) -> None:
        self._check_open()
        self.accelerator.load(params)
        self._params = params

    def run(self, packed) -> np.ndarray:
        self._check_open()
        return self.accelerator.run(packed)

    @property
    def last_timings(self) -> Dict[str, float]:
        return self.accelerator.last_timings  # per thread, kept by the driver

    @property
    def max_batch(self) -> int:  # type: ignore[override]
        """Images per kernel start (the most one :meth:`submit` takes)."""
        return self.accelerator.max_batch

    def submit(self, packed) -> Submission:
        """Start one batch of at most ``max_batch`` images without waiting (Accelerator.submit)."""
        self._check_open()
        return self.accelerator.submit(packed)

    def submit_into(self, n: int, fill, first_image: int = 0) -> Submission:
        """Start a batch whose packed input ``fill(view)`` writes straight into the kernel's
        DMA input buffer (Accelerator.submit_into)."""
        self._check_open()
        return self.accelerator.submit_into(n, fill, first_image)

    def wait(self, submission: Submission, timeout: Optional[float] = None) -> np.ndarray:
        """Scores of a submitted batch (Accelerator.wait)."""
        self._check_open()
        return self.accelerator.wait(submission, timeout)

    def reset(self) -> None:
        """Make the accelerator usable after a HardwareTimeout (see Accelerator.reset)."""
        self._check_open()
        self.accelerator.reset()

    def describe(self) -> Dict[str, object]:
        info: Dict[str, object] = {"backend": self.name, "board": None, "bitstream": None,
                                   "kernel": None}
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
        if self.reason:
            info["reason"] = self.reason
        return info

    def close(self) -> None:
        if self._closed:
            return
        try:
            self.accelerator.close()    # waits for a run of another thread (the driver's lock)
            self.hardware.close()
        finally:
            self._closed = True
            self._params = None
            if self._on_close is not None:
                on_close, self._on_close = self._on_close, None
                on_close()


class MockBackend(AcceleratorBackend):
    """The "mock" backend; ``sim`` (the simulated IP: faults, log, starts), ``memory`` (live
    allocations) and ``log`` (register traffic, violations) are there for tests."""

    def __init__(self, hardware: Hardware, sim, memory, options: Optional[DriverOptions] = None,
                 on_close: Optional[Callable[[], None]] = None):
        super().__init__("mock", hardware, options, on_close=on_close)
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


def open_pynq(options: PynqOptions) -> AcceleratorBackend:
    """The "pynq" backend (a board): :class:`~pynq_bnn.backends.options.PynqOptions`."""
    from .pynq.hardware import PynqHardware

    return AcceleratorBackend("pynq", PynqHardware(**options.hardware_kwargs()), options)


def open_mock(options: MockOptions) -> MockBackend:
    """The "mock" backend: :class:`~pynq_bnn.backends.options.MockOptions`."""
    from .sim.kernel import DEFAULT_MEM_BASE

    mem_base = DEFAULT_MEM_BASE if options.mem_base is None else options.mem_base
    if not options.via_pynq:
        from .sim.hardware import MockHardware

        if options.overlay:
            logger.info("mock backend: overlay %s ignored (pass via_pynq=True to load its "
                        ".hwh into a simulated pynq device)", options.overlay)
        hw = MockHardware(faults=options.faults, kernel=options.kernel,
                          interrupt=options.interrupt, mem_base=mem_base, board=options.board,
                          lock=options.lock)
        return MockBackend(hw, hw.sim, hw.memory, options)
    from .pynq.hardware import import_pynq

    import_pynq()
    from .sim import pynq_device as simdevice

    if options.interrupt:
        logger.info("mock backend: interrupt=True is simulated only without via_pynq")
    overlay = options.overlay or simdevice.FIXTURE_BITSTREAM
    device = simdevice.SimDevice(faults=options.faults, kernel=options.kernel,
                                 name=options.board, mem_base=mem_base)
    activation = simdevice.activated(device)
    try:
        from .pynq.hardware import PynqHardware

        pynq_hw = PynqHardware(overlay=overlay, device=device, lock=bool(options.lock))
        return MockBackend(pynq_hw, device.kernel_model, device.memory, options,
                           on_close=activation.restore)
    except BaseException:
        activation.restore()
        raise
