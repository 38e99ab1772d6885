"""The two interfaces of this package, and the batch handle they share.

:class:`Hardware` is the narrow interface between :mod:`pynq_bnn.backends.driver` and a
hardware-like backend (the board through pynq, or the simulated IP). The driver uses nothing
else, and nothing in the driver asks which implementation it has.

:class:`Backend` is the public face every backend shows to the rest of pynq-bnn
(``open_backend`` returns one). Every capability a caller uses is declared here, so callers
never probe with ``hasattr``: ``load``, ``run``, ``submit``/``submit_into``/``wait`` (on a
backend whose work does not run in the background, ``overlaps`` is False and ``submit`` runs
the batch at once), ``max_batch``, ``reset``, ``describe``, ``close``, ``last_timings``.
"""
from __future__ import annotations

import abc
import enum
import threading
import time
from typing import Any, Callable, Dict, Optional, Protocol, runtime_checkable

import numpy as np

from ..errors import BnnError, ClosedError, ImageError
from ..spec.network import WORD_BITS, Network

__all__ = ["Hardware", "Interrupt", "DmaBuffer", "Backend", "Submission", "SubmissionState",
           "ThreadTimings", "check_packed", "check_timeout", "MAX_TIMEOUT"]

#: The longest timeout (seconds) any wait accepts: a kernel start takes milliseconds, so
#: anything longer is a mistake, and an infinite one would hang the caller for good.
MAX_TIMEOUT = 3600.0


def check_timeout(timeout, what: str = "timeout") -> float:
    """``timeout`` as a float in ``(0, MAX_TIMEOUT]``; ValueError naming it otherwise."""
    try:
        value = float(timeout)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number of seconds, got {timeout!r}") from None
    if not 0.0 < value <= MAX_TIMEOUT:  # also refuses NaN and inf
        raise ValueError(f"{what} must be > 0 and <= {MAX_TIMEOUT:g} seconds, got {timeout!r}")
    return value


class DmaBuffer(Protocol):
    """What :meth:`Hardware.allocate` returns: a numpy array that is also a DMA buffer.

    A slice of one is a buffer too (with its own ``device_address``), so part of a buffer can
    be flushed or invalidated.
    """

    device_address: int

    def flush(self) -> None:
        """Write the host's cached copy to DDR (before the kernel reads it)."""

    def invalidate(self) -> None:
        """Drop the host's cached copy (after the kernel wrote DDR)."""

    def freebuffer(self) -> None:
        """Give the memory back."""


class Interrupt(Protocol):
    """The IP's interrupt line, where the overlay wires it."""

    def wait(self, timeout: float) -> bool:
        """True once the line is asserted, False after ``timeout`` seconds."""


@runtime_checkable
class Hardware(Protocol):
    """What the driver needs from the accelerator's surroundings.

    Registers are 32 bits and values written must be Python ``int`` (as
    ``pynq.DefaultIP.write`` demands). ``interrupt`` is None, or an :class:`Interrupt`
    that returns True once the IP's interrupt line is asserted (the driver enables
    GIER/IP_IER and clears IP_ISR).
    """

    interrupt: Optional[Interrupt]

    def allocate(self, shape, dtype) -> Any:
        """A physically contiguous, device-visible array (zero-filled): a :class:`DmaBuffer`."""

    def read(self, offset: int) -> int:
        """Read the 32-bit IP register at byte ``offset``."""

    def write(self, offset: int, value: int) -> None:
        """Write the 32-bit IP register at byte ``offset`` (``value`` a Python int)."""

    def reset(self) -> None:
        """Bring a hung or busy IP back to idle (see the implementations for what it costs)."""

    def describe(self) -> Dict[str, object]:
        """board, bitstream, kernel, ... for ``pynq-bnn info``."""

    def close(self) -> None:
        """Release what the hardware object holds (not the driver's buffers)."""


def check_packed(network: Network, packed) -> np.ndarray:
    """Validate packed layer-1 output for ``network``: uint64 ``[N, H, W, C1/64]``.

    Returns
    -------
    numpy.ndarray
        The same data, C-contiguous.

    Raises
    ------
    ImageError
        Wrong dtype or shape; the message names both the expected and the given one.
    """
    expected = packed_shape(network)
    a = np.asarray(packed)
    if a.dtype != np.uint64:
        raise ImageError(f"packed input: dtype {a.dtype}, expected uint64 "
                         "(pynq_bnn.spec.first_layer.conv1_packed makes it)")
    if a.ndim != 4 or tuple(a.shape[1:]) != expected:
        raise ImageError(f"packed input: shape {tuple(a.shape)}, expected (N,) + {expected}")
    return np.ascontiguousarray(a)


