"""The simulated accelerator: physical memory, the bnn_kernel IP at register level, faults.

Everything here is pynq-free. Two front ends put it behind the narrow hardware interface:
:mod:`pynq_bnn.backends.sim.hardware` (plain numpy buffers) and
:mod:`pynq_bnn.backends.sim.pynq_device` (a ``pynq.Device`` subclass, so the real pynq code
runs on it). Both share this model, so the same faults, the same register log and the same
checks apply to both.

What is modelled, and why
-------------------------
* **Memory.** A sparse physical address space with a next-fit allocator over a coalescing free
  list: addresses keep increasing until the space is used up, then freed ranges are reused
  from the bottom again, so a stale pointer to a freed buffer stays a bus error for as long as
  possible and a long run never runs out (live allocations are counted for leak tests). Each
  allocation keeps the *device* (DDR) copy of its
  bytes; the host copy is the numpy array the driver holds. Only ``flush`` (host -> DDR) and
  ``invalidate`` (DDR -> host) move bytes between them, so a driver that forgets either gets
  wrong data, as it would with a cached buffer on the board (fresh DDR reads as 0xA5 bytes,
  so data that never reached it is garbage, not zeros). The default base address lies
  above 4 GiB, so a driver that drops the high word of a 64-bit pointer reads the wrong place.
* **Registers.** The Vitis HLS ``ap_ctrl_hs`` block of :mod:`pynq_bnn.spec.abi`: CTRL (AP_START,
  AP_DONE and AP_READY clear on read, AP_IDLE, AUTO_RESTART), GIER, IP_IER, IP_ISR (toggle on
  write), the argument registers from 0x10, ``abi_id`` (read-only) with its ``ap_vld`` bit
  (clear on read), ``params2`` (ABI version 2) after it.
* **Execution.** Writing AP_START snapshots the inputs from simulated DDR at the addresses in the
  argument registers (so a flush *after* start is too late), runs the kernel (the HLS C model
  through :mod:`pynq_bnn.backends.sim.hls_lib` when built, else
  :func:`pynq_bnn.spec.abi.parse_param_image` + the native CPU engine, else + the numpy
  reference; ``kernel=`` picks one) and commits the scores to DDR only when the run completes (so an
  invalidate *before* done reads stale data). A malformed image, an address outside every
  allocation, or a ``params2`` that does not hold the same image as ``params`` is a bus error:
  the run completes without writing scores, and it is logged.
* **Faults** (:class:`Faults`): never done, wrong ABI id, corrupted output, latency.
* **Plug-ins.** ``SimBnnKernel(compute=..., latency=...)`` (or the attributes of the same names)
  replace what a start computes and how long it takes, e.g. for benchmarks: see
  :class:`KernelStart`.
* **Recording** (:class:`SimLog`): every register access, start, completion, flush,
  invalidate, allocation and free, in order; protocol violations (start while busy, start
  before every pointer was written, argument writes while running) are collected separately.
"""
from __future__ import annotations

import bisect
import collections
import logging
import threading
import time
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Callable, Deque, Iterable, List, Optional, Set, Tuple, Union

import numpy as np

from ...errors import BackendUnavailable, SimBusError
from ...spec import abi

if TYPE_CHECKING:
    from ..cpu.engine import Engine

logger = logging.getLogger(__name__)

DEFAULT_MEM_BASE = 0x8_1000_0000   # above 4 GiB on purpose: the high pointer word matters
DEFAULT_MEM_SIZE = 1 << 32         # address space the allocator may hand out
PAGE = 4096
UNINITIALISED = 0xA5              # byte value of simulated DDR never written

_POINTER_PAIRS = ((abi.PARAMS_LO, abi.PARAMS_HI), (abi.INPUT_LO, abi.INPUT_HI),
                  (abi.SCORES_LO, abi.SCORES_HI), (abi.PARAMS2_LO, abi.PARAMS2_HI))
