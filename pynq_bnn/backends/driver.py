"""The accelerator driver: buffers, parameter loading, starts, waits, batching, checks.

The same code runs on the board (through pynq) and on the simulated IP; it talks only to the
narrow :class:`pynq_bnn.backends.base.Hardware` interface and never asks which one it has.

Protocol of one start (Vitis HLS ``ap_ctrl_hs``, register map in :mod:`pynq_bnn.spec.abi`)::

    read CTRL                       refuse unless AP_IDLE and not AP_START (busy)
    write params/input/scores       64-bit addresses as low/high 32-bit words
    write n_images
    [interrupt: GIER=1, IP_IER=1]   only where the overlay wires the IP's interrupt
    write CTRL = AP_START
    wait                            interrupt (then clear IP_ISR), and/or poll CTRL for
                                    AP_DONE (clear on read) until the deadline
    -> HardwareTimeout past the deadline; the accelerator is unusable until reset()

Around it: the input rows and a poisoned scores area are flushed before the start, the
scores are invalidated after AP_DONE, and every score is checked against what the last
layer can produce (a poisoned entry that was not overwritten fails the same check).
"""
from __future__ import annotations

import functools
import logging
import threading
import time
from typing import Dict, List, Optional

import numpy as np

from ..spec import abi
from .base import ThreadTimings, check_packed
from ..errors import BnnError, HardwareError, HardwareTimeout, ParamsError

logger = logging.getLogger(__name__)

#: Written into the scores area before every start: no real score can be this value
#: (|score| <= fan-in <= 8192), so a kernel that did not write its output is caught.
SCORE_POISON = np.int32(-2**31)

DEFAULT_MAX_BATCH = 64
DEFAULT_TIMEOUT = 10.0


def _serialised(method):
    """Run ``method`` under the accelerator's lock: one IP, one set of DMA buffers, so calls
    from several threads take turns instead of overwriting each other's input and scores."""
    @functools.wraps(method)
    def locked(self, *args, **kwargs):
        with self._lock:
            return method(self, *args, **kwargs)
    return locked


def describe_abi_id(value: int) -> str:
    """``0x424e0001 (magic 0x424e, version 1)`` for an ABI id register value."""
    value = int(value) & 0xFFFFFFFF
    magic, version = value >> 16, value & 0xFFFF
    tag = "" if magic == abi.ABI_MAGIC else ", not a pynq-bnn kernel"
    return f"0x{value:08x} (magic 0x{magic:04x}, version {version}{tag})"


