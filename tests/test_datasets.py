"""pynq_bnn.tools.datasets: the CIFAR-10 binary distribution (archive, folder, batch file) and
.npz, their limits (special files, budgets, bombs, stray members, pickles), the seeded
class-balanced subset, and evaluate()."""
import io
import os
import pickle
import tarfile
import threading
import time
import zipfile

import numpy as np
import pytest

from pynq_bnn.host.classifier import Classifier
from pynq_bnn.spec import reference
from pynq_bnn.spec.network import Network
from pynq_bnn.testing import random_images, random_params
from pynq_bnn.tools import datasets as ds
from pynq_bnn.tools.datasets import DatasetError, balanced_subset, evaluate, load_dataset

NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
SHARED_TEST = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..",
                           "shared", "data", "cifar10", "test.npz")


def records_by_hand(n):
    """CIFAR-10 binary records written from the format's description, independently of the
    module: a label byte, then the red plane (row by row), the green plane, the blue plane.
    Image i has red = row, green = column, blue = i; label = i % 10."""
    out = bytearray()
    for i in range(n):
        out.append(i % 10)
        out += bytes(r for r in range(32) for _ in range(32))     # red: the row index
        out += bytes(c for _ in range(32) for c in range(32))     # green: the column index
        out += bytes([i]) * 1024                                  # blue: the image number
    return bytes(out)


def check_decoded(d, n):
    assert d.x.shape == (n, 32, 32, 3) and d.x.dtype == np.uint8 and d.x.flags.c_contiguous
    rows, cols = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    for i in range(n):
        assert (d.x[i, :, :, 0] == rows).all() and (d.x[i, :, :, 1] == cols).all()
        assert (d.x[i, :, :, 2] == i).all()
    assert d.y.dtype == np.int64 and list(d.y) == [i % 10 for i in range(n)]


def add(tar, name, blob):
    info = tarfile.TarInfo(name)
    info.size = len(blob)
    tar.addfile(info, io.BytesIO(blob))


def official_tarball(path, records, meta=True, mode="w:gz"):
    """Laid out as cifar-10-binary.tar.gz is: one folder, the test batch among others."""
    with tarfile.open(path, mode) as tar:
        add(tar, "cifar-10-batches-bin/data_batch_1.bin", bytes(ds.RECORD_BYTES * 2))
        if meta:
            add(tar, "cifar-10-batches-bin/batches.meta.txt", ("\n".join(NAMES) + "\n\n").encode())
        add(tar, "cifar-10-batches-bin/test_batch.bin", records)
        add(tar, "cifar-10-batches-bin/readme.html", b"<html></html>")
    return str(path)


# ----------------------------------------------------------------------------- formats

def test_binary_records_decode_as_the_format_says(tmp_path):
    raw = records_by_hand(12)
    batch = tmp_path / "test_batch.bin"
    batch.write_bytes(raw)
    d = load_dataset(str(batch))
    check_decoded(d, 12)
    assert d.class_names is None and d.format == "cifar10-binary"


@pytest.mark.parametrize("mode", ["w:gz", "w"], ids=["tar.gz", "tar"])
def test_the_official_archive_read_in_place(tmp_path, mode):
    path = official_tarball(tmp_path / "cifar-10-binary.tar.gz", records_by_hand(7), mode=mode)
    d = load_dataset(path)
    check_decoded(d, 7)
    assert d.class_names == NAMES and d.path == path