def packed_shape(network: Network):
    """``(H, W, C1/64)``: one image's packed layer-1 output."""
    l1 = network.first_layer
    return (l1.out_size, l1.out_size, l1.out_channels // WORD_BITS)


class ThreadTimings(threading.local):
    """The calling thread's latest run timings (``.value``), so that runs of one backend from
    several threads never report each other's times."""

    def __init__(self) -> None:
        self.value: Dict[str, float] = {"transfer": 0.0, "kernel": 0.0}


class SubmissionState(str, enum.Enum):
    """Where a submitted batch is (a str enum: ``state == "running"`` also works)."""

    QUEUED = "queued"          #: behind the running batch, in its own buffer set
    RUNNING = "running"        #: started on the kernel
    DONE = "done"              #: finished, scores not yet collected
    COLLECTED = "collected"    #: wait() returned its scores
    FAILED = "failed"          #: ``error`` says why


class Submission:
    """A batch handed to :meth:`Backend.submit`; give it to :meth:`Backend.wait`.

    Attributes
    ----------
    n : int
        Images in the batch.
    slot : int
        The buffer set that holds it (0 or 1 on the accelerator; 0 elsewhere).
    first_image : int
        Where the batch starts in the caller's stream (numbers images in error messages).
    state : SubmissionState
    error : BaseException or None
        Why it failed.
    timings : dict
        ``transfer`` and ``kernel`` seconds, set by wait.
    """

    __slots__ = ("n", "slot", "first_image", "state", "error", "timings", "scores", "_transfer",
                 "_t_start", "_t_done")

    def __init__(self, n: int, slot: int = 0, first_image: int = 0):
        self.n = n
        self.slot = slot
        self.first_image = first_image
        self.state = SubmissionState.QUEUED
        self.error: Optional[BaseException] = None
        self.timings: Dict[str, float] = {}
        self.scores: Optional[np.ndarray] = None     # set at once by synchronous backends
        self._transfer = 0.0
        self._t_start: Optional[float] = None
        self._t_done: Optional[float] = None

    def fail(self, error: BaseException) -> None:
        self.state, self.error = SubmissionState.FAILED, error

    def __repr__(self):
        return f"<Submission {self.n} images, buffer set {self.slot}, {self.state.value}>"


class Backend(abc.ABC):
    """A way to run layers 2..L: ``load`` a model once, then ``run`` packed batches.

    Use as a context manager, or call :meth:`close` (idempotent). A subclass implements
    :meth:`load`, :meth:`run` and :meth:`describe`; the batch interface (:meth:`submit`,
    :meth:`submit_into`, :meth:`wait`) has a synchronous default that runs the batch at
    submit time, which backends whose work runs in the background (the accelerator) override.
    """

    #: "pynq", "mock" or "cpu"
    name = "?"
    #: why open_backend chose this backend (e.g. "auto: pynq is not installed")
    reason = ""
    #: True where :meth:`submit` returns while the batch still runs (the FPGA kernel): a
    #: caller can then prepare the next batch meanwhile (host/pipeline.py).
    overlaps = False
    #: Images per :meth:`submit` at most (and the pipeline's batch size); :meth:`run` takes any N.
    max_batch = 64

    def __init__(self):
        self._closed = False
        self._timings = ThreadTimings()
        self._params = None   # the loaded Params (set by load)

    # ------------------------------------------------------------------ what a backend does
    @abc.abstractmethod
    def load(self, params) -> None:
        """Make ``params`` (a :class:`pynq_bnn.Params`) the model :meth:`run` uses."""

    @abc.abstractmethod
    def run(self, packed) -> np.ndarray:
        """int32 ``[N, n_classes]`` raw scores of packed layer-1 output, uint64
        ``[N, H, W, C1/64]``."""

    @abc.abstractmethod
    def describe(self) -> Dict[str, object]:
        """backend, board, bitstream, kernel, abi_id, ... (for ``pynq-bnn info``)."""

    @property
    def network(self) -> Optional[Network]:
        """The loaded model's topology (None before :meth:`load`)."""
        return None if self._params is None else self._params.network

    # ------------------------------------------------------------------ batches
    def submit(self, packed) -> Submission:
        """Hand one batch of at most :attr:`max_batch` images over; collect it with :meth:`wait`.

        The default runs it now (``overlaps`` is False); the accelerator starts the kernel and
        returns at once.
        """
        x = np.asarray(packed)
        sub = Submission(int(x.shape[0]) if x.ndim else 0)
        t0 = time.perf_counter()
        try:
            sub.scores = self.run(x)
        except BaseException as e:
            sub.fail(e)
            raise
        sub._t_start, sub._t_done = t0, time.perf_counter()
        sub.timings = self.last_timings
        sub.state = SubmissionState.DONE
        return sub

    def submit_into(self, n: int, fill: Callable[[np.ndarray], Any],
                    first_image: int = 0) -> Submission:
        """Like :meth:`submit`, but ``fill(view)`` writes the packed input itself.

        ``view`` is a C-contiguous uint64 ``[n, H, W, C1/64]`` array: on the accelerator, the
        kernel's own DMA input buffer, so layer 1 writes its packed words straight where the
        kernel reads them (no intermediate array, no copy). ``first_image`` numbers the
        batch's images in error messages.
        """
        network = self.network
        if network is None:
            raise BnnError("no model loaded: call load(params) first")
        view = np.empty((int(n),) + packed_shape(network), dtype=np.uint64)
        fill(view)
        return self.submit(view)

    def wait(self, submission: Submission, timeout: Optional[float] = None) -> np.ndarray:
        """Scores of a submitted batch (int32 ``[n, n_classes]``); each can be waited for once."""
        sub = submission
        if sub.state is SubmissionState.FAILED:
            raise sub.error if sub.error is not None else BnnError("batch failed")
        if sub.state is not SubmissionState.DONE or sub.scores is None:
            raise BnnError(f"not a batch this backend can collect (state {sub.state.value}: "
                           "each submission can be waited for once)")
        scores, sub.scores = sub.scores, None
        sub.state = SubmissionState.COLLECTED
        self._timings.value = dict(sub.timings)
        return scores

    def reset(self) -> None:
        """Make the backend usable after a :class:`~pynq_bnn.errors.HardwareTimeout`
        (nothing to do where no kernel runs in the background)."""
        self._check_open()

    # ------------------------------------------------------------------ lifecycle
    @property
    def last_timings(self) -> Dict[str, float]:
        """Seconds spent by this thread's last :meth:`run`: ``{'transfer': ..., 'kernel': ...}``."""
        return dict(self._timings.value)

    def close(self) -> None:
        """Release everything; further calls do nothing."""
        self._closed = True

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError(f"the {self.name} backend is closed")

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close()
        return False

    def __repr__(self):
        return f"<{type(self).__name__} {self.name}{' closed' if self._closed else ''}>"
