"""A simulated ``pynq.Device``: the real pynq code (Overlay, DefaultIP binding by VLNV,
``pynq.allocate``, ``PynqBuffer``, ``MMIO``) runs off-board on the simulated bnn_kernel IP.

Imports pynq: import this module only where pynq is installed. It follows the pattern of
PYNQ's own off-board tests (tests/mock_devices.py): no ``_probe_`` (so pynq never picks it by
itself), ``pynq.Device.active_device`` set explicitly, a stub ``pynq.ps.Clocks`` instance
(so ``Overlay.download`` does not program clock registers), ``REGISTER_RW`` capability (so
every register access goes through :meth:`SimDevice.read_registers` /
:meth:`SimDevice.write_registers`, and writing AP_START can run the kernel), metadata from a
real-format .hwh through pynqmetadata, as the board's EmbeddedDevice does.

:data:`FIXTURE_BITSTREAM` is a TEST FIXTURE: an empty .bit (pynq.Overlay insists on one)
beside a hand-written .hwh of a Zynq-7000 PS with one bnn_kernel IP. It is not a bitstream.
"""
from __future__ import annotations

import ctypes
import os
import struct
import weakref
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np
import pynq
from pynq.buffer import PynqBuffer

from ...spec import abi
from .kernel import DEFAULT_MEM_BASE, SimBnnKernel, SimLog, SimMemory

FIXTURE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
FIXTURE_BITSTREAM = os.path.join(FIXTURE_DIR, "bnn_sim_fixture.bit")


class StubClocks:
    """Stands in for pynq's PS clock driver (which programs SLCR registers on the board)."""

    def __init__(self):
        self.pl_clk_mhz = {0: 100.0, 1: 100.0, 2: 100.0, 3: 100.0}

    def set_pl_clk(self, clk_idx, div0=None, div1=None, clk_mhz=None):
        if clk_mhz is not None:
            self.pl_clk_mhz[clk_idx] = float(clk_mhz)

    def get_pl_clk(self, clk_idx):
        return self.pl_clk_mhz[clk_idx]

    def get_cpu_mhz(self):
        return 650.0


