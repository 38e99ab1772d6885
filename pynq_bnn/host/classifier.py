"""Images in, labels out: the one high-level entry point of pynq-bnn.

::

    from pynq_bnn import Classifier

    with Classifier() as clf:                       # shipped CIFAR-10 model, best backend
        r = clf.classify("cat.png")
        print(r.names[0], r.indices[0], r.affine_scores[0].max())
        many = clf.classify_many(["a.png", "broken.png", frame])   # per-item errors
        for p in many:
            print(p.source, p.name if p.ok else p.error)

Names: ``index`` / ``indices`` are always class indices (``int``), ``name`` / ``names`` the
predicted class names, and ``class_names`` only ever the model's list of classes
(:attr:`Classifier.class_names`). The old ``ClassifyResult.labels`` (indices),
``ClassifyResult.class_names`` (per-item names) and ``Prediction.label`` (name) still work for
this release and raise a :class:`DeprecationWarning`.

Scores: ``affine_scores`` (and ``Prediction.score``) are the per-class logits of the network,
``k * s + h`` from the last layer's integer sums ``s`` (docs/FORMAT.md section 7). They are not
probabilities: their scale depends on the model, and only their order (the argmax is the
prediction) and their differences mean something.

The pipeline per call (each stage timed, :attr:`ClassifyResult.timings`):

``preprocess``
    :mod:`pynq_bnn.host.preprocess`: decode, RGB, resize and centre-crop to the network size.
``layer1``
    the float first layer on the host (:attr:`Classifier.layer1`), packed as the kernel reads it.
``transfer``, ``kernel``
    the backend's :meth:`run` (layers 2..L), split as the backend reports it in
    ``last_timings``; a backend that does not report a transfer time gets its whole run time
    counted as ``kernel``.
``post``
    the per-class affine of the last batch norm and the argmax
    (:func:`pynq_bnn.spec.reference.predict`).

Lifecycle: ``__init__`` loads and validates the parameters (a few ms) and opens nothing. The
backend is opened and given the weights by :meth:`Classifier.open`, which the first
``classify`` calls for you; :meth:`close` releases it (idempotent; also on ``with`` exit). A
closed classifier refuses further work.
"""
from __future__ import annotations

import logging
import os
import threading
import time
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Optional, Sequence, Union

import numpy as np

from ..errors import ClosedError, HardwareError, ImageError, ParamsError
from ..spec import reference
from ..spec.params import Params, load_params, validate
from .layer1 import FirstLayer
from .pipeline import MODES, array_batches, stream
from .preprocess import LoadedItem, load_images, load_items
from .shipped_models import DEFAULT_MODEL, SHIPPED_MODELS, shipped_model_path

if TYPE_CHECKING:  # the backends are imported when the classifier opens (pynq on a board)
    from ..backends.base import Backend

__all__ = ["Classifier", "ClassifyResult", "Prediction", "default_model_path", "DEFAULT_MODEL",
           "STAGES"]

log = logging.getLogger(__name__)

STAGES = ("preprocess", "layer1", "transfer", "kernel", "post")
"""The timed stages, in pipeline order (keys of :attr:`ClassifyResult.timings`)."""

DEFAULT_CHUNK = 64
"""Images per layer-1 + backend call: bounds host memory (~0.5 MB of layer-1 scratch per image)."""


def default_model_path() -> str:
    """Path of the shipped model (``pynq_bnn/models/cifar10_bnn.npz``); it may be missing."""
    return DEFAULT_MODEL


HOST_THREADS = max(1, min(2, os.cpu_count() or 1))
"""Layer-1 threads: the two ARM cores of a Pynq-Z1/Z2 (more buys nothing for 32x32 images)."""