# A start's result: (ABI id, scores address, scores, or None when nothing is written).
_Outcome = Tuple[int, int, Optional[np.ndarray]]

_ARG_REGISTERS = frozenset(r for pair in _POINTER_PAIRS for r in pair) | {abi.N_IMAGES}


# ----------------------------------------------------------------------------- recording

class SimLog:
    """Ordered record of what the simulated hardware saw.

    ``events`` holds tuples: ``("read", offset, value)``, ``("write", offset, value)``,
    ``("start", n_images)``, ``("done", n_images)``, ``("flush", address, nbytes)``,
    ``("invalidate", address, nbytes)``, ``("alloc", address, nbytes)``, ``("free", address)``,
    ``("reset",)``. ``violations`` holds messages about protocol errors of the driver.

    Only the latest ``max_events`` events are kept (``events`` is a list copy of them): a
    camera loop left running on the mock must not grow the log without bound. ``dropped``
    counts the events that fell off the front. Violations and errors are few and kept in full.
    """

    MAX_EVENTS = 100_000  # about 15 per kernel start: the last several thousand starts

    def __init__(self, max_events: Optional[int] = None):
        self._events: Deque[tuple] = collections.deque(maxlen=max_events or self.MAX_EVENTS)
        self.dropped = 0
        self.violations: List[str] = []
        self.errors: List[str] = []

    def record(self, *event) -> None:
        """Append one event, e.g. ``record("write", offset, value)``."""
        if len(self._events) == self._events.maxlen:
            self.dropped += 1
        self._events.append(event)

    @property
    def events(self) -> List[tuple]:
        """The kept events, oldest first (a copy)."""
        return list(self._events)

    def clear(self) -> None:
        """Forget everything recorded so far."""
        self._events.clear()
        self.dropped = 0
        self.violations.clear()
        self.errors.clear()

    @property
    def reads(self) -> List[Tuple[int, int]]:
        """(offset, value) of every register read, in order."""
        return [(e[1], e[2]) for e in self._events if e[0] == "read"]

    @property
    def writes(self) -> List[Tuple[int, int]]:
        """(offset, value) of every register write, in order."""
        return [(e[1], e[2]) for e in self._events if e[0] == "write"]

    def check_transactions(self, reads: Optional[Iterable] = None,
                           writes: Optional[Iterable] = None) -> None:
        """Assert the exact register traffic, as PYNQ's ``MockRegisterDevice`` does.

        Parameters
        ----------
        reads, writes : iterables of (offset, value), optional
            The expected sequence; None skips that check.

        Raises
        ------
        AssertionError
            With both sequences in the message.
        """
        if reads is not None and self.reads != list(map(tuple, reads)):
            raise AssertionError(f"register reads {self.reads} != expected {list(reads)}")
        if writes is not None and self.writes != list(map(tuple, writes)):
            raise AssertionError(f"register writes {self.writes} != expected {list(writes)}")


# ----------------------------------------------------------------------------- memory

class SimAllocation:
    """One contiguous allocation: its bus address and the device (DDR) copy of its bytes."""

    __slots__ = ("address", "nbytes", "ddr", "live", "__weakref__")

    def __init__(self, address: int, nbytes: int):
        self.address = address
        self.nbytes = nbytes
        # Uninitialised DDR: a pattern no valid image, input or score has, so data that
        # never reached memory (a missing flush) shows as garbage, not as plausible zeros.
        self.ddr = np.full(nbytes, UNINITIALISED, dtype=np.uint8)
        self.live = True

    def __repr__(self):
        return f"SimAllocation(0x{self.address:x}, {self.nbytes})"


