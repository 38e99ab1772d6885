"""Labelled test data for ``pynq-bnn eval`` and notebook 3: CIFAR-10 as distributed, or an .npz.

::

    from pynq_bnn.tools.datasets import load_dataset, evaluate

    data = load_dataset("cifar-10-binary.tar.gz")      # or the extracted folder, or an .npz
    small = data.subset(1000)                           # seeded, 100 images of each class
    with Classifier() as clf:
        report = evaluate(clf, small)                   # accuracy, per class, confusion...

What :func:`load_dataset` reads (the format is recognised from the content, not the name):

``cifar-10-binary.tar.gz``
    The official *binary* distribution of CIFAR-10 (Krizhevsky, "CIFAR-10 binary version (suitable
    for C programs)"), read in place: the archive is streamed once and only
    ``cifar-10-batches-bin/test_batch.bin`` and ``batches.meta.txt`` are kept. An uncompressed
    ``.tar`` works too.
``cifar-10-batches-bin/`` (the extracted folder), or ``test_batch.bin`` itself
    ``test_batch.bin``: 10,000 records of 3,073 bytes, one label byte (0..9) then 3,072 pixel
    bytes, the 1,024 red values of the 32 x 32 image row by row, then green, then blue.
    ``batches.meta.txt``: the class names, one per line (``airplane`` ... ``truck``).
    A folder that *contains* ``cifar-10-batches-bin/``, ``cifar-10-binary.tar.gz`` or
    ``test.npz`` is searched for them, in that order.
``.npz``
    ``x``: uint8 ``[N, H, W, 3]`` RGB and ``y``: integer labels ``[N]``, nothing else (the
    format of ``../shared/data/cifar10/test.npz`` in a source checkout).

The *Python* version of CIFAR-10 (``cifar-10-python.tar.gz``, ``cifar-10-batches-py/``) is
refused with a message saying so: it is a pickle, and this module never unpickles anything.

Limits: every file is checked to be a regular file before it is opened (a FIFO or a device is
refused at once, never read), and nothing is read or inflated beyond a budget:
:data:`MAX_DATA_BYTES` of decoded images and labels (about 87,000 CIFAR-10 images; the test set
is 30.7 MB), :data:`MAX_ARCHIVE_BYTES` for an archive on disk and :data:`MAX_SCAN_BYTES` of
decompressed archive streamed through while looking for the test batch. An .npz member other
than ``x`` and ``y``, an array header that promises more than the budget or a compressed member
that would inflate beyond it is refused before its data is read. Each problem is a
:class:`DatasetError` naming the file and what is wrong with it.

:func:`balanced_subset` is the one way the package draws a subset (``eval --limit`` and the
notebooks): seeded and class-balanced, so ``--limit 1000`` of the class-sorted test set is 100
images of each class, the same 1,000 every time.
"""
from __future__ import annotations

import gzip
import io
import logging
import os
import stat
import tarfile
import time
import zipfile
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple, cast

import numpy as np

from ..errors import BnnError
from ..files import open_regular

__all__ = ["Dataset", "DatasetError", "load_dataset", "balanced_subset", "evaluate",
           "check_labels",
           "write_cifar10_binary", "MAX_DATA_BYTES", "MAX_ARCHIVE_BYTES", "MAX_SCAN_BYTES",
           "RECORD_BYTES", "CIFAR10_TEST_BATCH", "CIFAR10_META"]

log = logging.getLogger(__name__)