def default_layer1(params: Params) -> Callable[[np.ndarray], np.ndarray]:
    """The host layer-1 function for ``params``: ``uint8[N, S, S, 3] -> uint64[N, S, S, C1/64]``.

    The fused :class:`~pynq_bnn.host.layer1.FirstLayer` (native where the engine is built),
    bit-identical to the spec's :func:`pynq_bnn.spec.first_layer.conv1_packed`
    (tests/test_layer1_native.py), on :data:`HOST_THREADS` threads: both of a Zynq-7000's
    Cortex-A9 cores work on every batch, down to one image (its rows are split).
    """
    return FirstLayer(params, threads=HOST_THREADS)


def _deprecated(old: str, new: str) -> None:
    warnings.warn(f"{old} is deprecated and will be removed in the next release; use {new}",
                  DeprecationWarning, stacklevel=3)


@dataclass
class Prediction:
    """One item of a :class:`ClassifyResult` (what iterating over it yields).

    Attributes
    ----------
    source : str
        The item's name (path, ``"array #i"``...).
    index : int
        The predicted class index; -1 when the item failed.
    name : str or None
        The predicted class name (``Classifier.class_names[index]``); None when the item failed.
    score : float
        The affine score (logit) of the predicted class; NaN when the item failed.
    scores : numpy.ndarray or None
        float64 ``[n_classes]`` affine scores of every class.
    int_scores : numpy.ndarray or None
        int32 ``[n_classes]`` raw sums from the backend.
    error : ImageError or None
        Why the item failed.
    """

    source: str
    index: int = -1
    name: Optional[str] = None
    score: float = float("nan")
    scores: Optional[np.ndarray] = None
    int_scores: Optional[np.ndarray] = None
    error: Optional[ImageError] = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def label(self) -> Optional[str]:
        """Deprecated alias of :attr:`name` (the class name)."""
        _deprecated("Prediction.label", "Prediction.name")
        return self.name

    def top(self, k: int) -> "List[tuple[int, float]]":
        """The ``k`` best ``(class index, affine score)`` pairs, best first ([] if failed)."""
        if self.scores is None:
            return []
        order = _top_order(self.scores[None, :], k)[0]
        return [(int(i), float(self.scores[i])) for i in order]


def _top_order(affine: np.ndarray, k: int) -> np.ndarray:
    """int64 ``[N, min(k, n_classes)]``: class indices by falling score (ties: lower index
    first, as the argmax of the prediction)."""
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    return np.argsort(-affine, axis=1, kind="stable")[:, :k].astype(np.int64)


