"""Reliability of the parameter loader (issue #8): fuzzing, other topologies, absurd headers.

tests/test_params.py checks each named corruption once; here hypothesis throws random byte
flips, truncations and array mutations at a valid small model file. Every outcome must be a
valid model or :class:`~pynq_bnn.errors.ParamsError`: never another exception, never a hang,
never a large allocation.
"""
import functools
import io
import json
import os
import signal
import tempfile
import threading
import tracemalloc
import zipfile
from contextlib import contextmanager

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pynq_bnn import ParamsError, load_params, save_params
from pynq_bnn.spec import reference
from pynq_bnn.host.classifier import Classifier
from pynq_bnn.spec.network import Network
from pynq_bnn.spec.params import _checksum, validate
from pynq_bnn.testing import random_images, random_params

NET = Network(conv_channels=(64, 64), pool_after=(False, True), fc_units=(64,), n_classes=3,
              image_size=8)
OTHER = Network(conv_channels=(64, 128), pool_after=(False, True), fc_units=(), n_classes=2,
                image_size=4)
#: Examples per fuzz test in CI (raise it locally: PYNQ_BNN_FUZZ_EXAMPLES=5000).
EXAMPLES = int(os.environ.get("PYNQ_BNN_FUZZ_EXAMPLES", "200"))
#: Seconds one load may take before it counts as a hang (generous: CI shares its cores).
HANG_S = 20


