"""The board: pynq.Overlay + BnnKernelIP (bound by VLNV) + pynq.allocate.

pynq is imported only when :class:`PynqHardware` is constructed. The same code runs off-board
on :class:`pynq_bnn.backends.sim.pynq_device.SimDevice` (the mock backend's ``via_pynq=True``, and
the tests), because only the ``pynq.Device`` underneath differs.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
import warnings
from typing import Dict, Optional

from ...errors import BackendUnavailable, HardwareError
from ...spec import abi
from ..base import Hardware
from .overlay_files import find_overlay

logger = logging.getLogger(__name__)


def import_pynq():
    """``import pynq``, or BackendUnavailable saying how to get it."""
    try:
        import pynq
    except ImportError as e:
        raise BackendUnavailable(
            f"pynq is not importable ({e}); on a PYNQ board image it is preinstalled, "
            "elsewhere use the 'mock' or 'cpu' backend") from None
    return pynq


def check_register_map(registers: Optional[Dict[str, dict]], where: str = "bnn_kernel") -> bool:
    """Compare the HWH register map of the IP with :data:`pynq_bnn.spec.abi.HWH_REGISTER_NAMES`.

    Returns False (and logs) when the HWH lists no registers; True when they all match.

    Raises
    ------
    HardwareError
        A register is missing or at another offset; every difference is listed.
    """
    if not registers:
        logger.info("%s: the .hwh lists no registers; offsets not cross-checked", where)
        return False
    problems = []
    missing = set()
    for name, offset in sorted(abi.HWH_REGISTER_NAMES.items(), key=lambda kv: kv[1]):
        reg = registers.get(name)
        if reg is None:
            missing.add(name)
            problems.append(f"{name} missing (abi.py: 0x{offset:02x})")
        elif int(reg.get("address_offset", -1)) != offset:
            problems.append(f"{name} at 0x{int(reg['address_offset']):02x} in the .hwh, "
                            f"0x{offset:02x} in abi.py")
    if problems:
        hint = ""
        # Version 2 appended its registers after abi_id_ctrl: only those missing means a
        # version-1 bitstream.
        added_in_v2 = {r.hwh_name for r in abi.REGISTERS if r.offset > abi.ABI_ID_CTRL}
        if len(problems) == len(missing) and missing <= added_in_v2:
            hint = (f" (a bitstream built for ABI version 1; this pynq-bnn needs version "
                    f"{abi.ABI_VERSION}: rebuild the overlay with this version's hls_src)")
        raise HardwareError(f"{where}: register map of the bitstream does not match this "
                            "pynq-bnn's ABI: " + "; ".join(problems) + hint)
    return True


def _board_lock(pynq, device, bitstream: str):
    """The cross-process lock of the board ``device`` (pynq's active device by default), or
    None when pynq has no device (then pynq.Overlay fails with its own message)."""
    from .lock import OverlayLock

    try:
        dev = device if device is not None else pynq.Device.active_device
    except Exception:  # "No Devices Found": not a board; Overlay() says so below
        return None
    return OverlayLock(getattr(dev, "name", None) or "pl", description=bitstream)


class _BlockingInterrupt:
    """``wait(timeout) -> bool`` over a ``pynq.Interrupt`` (whose ``wait`` is a coroutine)."""

    def __init__(self, irq):
        self._irq = irq

    def wait(self, timeout: float) -> bool:
        try:
            loop = asyncio.get_event_loop()
            loop.run_until_complete(asyncio.wait_for(self._irq.wait(), max(timeout, 0.0)))
            return True
        except asyncio.TimeoutError:
            return False
        except RuntimeError as e:  # e.g. a running loop (Jupyter without nest_asyncio)
            logger.debug("interrupt wait unavailable (%s); polling", e)
            return False


class PynqHardware(Hardware):
    """The bnn_kernel IP of a loaded overlay, through pynq.

    Parameters
    ----------
    overlay : str, optional
        Path of the .bit (its .hwh beside it). Default
        :func:`pynq_bnn.backends.pynq.overlay_files.find_overlay`.
    board : str, optional
        Board name for the default overlay (default: pynq's active device, or ``$BOARD``).
    device : pynq.Device, optional
        Passed to ``pynq.Overlay`` and ``pynq.allocate`` (default: pynq's active device).
    download : bool
        Program the PL (False: use what is loaded, e.g. when another process loaded it).
    ignore_version : bool
        ``pynq.Overlay(ignore_version=...)``: bind BnnKernelIP to other versions of the IP.
    reset_timeout : float
        Seconds :meth:`reset` waits for AP_IDLE before it reloads the overlay.
    lock : bool
        Take the board's cross-process lock (:class:`pynq_bnn.backends.pynq.lock.OverlayLock`)
        before downloading, and hold it until :meth:`close`: a second pynq-bnn process gets
        ``HardwareError("overlay in use by pid N ...")`` instead of reprogramming the PL under
        the first one.
    lock_timeout : float
        Seconds to wait for the lock's holder to let go (default 0: fail at once).

    Raises
    ------
    HardwareError
        The overlay is in use by another process (the message names its pid), the overlay
        failed to load, or its IP / register map is not this pynq-bnn's.
    """

    def __init__(self, overlay: Optional[str] = None, board: Optional[str] = None,
                 device=None, download: bool = True, ignore_version: bool = False,
                 reset_timeout: float = 1.0, lock: bool = True, lock_timeout: float = 0.0):
        pynq = import_pynq()
        from .ip import BnnKernelIP  # registers the driver before the Overlay binds

        path = os.path.abspath(os.fspath(overlay)) if overlay else find_overlay(board)
        if not os.path.isfile(path):
            raise BackendUnavailable(f"overlay {path} does not exist")
        self._lock = _board_lock(pynq, device, path) if lock else None
        if self._lock is not None:
            self._lock.acquire(lock_timeout)
        try:
            self._open(pynq, BnnKernelIP, path, device, download, ignore_version, reset_timeout)
        except BaseException:
            self.close()
            raise

    def _open(self, pynq, BnnKernelIP, path, device, download, ignore_version, reset_timeout):
        kwargs = {"download": download, "ignore_version": ignore_version}
        if device is not None:
            kwargs["device"] = device
        try:
            self.overlay = pynq.Overlay(path, **kwargs)
        except RuntimeError as e:
            if "No Devices Found" in str(e):
                raise BackendUnavailable(
                    f"pynq finds no device here ({e}): not a PYNQ board?") from None
            raise HardwareError(f"loading overlay {path} failed: {e}") from e
        except (OSError, ValueError, KeyError) as e:
            raise HardwareError(f"loading overlay {path} failed: {type(e).__name__}: {e}") from e
        self.bitstream = path
        self.device = self.overlay.device
        self.reset_timeout = float(reset_timeout)
        self.ip_name = self._find_ip()
        check_register_map(self.overlay.ip_dict[self.ip_name].get("registers"), self.ip_name)
        self.ip = self._bind_ip()
        if not isinstance(self.ip, BnnKernelIP):
            logger.warning("%s is driven by %s, not BnnKernelIP (IP version?)",
                           self.ip_name, type(self.ip).__name__)
        self._pynq = pynq

    # discovery ---------------------------------------------------------------------------
    def _find_ip(self) -> str:
        ip_dict = self.overlay.ip_dict
        exact = sorted(k for k, v in ip_dict.items() if v.get("type") == abi.KERNEL_VLNV)
        if exact:
            if len(exact) > 1:
                logger.info("%d bnn_kernel IPs (%s); using %s", len(exact), ", ".join(exact),
                            exact[0])
            return exact[0]
        vln = abi.KERNEL_VLNV.rpartition(":")[0]
        other = {k: v.get("type") for k, v in ip_dict.items()
                 if str(v.get("type", "")).startswith(vln + ":")}
        if other:
            raise HardwareError(f"overlay {self.bitstream}: bnn_kernel IP of another version "
                                f"({other}); this pynq-bnn drives {abi.KERNEL_VLNV}")
        raise HardwareError(f"overlay {self.bitstream} has no {abi.KERNEL_VLNV} IP "
                            f"(IPs: {', '.join(sorted(ip_dict)) or 'none'})")

    def _bind_ip(self):
        obj = self.overlay
        for part in self.ip_name.split("/"):
            obj = getattr(obj, part)
        return obj

    @property
    def interrupt(self):
        irq = getattr(self.ip, "interrupt", None)
        return _BlockingInterrupt(irq) if irq is not None else None

    # the narrow interface ----------------------------------------------------------------
    def allocate(self, shape, dtype):
        return self._pynq.allocate(shape, dtype, target=self.device)

    def read(self, offset: int) -> int:
        return int(self.ip.read(offset))

    def write(self, offset: int, value: int) -> None:
        self.ip.write(offset, value)

    def reset(self) -> None:
        """Recover from a hung or late kernel.

        ``ap_ctrl_hs`` has no soft reset. First wait up to ``reset_timeout`` seconds for
        AP_IDLE (a late kernel finishing); if it stays busy, reload the overlay, which
        reprograms the PL and so resets the IP (about a second on a Pynq-Z2). DMA buffers live
        in DDR and survive; the driver rewrites every argument register before each start.
        Reprogramming while the kernel still masters the bus is what an unrecoverable hang
        leaves; if the board itself stops answering, only a reboot helps.
        """
        deadline = time.monotonic() + self.reset_timeout
        while time.monotonic() < deadline:
            if self.read(abi.CTRL) & abi.AP_IDLE:
                logger.info("reset: %s is idle again; no reload needed", self.ip_name)
                self._clear_interrupt()
                return
            time.sleep(1e-3)
        logger.warning("reset: %s still busy after %.3g s; reloading the overlay %s",
                       self.ip_name, self.reset_timeout, self.bitstream)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            self.overlay.download()
        self.ip = self._bind_ip()
        if not self.read(abi.CTRL) & abi.AP_IDLE:
            raise HardwareError(f"{self.ip_name} is still busy after reloading the overlay")

    def close(self) -> None:
        """Release the board lock (idempotent); the driver frees the buffers before this."""
        lock, self._lock = getattr(self, "_lock", None), None
        if lock is not None:
            lock.release()

    def _clear_interrupt(self) -> None:
        isr = self.read(abi.IP_ISR)
        if isr:
            self.write(abi.IP_ISR, isr & 3)

    def describe(self):
        return {"board": getattr(self.device, "name", None), "bitstream": self.bitstream,
                "kernel": f"{abi.KERNEL_VLNV} ({self.ip_name} at "
                          f"0x{int(self.overlay.ip_dict[self.ip_name]['phys_addr']):08x})",
                "device": type(self.device).__name__,
                "pynq_version": getattr(self._pynq, "__version__", None)}