MAX_DATA_BYTES = 256 * 2**20
"""Budget for the decoded data (images + labels) of one data set: 256 MiB."""
MAX_ARCHIVE_BYTES = 512 * 2**20
"""Largest archive (.tar.gz / .tar) accepted on disk (the official one is 170 MB)."""
MAX_SCAN_BYTES = 512 * 2**20
"""Most decompressed archive bytes streamed through to find the test batch (official: 185 MB)."""
RECORD_BYTES = 1 + 3 * 32 * 32
"""One CIFAR-10 binary record: a label byte and a 32 x 32 RGB image, channel by channel."""
CIFAR10_TEST_BATCH = "test_batch.bin"
CIFAR10_META = "batches.meta.txt"
CIFAR10_BIN_DIR = "cifar-10-batches-bin"
CIFAR10_TARBALL = "cifar-10-binary.tar.gz"
_MAX_META_BYTES = 64 * 1024
_NPZ_KEYS = ("x", "y")
_PICKLED_HINT = ("the pickled Python version of CIFAR-10; pynq-bnn never unpickles data: use "
                 f"the binary version ({CIFAR10_TARBALL}, folder {CIFAR10_BIN_DIR}/)")


class DatasetError(BnnError, ValueError):
    """A data file that cannot be used; the message names it and the problem."""


@dataclass
class Dataset:
    """Labelled images: ``x`` uint8 ``[N, H, W, 3]`` RGB, ``y`` int64 ``[N]``.

    Attributes
    ----------
    class_names : tuple of str or None
        From the data set (``batches.meta.txt``) when it has them.
    path : str
        Where it was read from (the archive, folder or file).
    format : str
        ``"cifar10-binary"`` (records from an archive, a folder or a .bin file) or ``"npz"``.
    """

    x: np.ndarray
    y: np.ndarray
    class_names: Optional[Tuple[str, ...]]
    path: str
    format: str

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, limit: Optional[int], seed: int = 0) -> "Dataset":
        """``limit`` images by :func:`balanced_subset` (all of them for ``None`` or more)."""
        if limit is None or limit >= len(self.y):
            return self
        rows = balanced_subset(self.y, limit, seed)
        return Dataset(self.x[rows], self.y[rows], self.class_names, self.path, self.format)


# ----------------------------------------------------------------------------- subsets

def balanced_subset(y, limit: int, seed: int = 0) -> np.ndarray:
    """Row indices of a seeded, class-balanced subset of ``limit`` items, in data order.

    The classes take turns (in an order drawn from ``seed``), each giving its next image from
    its own seeded shuffle, until ``limit`` images are drawn: class counts differ by at most one,
    and a class that runs out leaves the rest to the others. The same ``(y, limit, seed)`` gives
    the same rows on every machine (numpy's PCG64 ``default_rng``).

    Raises
    ------
    ValueError
        ``limit`` is not a positive int.
    """
    if not isinstance(limit, (int, np.integer)) or isinstance(limit, bool) or limit < 1:
        raise ValueError(f"limit must be a positive int, got {limit!r}")
    y = np.asarray(y)
    if limit >= len(y):
        return np.arange(len(y))
    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    pools = [rng.permutation(np.flatnonzero(y == c)) for c in classes]
    order = rng.permutation(len(classes))
    picked: List[np.ndarray] = []
    taken = 0
    rnd = 0
    while taken < limit:                       # round rnd: the rnd-th image of every class
        row = [pools[k][rnd] for k in order if rnd < len(pools[k])][:limit - taken]
        picked.append(np.array(row, dtype=np.int64))
        taken += len(row)
        rnd += 1
    return np.sort(np.concatenate(picked))


# ----------------------------------------------------------------------------- loading