def test_the_extracted_folder_and_its_parent(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    (folder / "test_batch.bin").write_bytes(records_by_hand(5))
    (folder / "batches.meta.txt").write_text("\n".join(NAMES) + "\n")
    for path in (folder, tmp_path):
        d = load_dataset(str(path))
        check_decoded(d, 5)
        assert d.class_names == NAMES
    # a folder holding only the tarball
    other = tmp_path / "downloads"
    other.mkdir()
    official_tarball(other / "cifar-10-binary.tar.gz", records_by_hand(3))
    check_decoded(load_dataset(str(other)), 3)


def test_writer_matches_the_hand_made_records(tmp_path):
    d = load_dataset(_write_bin(tmp_path, records_by_hand(4)))
    out = ds.write_cifar10_binary(str(tmp_path / "again.bin"), d.x, d.y)
    assert open(out, "rb").read() == records_by_hand(4)
    tgz = ds.write_cifar10_binary(str(tmp_path / "t.tar.gz"), d.x, d.y, NAMES, tar_gz=True)
    back = load_dataset(tgz)
    assert np.array_equal(back.x, d.x) and back.class_names == NAMES


def _write_bin(tmp_path, raw, name="test_batch.bin"):
    p = tmp_path / name
    p.write_bytes(raw)
    return str(p)


def test_npz_as_before(tmp_path):
    x = random_images(6, 32, seed=1)
    path = str(tmp_path / "d.npz")
    np.savez_compressed(path, x=x, y=np.arange(6, dtype=np.uint8))
    d = load_dataset(path)
    assert np.array_equal(d.x, d.x) and list(d.y) == list(range(6)) and d.format == "npz"
    assert np.array_equal(d.x, x) and d.x.flags.writeable


@pytest.mark.skipif(not os.path.isfile(SHARED_TEST), reason="no ../shared CIFAR-10 copy")
@pytest.mark.slow
def test_the_real_test_set_round_trips_through_the_binary_format(tmp_path):
    npz = load_dataset(SHARED_TEST)
    tgz = ds.write_cifar10_binary(str(tmp_path / "c.tar.gz"), npz.x, npz.y, NAMES, tar_gz=True)
    b = load_dataset(tgz)
    assert len(b) == 10000 and np.array_equal(b.x, npz.x) and np.array_equal(b.y, npz.y)


# ----------------------------------------------------------------------------- refusals

@pytest.mark.parametrize("case,problem", [
    ("missing", "no such file"),
    ("empty", "empty data file"),
    ("odd_size", "not a multiple"),
    ("folder", "a folder without test_batch.bin"),
    ("no_test_batch", "has no cifar-10-batches-bin/test_batch.bin"),
    ("truncated_tgz", "not a readable tar archive"),
    ("bad_meta", "class names are not UTF-8"),
    ("label_vs_meta", "label 9 but only 3 class names"),
])
def test_broken_data_is_one_error_naming_the_file(tmp_path, case, problem):
    path = str(tmp_path / "data")
    if case == "empty":
        open(path, "wb").close()
    elif case == "odd_size":
        _write_bin(tmp_path, records_by_hand(2) + b"x", "data")
    elif case == "folder":
        os.mkdir(path)
        (tmp_path / "data" / "readme.txt").write_text("hi")
    elif case == "no_test_batch":
        with tarfile.open(path, "w:gz") as tar:
            add(tar, "cifar-10-batches-bin/data_batch_1.bin", bytes(ds.RECORD_BYTES))
    elif case == "truncated_tgz":
        official_tarball(path, records_by_hand(20))
        blob = open(path, "rb").read()
        open(path, "wb").write(blob[:len(blob) // 2])
    elif case in ("bad_meta", "label_vs_meta"):
        os.mkdir(path)
        (tmp_path / "data" / "test_batch.bin").write_bytes(records_by_hand(10))
        (tmp_path / "data" / "batches.meta.txt").write_bytes(
            b"\xff\xfe" if case == "bad_meta" else b"a\nb\nc\n")
    with pytest.raises(DatasetError, match=problem) as e:
        load_dataset(path)
    assert str(e.value).startswith(path)


def test_a_fifo_is_refused_at_once(tmp_path):
    fifo = str(tmp_path / "test.npz")
    os.mkfifo(fifo)
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    os.mkfifo(str(folder / "test_batch.bin"))
    for path in (fifo, str(folder)):
        done = []
        t = threading.Thread(target=lambda p=path: done.append(_error_of(p)), daemon=True)
        t.start()
        t.join(10)
        assert done and "FIFO" in done[0] and "not a regular file" in done[0], done


def _error_of(path):
    try:
        load_dataset(path)
    except DatasetError as e:
        return str(e)
    return "no error"


def test_the_pickled_python_version_is_refused_and_never_unpickled(tmp_path):
    marker = tmp_path / "was_unpickled"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))
    blob = pickle.dumps(Evil(), protocol=2)
    tgz = str(tmp_path / "cifar-10-python.tar.gz")
    with tarfile.open(tgz, "w:gz") as tar:
        add(tar, "cifar-10-batches-py/batches.meta", blob)
        add(tar, "cifar-10-batches-py/test_batch", blob)
    folder = tmp_path / "x" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    (folder / "test_batch").write_bytes(blob)
    loose = _write_bin(tmp_path, blob, "test_batch")
    for path in (tgz, str(tmp_path / "x"), loose):
        with pytest.raises(DatasetError, match="never unpickles"):
            load_dataset(path)
    assert not marker.exists()


def _npz(path, members):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, arr in members.items():
            buf = io.BytesIO()
            np.save(buf, arr, allow_pickle=False)
            z.writestr(name, buf.getvalue())
    return str(path)


def test_npz_extra_members_refused_before_reading(tmp_path):
    x = random_images(2, 32)
    path = _npz(tmp_path / "d.npz", {"x.npy": x, "y.npy": np.zeros(2, np.uint8),
                                     "payload.npy": np.zeros(10**6, np.uint8)})
    with pytest.raises(DatasetError, match="unexpected member 'payload.npy'"):
        load_dataset(path)


def test_npz_object_arrays_refused(tmp_path):
    path = str(tmp_path / "d.npz")
    np.savez(path, x=random_images(2, 32), y=np.array([0, 1], dtype=object))
    with pytest.raises(DatasetError, match="expected integer labels"):
        load_dataset(path)


def test_npz_inflation_bomb_refused_within_the_budget(tmp_path):
    """A small file whose x inflates far beyond the budget costs no more than the budget."""
    import tracemalloc
    x = np.zeros((2000, 32, 32, 3), np.uint8)                  # 6 MB of zeros, ~6 KB deflated
    path = _npz(tmp_path / "bomb.npz", {"x.npy": x, "y.npy": np.zeros(2000, np.uint8)})
    assert os.path.getsize(path) < 100_000
    tracemalloc.start()
    try:
        with pytest.raises(DatasetError, match="exceed|over the data budget"):
            load_dataset(path, max_bytes=1_000_000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2_000_000, peak


def test_npz_header_promising_too_much_is_refused_before_allocation(tmp_path):
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "|u1", "fortran_order": False, "shape": (10**7, 32, 32, 3)})
    path = str(tmp_path / "huge.npz")
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("x.npy", header.getvalue() + bytes(100))
        buf = io.BytesIO()
        np.save(buf, np.zeros(3, np.uint8))
        z.writestr("y.npy", buf.getvalue())
    t0 = time.perf_counter()
    with pytest.raises(DatasetError, match="exceeds the data budget"):
        load_dataset(path)
    assert time.perf_counter() - t0 < 2


