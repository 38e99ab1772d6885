"""The two interfaces of this package.

:class:`Hardware` is the narrow interface between :mod:`pynq_bnn.backends.driver` and a hardware-like
backend (the board through pynq, or the simulated IP). The driver uses nothing else, and
nothing in the driver asks which implementation it has.

:class:`Backend` is the public face every backend shows to the rest of pynq-bnn
(``open_backend`` returns one): ``load(params)``, ``run(packed)``, ``last_timings``,
``describe()``, ``close()``.
"""
from __future__ import annotations

import threading
from typing import Dict

import numpy as np

from ..errors import BnnError, ImageError
from ..spec.network import WORD_BITS, Network


class Hardware:
    """What the driver needs from the accelerator's surroundings.

    Buffers returned by :meth:`allocate` are numpy arrays with ``device_address`` (the bus
    address the kernel's m_axi masters use), ``flush()`` (host -> DDR), ``invalidate()``
    (DDR -> host) and ``freebuffer()``. A slice of one is a buffer too (with its own
    ``device_address``), so part of a buffer can be flushed. Registers are 32 bits and
    values written must be Python ``int`` (as ``pynq.DefaultIP.write`` demands).
    """

    #: None, or an object with ``wait(timeout: float) -> bool`` that returns True once the
    #: IP's interrupt line is asserted (the driver enables GIER/IP_IER and clears IP_ISR).
    interrupt = None

    def allocate(self, shape, dtype):
        """A physically contiguous, device-visible array (zero-filled)."""
        raise NotImplementedError

    def read(self, offset: int) -> int:
        """Read the 32-bit IP register at byte ``offset``."""
        raise NotImplementedError

    def write(self, offset: int, value: int) -> None:
        """Write the 32-bit IP register at byte ``offset`` (``value`` a Python int)."""
        raise NotImplementedError

    def reset(self) -> None:
        """Bring a hung or busy IP back to idle (see the implementations for what it costs)."""
        raise NotImplementedError

    def describe(self) -> Dict[str, object]:
        """board, bitstream, kernel, ... for ``pynq-bnn info``."""
        return {}

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
    l1 = network.first_layer
    expected = (l1.out_size, l1.out_size, l1.out_channels // WORD_BITS)
    a = np.asarray(packed)
    if a.dtype != np.uint64:
        raise ImageError(f"packed input: dtype {a.dtype}, expected uint64 "
                         "(pynq_bnn.spec.first_layer.conv1_packed makes it)")
    if a.ndim != 4 or tuple(a.shape[1:]) != expected:
        raise ImageError(f"packed input: shape {tuple(a.shape)}, expected (N,) + {expected}")
    return np.ascontiguousarray(a)


class ThreadTimings(threading.local):
    """The calling thread's latest run timings (``.value``), so that runs of one backend from
    several threads never report each other's times."""

    def __init__(self):
        self.value: Dict[str, float] = {"transfer": 0.0, "kernel": 0.0}


class Backend:
    """A way to run layers 2..L: ``load`` a model once, then ``run`` packed batches.

    Use as a context manager, or call :meth:`close` (idempotent).
    """

    #: "pynq", "mock" or "cpu"
    name = "?"

    def __init__(self):
        self._closed = False
        self._timings = ThreadTimings()

    def load(self, params) -> None:
        """Make ``params`` (a :class:`pynq_bnn.Params`) the model :meth:`run` uses."""
        raise NotImplementedError

    def run(self, packed) -> np.ndarray:
        """int32 ``[N, n_classes]`` raw scores of packed layer-1 output uint64 ``[N, H, W, C1/64]``."""
        raise NotImplementedError

    @property
    def last_timings(self) -> Dict[str, float]:
        """Seconds spent by this thread's last :meth:`run`: ``{'transfer': ..., 'kernel': ...}``."""
        return dict(self._timings.value)

    def describe(self) -> Dict[str, object]:
        """backend, board, bitstream, kernel, abi_id, ... (for ``pynq-bnn info``)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release everything; further calls do nothing."""
        self._closed = True

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise BnnError(f"the {self.name} backend is closed")

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close()
        return False

    def __repr__(self):
        return f"<{type(self).__name__} {self.name}{' closed' if self._closed else ''}>"

