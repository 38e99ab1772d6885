"""The simulated accelerator behind the narrow interface, without pynq.

:class:`MockHardware` gives the driver what the board gives it: device-visible buffers
(:class:`SimBuffer`, an ndarray with ``device_address``, ``flush``, ``invalidate``,
``freebuffer``), 32-bit register access that takes Python ints only (as pynq does), and an
optional interrupt, all on :mod:`pynq_bnn.backends.sim.kernel`. Where pynq is installed, the
``via_pynq=True`` option of the mock backend runs the real pynq code on
:class:`pynq_bnn.backends.sim.pynq_device.SimDevice` instead, on the same simulation.
"""
from __future__ import annotations

import numpy as np

from ...spec import abi
from ..base import Hardware
from .kernel import DEFAULT_MEM_BASE, SimBnnKernel, SimInterrupt, SimLog, SimMemory


class SimBuffer(np.ndarray):
    """Host copy of a simulated DMA buffer (what ``pynq.allocate`` returns on the board).

    Slices are SimBuffers too, with ``device_address`` advanced by their byte offset, so a
    part of a buffer can be flushed or invalidated. Only the buffer :meth:`MockHardware.allocate`
    returned frees the memory.
    """

    def __array_finalize__(self, obj):
        parent = obj if isinstance(obj, SimBuffer) else None
        if parent is not None and getattr(parent, "device_address", None) is not None:
            offset = self.__array_interface__["data"][0] - parent.__array_interface__["data"][0]
            self.device_address = parent.device_address + offset
            self._memory = parent._memory
        else:
            self.device_address = None
            self._memory = None
        self._alloc = None  # set on the owning buffer only

    @property
    def physical_address(self):
        return self.device_address

    def _bytes(self) -> np.ndarray:
        if not self.flags.c_contiguous:
            raise ValueError("flush/invalidate need a contiguous buffer or slice")
        return np.ndarray.view(np.asarray(self).reshape(-1), np.uint8)

    def flush(self) -> None:
        """Write this (part of the) buffer from the host to simulated DDR."""
        if self._memory is not None and self.nbytes:
            self._memory.flush(self.device_address, self._bytes())

    def invalidate(self) -> None:
        """Reload this (part of the) buffer from simulated DDR into the host copy."""
        if self._memory is not None and self.nbytes:
            self._bytes()[:] = self._memory.invalidate(self.device_address, self.nbytes)

    def sync_to_device(self) -> None:
        self.flush()

    def sync_from_device(self) -> None:
        self.invalidate()

    def freebuffer(self) -> None:
        """Give the memory back (owning buffer only; idempotent)."""
        alloc = self._alloc
        if alloc is not None and self._memory is not None:
            self._alloc = None
            self._memory.free(alloc)

    def __del__(self):
        self.freebuffer()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.freebuffer()
        return False


class MockHardware(Hardware):
    """The bnn_kernel IP simulated at register level, no pynq needed.

    Parameters
    ----------
    faults : Faults, dict, iterable or None
        Injected faults (:class:`pynq_bnn.backends.sim.Faults`).
    kernel : str
        "auto" (HLS C model when built, else numpy reference), "hls-lib" or "reference".
    interrupt : bool
        Give the IP an interrupt line (as if wired through an AXI INTC); default polling only.
    mem_base : int
        First simulated physical address (default above 4 GiB).
    board : str
        The board name :meth:`describe` reports.
    lock : bool or str
        Take the same cross-process board lock as the pynq backend
        (:class:`pynq_bnn.backends.pynq.lock.OverlayLock`, key ``board`` or the given string) until
        :meth:`close`, so that the "overlay in use" behaviour can be tested off-board. Off by
        default: simulations do not exclude each other.
    """

    def __init__(self, faults=None, kernel: str = "auto", interrupt: bool = False,
                 mem_base: int = DEFAULT_MEM_BASE, board: str = "Pynq-Z2", lock=False):
        self._lock = None
        self.log = SimLog()
        self.memory = SimMemory(base=mem_base, log=self.log)
        self.sim = SimBnnKernel(self.memory, faults=faults, kernel=kernel)
        self.interrupt = SimInterrupt(self.sim) if interrupt else None
        self.board = board
        if lock:   # last: nothing after it can fail and leave the lock taken
            from ..pynq.lock import OverlayLock
            self._lock = OverlayLock(lock if isinstance(lock, str) else board,
                                     description="simulated bnn_kernel (mock backend)").acquire()

    def allocate(self, shape, dtype):
        host = np.zeros(shape, dtype=dtype)
        alloc = self.memory.allocate(host.nbytes)
        buf = host.view(SimBuffer)
        buf.device_address = alloc.address
        buf._memory = self.memory
        buf._alloc = alloc
        return buf

    def read(self, offset: int) -> int:
        return self.sim.read(offset)

    def write(self, offset: int, value: int) -> None:
        # The same checks pynq's MMIO makes, so a driver bug shows up off-board too.
        if type(value) is not int:
            raise ValueError(f"Data type must be int or bytes (got {type(value).__name__})")
        if not 0 <= value <= 0xFFFFFFFF:
            raise ValueError(f"register value 0x{value:x} does not fit in 32 bits")
        if offset % 4 or not 0 <= offset < abi.REGISTER_SPAN:
            raise ValueError(f"register offset 0x{offset:x} unaligned or out of range")
        self.sim.write(offset, value)

    def reset(self) -> None:
        """Reset the simulated IP (what reloading the overlay does on the board)."""
        self.sim.reset()

    def close(self) -> None:
        """Release the board lock, if taken (idempotent)."""
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.release()

    def describe(self):
        return {"board": f"{self.board} (simulated)", "bitstream": None,
                "kernel": self.sim.kernel, "device": "simulated bnn_kernel IP, no pynq"}