class SimDevice(pynq.Device):
    """A ``pynq.Device`` whose PL holds the simulated bnn_kernel IP.

    Parameters
    ----------
    faults : Faults, dict, iterable or None
        Injected faults of the simulated kernel.
    kernel : str
        "auto", "hls-lib" or "reference" (see :class:`pynq_bnn.backends.sim.SimBnnKernel`).
    name : str
        Board name (pynq uses it for per-board overlay resolution).
    mem_base : int
        First simulated physical address.
    """

    def __init__(self, faults=None, kernel: str = "auto", name: str = "Pynq-Z2",
                 mem_base: int = DEFAULT_MEM_BASE):
        super().__init__("pynq-bnn-sim")
        self.name = name
        self.arch = "armv7l"
        self.capabilities = {"REGISTER_RW": True, "MEMORY_MAPPED": False, "CALLABLE": False}
        self.log = SimLog()
        self.memory = SimMemory(base=mem_base, log=self.log)
        self.kernel_model = SimBnnKernel(self.memory, faults=faults, kernel=kernel)
        self.bitfile_name = None
        self.timestamp = ""
        self.downloads = 0
        self._ip_window: Optional[Tuple[int, int]] = None  # (base, size) of the kernel's registers
        self._other_registers: Dict[int, int] = {}        # every other address: plain storage
        # allocation address -> buffer
        self._owners: weakref.WeakValueDictionary[int, PynqBuffer] = weakref.WeakValueDictionary()

    # metadata and programming ------------------------------------------------------------
    def get_bitfile_metadata(self, bitfile_name, partial: bool = False):
        from pynqmetadata.frontends import Metadata
        from pynqmetadata.views.runtime import RuntimeMetadataParser

        parser = RuntimeMetadataParser(Metadata(input=Path(bitfile_name).with_suffix(".hwh")))
        parser.refresh_hierarchy_dict()
        for desc in parser.ip_dict.values():
            if desc.get("type") == abi.KERNEL_VLNV:
                self._ip_window = (int(desc["phys_addr"]), int(desc["addr_range"]))
                break
        else:
            self._ip_window = None
        return parser

    def download(self, bitstream, parser=None):
        """'Program' the PL: the simulated IP comes up in its reset state."""
        self.downloads += 1
        self.kernel_model.reset()
        self.post_download(bitstream, parser, self.name)

    def gen_cache(self, bitstream, parser=None):
        pass

    # registers -----------------------------------------------------------------------------
    def _ip_offset(self, address: int) -> Optional[int]:
        if self._ip_window is not None:
            base, size = self._ip_window
            if base <= address < base + size:
                return address - base
        return None

    def read_registers(self, address, length):
        out = bytearray()
        for a in range(int(address), int(address) + int(length), 4):
            off = self._ip_offset(a)
            value = (self.kernel_model.read(off) if off is not None
                     else self._other_registers.get(a, 0))
            out += struct.pack("<I", value & 0xFFFFFFFF)
        return bytes(out[:length])

    def write_registers(self, address, data):
        data = bytes(data)
        if len(data) % 4:
            raise MemoryError("unaligned register write")
        for i in range(0, len(data), 4):
            a = int(address) + i
            (value,) = struct.unpack_from("<I", data, i)
            off = self._ip_offset(a)
            if off is not None:
                self.kernel_model.write(off, value)
            else:
                self._other_registers[a] = value

    # memory --------------------------------------------------------------------------------
    def allocate(self, shape, dtype, **kwargs):
        """A real ``PynqBuffer`` on simulated physical memory (host copy kept apart)."""
        dtype = np.dtype(dtype)
        count = int(np.prod(shape, dtype=np.int64)) if np.ndim(shape) else int(shape)
        host = np.zeros(max(count, 1) * dtype.itemsize, dtype=np.uint8)
        alloc = self.memory.allocate(host.size)
        buf = PynqBuffer(shape, dtype, buffer=host, device=self, device_address=alloc.address,
                         bo=alloc, coherent=False)
        # pynq frees through buf.return_to.return_pointer(buf.pointer) when .memory is set
        buf.memory = self
        buf.pointer = alloc
        buf.return_to = self
        self._owners[alloc.address] = buf
        return buf

    def return_pointer(self, alloc):
        buf = self._owners.pop(alloc.address, None)
        if buf is not None:
            buf.freed = True   # keeps pynq's munmap branch (board only) from ever running
        self.memory.free(alloc)

    def flush(self, bo, offset, vaddr, nbytes):
        if nbytes:
            self.memory.flush(bo.address + offset, ctypes.string_at(vaddr, nbytes))

    def invalidate(self, bo, offset, vaddr, nbytes):
        if nbytes:
            data = np.ascontiguousarray(self.memory.invalidate(bo.address + offset, nbytes))
            ctypes.memmove(vaddr, data.ctypes.data, nbytes)


_MISSING = object()


class activated:
    """Make ``device`` pynq's active device (and stub the PS clocks) until :meth:`restore`.

    Usable as a context manager. Restores exactly what was there before, so it can be nested
    and does not leak into other tests or into a real board's session.
    """

    def __init__(self, device):
        self.device = device
        self._saved_active = pynq.Device.__dict__.get("_active_device", _MISSING)
        self._saved_clocks = pynq.ps.Clocks.__dict__.get("_real_instance", _MISSING)
        self._saved_clock_device = pynq.ps.Clocks.__dict__.get("device", _MISSING)
        pynq.Device.active_device = device
        pynq.ps.Clocks._real_instance = StubClocks()
        self._active = True

    def restore(self) -> None:
        if not self._active:
            return
        self._active = False
        for cls, name, saved in ((pynq.Device, "_active_device", self._saved_active),
                                 (pynq.ps.Clocks, "_real_instance", self._saved_clocks),
                                 (pynq.ps.Clocks, "device", self._saved_clock_device)):
            if saved is _MISSING:
                if name in cls.__dict__:
                    delattr(cls, name)
            else:
                setattr(cls, name, saved)

    def __enter__(self):
        return self.device

    def __exit__(self, exc_type, exc, tb):
        self.restore()
        return False
