"""The live loop: classify camera frames, layer 1 of frame i+1 overlapped with frame i.

:func:`run_live` classifies frames one by one, in two stages:

``front`` (capture, preprocess, layer1)
    read a frame, fit it to the network, run layer 1 on the host (``classifier.layer1``);
``back`` (transfer, kernel, post)
    layers 2..L on the backend, the per-class affine and argmax.

The frames go through the package's one host batch loop (:func:`pynq_bnn.host.pipeline.stream`,
one frame per batch). With ``overlap=True`` the front stage of frame ``i + 1`` runs while the
backend runs frame ``i``: on the accelerator in the calling thread (the kernel runs by itself;
layer 1 writes straight into the second DMA buffer set), on the cpu backend with the engine on
a worker thread. The frame rate approaches ``1 / max(front, back)`` instead of
``1 / (front + back)``.
The results are identical either way. The loop always closes the source when it ends, also on
an exception or ``KeyboardInterrupt`` (the Jupyter stop button); :func:`start_live` runs it in a
background thread with a :meth:`LiveRun.stop` for a notebook's Stop button.
"""
from __future__ import annotations

import collections
import logging
import threading
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable, Deque, Dict, Iterator, List, Optional, Tuple

import numpy as np

from ..errors import CameraError, HardwareError
from ..host.pipeline import HostBatch, stream
from ..spec import reference
from .sources import FrameSource, preprocess_frame

__all__ = ["run_live", "start_live", "LiveRun", "LiveResult", "LiveStats", "LIVE_STAGES"]

log = logging.getLogger(__name__)

LIVE_STAGES = ("capture", "preprocess", "layer1", "transfer", "kernel", "post")
"""The timed stages of one frame in :func:`run_live`, in pipeline order."""


def _deprecated(old: str, new: str) -> None:
    # the names of pynq_bnn.host.classifier: index = class index, name = class name
    warnings.warn(f"{old} is deprecated and will be removed in the next release; use {new}",
                  DeprecationWarning, stacklevel=3)


# ----------------------------------------------------------------------------- live loop

@dataclass
class LiveResult:
    """One classified frame (what :func:`run_live` hands to ``on_result``).

    Attributes
    ----------
    index : int
        Frame number, from 0.
    frame : numpy.ndarray
        The RGB frame as the source returned it.
    image : numpy.ndarray
        ``uint8[S, S, 3]``: what the network saw.
    class_index : int
        Predicted class index (first maximum of :attr:`scores`); ``label`` is its deprecated
        alias.
    class_name : str
    scores : numpy.ndarray
        float64 ``[n_classes]`` affine scores (docs/FORMAT.md section 7).
    int_scores : numpy.ndarray
        int32 ``[n_classes]`` raw scores from the backend.
    class_names : tuple of str
    timings : dict
        Seconds this frame spent in each of :data:`LIVE_STAGES`, plus ``latency`` (capture
        start to result).
    fps : float
        Frames per second over the last few frames (the rate a display shows).
    """

    index: int
    frame: np.ndarray
    image: np.ndarray
    class_index: int
    class_name: str
    scores: np.ndarray
    int_scores: np.ndarray
    class_names: Tuple[str, ...]
    timings: Dict[str, float]
    fps: float

    @property
    def label(self) -> int:
        """Deprecated alias of :attr:`class_index`."""
        _deprecated("LiveResult.label", "LiveResult.class_index")
        return self.class_index

    def top(self, k: int = 3) -> List[Tuple[str, float]]:
        """The ``k`` best ``(class name, affine score)`` pairs, best first."""
        order = np.argsort(-self.scores, kind="stable")[:k]
        return [(self.class_names[int(i)], float(self.scores[int(i)])) for i in order]

    def probabilities(self) -> np.ndarray:
        """Softmax of the affine scores (an illustration of confidence, not calibrated)."""
        z = self.scores - self.scores.max()
        e = np.exp(z)
        return e / e.sum()