def fuzz(examples):
    return settings(max_examples=examples, deadline=5000, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@contextmanager
def no_hang(seconds=HANG_S):
    """Fail (instead of hanging CI) if the body runs longer than ``seconds``."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def alarm(signum, frame):
        raise AssertionError(f"load_params did not return within {seconds} s (a hang)")
    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _arrays_of(data: bytes):
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _npz(arrays, compress=False) -> bytes:
    buf = io.BytesIO()
    (np.savez_compressed if compress else np.savez)(buf, **arrays)
    return buf.getvalue()


PARAMS = random_params(NET, seed=5, images=random_images(3, 8, seed=6))
IMAGE = random_images(1, 8, seed=7)


def _saved_bytes(tmp_dir, params, name="m.npz") -> bytes:
    path = os.path.join(tmp_dir, name)
    save_params(params, path)
    with open(path, "rb") as f:
        return f.read()


_WORK = tempfile.mkdtemp(prefix="pynq-bnn-fuzz-")


@functools.lru_cache(maxsize=None)
def original(which: str) -> bytes:
    """The model as save_params writes it ("deflated") and the same arrays stored uncompressed
    ("stored", so that byte flips land in .npy headers and data, not only in deflate streams)."""
    deflated = _saved_bytes(_WORK, PARAMS)
    return deflated if which == "deflated" else _npz(_arrays_of(deflated))


def check_outcome(data: bytes):
    """Load ``data``; a success must be a valid, runnable model. Returns 'ok' or 'refused'."""
    path = os.path.join(_WORK, "fuzzed.npz")
    with open(path, "wb") as f:
        f.write(data)
    with no_hang():
        try:
            p = load_params(path)
        except ParamsError as e:
            assert str(e), "a ParamsError must say what is wrong"
            return "refused"
    # Anything loaded must be a complete, valid model that the reference can run.
    validate(p)
    scores = reference.scores(p, IMAGE[:, :p.network.image_size, :p.network.image_size])
    assert scores.shape == (1, p.network.n_classes)
    assert np.all(np.abs(scores) <= p.network.last_layer.fan_in)
    return "ok"


# ----------------------------------------------------------------------------- fuzzing

@fuzz(EXAMPLES)
@given(which=st.sampled_from(["deflated", "stored"]),
       flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)),
                      min_size=1, max_size=8))
def test_fuzz_byte_flips(which, flips):
    data = bytearray(original(which))
    for where, xor in flips:
        data[int(where * len(data))] ^= xor
    check_outcome(bytes(data))


@fuzz(EXAMPLES // 2)
@given(which=st.sampled_from(["deflated", "stored"]), keep=st.floats(0, 1, exclude_max=True),
       tail=st.binary(max_size=64))
def test_fuzz_truncations(which, keep, tail):
    data = original(which)
    cut = data[:int(keep * len(data))]
    assert check_outcome(cut) == "refused"
    # With bytes appended the result may even be the original file again (a cut inside the
    # end record's zero comment length, tail b"\0"): any outcome but a crash is fine.
    check_outcome(cut + tail)


def _mutate(arrays, key, how, value, fix_checksum):
    a = arrays[key]
    if a.dtype.kind == "U" and how in ("dtype", "transpose", "byteswap"):
        how = "value"  # numeric conversions of a text scalar fail in the test, not the loader
    if how == "delete":
        del arrays[key]
    elif how == "rename":
        arrays[key + "x"] = arrays.pop(key)
    elif how == "extra":
        arrays["extra"] = np.zeros(3, np.int8)
    elif how == "dtype":
        arrays[key] = a.astype(value)
    elif how == "reshape":
        arrays[key] = a.reshape(-1)
    elif how == "shrink":
        arrays[key] = a.reshape(-1)[: max(a.size - 1, 0)]
    elif how == "grow":
        arrays[key] = np.concatenate([a.reshape(-1), a.reshape(-1)[:1]])
    elif how == "transpose":
        arrays[key] = np.asfortranarray(a.T) if a.ndim > 1 else a.reshape(-1)[::-1].copy()
    elif how == "value":
        if a.dtype.kind in "iuf" and a.size:
            flat = a.reshape(-1).copy()
            info = np.iinfo(a.dtype) if a.dtype.kind in "iu" else None
            if info is not None and not np.isfinite(value):
                value = 0
            v = value if info is None else int(np.clip(int(value), info.min, info.max))
            flat[0] = v
            arrays[key] = flat.reshape(a.shape)
        elif a.dtype.kind == "U":
            arrays[key] = np.array(str(value))
    elif how == "byteswap":
        swapped = a.astype(a.dtype.newbyteorder(">")) if a.dtype.itemsize > 1 else None
        arrays[key] = swapped if swapped is not None else a.reshape(-1)[::-1]
    elif how == "scalar_text":
        arrays[key] = np.array("surprise")
    if fix_checksum and "checksum" in arrays:
        arrays["checksum"] = np.array(_checksum(arrays))
    return arrays


@fuzz(EXAMPLES // 2)
@given(key_index=st.integers(0, 100),
       how=st.sampled_from(["delete", "rename", "extra", "dtype", "reshape", "shrink", "grow",
                            "transpose", "value", "byteswap", "scalar_text"]),
       value=st.one_of(st.sampled_from([np.int8, np.int32, np.int64, np.uint64, np.float32,
                                        np.float64, np.bool_]),
                       st.integers(-2**63, 2**64 - 1),
                       st.floats(allow_nan=True, allow_infinity=True)),
       fix_checksum=st.booleans(), compress=st.booleans())
def test_fuzz_array_mutations(key_index, how, value, fix_checksum, compress):
    arrays = _arrays_of(original("stored"))
    keys = sorted(arrays)
    key = keys[key_index % len(keys)]
    if how == "dtype" and not isinstance(value, type):
        value = np.int16
    if how == "value" and isinstance(value, type):
        value = 0
    arrays = _mutate(arrays, key, how, value, fix_checksum)
    check_outcome(_npz(arrays, compress))


def test_fuzz_unmutated_files_load():
    """The fuzzers' starting points are valid (else every 'refused' above proves nothing)."""
    for which in ("deflated", "stored"):
        assert check_outcome(original(which)) == "ok"


# ----------------------------------------------------------------------------- topologies

def test_a_valid_file_for_another_topology_loads_and_runs(tmp_path):
    """A correct file for another network is a valid model: it loads as that network and the
    mock accelerator gives the reference scores (nothing assumes the CIFAR-10 shape)."""
    other = random_params(OTHER, seed=8, images=random_images(2, 4, seed=9))
    path = tmp_path / "other.npz"
    save_params(other, path)
    p = load_params(path)
    assert p.network == OTHER and p.class_names == other.class_names
    imgs = random_images(5, 4, seed=10)
    with Classifier(str(path), backend="mock", kernel="reference") as c:
        r = c.classify(imgs)
    np.testing.assert_array_equal(r.scores, reference.scores(other, imgs))
    assert r.scores.shape == (5, 2)


def test_arrays_of_one_topology_under_the_meta_of_another(tmp_path):
    """Arrays of OTHER with NET's meta (checksum recomputed): refused, naming a field."""
    other = random_params(OTHER, seed=8, images=random_images(2, 4, seed=9))
    arrays = _arrays_of(_saved_bytes(str(tmp_path), other))
    meta = json.loads(str(_arrays_of(_saved_bytes(str(tmp_path), PARAMS, "n.npz"))["meta"]))
    arrays["meta"] = np.array(json.dumps(meta))
    arrays["checksum"] = np.array(_checksum(arrays))
    (tmp_path / "mixed.npz").write_bytes(_npz(arrays))
    with pytest.raises(ParamsError, match=r"(weights|thresholds|directions|scale|bias|fc\d)"):
        load_params(tmp_path / "mixed.npz")


# ----------------------------------------------------------------------------- absurd headers

def _npy(shape, descr="|u1", data=b"\0" * 16, version=1):
    header = "{'descr': '%s', 'fortran_order': False, 'shape': %r, }" % (descr, shape)
    prefix = 10 if version == 1 else 12
    header += " " * (63 - (prefix + len(header)) % 64) + "\n"
    size = len(header).to_bytes(2 if version == 1 else 4, "little")
    return b"\x93NUMPY" + bytes([version, 0]) + size + header.encode() + data


@pytest.mark.parametrize("shape,descr,version", [
    ((2**40,), "|u1", 1),
    ((2**33,), "<u8", 1),        # 64 GiB: numpy would allocate it (untouched) before reading
    ((2**31,), "|i1", 2),        # header format 2.0 too
    ((2**62, 4), "<i4", 1),      # overflows int64 element counts
    ((1 << 20, 1 << 20, 1 << 20), "<f4", 1),
])
def test_absurd_shape_in_npy_header_is_refused_without_allocating(tmp_path, shape, descr, version):
    """A tiny entry whose header declares a huge shape: ParamsError before any allocation.

    numpy.load on an npz entry allocates the declared array first (numpy/lib/format.py,
    read_array: ``numpy.ndarray(count, dtype)`` for non-file objects), so the loader must
    check the header against the entry's size itself (pynq_bnn.spec.params._Archive.read).
    """
    arrays = _arrays_of(_saved_bytes(str(tmp_path), PARAMS))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for k, a in arrays.items():
            if k == "fc1.weights":
                continue
            b = io.BytesIO()
            np.save(b, a)
            z.writestr(k + ".npy", b.getvalue())
        z.writestr("fc1.weights.npy", _npy(shape, descr, version=version))
    path = tmp_path / "absurd.npz"
    path.write_bytes(buf.getvalue())
    tracemalloc.start()
    try:
        with no_hang(), pytest.raises(ParamsError, match=r"fc1\.weights: header declares"):
            load_params(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 32 << 20, f"loader allocated {peak} bytes for a {path.stat().st_size}-byte file"


# ----------------------------------------------------------------------------- never executes data

class _Payload:
    """Unpickling this creates a marker file: proof that data was executed."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickles_are_never_executed(tmp_path, capsys):
    import pickle

    from pynq_bnn.tools.cli import main

    marker = tmp_path / "executed"
    payload = pickle.dumps(_Payload(str(marker)))
    raw = tmp_path / "model.npz"
    raw.write_bytes(payload)                                 # a bare pickle named .npz
    inner = tmp_path / "inner.npz"                           # a pickle inside the zip
    with zipfile.ZipFile(inner, "w") as z:
        z.writestr("meta.npy", payload)
        z.writestr("format_version.npy", payload)
    npy = tmp_path / "obj.npz"                               # an object-dtype .npy entry
    b = io.BytesIO()
    np.save(b, np.array([_Payload(str(marker))], dtype=object), allow_pickle=True)
    with zipfile.ZipFile(npy, "w") as z:
        z.writestr("meta.npy", b.getvalue())
    for path in (raw, inner, npy):
        with pytest.raises(ParamsError):
            load_params(path)
        assert not marker.exists(), f"{path.name} was unpickled"
        # the CLI reads the model (exit 1) and eval data files (exit 2) the same way
        assert main(["classify", "--backend", "cpu", "--model", str(path), str(path)]) == 1
        assert main(["eval", "--backend", "cpu", "--model", original_path(), str(path)]) == 2
        assert not marker.exists()
    capsys.readouterr()


def original_path():
    path = os.path.join(_WORK, "original.npz")
    if not os.path.exists(path):
        with open(path, "wb") as f:
            f.write(original("deflated"))
    return path