@dataclass
class ClassifyResult:
    """The outcome of :meth:`Classifier.classify` / :meth:`Classifier.classify_many`.

    Row ``i`` of every array belongs to input item ``i``. A row whose item failed (only
    ``classify_many`` keeps failures) has ``indices == -1``, ``names`` ``None``, integer
    scores 0, affine scores NaN and its :class:`~pynq_bnn.errors.ImageError` in ``errors``.

    Attributes
    ----------
    sources : list of str
        Name of each item: its path, ``"array #i"``, ``"image #i"``.
    indices : numpy.ndarray
        int64 ``[N]`` predicted class indices (first maximum of the affine scores).
    names : list of str or None
        The predicted class name of each item.
    scores : numpy.ndarray
        int32 ``[N, n_classes]`` raw sums of the last layer, as the accelerator returns them.
    affine_scores : numpy.ndarray
        float64 ``[N, n_classes]``, ``k * scores + h`` (docs/FORMAT.md section 7): the
        network's logits, not probabilities.
    timings : dict
        Seconds spent per stage for the whole call: the keys of :data:`STAGES` plus ``total``.
    errors : list of ImageError or None
    backend : str
        Name of the backend that ran layers 2..L.
    """

    sources: List[str]
    indices: np.ndarray
    names: List[Optional[str]]
    scores: np.ndarray
    affine_scores: np.ndarray
    timings: Dict[str, float]
    errors: List[Optional[ImageError]] = field(default_factory=list)
    backend: str = ""

    def __len__(self) -> int:
        return len(self.sources)

    def __iter__(self) -> Iterator[Prediction]:
        for i in range(len(self)):
            yield self[i]

    def __getitem__(self, i: int) -> Prediction:
        err = self.errors[i] if self.errors else None
        if err is not None:
            return Prediction(self.sources[i], error=err)
        idx = int(self.indices[i])
        return Prediction(self.sources[i], idx, self.names[i],
                          float(self.affine_scores[i, idx]), self.affine_scores[i],
                          self.scores[i], None)

    @property
    def labels(self) -> np.ndarray:
        """Deprecated alias of :attr:`indices` (class indices)."""
        _deprecated("ClassifyResult.labels", "ClassifyResult.indices")
        return self.indices

    @property
    def class_names(self) -> List[Optional[str]]:
        """Deprecated alias of :attr:`names` (the predicted name per item; the model's class
        list is ``Classifier.class_names``)."""
        _deprecated("ClassifyResult.class_names", "ClassifyResult.names")
        return self.names

    def top_k(self, k: int) -> "tuple[np.ndarray, np.ndarray]":
        """The ``k`` best classes of every item, best first.

        Returns
        -------
        indices : numpy.ndarray
            int64 ``[N, min(k, n_classes)]`` class indices (-1 in failed rows).
        scores : numpy.ndarray
            float64, same shape: their affine scores (NaN in failed rows).
        """
        order = _top_order(np.nan_to_num(self.affine_scores, nan=-np.inf), k)
        scores = np.take_along_axis(self.affine_scores, order, axis=1)
        order[~self.ok] = -1
        return order, scores

    @property
    def ok(self) -> np.ndarray:
        """bool ``[N]``: the item was classified."""
        return np.array([e is None for e in self.errors] if self.errors else [True] * len(self),
                        dtype=bool)

    @property
    def n_failed(self) -> int:
        return int(len(self) - self.ok.sum())

    @property
    def top_scores(self) -> np.ndarray:
        """float64 ``[N]``: the affine score of the chosen class (NaN for failed items)."""
        out = np.full(len(self), np.nan)
        good = self.indices >= 0
        out[good] = self.affine_scores[np.flatnonzero(good), self.indices[good]]
        return out


def _item_name(item, pos: int) -> str:
    """A name for a list item that could not be loaded at all (as preprocess names them)."""
    if isinstance(item, (str, bytes, os.PathLike)):
        try:
            return os.fsdecode(item)
        except (TypeError, ValueError):
            pass
    return f"item #{pos}"


def _load_each(items, size: int) -> List[LoadedItem]:
    """:func:`load_items`, but an unexpected exception costs only the item that raised it.

    load_items turns what it knows to be bad into a per-item ImageError; should anything else
    escape it (a path with a NUL byte, a file object whose read raises...), the list is loaded
    again item by item, so that the good items keep their results and the bad one gets an
    ImageError naming it and the problem.
    """
    try:
        return load_items(items, size)
    except Exception as first:
        if not isinstance(items, (list, tuple)):
            if isinstance(first, ImageError):
                raise
            raise ImageError(f"{_item_name(items, 0)}: cannot be loaded "
                             f"({type(first).__name__}: {first})") from first
    out: List[LoadedItem] = []
    for pos, item in enumerate(items):
        try:
            got = load_items([item], size)
        except Exception as e:
            name = _item_name(item, pos)
            msg = str(e) if isinstance(e, ImageError) else \
                f"{name}: cannot be loaded ({type(e).__name__}: {e})"
            out.append(LoadedItem(name, error=ImageError(msg)))
            continue
        # a single-item list names arrays "array #0[j]"/"image #0"; restore the position
        for it in got:
            old, it.name = it.name, _renumber(it.name, pos)
            if it.error is not None and old != it.name and str(it.error).startswith(old):
                it.error = ImageError(it.name + str(it.error)[len(old):])
        out.extend(got)
    return out