def load_dataset(path, *, max_bytes: int = MAX_DATA_BYTES) -> Dataset:
    """Read a labelled data set: a CIFAR-10 binary archive, folder or batch file, or an .npz.

    Parameters
    ----------
    path : str or os.PathLike
        See the module docstring for what is recognised.
    max_bytes : int
        Budget for the decoded images and labels (default :data:`MAX_DATA_BYTES`).

    Raises
    ------
    DatasetError
        Missing, not a regular file, over a limit, an unknown or broken format, the pickled
        Python version of CIFAR-10, or arrays of the wrong type or shape.
    """
    try:
        p = os.fsdecode(os.fspath(path))
    except TypeError:
        raise DatasetError(f"data: expected a path, got {type(path).__name__}") from None
    if "\0" in p:
        raise DatasetError(f"{p!r}: data path contains a NUL character")
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise DatasetError(f"{p}: no such file or folder") from None
    except OSError as e:
        raise DatasetError(f"{p}: cannot read the data ({e.strerror or e})") from None
    if stat.S_ISDIR(st.st_mode):
        return _load_folder(p, max_bytes)
    with open_regular(p, max_bytes=max(max_bytes + 2**20, MAX_ARCHIVE_BYTES), what="data file",
                      error=DatasetError) as f:
        head = f.read(512)
        f.seek(0)
        if not head:
            raise DatasetError(f"{p}: empty data file (0 bytes)")
        if head.startswith(b"PK"):
            return _read_npz(f, p, max_bytes)
        if head.startswith(b"\x1f\x8b") or _is_tar_header(head):
            return _read_tar(f, p, max_bytes, gzipped=head.startswith(b"\x1f\x8b"))
        size = os.fstat(f.fileno()).st_size
        if head.startswith(b"\x80") and size % RECORD_BYTES:  # a pickle (protocol 2 or later)
            raise DatasetError(f"{p}: looks like a pickle, maybe {_PICKLED_HINT}")
        if size % RECORD_BYTES:
            raise DatasetError(f"{p}: not a CIFAR-10 binary archive, folder or batch (records "
                               f"of {RECORD_BYTES} bytes: its size {size} is not a multiple), "
                               "nor an .npz")
        return _from_records(_read_exactly(f, size, p, max_bytes), None, p)


def _is_tar_header(head: bytes) -> bool:
    return len(head) >= 262 and head[257:262] == b"ustar"


def _load_folder(p: str, max_bytes: int) -> Dataset:
    j = os.path.join
    if os.path.exists(j(p, CIFAR10_TEST_BATCH)):
        batch = j(p, CIFAR10_TEST_BATCH)
        with open_regular(batch, max_bytes=max_bytes + 2**20, what="CIFAR-10 batch",
                          error=DatasetError) as f:
            data = _read_exactly(f, os.fstat(f.fileno()).st_size, batch, max_bytes)
        names = None
        meta = j(p, CIFAR10_META)
        if os.path.exists(meta):
            with open_regular(meta, max_bytes=_MAX_META_BYTES, what="class-name file",
                              error=DatasetError) as f:
                names = _parse_meta(f.read(_MAX_META_BYTES), meta)
        return _from_records(data, names, p)
    for sub in (CIFAR10_BIN_DIR, CIFAR10_TARBALL, "test.npz"):
        if os.path.exists(j(p, sub)):
            return load_dataset(j(p, sub), max_bytes=max_bytes)
    if os.path.exists(j(p, "cifar-10-batches-py")) or os.path.exists(j(p, "test_batch")):
        raise DatasetError(f"{p}: holds {_PICKLED_HINT}")
    raise DatasetError(f"{p}: a folder without {CIFAR10_TEST_BATCH}, {CIFAR10_BIN_DIR}/, "
                       f"{CIFAR10_TARBALL} or test.npz")


def _read_exactly(f, size: int, p: str, max_bytes: int) -> bytes:
    if size % RECORD_BYTES:
        raise DatasetError(f"{p}: {size} bytes is not a whole number of CIFAR-10 records "
                           f"({RECORD_BYTES} bytes each: a label byte and 3072 pixel bytes)")
    if size > max_bytes:
        raise DatasetError(f"{p}: {size // RECORD_BYTES} records ({size} bytes) exceed the data "
                           f"budget of {max_bytes} bytes")
    data = f.read(size + 1)
    if len(data) != size:
        raise DatasetError(f"{p}: changed size while being read")
    return data


def _parse_meta(raw: bytes, p: str) -> Tuple[str, ...]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise DatasetError(f"{p}: class names are not UTF-8 text") from None
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if not names or len(names) > 256:
        raise DatasetError(f"{p}: expected 1 to 256 class names, one per line; got {len(names)}")
    bad = [n for n in names if len(n) > 100 or not n.isprintable()]
    if bad:
        raise DatasetError(f"{p}: unusable class name {bad[0][:100]!r}")
    return names


