"""The accelerator driver: buffers, parameter loading, starts, waits, batching, checks.

The same code runs on the board (through pynq) and on the simulated IP; it talks only to the
narrow :class:`pynq_bnn.backends.base.Hardware` interface and never asks which one it has.

Protocol of one start (Vitis HLS ``ap_ctrl_hs``, register map in :mod:`pynq_bnn.spec.abi`)::

    read CTRL                       refuse unless AP_IDLE and not AP_START (busy)
    write params/input/scores/      64-bit addresses as low/high 32-bit words (params2: the
          params2                   parameter buffer again, ABI version 2)
    write n_images
    [interrupt: GIER=1, IP_IER=1]   only where the overlay wires the IP's interrupt
    write CTRL = AP_START
    wait                            interrupt (then clear IP_ISR), and/or poll CTRL for
                                    AP_DONE (clear on read) until the deadline
    -> HardwareTimeout past the deadline; the accelerator is unusable until reset()

Around it: the input rows and a poisoned scores area are flushed before the start, the
scores are invalidated after AP_DONE, and every score is checked against what the last
layer can produce (a poisoned entry that was not overwritten fails the same check).

Interrupted waits (KeyboardInterrupt, the Jupyter stop button): a batch whose wait was
interrupted stays in flight and can be waited for again; a run() interrupted mid-start leaves
the start to finish on its own, and the next call sees it finish (within the start's own
deadline) instead of refusing. Only a real timeout needs reset().
"""
from __future__ import annotations

import functools
import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional

import numpy as np

from ..errors import BnnError, ClosedError, HardwareError, HardwareTimeout, ParamsError
from ..spec import abi
from .base import (
    Hardware,
    Submission,
    SubmissionState,
    ThreadTimings,
    check_packed,
    check_timeout,
    packed_shape,
)