def _renumber(name: str, pos: int) -> str:
    for prefix in ("array #0", "image #0", "file #0"):
        if name == prefix or name.startswith(prefix + "["):
            return f"{prefix[:-1]}{pos}{name[len(prefix):]}"
    return name


def load_model(model) -> "tuple[Params, Optional[str]]":
    """``(params, path)`` of a Classifier's ``model`` argument: a parameter file, a shipped
    model's name, a Params object (``path`` None) or None (the default shipped model).

    Raises
    ------
    ParamsError
        Missing, unknown or invalid model (the message names it).
    """
    if isinstance(model, Params):
        validate(model)
        return model, None
    path = DEFAULT_MODEL if model is None else model
    try:
        path = os.fspath(path)
    except TypeError:
        raise ParamsError(f"model: expected a path or Params, got {type(model).__name__}") from None
    shipped = model is None or (path in SHIPPED_MODELS and not os.path.exists(path))
    if shipped and model is not None:
        path = shipped_model_path(path)
    if shipped and not os.path.exists(path):
        raise ParamsError(f"{path}: the shipped model is missing (reinstall pynq-bnn, or pass "
                          "model= / --model with a parameter file)")
    if not os.path.exists(path) and os.sep not in path and not path.endswith(".npz"):
        raise ParamsError(f"{path}: no such file, and not a shipped model "
                          f"({', '.join(SHIPPED_MODELS)})")
    return load_params(path), path