def test_a_gzip_bomb_archive_stops_at_the_scan_budget(tmp_path, monkeypatch):
    monkeypatch.setattr(ds, "MAX_SCAN_BYTES", 2_000_000)
    path = str(tmp_path / "bomb.tar.gz")
    with tarfile.open(path, "w:gz") as tar:
        add(tar, "cifar-10-batches-bin/data_batch_1.bin", bytes(5_000_000))
        add(tar, "cifar-10-batches-bin/test_batch.bin", records_by_hand(2))
    assert os.path.getsize(path) < 100_000
    with pytest.raises(DatasetError, match="inflates to more than 2000000 bytes"):
        load_dataset(path)


def test_a_batch_over_the_data_budget_is_refused(tmp_path):
    path = _write_bin(tmp_path, records_by_hand(4))
    with pytest.raises(DatasetError, match="exceed the data budget"):
        load_dataset(path, max_bytes=3 * ds.RECORD_BYTES)
    tgz = official_tarball(tmp_path / "a.tar.gz", records_by_hand(4))
    with pytest.raises(DatasetError, match="exceed the data budget"):
        load_dataset(tgz, max_bytes=3 * ds.RECORD_BYTES)


# ----------------------------------------------------------------------------- subsets

def test_balanced_subset_of_class_sorted_data():
    y = np.repeat(np.arange(10), 1000)                       # sorted by class, as test.npz
    rows = balanced_subset(y, 1000)
    assert list(np.bincount(y[rows], minlength=10)) == [100] * 10
    assert len(set(rows.tolist())) == 1000 and list(rows) == sorted(rows)
    assert np.array_equal(rows, balanced_subset(y, 1000, seed=0))   # same seed, same subset
    assert not np.array_equal(rows, balanced_subset(y, 1000, seed=1))
    counts = np.bincount(y[balanced_subset(y, 15)], minlength=10)
    assert counts.max() - counts.min() <= 1 and counts.sum() == 15


def test_balanced_subset_when_a_class_runs_short():
    y = np.array([0] * 50 + [1] * 3 + [2] * 50)
    rows = balanced_subset(y, 30, seed=4)
    counts = np.bincount(y[rows], minlength=3)
    assert counts[1] == 3 and counts.sum() == 30 and abs(counts[0] - counts[2]) <= 1
    assert np.array_equal(balanced_subset(y, 500), np.arange(len(y)))
    with pytest.raises(ValueError):
        balanced_subset(y, 0)


def test_balanced_subset_is_stable_across_runs():
    """The subset is part of what a reported accuracy means: pin it."""
    y = np.repeat(np.arange(10), 20)
    # numpy's PCG64 default_rng streams are stable across versions and platforms
    assert balanced_subset(y, 10, seed=0).tolist() == [4, 31, 47, 65, 92, 113, 130, 148, 164, 181]


# ----------------------------------------------------------------------------- evaluate

SMALL = Network(conv_channels=(64, 64, 128), pool_after=(False, True, True), fc_units=(64,),
                n_classes=10, image_size=32)


def test_evaluate_equals_the_reference():
    params = random_params(SMALL, seed=6, images=random_images(4, 32, seed=2))
    x = random_images(25, 32, seed=3)
    pred = reference.predict(params, reference.scores(params, x))
    y = pred.copy()
    y[[0, 4, 7]] = (y[[0, 4, 7]] + 1) % 10
    data = ds.Dataset(x, y.astype(np.int64), None, "<test>", "npz")
    seen = []
    with Classifier(params, backend="cpu") as clf:
        r = evaluate(clf, data, batch=6, progress=seen.append)
        assert r["correct"] == 22 and r["n"] == 25 and r["accuracy"] == pytest.approx(22 / 25)
        assert seen == [6, 6, 6, 6, 1]
        conf = np.zeros((10, 10), np.int64)
        np.add.at(conf, (y, pred), 1)
        assert r["confusion"] == conf.tolist()
        bad = ds.Dataset(x[:2], np.array([0, 12]), None, "<bad>", "npz")
        with pytest.raises(DatasetError, match="label 12 is outside the model's 10 classes"):
            evaluate(clf, bad)