def _from_records(data: bytes, names: Optional[Tuple[str, ...]], p: str) -> Dataset:
    n = len(data) // RECORD_BYTES
    if n == 0:
        raise DatasetError(f"{p}: no records")
    rec = np.frombuffer(data, dtype=np.uint8).reshape(n, RECORD_BYTES)
    y = rec[:, 0].astype(np.int64)
    # CHW, channel planes of 32 x 32 row-major -> HWC as the classifier takes images
    x = np.ascontiguousarray(rec[:, 1:].reshape(n, 3, 32, 32).transpose(0, 2, 3, 1))
    if names is not None and int(y.max()) >= len(names):
        raise DatasetError(f"{p}: label {int(y.max())} but only {len(names)} class names")
    return Dataset(x, y, names, p, "cifar10-binary")


class _Budget:
    """A read-only stream that refuses to deliver more than ``limit`` bytes (a gzip bomb)."""

    def __init__(self, raw, limit: int, p: str):
        self.raw, self.limit, self.p, self.count = raw, limit, p, 0

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = self.limit - self.count + 1
        data = self.raw.read(n)
        self.count += len(data)
        if self.count > self.limit:
            raise DatasetError(f"{self.p}: the archive inflates to more than {self.limit} bytes "
                               "without the CIFAR-10 test batch")
        return data


def _read_tar(f, p: str, max_bytes: int, gzipped: bool) -> Dataset:
    raw = gzip.GzipFile(fileobj=f, mode="rb") if gzipped else f
    stream = _Budget(raw, MAX_SCAN_BYTES, p)
    batch = names = None
    pickled = False
    t0 = time.perf_counter()
    try:
        # streamed: nothing is extracted. Stream mode only read()s; typeshed's fileobj type also
        # asks for write/seek/tell, which _Budget has no use for.
        with tarfile.open(fileobj=stream, mode="r|") as tar:  # type: ignore[call-overload]
            for m in tar:
                base = m.name.rstrip("/").rsplit("/", 1)[-1]
                if "cifar-10-batches-py" in m.name or (base == "test_batch" and m.isfile()):
                    pickled = True
                if not m.isfile():
                    continue
                if base == CIFAR10_TEST_BATCH and batch is None:
                    if m.size % RECORD_BYTES or m.size > max_bytes:
                        _read_exactly(None, m.size, f"{p}:{m.name}", max_bytes)  # raises
                    batch = tar.extractfile(m).read(m.size)
                    if len(batch) != m.size:
                        raise DatasetError(f"{p}: {m.name} is truncated")
                elif base == CIFAR10_META and names is None and m.size <= _MAX_META_BYTES:
                    names = _parse_meta(tar.extractfile(m).read(m.size), f"{p}:{m.name}")
                if batch is not None and names is not None:
                    break
    except DatasetError:
        raise
    except (tarfile.TarError, OSError, EOFError, zlib_error()) as e:
        raise DatasetError(f"{p}: not a readable tar archive ({type(e).__name__}: {e})") from None
    if batch is None:
        if pickled:
            raise DatasetError(f"{p}: {_PICKLED_HINT}")
        raise DatasetError(f"{p}: the archive has no {CIFAR10_BIN_DIR}/{CIFAR10_TEST_BATCH}")
    log.debug("%s: test batch read in %.1f s", p, time.perf_counter() - t0)
    return _from_records(batch, names, p)


def zlib_error():
    import zlib
    return zlib.error


