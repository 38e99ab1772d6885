"""Each backend's options as a typed, documented config object.

``open_backend(name, **kwargs)`` builds one of these from its keyword arguments (an unknown
name is a TypeError that lists the valid ones), or takes one directly:
``open_backend("mock", MockOptions(kernel="reference", max_batch=8))``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, Literal, Mapping, Optional, Type, TypeVar, Union, overload

from .base import check_timeout

__all__ = ["DriverOptions", "PynqOptions", "MockOptions", "CpuOptions", "options_for"]

T = TypeVar("T", bound="_Options")


class _Options:
    @classmethod
    def from_kwargs(cls: Type[T], backend: str, kwargs: Mapping[str, Any],
                    ignore: tuple = ()) -> T:
        """Build from keyword arguments; names in ``ignore`` (another backend's options) are
        dropped, any other unknown name is a TypeError naming the valid ones."""
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(k for k in kwargs if k not in names and k not in ignore)
        if unknown:
            raise TypeError(f"backend {backend!r} has no option(s) {', '.join(unknown)}; "
                            f"it takes {', '.join(sorted(names))}")
        return cls(**{k: v for k, v in kwargs.items() if k in names})

    def replace(self: T, **changes: Any) -> T:
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


@dataclass(frozen=True)
class DriverOptions(_Options):
    """The accelerator driver's options (both hardware-like backends take them).

    Attributes
    ----------
    max_batch : int
        Images per kernel start; the DMA input and scores buffers are sized for it once.
    timeout : float
        Seconds one start may take before HardwareTimeout (finite, at most 3600).
    use_interrupt : bool
        Wait on the IP's interrupt where the overlay wires one (CTRL is polled otherwise).
    """

    max_batch: int = 64
    timeout: float = 10.0
    use_interrupt: bool = True

    def __post_init__(self):
        if (isinstance(self.max_batch, bool) or not isinstance(self.max_batch, int)
                or self.max_batch < 1):
            raise ValueError(f"max_batch must be an int >= 1, got {self.max_batch!r}")
        object.__setattr__(self, "timeout", check_timeout(self.timeout))

    def driver_kwargs(self) -> Dict[str, Any]:
        return {"max_batch": self.max_batch, "timeout": self.timeout,
                "use_interrupt": self.use_interrupt}


@dataclass(frozen=True)
class PynqOptions(DriverOptions):
    """The board ("pynq" backend).

    Attributes
    ----------
    overlay : str, optional
        The .bit (with its .hwh beside it); default the installed one for this board
        (pynq_bnn/overlays/<board>/bnn.bit).
    board : str, optional
        PYNQ board name to find the installed overlay for (default: pynq's device, $BOARD).
    device : pynq.Device, optional
        Where to load it (default pynq's active device).
    download : bool
        Program the PL (False: attach to an overlay already loaded).
    ignore_version : bool
        Passed to pynq.Overlay.
    reset_timeout : float
        Seconds reset() waits for AP_IDLE before it reloads the overlay.
    lock : bool
        Take the board's cross-process lock (one pynq-bnn process per PL).
    lock_timeout : float
        Seconds to wait for that lock (0: fail at once, naming the holder).
    """

    overlay: Optional[str] = None
    board: Optional[str] = None
    device: Any = None
    download: bool = True
    ignore_version: bool = False
    reset_timeout: float = 1.0
    lock: bool = True
    lock_timeout: float = 0.0

    def hardware_kwargs(self) -> Dict[str, Any]:
        return {"overlay": self.overlay, "board": self.board, "device": self.device,
                "download": self.download, "ignore_version": self.ignore_version,
                "reset_timeout": self.reset_timeout, "lock": self.lock,
                "lock_timeout": self.lock_timeout}


@dataclass(frozen=True)
class MockOptions(DriverOptions):
    """The simulated accelerator ("mock" backend).

    Attributes
    ----------
    kernel : str
        What computes a start: "auto" (the HLS C model when built, else the native engine,
        else the reference), "hls-lib", "engine" or "reference".
    faults : dict or SimFaults, optional
        Injected faults (never_done, wrong_id, corrupt, latency; backends/sim/kernel.py).
    interrupt : bool
        Simulate the interrupt line (pynq-free mock only).
    board : str
        The board name the simulation reports (and the lock is keyed on).
    mem_base : int, optional
        First simulated bus address (default above 4 GiB, so the high address word matters).
    lock : bool or str
        Take the board's cross-process lock as the pynq backend does (a str: the lock's name).
    via_pynq : bool
        Run the unchanged pynq backend on a simulated pynq.Device (needs pynq; makes it pynq's
        active device until close: never on a real board's session).
    overlay : str, optional
        With via_pynq: the .bit whose .hwh describes the simulated PL (default the fixture).
    """

    kernel: str = "auto"
    faults: Any = None
    interrupt: bool = False
    board: str = "Pynq-Z2"
    mem_base: Optional[int] = None
    lock: Union[bool, str] = False
    via_pynq: bool = False
    overlay: Optional[str] = None


@dataclass(frozen=True)
class CpuOptions(_Options):
    """The native CPU engine ("cpu" backend).

    Attributes
    ----------
    engine : bool
        Use the native engine where it is built (False: the numpy reference).
    max_batch : int
        Images per submit (the pipeline's batch size); run() takes any number.
    """

    engine: bool = True
    max_batch: int = 64


_CLASSES: Dict[str, Type[_Options]] = {"pynq": PynqOptions, "mock": MockOptions, "cpu": CpuOptions}


@overload
def options_for(backend: Literal["pynq"], kwargs: Mapping[str, Any]) -> PynqOptions: ...
@overload
def options_for(backend: Literal["mock"], kwargs: Mapping[str, Any]) -> MockOptions: ...
@overload
def options_for(backend: Literal["cpu"], kwargs: Mapping[str, Any]) -> CpuOptions: ...
@overload
def options_for(backend: str, kwargs: Mapping[str, Any]) -> _Options: ...
def options_for(backend: str, kwargs: Mapping[str, Any]) -> _Options:
    """The config object of ``backend`` from keyword arguments.

    The cpu backend ignores the hardware backends' options (so one set of options works for
    "auto", which may fall back to cpu); every other unknown name is a TypeError.
    """
    cls = _CLASSES[backend]
    ignore: tuple = ()
    if backend == "cpu":
        ignore = tuple(f.name for c in (PynqOptions, MockOptions) for f in dataclasses.fields(c))
    return cls.from_kwargs(backend, kwargs, ignore=ignore)