class Classifier:
    """Classify images with a BinaryNet: layer 1 on the host, layers 2..L on a backend.

    Parameters
    ----------
    model : str, os.PathLike, Params or None
        A parameter file (docs/FORMAT.md section 8), the name of a shipped model
        (:data:`SHIPPED_MODELS`: ``"cifar10"``, ``"cifar10-half"``) or a loaded
        :class:`~pynq_bnn.spec.params.Params`; ``None`` loads the shipped model
        :data:`DEFAULT_MODEL`.
    backend : str
        ``"auto"`` (the board if there is one, else the CPU engine), ``"pynq"``, ``"mock"`` or
        ``"cpu"``; passed to :func:`pynq_bnn.backends.open_backend`.
    chunk : int, optional
        At most this many images go through layer 1 and the backend at a time (bounds host
        memory; default :data:`DEFAULT_CHUNK`, and at most the backend's ``max_batch``);
        timings are summed over chunks.
    overlap : str
        How the host batch loop overlaps layer 1 with the backend
        (:func:`pynq_bnn.host.pipeline.stream`): ``"auto"`` (default: on the accelerator,
        layer 1 of chunk k+1 runs while the kernel runs chunk k), ``"submit"``, ``"thread"`` or
        ``"none"``. Scores are identical in every mode.
    **backend_options
        Passed to ``open_backend`` (e.g. ``overlay=``, ``max_batch=``, ``timeout=``).

    Raises
    ------
    ParamsError
        The model file is missing or invalid (raised here, by ``__init__``).
    BackendUnavailable
        The backend cannot run here (raised by :meth:`open`, i.e. by the first classify).

    Attributes
    ----------
    params : Params
    model_path : str or None
        The file the parameters came from (``None`` for a Params object).
    layer1 : callable
        ``layer1(images, out=None)``: ``uint8[N, S, S, 3] -> uint64[N, S, S, C1/64]``, written
        into ``out`` when given (the kernel's DMA input buffer): the host layer 1. Replace it
        with any bit-identical implementation before or after :meth:`open` (a plain
        ``fn(images)`` through :func:`pynq_bnn.host.layer1.writing_into`).
    """

    def __init__(self, model: Union[str, os.PathLike, Params, None] = None, backend: str = "auto",
                 *, chunk: Optional[int] = None, overlap: str = "auto", **backend_options: Any):
        chunk = DEFAULT_CHUNK if chunk is None else chunk
        if not isinstance(chunk, int) or isinstance(chunk, bool) or chunk < 1:
            raise ValueError(f"chunk must be a positive int, got {chunk!r}")
        self.params, self.model_path = load_model(model)
        self.backend_name = backend
        self.backend_options = dict(backend_options)
        self.chunk = chunk
        if overlap not in MODES:
            raise ValueError(f"overlap must be one of {', '.join(MODES)}, got {overlap!r}")
        self.overlap = overlap
        self.layer1: Callable[[np.ndarray], np.ndarray] = default_layer1(self.params)
        self._backend: Optional[Backend] = None
        self._closed = False
        self._lifecycle = threading.Lock()  # open/close from several threads: one backend
        # One batch loop at a time: the accelerator has two buffer sets, and a loop keeps both
        # in flight; close() takes it too, so it waits for a running call instead of
        # freeing what that call uses.
        self._running = threading.RLock()

    # ------------------------------------------------------------------ properties

    @property
    def network(self):
        return self.params.network

    @property
    def class_names(self) -> tuple:
        return self.params.class_names

    @property
    def image_size(self) -> int:
        return self.params.network.image_size

    @property
    def checksum(self) -> str:
        return self.params.checksum

    @property
    def backend(self):
        """The open backend (opens it on first use)."""
        self.open()
        return self._backend

    # ------------------------------------------------------------------ lifecycle

    def open(self) -> "Classifier":
        """Open the backend and load the weights into it (once). Returns ``self``.

        Raises
        ------
        BackendUnavailable
            The backend cannot run here.
        HardwareError, ParamsError
            The backend refused the model or misbehaved while loading it.
        """
        if self._backend is not None and not self._closed:
            return self
        with self._lifecycle:
            if self._closed:
                raise ClosedError("classifier is closed")
            if self._backend is not None:
                return self
            from ..backends import open_backend  # lazy: backends may import pynq on a board

            be = open_backend(name=self.backend_name, **self.backend_options)
            try:
                be.load(self.params)
            except BaseException:
                be.close()
                raise
            self._backend = be
        log.info("classifier: backend %s, model %s", be.name, self.model_path or "<Params>")
        return self

    def reset(self) -> None:
        """Make the backend usable again after a HardwareTimeout. Does nothing before open()."""
        be = self._backend
        if be is not None:
            be.reset()

    def close(self) -> None:
        """Release the backend. Idempotent; waits for a classify call of another thread to end."""
        with self._lifecycle:
            self._closed = True
        with self._running:
            with self._lifecycle:
                be, self._backend = self._backend, None
            if be is not None:
                be.close()

    def __enter__(self) -> "Classifier":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def describe(self) -> Dict[str, Any]:
        """Model and backend facts (opens the backend)."""
        return {
            "model": self.model_path,
            "checksum": self.checksum,
            "network": self.network.to_dict(),
            "class_names": list(self.class_names),
            # why this backend: "auto: pynq is not installed", "backend 'cpu' requested"...
            "backend": dict(self.backend.describe(),
                            reason=getattr(self.backend, "reason", None)),
        }

    # ------------------------------------------------------------------ classification

    def run_images(self, images: np.ndarray):
        """Layers 1..L on a ready ``uint8[N, S, S, 3]`` batch.

        Returns
        -------
        scores : numpy.ndarray
            int32 ``[N, n_classes]``.
        timings : dict
            Seconds for ``layer1``, ``transfer``, ``kernel``.
        """
        be = self.backend
        s = self.image_size
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (s, s, 3):
            raise ImageError(f"array batch: expected uint8 [N, {s}, {s}, 3], got "
                             f"{images.dtype} {images.shape}")
        n_classes = self.network.n_classes
        t = {"layer1": 0.0, "transfer": 0.0, "kernel": 0.0}
        out = np.empty((images.shape[0], n_classes), dtype=np.int32)
        # One host batch loop (host/pipeline.py): on the accelerator, layer 1 of batch k+1
        # runs (into the kernel's DMA buffer) while the kernel runs batch k.
        with self._running:
            if self._closed:
                raise ClosedError("classifier is closed")
            self._run_loop(be, images, out, t)
        return out, t

    def _run_loop(self, be, images: np.ndarray, out: np.ndarray, t: Dict[str, float]) -> None:
        n_classes = out.shape[1]
        batches = array_batches(images, min(self.chunk, be.max_batch))
        for r in stream(batches, self.layer1, be, self.overlap):
            first, n = r.batch.context, r.batch.images.shape[0]
            if r.scores.shape != (n, n_classes):
                raise HardwareError(f"backend {be.name} returned scores of shape {r.scores.shape}, "
                                    f"expected {(n, n_classes)}")
            out[first:first + n] = r.scores
            t["layer1"] += r.timings["layer1"]
            t["transfer"] += r.timings.get("transfer", 0.0)
            t["kernel"] += r.timings.get("kernel", max(0.0, r.timings["wait"]))

    def _finish(self, names: Sequence[str], images: np.ndarray, rows: np.ndarray,
                errors: List[Optional[ImageError]], t_pre: float, t_start: float) -> ClassifyResult:
        n = len(names)
        n_classes = self.network.n_classes
        ints = np.zeros((n, n_classes), dtype=np.int32)
        timings = {"preprocess": t_pre, "layer1": 0.0, "transfer": 0.0, "kernel": 0.0}
        if len(rows):
            got, t = self.run_images(images)
            ints[rows] = got
            timings.update(t)
        t0 = time.perf_counter()
        affine = np.full((n, n_classes), np.nan)
        indices = np.full(n, -1, dtype=np.int64)
        if len(rows):
            affine[rows] = reference.affine_scores(self.params, ints[rows])
            indices[rows] = reference.predict(self.params, ints[rows])
        names_out = [self.class_names[int(k)] if k >= 0 else None for k in indices]
        timings["post"] = time.perf_counter() - t0
        timings["total"] = time.perf_counter() - t_start
        return ClassifyResult(list(names), indices, names_out, ints, affine, timings, errors,
                              self._backend.name if self._backend is not None else "")

    def classify(self, x) -> ClassifyResult:
        """Classify one image, a batch or a list; the first bad item raises.

        Parameters
        ----------
        x : path, file object, PIL.Image.Image, numpy.ndarray or list of these
            See :mod:`pynq_bnn.host.preprocess` for what is accepted. A ``uint8 N x S x S x 3``
            batch (``S`` = the network's image size) skips preprocessing.

        Raises
        ------
        ImageError
            An input cannot be used (use :meth:`classify_many` to keep going).
        BackendUnavailable, HardwareError, HardwareTimeout
            From the backend.
        """
        self.open()
        t_start = time.perf_counter()
        names, images = load_images(x, self.image_size)
        t_pre = time.perf_counter() - t_start
        return self._finish(names, images, np.arange(len(names)), [None] * len(names),
                            t_pre, t_start)

    def classify_many(self, items) -> ClassifyResult:
        """Classify every item it can; a bad item gets an error, the others a label.

        ``items`` is what :meth:`classify` takes (typically a list of paths). The result has
        one row per item in order; see :class:`ClassifyResult` for failed rows.
        """
        self.open()
        t_start = time.perf_counter()
        loaded = _load_each(items, self.image_size)
        # a LoadedItem has its image or its error, never both
        good = [it.image for it in loaded if it.image is not None]
        s = self.image_size
        images = np.stack(good) if good else np.zeros((0, s, s, 3), np.uint8)
        rows = np.array([i for i, it in enumerate(loaded) if it.image is not None], dtype=np.intp)
        t_pre = time.perf_counter() - t_start
        for it in loaded:
            if it.error is not None:
                log.debug("skipped %s", it.error)
        return self._finish([it.name for it in loaded], images, rows,
                            [it.error for it in loaded], t_pre, t_start)