def _read_npy_member(z: zipfile.ZipFile, info: zipfile.ZipInfo, p: str, budget: int):
    """One .npy member: header checked before any data is read; data read into place."""
    key = info.filename[:-4]
    with z.open(info) as m:
        try:
            version = np.lib.format.read_magic(m)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(m)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(m)
            else:
                raise DatasetError(f"{p}: array {key!r} has .npy version {version}, "
                                   "expected 1.0 or 2.0")
        except DatasetError:
            raise
        except Exception as e:
            raise DatasetError(f"{p}: array {key!r} has no valid .npy header ({e})") from None
        # refused from the header alone, before any data is inflated
        if key == "x" and (dtype != np.uint8 or len(shape) != 4 or shape[3] != 3):
            raise DatasetError(f"{p}: x is {dtype} {shape}, expected uint8 N x H x W x 3")
        if key == "y" and (dtype.kind not in "iu" or dtype.itemsize > 8 or len(shape) != 1):
            raise DatasetError(f"{p}: y is {dtype} {shape}, expected integer labels [N]")
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        nbytes = count * dtype.itemsize
        if nbytes > budget:
            raise DatasetError(f"{p}: array {key!r} {dtype} {shape} ({nbytes} bytes) exceeds the "
                               f"data budget of {budget} bytes")
        out = np.empty(count, dtype=dtype)
        view = out.data.cast("B")
        reader = cast(io.BufferedIOBase, m)  # a ZipExtFile (typeshed says IO[bytes]: no readinto)
        got = 0
        while got < nbytes:
            k = reader.readinto(view[got:])
            if not k:
                raise DatasetError(f"{p}: array {key!r} is truncated ({got} of {nbytes} bytes)")
            got += k
    return out.reshape(shape, order="F" if fortran else "C"), nbytes


def _read_npz(f, p: str, max_bytes: int) -> Dataset:
    try:
        z = zipfile.ZipFile(f)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        raise DatasetError(f"{p}: not a readable .npz archive ({e})") from None
    with z:
        infos = z.infolist()
        names = [i.filename for i in infos]
        unexpected = sorted(set(names) - {k + ".npy" for k in _NPZ_KEYS})
        if unexpected or len(names) != len(set(names)):
            what = f"unexpected member {unexpected[0]!r}" if unexpected else "duplicate members"
            raise DatasetError(f"{p}: {what} (expected only x: uint8 N x 32 x 32 x 3 and "
                               "y: labels)")
        missing = [k for k in _NPZ_KEYS if k + ".npy" not in names]
        if missing:
            raise DatasetError(f"{p}: missing array {missing[0]!r} (has "
                               f"{sorted(n[:-4] for n in names)}; expected x: uint8 "
                               "N x 32 x 32 x 3 and y: labels)")
        declared = sum(i.file_size for i in infos)
        if declared > max_bytes + 4096:
            raise DatasetError(f"{p}: its arrays inflate to {declared} bytes, over the data "
                               f"budget of {max_bytes} bytes")
        arrays, left = {}, max_bytes
        try:
            for info in sorted(infos, key=lambda i: i.filename):
                arrays[info.filename[:-4]], used = _read_npy_member(z, info, p, left)
                left -= used
        except DatasetError:
            raise
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError,
                zlib_error()) as e:
            raise DatasetError(f"{p}: corrupt .npz archive ({type(e).__name__}: {e})") from None
    x, y = arrays["x"], arrays["y"]
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[3] != 3:
        raise DatasetError(f"{p}: x is {x.dtype} {x.shape}, expected uint8 N x H x W x 3")
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise DatasetError(f"{p}: y is {y.dtype} {y.shape}, expected integer labels [N]")
    if len(y) != len(x):
        raise DatasetError(f"{p}: {len(x)} images but {len(y)} labels")
    if len(x) == 0:
        raise DatasetError(f"{p}: no images")
    if y.min() < 0:
        raise DatasetError(f"{p}: negative label {int(y.min())}")
    return Dataset(np.ascontiguousarray(x), y.astype(np.int64), None, p, "npz")


# ----------------------------------------------------------------------------- writing