class SimMemory:
    """A sparse simulated physical address space.

    Allocation is next-fit over a coalescing free list: each allocation starts at the first
    free range at or after the end of the previous one, wrapping round to ``base`` when the
    top is reached. So addresses are fresh (a stale pointer to a freed buffer is a bus error)
    until the whole space has been handed out once, and freed ranges are then reused, so any
    number of load/close cycles fit as long as the *live* bytes do.

    Parameters
    ----------
    base : int
        First address handed out (default above 4 GiB, see the module docstring).
    size : int, optional
        Bytes of address space (default :data:`DEFAULT_MEM_SIZE`); an allocation that fits in
        no free range raises MemoryError.
    log : SimLog, optional
        Where flushes, invalidates, allocations and frees are recorded.
    """

    def __init__(self, base: int = DEFAULT_MEM_BASE, size: Optional[int] = None,
                 log: Optional[SimLog] = None):
        self.base = int(base)
        self.size = int(DEFAULT_MEM_SIZE if size is None else size)
        self.log = log if log is not None else SimLog()
        self._next = self.base                  # next-fit cursor
        self._free_starts: List[int] = [self.base]   # sorted, disjoint, coalesced ranges
        self._free_ends: List[int] = [self.base + self.size]
        self._allocs: List[SimAllocation] = []
        self.allocations = 0                    # allocate() calls so far (leak tests)
        self._lock = threading.Lock()

    # allocation ---------------------------------------------------------------------------
    def _take(self, span: int) -> int:
        """Carve ``span`` bytes out of the free list, next-fit from the cursor."""
        starts, ends = self._free_starts, self._free_ends
        i = bisect.bisect_right(ends, self._next)      # first range ending after the cursor
        # above the cursor first, then (wrapped round) from the bottom
        order = [(j, max(starts[j], self._next)) for j in range(i, len(starts))]
        order += [(j, starts[j]) for j in range(0, min(i + 1, len(starts)))]
        for j, address in order:
            if ends[j] - address >= span:
                break
        else:
            raise MemoryError(f"simulated memory exhausted: no free range of {span} bytes "
                              f"({self.live_bytes} of {self.size} bytes live)")
        s, e = starts[j], ends[j]
        pieces = [(a, b) for a, b in ((s, address), (address + span, e)) if b > a]
        starts[j:j + 1] = [a for a, _ in pieces]
        ends[j:j + 1] = [b for _, b in pieces]
        self._next = address + span
        return address

    def _give_back(self, address: int, span: int) -> None:
        starts, ends = self._free_starts, self._free_ends
        end = address + span
        j = bisect.bisect_left(starts, address)
        if j > 0 and ends[j - 1] == address:          # joins the range below
            j -= 1
            address = starts[j]
            del starts[j], ends[j]
        if j < len(starts) and starts[j] == end:       # joins the range above
            end = ends[j]
            del starts[j], ends[j]
        starts.insert(j, address)
        ends.insert(j, end)

    def allocate(self, nbytes: int) -> SimAllocation:
        """Reserve ``nbytes`` (page aligned); the DDR copy starts as 0xA5 bytes (garbage)."""
        nbytes = max(int(nbytes), 1)
        span = -(-nbytes // PAGE) * PAGE
        with self._lock:
            address = self._take(span)
            alloc = SimAllocation(address, nbytes)
            self._allocs.append(alloc)
            self.allocations += 1
        self.log.record("alloc", address, nbytes)
        return alloc

    def free(self, alloc: SimAllocation) -> None:
        """Release an allocation (idempotent); its range becomes free again."""
        with self._lock:
            if not alloc.live:
                return
            alloc.live = False
            self._allocs.remove(alloc)
            self._give_back(alloc.address, -(-alloc.nbytes // PAGE) * PAGE)
        self.log.record("free", alloc.address)

    @property
    def free_ranges(self) -> List[Tuple[int, int]]:
        """(start, end) of every free range, ascending (coalesced: never two adjacent)."""
        with self._lock:
            return list(zip(self._free_starts, self._free_ends))

    @property
    def live_allocations(self) -> int:
        """Number of allocations not yet freed (0 after a clean close)."""
        return len(self._allocs)

    @property
    def live_bytes(self) -> int:
        return sum(a.nbytes for a in self._allocs)

    # bus access (the kernel's m_axi view) -----------------------------------------------
    def _find(self, address: int, nbytes: int) -> Tuple[SimAllocation, int]:
        for a in self._allocs:
            if a.address <= address and address + nbytes <= a.address + a.nbytes:
                return a, address - a.address
        raise SimBusError(f"bus access of {nbytes} bytes at 0x{address:x} outside every allocation")

    def read(self, address: int, nbytes: int) -> np.ndarray:
        """Copy of ``nbytes`` of DDR at ``address`` (uint8)."""
        a, off = self._find(int(address), int(nbytes))
        return a.ddr[off:off + nbytes].copy()

    def write(self, address: int, data: np.ndarray) -> None:
        """Write bytes into DDR at ``address``."""
        data = np.ascontiguousarray(data).reshape(-1).view(np.uint8)
        a, off = self._find(int(address), data.size)
        a.ddr[off:off + data.size] = data

    # cache maintenance (the host's view) -----------------------------------------------
    def flush(self, address: int, host_bytes) -> None:
        """Host -> DDR: write the host copy of a buffer (or part of one) back to memory."""
        data = np.frombuffer(host_bytes, dtype=np.uint8)
        self.log.record("flush", int(address), data.size)
        a, off = self._find(int(address), data.size)
        a.ddr[off:off + data.size] = data

    def invalidate(self, address: int, nbytes: int) -> np.ndarray:
        """DDR -> host: the bytes the host must see after dropping its cached copy."""
        self.log.record("invalidate", int(address), int(nbytes))
        a, off = self._find(int(address), int(nbytes))
        return a.ddr[off:off + nbytes]


# ----------------------------------------------------------------------------- faults

@dataclass
class Faults:
    """Faults the simulated kernel can inject (change them at any time; ``reset`` keeps them).

    Attributes
    ----------
    never_done : bool
        AP_START starts a run that never completes (CTRL stays busy) until reset.
    wrong_id : int or None
        The value the kernel writes to its ``abi_id`` register instead of ``abi.ABI_ID``.
    corrupt_output : bool
        Flip the lowest bit of the first score of every run (an impossible parity).
    latency : float
        Seconds between AP_START and AP_DONE (a slow kernel).
    latency_per_image : float
        Further seconds per image of the start (``n_images``): a kernel whose time grows with
        the batch, as the real one does. Like ``latency``, it is wall-clock time during which
        CTRL reads busy; nothing sleeps, so the host can work meanwhile.
    """

    never_done: bool = False
    wrong_id: Optional[int] = None
    corrupt_output: bool = False
    latency: float = 0.0
    latency_per_image: float = 0.0

    @classmethod
    def coerce(cls, value) -> "Faults":
        """A Faults from None, a Faults, a dict of fields, or an iterable of flag names."""
        if value is None:
            return cls()
        if isinstance(value, Faults):
            return value
        if isinstance(value, dict):
            names = {f.name for f in fields(cls)}
            unknown = set(value) - names
            if unknown:
                raise ValueError(f"unknown fault(s) {sorted(unknown)}; known: {sorted(names)}")
            return cls(**value)
        if isinstance(value, str):
            value = [value]
        f = cls()
        for name in value:
            if name not in ("never_done", "corrupt_output"):
                raise ValueError(f"fault {name!r} needs a value; pass a dict")
            setattr(f, name, True)
        return f


# ----------------------------------------------------------------------------- kernels

def _hls_library():
    """The HLS C-simulation library, or None when it is not built (or not present at all)."""
    try:
        from . import hls_lib
    except ImportError:
        return None
    try:
        return hls_lib.load()
    except Exception as e:  # a broken build must not break the mock: fall back, say why
        logger.warning("hls_lib.load() failed (%s); the mock uses the numpy reference", e)
        return None


KERNELS = ("auto", "hls-lib", "engine", "reference")


def resolve_kernel(kernel: str = "auto"):
    """(description, hls library or None) for ``kernel`` in :data:`KERNELS`.

    "auto" takes the compiled HLS source when it is built (the closest thing to the board),
    else the native CPU engine, else the numpy reference; all three give the same integers.
    """
    if kernel not in KERNELS:
        raise ValueError(f"kernel {kernel!r}: use one of {', '.join(KERNELS)}")
    lib = _hls_library() if kernel in ("auto", "hls-lib") else None
    if kernel == "hls-lib" and lib is None:
        raise BackendUnavailable("kernel='hls-lib' but the HLS C-simulation library is not built "
                                 "(see hls_src/README.md); use kernel='reference'")
    if lib is not None:
        return "hls-lib", lib
    if kernel in ("auto", "engine"):
        from ..cpu import engine
        if engine.native_available():
            return "native engine", None
        if kernel == "engine":
            raise BackendUnavailable("kernel='engine' but the native CPU engine is not built")
    return "numpy reference", None


@dataclass(frozen=True)
class KernelStart:
    """What one start of the simulated kernel works on, as a plug-in sees it.

    Attributes
    ----------
    n_images : int
        The ``n_images`` register (at least 1: probes, ``n_images=0``, never reach a plug-in).
    model : abi.KernelModel
        The parameter image read from simulated DDR at the ``params`` pointer and parsed
        (``network``, ``layers``, ``abi_id``); a malformed image is a bus error before any
        plug-in runs.
    inputs : numpy.ndarray
        ``uint64[n_images, network.input_words_per_image]``, a copy of simulated DDR at the
        ``input`` pointer, snapshotted at AP_START (so a missing flush shows as 0xA5 garbage).
    """

    n_images: int
    model: "abi.KernelModel"
    inputs: np.ndarray


#: ``compute(start) -> int32[n_images, n_classes]`` scores, or None to write nothing.
ComputeFn = Callable[[KernelStart], Optional[np.ndarray]]
#: Seconds from AP_START to AP_DONE: a number, or ``latency(start) -> seconds``.
LatencySpec = Union[float, Callable[[KernelStart], float], None]


class _ReferenceKernel:
    """The numpy reference behind the same ``binary_scores(packed)`` call as the engine."""

    def __init__(self, reference, model):
        self._reference, self._model = reference, model

    def binary_scores(self, packed):
        return self._reference.binary_scores(self._model, packed)


class SimBnnKernel:
    """The bnn_kernel IP at register level, executing on a :class:`SimMemory`.

    Parameters
    ----------
    memory : SimMemory
        The simulated DDR the kernel's m_axi masters read and write.
    faults : Faults, dict, iterable or None
        Injected faults (:class:`Faults`); kept in ``self.faults`` and changeable later.
    kernel : str
        "auto" (the HLS C library when built, else the native CPU engine, else the numpy
        reference), "hls-lib", "engine", "reference". Ignored when ``compute`` is given.
    compute : callable, optional
        A plug-in that computes the scores of every start in place of the built-in kernels:
        ``compute(start: KernelStart) -> int32[n_images, n_classes]`` (or None: the run
        completes without writing scores, as a kernel that skipped its output). The simulator
        still reads the parameter image and the inputs from simulated DDR (so missing
        flushes still show), writes the scores to DDR at completion, applies the faults and
        logs an exception of the plug-in as a bus error (no scores written). Probes
        (``n_images=0``) only report the ABI id and never call it.
    latency : float or callable, optional
        Simulated kernel time per start in seconds, or ``latency(start) -> seconds``. It is
        added to ``faults.latency`` and ``faults.latency_per_image``; CTRL reads busy that
        long (wall clock, nothing sleeps).

    ``compute`` and ``latency`` are also attributes: setting them on a live kernel (for
    instance ``backend.sim.compute = fn`` on the mock backend) takes effect at the next start.
    ``host_seconds`` accumulates the host time the simulator itself spent executing starts
    (reading DDR, parsing, computing), so a benchmark can subtract it.
    """

    def __init__(self, memory: SimMemory, faults=None, kernel: str = "auto",
                 compute: Optional[ComputeFn] = None, latency: LatencySpec = None):
        self.memory = memory
        self.log = memory.log
        self.faults = Faults.coerce(faults)
        if compute is not None and not callable(compute):
            raise TypeError(f"compute must be callable, got {type(compute).__name__}")
        self.compute = compute
        self.latency = latency
        if compute is None:
            self.kernel, self._lib = resolve_kernel(kernel)
        else:
            self.kernel, self._lib = "plug-in", None
        # (parameter image it was built from, Engine)
        self._engine: Optional[Tuple[np.ndarray, Engine]] = None
        # (parameter image, KernelModel): parse once per model
        self._parsed: Optional[Tuple[np.ndarray, abi.KernelModel]] = None
        self.starts = 0
        self.host_seconds = 0.0
        self.reset()

    # state --------------------------------------------------------------------------------
    def reset(self) -> None:
        """Power-on state: idle, registers cleared (DDR keeps its contents, as on the board)."""
        self._args = {r: 0 for r in _ARG_REGISTERS}
        self._written: Set[int] = set()
        self._state = "idle"        # "idle" | "running" | "hung"
        self._done = False          # AP_DONE latch (clear on read)
        self._ready = False         # AP_READY latch (clear on read)
        self._auto_restart = False
        self._gier = 0
        self._ier = 0
        self._isr = 0
        self._abi_id = 0
        self._abi_vld = False
        self._done_at = 0.0
        self._pending: Optional[_Outcome] = None     # what the running start will commit
        self._last_start: Optional[KernelStart] = None
        self._run_n = 0
        self.log.record("reset")

    @property
    def busy(self) -> bool:
        self._advance()
        return self._state != "idle"

    @property
    def interrupt_line(self) -> bool:
        """Level of the IP's ``interrupt`` output: GIE and any enabled ISR bit."""
        self._advance()
        return bool(self._gier & 1) and bool(self._isr & self._ier)

    def time_to_done(self) -> Optional[float]:
        """Seconds until the current run completes (0 if idle, None if it never will)."""
        if self._state == "hung":
            return None
        if self._state == "idle":
            return 0.0
        return max(0.0, self._done_at - time.monotonic())

    # registers ----------------------------------------------------------------------------
    def read(self, offset: int) -> int:
        """A 32-bit register read with its side effects (clear-on-read bits)."""
        self._advance()
        offset = int(offset)
        if offset == abi.CTRL:
            running = self._state != "idle"
            value = ((abi.AP_START if running else 0) | (abi.AP_DONE if self._done else 0)
                     | (0 if running else abi.AP_IDLE) | (abi.AP_READY if self._ready else 0)
                     | (abi.AUTO_RESTART if self._auto_restart else 0))
            self._done = False
            self._ready = False
        elif offset == abi.GIER:
            value = self._gier
        elif offset == abi.IP_IER:
            value = self._ier
        elif offset == abi.IP_ISR:
            value = self._isr
        elif offset in self._args:
            value = self._args[offset]
        elif offset == abi.ABI_ID_REG:
            value = self._abi_id
        elif offset == abi.ABI_ID_CTRL:
            value = 1 if self._abi_vld else 0
            self._abi_vld = False
        else:
            value = 0
        self.log.record("read", offset, value)
        return value

    def write(self, offset: int, value: int) -> None:
        """A 32-bit register write with its side effects (AP_START runs the kernel)."""
        offset, value = int(offset), int(value) & 0xFFFFFFFF
        self.log.record("write", offset, value)
        self._advance()
        if offset == abi.CTRL:
            self._auto_restart = bool(value & abi.AUTO_RESTART)
            if value & abi.AP_START:
                if self._state != "idle":
                    self.log.violations.append(
                        f"AP_START written while the kernel is busy (state {self._state})")
                else:
                    self._start()
        elif offset == abi.GIER:
            self._gier = value & 1
        elif offset == abi.IP_IER:
            self._ier = value & 3
        elif offset == abi.IP_ISR:
            self._isr ^= value & 3
        elif offset in self._args:
            if self._state != "idle":
                self.log.violations.append(
                    f"argument register 0x{offset:02x} written while the kernel is busy")
            self._args[offset] = value
            self._written.add(offset)
        elif offset in (abi.ABI_ID_REG, abi.ABI_ID_CTRL):
            self.log.violations.append(f"write to read-only register 0x{offset:02x}")

    # execution ----------------------------------------------------------------------------
    def _pointer(self, lo: int, hi: int) -> int:
        return self._args[lo] | (self._args[hi] << 32)

    def _start(self) -> None:
        missing = sorted(_ARG_REGISTERS - self._written)
        if missing:
            self.log.violations.append(
                "AP_START before argument register(s) " + ", ".join(f"0x{r:02x}" for r in missing)
                + " were written")
        n = self._args[abi.N_IMAGES]
        self.starts += 1
        self._run_n = n
        self.log.record("start", n)
        if self.faults.never_done:
            self._state = "hung"
            return
        t0 = time.perf_counter()
        self._last_start = None
        try:
            self._pending = self._execute(n)
        finally:
            self.host_seconds += time.perf_counter() - t0
        self._state = "running"
        self._done_at = time.monotonic() + max(
            0.0, float(self.faults.latency) + n * float(self.faults.latency_per_image)
            + self._plugin_latency())
        self._advance()

    def _plugin_latency(self) -> float:
        spec, start = self.latency, self._last_start
        if spec is None:
            return 0.0
        if callable(spec):
            if start is None:      # a probe or a failed start: nothing was computed
                return 0.0
            try:
                seconds = float(spec(start))
            except Exception as e:
                self.log.errors.append(f"start {self.starts}: latency plug-in failed "
                                       f"({type(e).__name__}: {e}); no latency added")
                return 0.0
        else:
            seconds = float(spec)
        return seconds if seconds == seconds else 0.0   # NaN: none

    def _cpu_kernel(self, words: np.ndarray, model):
        """What computes the scores off the HLS library: the native engine (rebuilt only when
        the parameter image in DDR changes) or the numpy reference."""
        if self.kernel != "native engine":
            from ...spec import reference
            return _ReferenceKernel(reference, model)
        if self._engine is None or not np.array_equal(self._engine[0], words):
            from ..cpu.engine import Engine
            self._engine = (words.copy(), Engine(model))
        return self._engine[1]

    def _parse(self, words: np.ndarray):
        """The parameter image parsed, reusing the last parse while the image is unchanged."""
        if self._parsed is None or not np.array_equal(self._parsed[0], words):
            self._parsed = (words.copy(), abi.parse_param_image(words))
        return self._parsed[1]

    def _execute(self, n: int) -> _Outcome:
        """Run the kernel on the DDR snapshot; return (abi_id, scores address, scores or None)."""
        abi_id = abi.ABI_ID
        params_addr = self._pointer(*_POINTER_PAIRS[0])
        input_addr = self._pointer(*_POINTER_PAIRS[1])
        scores_addr = self._pointer(*_POINTER_PAIRS[2])
        params2_addr = self._pointer(*_POINTER_PAIRS[3])
        if n == 0 and (self._lib is None or self.compute is not None):
            return abi_id, scores_addr, None     # a probe: only the ABI id is reported
        try:
            header = self.memory.read(params_addr, 16).view(np.uint64)
            total = int(header[1])
            if not abi.DATA_BASE <= total <= 1 << 24:
                raise abi.AbiError(f"parameter image header says {total} words")
            words = self.memory.read(params_addr, 8 * total).view(np.uint64)
            # ABI 2: the kernel's second parameter master reads half of the weights at params2,
            # which must hold the same image (the driver passes the buffer twice); unset (0) or
            # outside every allocation it is a bus error.
            if params2_addr != params_addr:
                words2 = self.memory.read(params2_addr, 8 * total).view(np.uint64)
                if not np.array_equal(words2, words):
                    raise abi.AbiError(f"params2 (0x{params2_addr:x}) does not hold the "
                                       f"parameter image at params (0x{params_addr:x})")
            model = self._parse(words)
            net = model.network
            per_image = net.input_words_per_image
            inputs = self.memory.read(input_addr, 8 * n * per_image).view(np.uint64)
            inputs = inputs.reshape(n, per_image)
            scores = np.zeros((n, net.n_classes), dtype=np.int32)
            if self.compute is not None:
                start = KernelStart(n, model, inputs)
                self._last_start = start
                out = self.compute(start)
                if out is None:
                    return abi_id, scores_addr, None
                out = np.asarray(out)
                if out.shape != scores.shape or out.dtype.kind not in "iu":
                    raise TypeError(f"compute plug-in returned {out.dtype} {out.shape}, "
                                    f"expected int32 {scores.shape}")
                scores[:] = out
            elif self._lib is not None:
                abi_id = int(self._lib.run(words, inputs.reshape(-1), scores.reshape(-1), n))
                if getattr(self._lib, "last_status", "ok") == "refused":
                    raise abi.AbiError("the HLS kernel refused the parameter image")
            else:
                l1 = net.first_layer
                packed = inputs.reshape(n, l1.out_size, l1.out_size, l1.out_channels // 64)
                scores[:] = self._cpu_kernel(words, model).binary_scores(packed)
        except Exception as e:  # bus error, malformed image, C model failure: no output
            msg = f"start {self.starts} (n_images={n}): {type(e).__name__}: {e}; no scores written"
            self.log.errors.append(msg)
            logger.warning("simulated kernel: %s", msg)
            return abi_id, scores_addr, None
        if self.faults.corrupt_output and scores.size:
            scores.reshape(-1)[0] ^= 1
        return abi_id, scores_addr, (scores if n else None)

    def _advance(self) -> None:
        """Complete the current run if its latency has passed."""
        if self._state != "running" or time.monotonic() < self._done_at:
            return
        pending, self._pending = self._pending, None
        assert pending is not None  # set together with the "running" state
        abi_id, scores_addr, scores = pending
        if scores is not None:
            try:
                self.memory.write(scores_addr, scores)
            except SimBusError as e:
                msg = f"start {self.starts}: {e}; scores lost"
                self.log.errors.append(msg)
                logger.warning("simulated kernel: %s", msg)
        wrong = self.faults.wrong_id
        self._abi_id = (wrong if wrong is not None else abi_id) & 0xFFFFFFFF
        self._abi_vld = True
        self._done = True
        self._ready = True
        self._isr |= self._ier & 3
        self._state = "idle"
        self.log.record("done", self._run_n)
        if self._auto_restart:
            self._start()


class SimInterrupt:
    """Blocking view of the simulated IP's interrupt line (``wait(timeout) -> bool``).

    Like an AXI INTC input: it fires only when the driver enabled GIER and IP_IER, and stays
    asserted until the driver clears IP_ISR.
    """

    def __init__(self, kernel: SimBnnKernel):
        self._kernel = kernel

    def wait(self, timeout: float) -> bool:
        """Wait until the line is high; False after ``timeout`` seconds."""
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            if self._kernel.interrupt_line:
                return True
            now = time.monotonic()
            if now >= deadline:
                return False
            remaining = self._kernel.time_to_done()
            step = (deadline - now if remaining is None
                    else min(deadline - now, max(remaining, 1e-4)))
            time.sleep(min(step, 0.01))