@dataclass
class LiveStats:
    """What a :func:`run_live` call did.

    Attributes
    ----------
    frames : int
        Frames classified.
    seconds : float
        Wall time from the first capture to the last result.
    stage_seconds : dict
        Seconds summed over frames per stage of :data:`LIVE_STAGES`.
    overlap : bool
    stopped_by : str
        ``"max_frames"``, ``"end of source"``, ``"stop"`` (the ``stop`` event),
        ``"on_result"`` (the callback returned ``False``) or ``"error"``.
    class_indices : list of int
        The predicted class index of every frame, in order (``labels``: deprecated alias).
    """

    frames: int = 0
    seconds: float = 0.0
    stage_seconds: Dict[str, float] = field(default_factory=lambda: dict.fromkeys(LIVE_STAGES, 0.0))
    overlap: bool = True
    stopped_by: str = ""
    class_indices: List[int] = field(default_factory=list)

    @property
    def labels(self) -> List[int]:
        """Deprecated alias of :attr:`class_indices`."""
        _deprecated("LiveStats.labels", "LiveStats.class_indices")
        return self.class_indices

    @property
    def fps(self) -> float:
        """Frames per second over the whole run."""
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def mean_ms(self) -> Dict[str, float]:
        """Mean milliseconds per frame in each stage."""
        n = max(1, self.frames)
        return {k: 1000.0 * v / n for k, v in self.stage_seconds.items()}

    def summary(self) -> str:
        stages = ", ".join(f"{k} {v:.1f}" for k, v in self.mean_ms().items())
        return (f"{self.frames} frames in {self.seconds:.2f} s = {self.fps:.1f} fps "
                f"(overlap {'on' if self.overlap else 'off'}; ms per frame: {stages}); "
                f"stopped by {self.stopped_by}")


@dataclass
class _Frame:
    """What the loop keeps of a frame until its result (the HostBatch context)."""

    index: int
    t_capture: float
    frame: np.ndarray
    image: np.ndarray
    timings: Dict[str, float]


def _frames(source: FrameSource, size: int, want: Callable[[int], bool],
            stats: "LiveStats") -> Iterator[HostBatch]:
    """Capture and preprocess frames as the batch loop asks for them (one per batch)."""
    index = 0
    while want(index):
        t0 = time.perf_counter()
        try:
            frame = source.read()
        except CameraError:
            if source.closed and not want(index):  # LiveRun.stop() closed it under the read
                return
            raise
        t1 = time.perf_counter()
        if frame is None:
            if not (source.closed and not want(index)):
                stats.stopped_by = "end of source"
            return
        image = preprocess_frame(frame, size)
        t2 = time.perf_counter()
        yield HostBatch(image[None], _Frame(index, t0, frame, image,
                                            {"capture": t1 - t0, "preprocess": t2 - t1}))
        index += 1


def run_live(classifier, source: FrameSource, max_frames: Optional[int] = None,
             on_result: Optional[Callable[[LiveResult], Optional[bool]]] = None,
             overlap: bool = True, *, stop: Optional[threading.Event] = None,
             close_source: bool = True, log_every: float = 10.0) -> LiveStats:
    """Classify the frames of ``source`` one by one until it ends, ``max_frames`` or a stop.

    Parameters
    ----------
    classifier : pynq_bnn.host.classifier.Classifier
        Opened here if it is not yet (its ``layer1`` runs the front stage, its ``backend`` the
        rest).
    source : FrameSource
        Closed when the loop ends, however it ends (unless ``close_source=False``).
    max_frames : int, optional
        Stop after this many frames (``None``: until the source ends or a stop).
    on_result : callable, optional
        Called with a :class:`LiveResult` per frame, in the calling thread; returning ``False``
        (exactly) stops the loop. An exception it raises ends the loop and propagates.
    overlap : bool
        Run capture + preprocessing + layer 1 of the next frame while the backend runs the
        current one. Same results, higher frame rate.
    stop : threading.Event, optional
        Set it (from another thread, a button callback...) to stop after the current frame.
    close_source : bool
        Close ``source`` at the end (default True).
    log_every : float
        Seconds between progress lines on the ``pynq_bnn.camera`` logger (INFO).

    Returns
    -------
    LiveStats

    Raises
    ------
    CameraError
        The source failed (after closing it).
    BackendUnavailable, HardwareError, HardwareTimeout
        From the backend.
    KeyboardInterrupt
        Passed on after the source is closed and the batch in flight has finished.
    """
    if max_frames is not None and (not isinstance(max_frames, int) or max_frames < 0):
        raise ValueError(f"max_frames must be None or an int >= 0, got {max_frames!r}")
    stats = LiveStats(overlap=bool(overlap))
    results = None
    try:
        classifier.open()
        backend = classifier.backend
        params = classifier.params
        size = classifier.image_size
        class_names = tuple(classifier.class_names)
        n_classes = classifier.network.n_classes
        # The one host batch loop: on the accelerator, frame i+1 is captured, preprocessed
        # and run through layer 1 (into the DMA buffer) while the kernel runs frame i; on the
        # cpu backend a worker thread runs frame i meanwhile.
        mode = ("submit" if backend.overlaps else "thread") if overlap else "none"

        def want(index: int) -> bool:
            if max_frames is not None and index >= max_frames:
                if not stats.stopped_by:
                    stats.stopped_by = "max_frames"
                return False
            if stop is not None and stop.is_set():
                if not stats.stopped_by:
                    stats.stopped_by = "stop"
                return False
            return True

        recent: Deque[float] = collections.deque(maxlen=16)
        t_start = time.perf_counter()
        t_log = t_start
        results = stream(_frames(source, size, want, stats), classifier.layer1, backend, mode)
        for r in results:
            item: _Frame = r.batch.context
            t1 = time.perf_counter()
            int_scores = r.scores
            if int_scores.shape != (1, n_classes):
                raise HardwareError(f"backend {backend.name} returned scores of shape "
                                    f"{int_scores.shape}, expected {(1, n_classes)}")
            affine = reference.affine_scores(params, int_scores)[0]
            label = int(reference.predict(params, int_scores)[0])
            t2 = time.perf_counter()
            transfer = r.timings.get("transfer", 0.0)
            kernel = r.timings.get("kernel", max(0.0, r.timings["wait"] - transfer))
            timings = dict(item.timings, layer1=r.timings["layer1"], transfer=transfer,
                           kernel=kernel, post=t2 - t1)
            for k in LIVE_STAGES:
                stats.stage_seconds[k] += timings[k]
            timings["latency"] = t2 - item.t_capture
            recent.append(t2)
            stats.frames += 1
            stats.seconds = t2 - t_start
            stats.class_indices.append(label)
            if len(recent) >= 2:
                fps = (len(recent) - 1) / max(1e-9, recent[-1] - recent[0])
            else:
                fps = 1.0 / max(1e-9, t2 - item.t_capture)
            result = LiveResult(item.index, item.frame, item.image, label, class_names[label],
                                affine, int_scores[0].astype(np.int32), class_names, timings, fps)
            if t2 - t_log >= log_every:
                t_log = t2
                log.info("live: %d frames, %.1f fps, last %s", stats.frames, fps,
                         class_names[label])
            if on_result is not None and on_result(result) is False:
                stats.stopped_by = "on_result"
                break
            if stop is not None and stop.is_set():
                stats.stopped_by = "stop"  # a frame already captured for the next batch is dropped
                break
        if not stats.stopped_by:
            stats.stopped_by = "max_frames"
    except BaseException:
        stats.stopped_by = "error"
        raise
    finally:
        try:
            if results is not None:
                results.close()   # waits for a batch still in flight (the kernel's buffers)
        finally:
            if close_source:
                source.close()
    log.info("live: %s", stats.summary())
    return stats