def write_cifar10_binary(path, x: np.ndarray, y, class_names=None, *, tar_gz: bool = False,
                         folder: str = CIFAR10_BIN_DIR) -> str:
    """Write images in the CIFAR-10 binary format: a ``test_batch.bin`` or a ``.tar.gz``.

    For tests and for converting other data: ``x`` uint8 ``[N, 32, 32, 3]``, ``y`` labels
    0..255. With ``tar_gz`` the file is an archive laid out as the official one
    (``<folder>/test_batch.bin`` and ``<folder>/batches.meta.txt``); without, ``path`` is the
    batch file itself. Returns ``path``.
    """
    x = np.asarray(x)
    y = np.asarray(y)
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1:] != (32, 32, 3) or y.shape != x.shape[:1]:
        raise ValueError(f"expected x uint8 [N, 32, 32, 3] and y [N], got {x.dtype} {x.shape}, "
                         f"y {y.shape}")
    if len(y) and (y.min() < 0 or y.max() > 255):
        raise ValueError("labels must be 0..255 (one byte)")
    rec = np.empty((len(x), RECORD_BYTES), dtype=np.uint8)
    rec[:, 0] = y
    rec[:, 1:] = x.transpose(0, 3, 1, 2).reshape(len(x), -1)
    data = rec.tobytes()
    path = os.fspath(path)
    if not tar_gz:
        with open(path, "wb") as f:
            f.write(data)
        return path
    import io
    with tarfile.open(path, "w:gz") as tar:
        members = [(CIFAR10_TEST_BATCH, data)]
        if class_names is not None:
            members.insert(0, (CIFAR10_META, ("\n".join(class_names) + "\n\n").encode()))
        for name, blob in members:
            info = tarfile.TarInfo(f"{folder}/{name}")
            info.size = len(blob)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(blob))
    return path


# ----------------------------------------------------------------------------- evaluation

def check_labels(data: Dataset, n_classes: int) -> None:
    """Raise :class:`DatasetError` unless every label is a class index of the model."""
    if len(data) and int(data.y.max()) >= n_classes:
        raise DatasetError(f"{data.path}: label {int(data.y.max())} is outside the model's "
                           f"{n_classes} classes (labels 0..{n_classes - 1})")


def evaluate(classifier, data: Dataset, *, batch: int = 256,
             progress: Optional[Callable[[int], Any]] = None) -> Dict[str, Any]:
    """Accuracy of ``classifier`` on ``data``, ``batch`` images per classify call.

    ``progress(k)`` is called after each batch with the number of images just done (e.g. a
    tqdm bar's ``update``). Returns a JSON-ready dict: ``accuracy``, ``n``, ``correct``,
    ``seconds``, ``images_per_s``, ``timings`` (seconds per stage, summed), ``class_names``
    (the model's), ``per_class`` (accuracy per true class, None for a class with no images),
    ``confusion`` (rows: true class, columns: predicted) and ``data_class_names``.

    Raises
    ------
    DatasetError
        A label is outside the model's classes.
    """
    from ..host.classifier import STAGES

    if not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be a positive int, got {batch!r}")
    class_names = list(classifier.class_names)
    k = len(class_names)
    n = len(data)
    check_labels(data, k)
    if data.class_names is not None and tuple(data.class_names) != tuple(class_names):
        log.warning("%s: the data's class names %s differ from the model's %s", data.path,
                    list(data.class_names), class_names)
    confusion = np.zeros((k, k), dtype=np.int64)
    stages = dict.fromkeys(STAGES, 0.0)
    t0 = time.perf_counter()
    for i in range(0, n, batch):
        r = classifier.classify(data.x[i:i + batch])
        np.add.at(confusion, (data.y[i:i + batch], r.indices), 1)
        for s in STAGES:
            stages[s] += r.timings.get(s, 0.0)
        if progress is not None:
            progress(len(r))
    elapsed = time.perf_counter() - t0
    correct = int(np.trace(confusion))
    totals = confusion.sum(axis=1)
    return {
        "accuracy": correct / n if n else None,
        "n": n, "correct": correct, "seconds": elapsed,
        "images_per_s": n / elapsed if elapsed > 0 else None,
        "timings": stages,
        "class_names": class_names,
        "per_class": {name: (int(confusion[j, j]) / int(totals[j]) if totals[j] else None)
                      for j, name in enumerate(class_names)},
        "confusion": confusion.tolist(),
        "data_class_names": list(data.class_names) if data.class_names else None,
    }