class Accelerator:
    """Driver of one bnn_kernel IP.

    Cheap to construct; :meth:`load` allocates the DMA buffers and checks the bitstream's ABI.

    Parameters
    ----------
    hardware : pynq_bnn.backends.base.Hardware
        Registers, buffers and (optionally) the interrupt of the IP.
    max_batch : int
        Images per start; the input and scores buffers are sized for it once, and larger
        batches are run in chunks of ``max_batch`` (and one leftover chunk).
    timeout : float
        Seconds one start may take before :class:`~pynq_bnn.errors.HardwareTimeout`.
    use_interrupt : bool
        Wait on the IP's interrupt where the hardware has one (polling CTRL otherwise, and
        always as the final word).
    poll_interval : float
        First sleep between CTRL polls, doubled up to 1 ms.
    """

    def __init__(self, hardware, max_batch: int = DEFAULT_MAX_BATCH,
                 timeout: float = DEFAULT_TIMEOUT, use_interrupt: bool = True,
                 poll_interval: float = 20e-6):
        if int(max_batch) < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if not float(timeout) > 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        self._hw = hardware
        self._lock = threading.RLock()   # see _serialised
        self.max_batch = int(max_batch)
        self.timeout = float(timeout)
        self.use_interrupt = bool(use_interrupt)
        self.poll_interval = float(poll_interval)
        self._params = None
        self._param_buf = self._input_buf = self._scores_buf = None
        self._abi_id: Optional[int] = None
        self._busy = False
        self._closed = False
        self._timings = ThreadTimings()
        # submit()/wait(): the second buffer set (allocated at the first submit) and the
        # batches in flight, oldest first (at most MAX_IN_FLIGHT)
        self._input_buf2 = self._scores_buf2 = None
        self._inflight: List["Submission"] = []
        self._last_ctrl = 0

    # ------------------------------------------------------------------ properties
    @property
    def abi_id(self) -> Optional[int]:
        """The ABI id the bitstream reported at the last :meth:`load` (None before)."""
        return self._abi_id

    @property
    def params(self):
        return self._params

    @property
    def loaded(self) -> bool:
        return self._params is not None

    @property
    def last_timings(self) -> Dict[str, float]:
        """Seconds of the calling thread's last :meth:`run` or :meth:`wait`:
        ``{'transfer': ..., 'kernel': ...}``."""
        return dict(self._timings.value)

    @property
    def busy(self) -> bool:
        """True after a start that has not been seen to finish (a timeout): call reset()."""
        return self._busy

    # ------------------------------------------------------------------ buffers
    def _free_buffers(self) -> None:
        for attr in ("_param_buf", "_input_buf", "_scores_buf", "_input_buf2", "_scores_buf2"):
            buf = getattr(self, attr)
            setattr(self, attr, None)
            if buf is not None:
                buf.freebuffer()
        self._params = None

    @_serialised
    def load(self, params) -> None:
        """Build the parameter image, allocate and fill the buffers, probe the kernel's ABI id.

        Parameters
        ----------
        params : pynq_bnn.Params
            A validated model. Loading another model later replaces this one; if that load
            fails, no model stays loaded (and no buffer stays allocated).

        Raises
        ------
        ParamsError
            The network exceeds what the kernel can run (abi.py limits).
        HardwareError
            The bitstream's ABI id differs from :data:`pynq_bnn.spec.abi.ABI_ID` (both are named),
            or the kernel did not report one.
        HardwareTimeout
            The probe start did not finish.
        """
        self._check_usable()
        self._check_nothing_in_flight("loading a model")
        network = params.network
        try:
            image = abi.build_param_image(params)
        except abi.AbiError as e:
            raise ParamsError(f"meta.network: this kernel cannot run it: {e}") from None
        self._free_buffers()
        hw = self._hw
        try:
            self._param_buf = hw.allocate(image.shape, np.uint64)
            self._param_buf[:] = image
            self._param_buf.flush()
            self._input_buf = hw.allocate((self.max_batch, network.input_words_per_image), np.uint64)
            self._scores_buf = hw.allocate((self.max_batch, network.n_classes), np.int32)
            self._probe()
        except BaseException:
            self._free_buffers()
            raise
        self._params = params
        logger.info("loaded %s: %d parameter words at 0x%x, batches of %d",
                    params.description or "model", image.size,
                    int(self._param_buf.device_address), self.max_batch)

    # ------------------------------------------------------------------ the protocol
    def _check_usable(self) -> None:
        if self._closed:
            raise BnnError("the accelerator is closed")
        if self._busy:
            raise HardwareError("the accelerator did not finish its last start; call reset() first")

    def _start(self, n_images: int, input_buf=None, scores_buf=None) -> None:
        hw = self._hw
        ctrl = hw.read(abi.CTRL)
        if not ctrl & abi.AP_IDLE or ctrl & abi.AP_START:
            raise HardwareError(f"accelerator busy (CTRL=0x{ctrl:02x}): refusing to start; "
                                "another process may be using it, or call reset()")
        for (lo, hi), buf in (((abi.PARAMS_LO, abi.PARAMS_HI), self._param_buf),
                              ((abi.INPUT_LO, abi.INPUT_HI),
                               self._input_buf if input_buf is None else input_buf),
                              ((abi.SCORES_LO, abi.SCORES_HI),
                               self._scores_buf if scores_buf is None else scores_buf)):
            low, high = abi.split64(int(buf.device_address))
            hw.write(lo, low)
            hw.write(hi, high)
        hw.write(abi.N_IMAGES, int(n_images))
        if self._interrupt() is not None:
            if hw.read(abi.IP_ISR) & 1:
                hw.write(abi.IP_ISR, 1)       # toggle-on-write: clear a stale ap_done
            hw.write(abi.IP_IER, 1)
            hw.write(abi.GIER, 1)
        hw.write(abi.CTRL, abi.AP_START)
        self._busy = True

    def _interrupt(self):
        return self._hw.interrupt if self.use_interrupt else None

    def _wait_done(self) -> None:
        hw = self._hw
        deadline = time.monotonic() + self.timeout
        irq = self._interrupt()
        if irq is not None:
            if irq.wait(max(0.0, deadline - time.monotonic())) and hw.read(abi.IP_ISR) & 1:
                hw.write(abi.IP_ISR, 1)
        sleep = self.poll_interval
        while True:
            ctrl = hw.read(abi.CTRL)
            if ctrl & abi.AP_DONE:
                self._busy = False
                return
            if time.monotonic() >= deadline:
                raise HardwareTimeout(
                    f"the accelerator did not finish within {self.timeout:g} s "
                    f"(CTRL=0x{ctrl:02x}); it is unusable until reset()")
            time.sleep(sleep)
            sleep = min(sleep * 2, 1e-3)

    def _probe(self) -> None:
        """A start with n_images=0: the kernel only writes its ABI id."""
        self._start(0)
        self._wait_done()
        value = self._hw.read(abi.ABI_ID_REG)
        valid = self._hw.read(abi.ABI_ID_CTRL) & 1
        if value != abi.ABI_ID:
            raise HardwareError(
                f"bitstream ABI id {describe_abi_id(value)} does not match this pynq-bnn "
                f"(expects {describe_abi_id(abi.ABI_ID)}): rebuild or reinstall the overlay "
                "for this version, or install the pynq-bnn version the bitstream was built for")
        if not valid:
            raise HardwareError("the kernel finished its probe without writing its ABI id "
                                "(abi_id ap_vld = 0)")
        self._abi_id = int(value)

    # ------------------------------------------------------------------ running
    @_serialised
    def run(self, packed) -> np.ndarray:
        """Raw integer scores of a batch.

        Parameters
        ----------
        packed : numpy.ndarray
            uint64 ``[N, H, W, C1/64]``, the packed layer-1 output (any N >= 0).

        Returns
        -------
        numpy.ndarray
            int32 ``[N, n_classes]``. ``self.last_timings`` holds the seconds spent in
            ``transfer`` (copy, flush, invalidate, read back) and ``kernel`` (start..done),
            summed over the chunks.

        Raises
        ------
        ImageError
            ``packed`` has the wrong dtype or shape.
        HardwareTimeout
            A start did not finish within ``timeout`` (call :meth:`reset`).
        HardwareError
            Busy accelerator, or impossible scores (corrupted or unwritten output).
        """
        self._check_usable()
        self._check_nothing_in_flight("run()")
        if self._params is None:
            raise BnnError("no model loaded: call load(params) first")
        network = self._params.network
        x = check_packed(network, packed)
        n_total = x.shape[0]
        x = x.reshape(n_total, network.input_words_per_image)
        out = np.empty((n_total, network.n_classes), dtype=np.int32)
        transfer = kernel = 0.0
        for s in range(0, n_total, self.max_batch):
            n = min(self.max_batch, n_total - s)
            t0 = time.perf_counter()
            inp = self._input_buf[:n]
            inp[:] = x[s:s + n]
            inp.flush()
            res = self._scores_buf[:n]
            res[:] = SCORE_POISON
            res.flush()
            t1 = time.perf_counter()
            self._start(n)
            self._wait_done()
            t2 = time.perf_counter()
            res.invalidate()
            out[s:s + n] = res
            t3 = time.perf_counter()
            transfer += (t1 - t0) + (t3 - t2)
            kernel += t2 - t1
            self._check_scores(out[s:s + n], s)
        self._timings.value = {"transfer": transfer, "kernel": kernel}
        return out

    def _check_scores(self, scores: np.ndarray, first_image: int) -> None:
        """Raise HardwareError on scores the last layer cannot produce."""
        fan_in = self._params.network.last_layer.fan_in
        s = scores.astype(np.int64)
        bad = (np.abs(s) > fan_in) | ((s - fan_in) % 2 != 0)
        if not bad.any():
            return
        i, j = (int(v) for v in np.argwhere(bad)[0])
        value = int(s[i, j])
        why = ("the kernel did not write it" if value == int(SCORE_POISON)
               else f"possible scores are within +-{fan_in} with the parity of {fan_in}")
        raise HardwareError(
            f"impossible output from the accelerator: score {value} for image {first_image + i}, "
            f"class {j} ({why}); {int(bad.sum())} bad value(s) in this chunk")

    # ------------------------------------------------------------------ overlapped starts
    #: Batches that can be in flight at once: one on the kernel, one queued behind it, each
    #: in its own input and scores buffers (the host prepares one while the kernel runs the other).
    MAX_IN_FLIGHT = 2

    @property
    def in_flight(self) -> int:
        """Batches submitted and not yet waited for (0..MAX_IN_FLIGHT)."""
        return len(self._inflight)

    def _check_nothing_in_flight(self, what: str) -> None:
        if self._inflight:
            raise BnnError(f"{what} while {len(self._inflight)} submitted batch(es) are in "
                           "flight: wait() for them first")

    def _slot_buffers(self, slot: int):
        """(input, scores) DMA buffers of buffer set 0 (run()'s) or 1 (allocated on first use)."""
        if slot == 0:
            return self._input_buf, self._scores_buf
        if self._input_buf2 is None or self._scores_buf2 is None:
            network = self._params.network
            if self._input_buf2 is None:
                self._input_buf2 = self._hw.allocate(
                    (self.max_batch, network.input_words_per_image), np.uint64)
            self._scores_buf2 = self._hw.allocate((self.max_batch, network.n_classes), np.int32)
        return self._input_buf2, self._scores_buf2

    @_serialised
    def submit(self, packed) -> "Submission":
        """Hand one batch to the kernel and return at once (the kernel runs in the background).

        The batch is copied into a free buffer set and flushed. If the kernel is free it starts
        now; otherwise it is queued and started by the :meth:`wait` (or :meth:`submit`) call
        that sees the running batch finish. Collect the scores with :meth:`wait`, oldest first
        or not. :meth:`run` stays the simple blocking path; it refuses while batches are in
        flight, as do :meth:`load`.

        Parameters
        ----------
        packed : numpy.ndarray
            uint64 ``[N, H, W, C1/64]`` with ``1 <= N <= max_batch``. Copied: the caller may
            reuse it as soon as submit returns.

        Returns
        -------
        Submission
            Pass it to :meth:`wait`.

        Raises
        ------
        BnnError
            No model loaded, or MAX_IN_FLIGHT batches are already in flight.
        ValueError
            N outside ``1..max_batch``.
        ImageError
            ``packed`` has the wrong dtype or shape.
        HardwareError
            Busy accelerator (another user) at the start; nothing stays in flight.
        """
        self._check_usable()
        if self._params is None:
            raise BnnError("no model loaded: call load(params) first")
        network = self._params.network
        x = check_packed(network, packed)
        n = x.shape[0]
        if not 1 <= n <= self.max_batch:
            raise ValueError(f"submit takes 1..{self.max_batch} (max_batch) images, got {n}; "
                             "run() splits larger batches")
        if len(self._inflight) >= self.MAX_IN_FLIGHT:
            raise BnnError(f"{len(self._inflight)} batches are already in flight: "
                           "wait() for one before submitting another")
        self._service()
        slot = 1 if any(s.slot == 0 for s in self._inflight) else 0
        t0 = time.perf_counter()
        input_buf, scores_buf = self._slot_buffers(slot)
        inp = input_buf[:n]
        inp[:] = x.reshape(n, network.input_words_per_image)
        inp.flush()
        res = scores_buf[:n]
        res[:] = SCORE_POISON
        res.flush()
        sub = Submission(n, slot)
        sub._transfer = time.perf_counter() - t0
        kernel_free = not any(s.state in ("running", "queued") for s in self._inflight)
        self._inflight.append(sub)
        if kernel_free:
            try:
                self._launch(sub)
            except BaseException:
                self._inflight.remove(sub)
                raise
        return sub

    def _launch(self, sub: "Submission") -> None:
        input_buf, scores_buf = self._slot_buffers(sub.slot)
        try:
            self._start(sub.n, input_buf, scores_buf)   # a [:n] slice has the same address
        except BaseException as e:
            sub.state, sub.error = "failed", e
            raise
        self._busy = False       # in flight: tracked by the Submission, not by _busy
        sub.state = "running"
        sub._t_start = time.perf_counter()

    def _service(self) -> None:
        """If the running batch has finished, mark it done and start the queued one.

        AP_DONE clears on read, so while batches are in flight CTRL is read only here.
        """
        running = next((s for s in self._inflight if s.state == "running"), None)
        if running is None:
            return
        ctrl = self._hw.read(abi.CTRL)
        self._last_ctrl = ctrl
        if not ctrl & abi.AP_DONE:
            return
        running.state = "done"
        running._t_done = time.perf_counter()
        queued = next((s for s in self._inflight if s.state == "queued"), None)
        if queued is not None:
            try:
                self._launch(queued)
            except Exception:    # kept on the submission: wait(queued) raises it
                logger.debug("starting a queued batch failed", exc_info=True)

    def _drop_in_flight(self, error: BaseException) -> None:
        for s in self._inflight:
            s.state, s.error = "failed", error
        self._inflight.clear()

    @_serialised
    def wait(self, submission: "Submission", timeout: Optional[float] = None) -> np.ndarray:
        """Scores of a submitted batch, once the kernel has run it.

        Parameters
        ----------
        submission : Submission
            What :meth:`submit` returned (each one can be waited for once).
        timeout : float, optional
            Seconds each start may take (default ``self.timeout``); a queued batch first
            waits for the running one.

        Returns
        -------
        numpy.ndarray
            int32 ``[N, n_classes]``; ``submission.timings`` and ``self.last_timings`` hold
            its ``transfer`` and ``kernel`` seconds.

        Raises
        ------
        HardwareTimeout
            A start did not finish in time: every batch in flight is dropped and the
            accelerator is unusable until :meth:`reset`.
        HardwareError
            Impossible scores, or the batch could not be started. Its buffers are free
            again either way.
        BnnError
            Not a batch in flight here (already waited for, or dropped by reset/close).
        """
        sub = submission
        if sub.state == "failed" and sub not in self._inflight:
            raise sub.error
        if not any(s is sub for s in self._inflight):
            raise BnnError("not a batch in flight on this accelerator "
                           f"(state {sub.state}: each submission can be waited for once)")
        limit = self.timeout if timeout is None else float(timeout)
        irq = self._interrupt()
        try:
            started = sub._t_start
            deadline = time.monotonic() + limit
            sleep = self.poll_interval
            while True:
                self._service()
                if sub.state == "done":
                    break
                if sub.state == "failed":
                    raise sub.error
                if sub._t_start != started:         # it started only now: its own deadline
                    started, deadline = sub._t_start, time.monotonic() + limit
                now = time.monotonic()
                if now >= deadline:
                    self._busy = True
                    err = HardwareTimeout(
                        f"the accelerator did not finish within {limit:g} s "
                        f"(CTRL=0x{self._last_ctrl:02x}); it is unusable until reset()")
                    self._drop_in_flight(err)
                    raise err
                if irq is not None and irq.wait(min(deadline - now, 0.1)):
                    continue
                time.sleep(sleep)
                sleep = min(sleep * 2, 1e-3)
            t0 = time.perf_counter()
            _, scores_buf = self._slot_buffers(sub.slot)
            res = scores_buf[:sub.n]
            res.invalidate()
            out = np.array(res, dtype=np.int32)
            sub.timings = {"transfer": sub._transfer + time.perf_counter() - t0,
                           "kernel": sub._t_done - sub._t_start}
            self._timings.value = dict(sub.timings)
            self._check_scores(out, 0)
            sub.state = "collected"
        finally:
            if any(s is sub for s in self._inflight):
                self._inflight.remove(sub)    # its buffer set is free again, whatever happened
                if sub.state != "collected":
                    sub.state = "failed"
        return out

    # ------------------------------------------------------------------ recovery, closing
    @_serialised
    def reset(self) -> None:
        """Make the accelerator usable again after a timeout.

        There is no soft reset in ``ap_ctrl_hs``: the hardware backend waits for idle and
        otherwise reloads the overlay (the simulated IP resets itself). The buffers are kept;
        with a model loaded, the ABI id is probed again.
        """
        if self._closed:
            raise BnnError("the accelerator is closed")
        self._drop_in_flight(HardwareError("batch dropped by reset()"))
        self._hw.reset()
        self._busy = False
        if self._params is not None:
            self._probe()

    @_serialised
    def close(self) -> None:
        """Free every buffer (idempotent). A hung kernel is reset first, so that it cannot
        write into memory that has been given back."""
        if self._closed:
            return
        if any(s.state in ("running", "queued") for s in self._inflight):
            self._busy = True    # the kernel may still write a scores buffer: reset first
        self._drop_in_flight(BnnError("batch dropped: the accelerator was closed"))
        if self._busy:
            logger.warning("closing while a start is unfinished: resetting the accelerator first")
            try:
                self._hw.reset()
            except Exception as e:  # closing must not fail; say what happened
                logger.error("reset before close failed: %s", e)
            self._busy = False
        self._free_buffers()
        self._closed = True

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close()
        return False


class Submission:
    """A batch handed to :meth:`Accelerator.submit`; give it to :meth:`Accelerator.wait`.

    Attributes
    ----------
    n : int
        Images in the batch.
    slot : int
        The buffer set (0 or 1) that holds it.
    state : str
        "queued" (behind the running batch), "running", "done" (not yet collected),
        "collected" (wait returned its scores) or "failed" (``error`` says why).
    timings : dict
        ``transfer`` and ``kernel`` seconds, set by wait.
    """

    __slots__ = ("n", "slot", "state", "error", "timings", "_transfer", "_t_start", "_t_done")

    def __init__(self, n: int, slot: int):
        self.n = n
        self.slot = slot
        self.state = "queued"
        self.error: Optional[BaseException] = None
        self.timings: Dict[str, float] = {}
        self._transfer = 0.0
        self._t_start = self._t_done = None

    def __repr__(self):
        return f"<Submission {self.n} images, buffer set {self.slot}, {self.state}>"