class LiveRun:
    """:func:`run_live` in a background thread (what :func:`start_live` returns).

    Use :meth:`stop` from a button callback, then :meth:`join` for the :class:`LiveStats`
    (it re-raises an exception the loop ended with). The source is closed by the loop, or by
    :meth:`stop` (so that a read blocked in the loop thread lets go of the camera).
    """

    def __init__(self, classifier, source: FrameSource, **kwargs):
        self._source = source if kwargs.get("close_source", True) else None
        self._stop = threading.Event()
        self.stats: Optional[LiveStats] = None
        self.error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._run, args=(classifier, source),
                                        kwargs=kwargs, name="pynq-bnn-live-loop", daemon=True)

    def _run(self, classifier, source, **kwargs):
        try:
            self.stats = run_live(classifier, source, stop=self._stop, **kwargs)
        except BaseException as e:  # handed to join()
            self.error = e
            log.error("live loop ended with %s: %s", type(e).__name__, e)

    def start(self) -> "LiveRun":
        self._thread.start()
        return self

    def stop(self) -> None:
        """Ask the loop to stop after the current frame, and close the source (returns at once).

        A frame being read is still classified; a read that blocks does not hold the camera:
        see :meth:`FrameSource.close` (``timeout=0`` here).
        """
        self._stop.set()
        if self._source is not None:
            self._source.close(timeout=0)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout: Optional[float] = None) -> Optional[LiveStats]:
        """Wait for the loop; its stats, or ``None`` if still running after ``timeout``.

        Raises
        ------
        BaseException
            Whatever ended the loop (CameraError, HardwareError, an exception of on_result).
        """
        self._thread.join(timeout)
        if self._thread.is_alive():
            return None
        if self.error is not None:
            raise self.error
        return self.stats


def start_live(classifier, source: FrameSource, **kwargs) -> LiveRun:
    """Start :func:`run_live` in a daemon thread; ``kwargs`` as for ``run_live`` (not ``stop``).

    For notebooks: the cell returns at once, so a Stop button's callback can run.
    """
    if "stop" in kwargs:
        raise TypeError("start_live makes its own stop event: call LiveRun.stop()")
    return LiveRun(classifier, source, **kwargs).start()