if TYPE_CHECKING:
    from ..spec.network import Network
    from ..spec.params import Params

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

    def __init__(self, hardware: Hardware, max_batch: int = DEFAULT_MAX_BATCH,
                 timeout: float = DEFAULT_TIMEOUT, use_interrupt: bool = True,
                 poll_interval: float = 20e-6):
        if isinstance(max_batch, bool) or int(max_batch) < 1:
            raise ValueError(f"max_batch must be an int >= 1, got {max_batch!r}")
        self._hw = hardware
        self._lock = threading.RLock()   # see _serialised
        self.max_batch = int(max_batch)
        self.timeout = check_timeout(timeout)
        self.use_interrupt = bool(use_interrupt)
        self.poll_interval = float(poll_interval)
        self._params: Optional[Params] = None
        self._param_buf: Optional[Any] = None   # a DmaBuffer (Hardware.allocate)
        # (input, scores) DMA buffers of each buffer set: set 0 is run()'s and the first
        # submit's, set 1 is allocated at the first submit that finds set 0 in flight
        self._slots: List[Optional[tuple]] = [None] * self.MAX_IN_FLIGHT
        self._abi_id: Optional[int] = None
        self._busy_since: Optional[float] = None   # a run()/probe start not yet seen to finish
        self._timed_out = False                     # a start overran its deadline: reset()
        self._closed = False
        self._timings = ThreadTimings()
        self._inflight: List[Submission] = []       # submitted batches, oldest first
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
        """True after a start that overran its deadline (a timeout): call reset()."""
        return self._timed_out

    @property
    def _input_buf(self):
        return None if self._slots[0] is None else self._slots[0][0]

    @property
    def _scores_buf(self):
        return None if self._slots[0] is None else self._slots[0][1]

    # ------------------------------------------------------------------ buffers
    def _free_buffers(self) -> None:
        bufs = [self._param_buf] + [b for slot in self._slots if slot is not None for b in slot]
        self._param_buf = None
        self._slots = [None] * self.MAX_IN_FLIGHT
        self._params = None
        for buf in bufs:
            if buf is not None:
                buf.freebuffer()

    def _slot(self, slot: int):
        """(input, scores) DMA buffers of buffer set ``slot``, allocated on first use."""
        if self._slots[slot] is None:
            network = self._loaded_network()
            inp = self._hw.allocate((self.max_batch, network.input_words_per_image), np.uint64)
            try:
                res = self._hw.allocate((self.max_batch, network.n_classes), np.int32)
            except BaseException:
                inp.freebuffer()
                raise
            self._slots[slot] = (inp, res)
        return self._slots[slot]

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
            self._params = params       # sizes the buffer sets
            self._slot(0)
            self._probe()
        except BaseException:
            self._free_buffers()
            raise
        logger.info("loaded %s: %d parameter words at 0x%x, batches of %d",
                    params.description or "model", image.size,
                    int(self._param_buf.device_address), self.max_batch)

    # ------------------------------------------------------------------ the protocol
    def _check_usable(self) -> None:
        if self._closed:
            raise ClosedError("the accelerator is closed")
        if self._busy_since is not None and not self._timed_out:
            self._finish_interrupted_start(self._busy_since)
        if self._timed_out:
            raise HardwareError("the accelerator did not finish its last start; call reset() first")

    def _finish_interrupted_start(self, started: float) -> None:
        """A run() or probe was interrupted while the kernel ran (it ``started`` then): wait
        (within that start's own deadline) for it to finish; its result is discarded."""
        deadline = started + self.timeout
        if self._poll_until(self._start_finished, deadline):
            self._busy_since = None
            return
        self._timed_out = True

    def _start_finished(self) -> bool:
        ctrl = self._read_ctrl()
        # AP_DONE clears on read, so an interrupted wait may have consumed it: idle also counts.
        return bool(ctrl & abi.AP_DONE) or bool(ctrl & abi.AP_IDLE and not ctrl & abi.AP_START)

    def _read_ctrl(self) -> int:
        self._last_ctrl = self._hw.read(abi.CTRL)
        return self._last_ctrl

    def _start(self, n_images: int, slot: int = 0) -> None:
        hw = self._hw
        ctrl = hw.read(abi.CTRL)
        if not ctrl & abi.AP_IDLE or ctrl & abi.AP_START:
            raise HardwareError(f"accelerator busy (CTRL=0x{ctrl:02x}): refusing to start; "
                                "another process may be using it, or call reset()")
        input_buf, scores_buf = self._slot(slot)
        param_buf = self._param_buf
        if param_buf is None:
            raise BnnError("no model loaded: call load(params) first")
        # ABI 2: the parameter buffer goes to params and params2 (the kernel's second master)
        for (lo, hi), buf in (((abi.PARAMS_LO, abi.PARAMS_HI), param_buf),
                              ((abi.INPUT_LO, abi.INPUT_HI), input_buf),
                              ((abi.SCORES_LO, abi.SCORES_HI), scores_buf),
                              ((abi.PARAMS2_LO, abi.PARAMS2_HI), param_buf)):
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

    def _interrupt(self):
        return self._hw.interrupt if self.use_interrupt else None

    def _poll_until(self, finished: Callable[[], bool], deadline: float) -> bool:
        """The one wait loop: True once ``finished()``, False at ``deadline`` (monotonic).

        Sleeps on the interrupt where there is one (acknowledging it), else polls with a sleep
        that doubles from ``poll_interval`` to 1 ms; ``finished`` is asked first and last.
        """
        irq = self._interrupt()
        sleep = self.poll_interval
        while True:
            if finished():
                return True
            now = time.monotonic()
            if now >= deadline:
                return False
            if irq is not None:
                if irq.wait(min(deadline - now, 0.1)) and self._hw.read(abi.IP_ISR) & 1:
                    self._hw.write(abi.IP_ISR, 1)
                continue
            time.sleep(min(sleep, max(deadline - now, 0.0)))
            sleep = min(sleep * 2, 1e-3)

    def _run_start(self, n_images: int) -> None:
        """Start on buffer set 0 and wait for AP_DONE (run() and the probe)."""
        self._start(n_images)
        self._busy_since = time.monotonic()
        if not self._poll_until(lambda: bool(self._read_ctrl() & abi.AP_DONE),
                                self._busy_since + self.timeout):
            self._timed_out = True
            raise HardwareTimeout(
                f"the accelerator did not finish within {self.timeout:g} s "
                f"(CTRL=0x{self._last_ctrl:02x}); it is unusable until reset()")
        self._busy_since = None

    def _probe(self) -> None:
        """A start with n_images=0: the kernel only writes its ABI id."""
        self._run_start(0)
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

    # ------------------------------------------------------------------ the stages of a batch
    def _stage_input(self, slot: int, n: int, fill: Callable[[np.ndarray], object]) -> None:
        """Host -> DDR: ``fill`` writes the packed input into the DMA buffer, which is flushed."""
        network = self._loaded_network()
        inp = self._slot(slot)[0][:n]
        fill(inp.reshape((n,) + packed_shape(network)))   # a view: C-contiguous rows
        inp.flush()

    def _poison_scores(self, slot: int, n: int) -> None:
        """Scores the kernel did not write stay SCORE_POISON and fail _check_scores."""
        res = self._slot(slot)[1][:n]
        res[:] = SCORE_POISON
        res.flush()

    def _collect(self, slot: int, n: int) -> np.ndarray:
        """DDR -> host: the scores of ``n`` images, invalidated first (after AP_DONE)."""
        res = self._slot(slot)[1][:n]
        res.invalidate()
        return np.array(res, dtype=np.int32)

    def _check_scores(self, scores: np.ndarray, first_image: int) -> None:
        """Raise HardwareError on scores the last layer cannot produce."""
        fan_in = self._loaded_network().last_layer.fan_in
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

    def _loaded_network(self) -> Network:
        if self._params is None:
            raise BnnError("no model loaded: call load(params) first")
        return self._params.network

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
        network = self._loaded_network()
        x = check_packed(network, packed)
        n_total = x.shape[0]
        out = np.empty((n_total, network.n_classes), dtype=np.int32)
        transfer = kernel = 0.0
        for s in range(0, n_total, self.max_batch):
            n = min(self.max_batch, n_total - s)
            t0 = time.perf_counter()
            chunk = x[s:s + n]
            self._stage_input(0, n, lambda view: np.copyto(view, chunk))
            self._poison_scores(0, n)
            t1 = time.perf_counter()
            self._run_start(n)
            t2 = time.perf_counter()
            out[s:s + n] = self._collect(0, n)
            t3 = time.perf_counter()
            transfer += (t1 - t0) + (t3 - t2)
            kernel += t2 - t1
            self._check_scores(out[s:s + n], s)
        self._timings.value = {"transfer": transfer, "kernel": kernel}
        return out

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

    def _kernel_free(self) -> bool:
        return not any(s.state in (SubmissionState.RUNNING, SubmissionState.QUEUED)
                       for s in self._inflight)

    @_serialised
    def submit(self, packed) -> Submission:
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
        network = self._loaded_network()
        x = check_packed(network, packed)
        return self.submit_into(x.shape[0], lambda view: np.copyto(view, x))

    @_serialised
    def submit_into(self, n: int, fill: Callable[[np.ndarray], object],
                    first_image: int = 0) -> Submission:
        """:meth:`submit` without the copy: ``fill(view)`` writes the packed input straight
        into the kernel's DMA input buffer (``view``: C-contiguous uint64 ``[n, H, W, C1/64]``,
        e.g. ``lambda out: layer1(images, out=out)``). ``first_image`` numbers the batch's
        images in error messages (its position in the caller's stream). Same errors as
        :meth:`submit`."""
        self._check_usable()
        self._loaded_network()
        n = int(n)
        if not 1 <= n <= self.max_batch:
            raise ValueError(f"submit takes 1..{self.max_batch} (max_batch) images, got {n}; "
                             "run() splits larger batches")
        if len(self._inflight) >= self.MAX_IN_FLIGHT:
            raise BnnError(f"{len(self._inflight)} batches are already in flight: "
                           "wait() for one before submitting another")
        self._service()
        used = {s.slot for s in self._inflight}
        slot = next(i for i in range(self.MAX_IN_FLIGHT) if i not in used)
        t0 = time.perf_counter()
        self._stage_input(slot, n, fill)
        self._poison_scores(slot, n)
        sub = Submission(n, slot, first_image)
        sub._transfer = time.perf_counter() - t0
        self._service()                  # the running batch may have finished during fill
        kernel_free = self._kernel_free()
        self._inflight.append(sub)
        if kernel_free:
            try:
                self._launch(sub)
            except BaseException:
                self._inflight.remove(sub)
                raise
        return sub

    def _launch(self, sub: Submission) -> None:
        t0 = time.perf_counter()   # before AP_START: the kernel's time runs from that write
        try:
            self._start(sub.n, sub.slot)
        except BaseException as e:
            sub.fail(e)
            raise
        sub.state = SubmissionState.RUNNING
        sub._t_start = t0

    def _service(self) -> None:
        """If the running batch has finished, mark it done and start the queued one.

        AP_DONE clears on read, so while batches are in flight CTRL is read only here.
        """
        running = next((s for s in self._inflight if s.state is SubmissionState.RUNNING), None)
        if running is None:
            return
        if not self._read_ctrl() & abi.AP_DONE:
            return
        running.state = SubmissionState.DONE
        running._t_done = time.perf_counter()
        queued = next((s for s in self._inflight if s.state is SubmissionState.QUEUED), None)
        if queued is not None:
            try:
                self._launch(queued)
            except Exception:    # kept on the submission: wait(queued) raises it
                logger.debug("starting a queued batch failed", exc_info=True)

    def _drop_in_flight(self, error: BaseException) -> None:
        for s in self._inflight:
            s.fail(error)
        self._inflight.clear()

    @_serialised
    def wait(self, submission: Submission, timeout: Optional[float] = None) -> np.ndarray:
        """Scores of a submitted batch, once the kernel has run it.

        Parameters
        ----------
        submission : Submission
            What :meth:`submit` returned (each one can be waited for once).
        timeout : float, optional
            Seconds each start may take (default ``self.timeout``; finite, at most
            :data:`~pynq_bnn.backends.base.MAX_TIMEOUT`); a queued batch first waits for the
            running one.

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
        KeyboardInterrupt
            Passed on; the batch stays in flight (the kernel keeps running it) and can be
            waited for again.
        """
        sub = submission
        if sub.state is SubmissionState.FAILED and sub not in self._inflight:
            raise sub.error if sub.error is not None else BnnError("batch failed")
        if not any(s is sub for s in self._inflight):
            raise BnnError("not a batch in flight on this accelerator "
                           f"(state {sub.state.value}: each submission can be waited for once)")
        limit = self.timeout if timeout is None else check_timeout(timeout)
        settled = False    # done with this batch, one way or another: free its buffer set
        try:
            started = sub._t_start
            deadline = time.monotonic() + limit

            def finished() -> bool:
                nonlocal started, deadline
                self._service()
                if sub._t_start != started:         # it started only now: its own deadline
                    started, deadline = sub._t_start, time.monotonic() + limit
                return sub.state in (SubmissionState.DONE, SubmissionState.FAILED)

            while not self._poll_until(finished, deadline):
                if sub._t_start == started:         # a real overrun, not a late start
                    self._timed_out = True
                    err = HardwareTimeout(
                        f"the accelerator did not finish within {limit:g} s "
                        f"(CTRL=0x{self._last_ctrl:02x}); it is unusable until reset()")
                    settled = True
                    self._drop_in_flight(err)
                    raise err
            settled = True
            if sub.state is SubmissionState.FAILED:
                raise sub.error if sub.error is not None else BnnError("batch failed")
            t0 = time.perf_counter()
            out = self._collect(sub.slot, sub.n)
            t_start, t_done = sub._t_start, sub._t_done
            assert t_start is not None and t_done is not None  # DONE: both were recorded
            sub.timings = {"transfer": sub._transfer + time.perf_counter() - t0,
                           "kernel": t_done - t_start}
            self._timings.value = dict(sub.timings)
            self._check_scores(out, sub.first_image)
            sub.state = SubmissionState.COLLECTED
        except Exception as e:
            settled = True
            if sub.state is not SubmissionState.COLLECTED and sub.error is None:
                sub.fail(e)
            raise
        finally:
            # An interrupt (KeyboardInterrupt) before the batch settled leaves it in flight:
            # the kernel may still be writing its buffers, and the queued one must still start.
            if settled and any(s is sub for s in self._inflight):
                self._inflight.remove(sub)    # its buffer set is free again
                if sub.state is not SubmissionState.COLLECTED:
                    sub.state = SubmissionState.FAILED
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
            raise ClosedError("the accelerator is closed")
        self._drop_in_flight(HardwareError("batch dropped by reset()"))
        self._hw.reset()
        self._busy_since = None
        self._timed_out = False
        if self._params is not None:
            self._probe()

    @_serialised
    def close(self) -> None:
        """Free every buffer (idempotent). A hung kernel is reset first, so that it cannot
        write into memory that has been given back."""
        if self._closed:
            return
        unfinished = self._timed_out or not self._kernel_free()
        if self._busy_since is not None and not self._timed_out:
            # an interrupted run(): its start gets its own deadline to finish
            unfinished = not self._poll_until(self._start_finished, self._busy_since + self.timeout)
        self._drop_in_flight(ClosedError("batch dropped: the accelerator was closed"))
        if unfinished:
            logger.warning("closing while a start is unfinished: resetting the accelerator first")
            try:
                self._hw.reset()
            except Exception as e:  # closing must not fail; say what happened
                logger.error("reset before close failed: %s", e)
        self._busy_since = None
        self._timed_out = False
        self._free_buffers()
        self._closed = True

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close()
        return False
