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
import re
import tempfile
import time
import tracemalloc
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import no_hang
from pynq_bnn import ParamsError, load_params, save_params
from pynq_bnn.host.classifier import Classifier
from pynq_bnn.spec import reference
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


def fuzz(examples):
    return settings(max_examples=examples, deadline=5000, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


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


# ----------------------------------------------------------------------------- limits (issue 17)

from pynq_bnn.spec import network as network_module  # noqa: E402
from pynq_bnn.spec import params as params_module  # noqa: E402
from pynq_bnn.spec.params import LayerParams, Params  # noqa: E402


def _with_meta(tmp_path, meta_text: str, name="m.npz") -> str:
    """The small valid model's arrays under another meta text (checksum recomputed)."""
    arrays = _arrays_of(original("stored"))
    arrays["meta"] = np.array(meta_text)
    arrays["checksum"] = np.array(_checksum(arrays))
    path = str(tmp_path / name)
    with open(path, "wb") as f:
        f.write(_npz(arrays))
    return path


def _meta() -> dict:
    return json.loads(str(_arrays_of(original("stored"))["meta"]))


def _refused_fast(path, match, seconds=1.0, peak_bytes=8 << 20):
    tracemalloc.start()
    t0 = time.monotonic()
    try:
        with no_hang(), pytest.raises(ParamsError, match=match) as e:
            load_params(path)
        elapsed = time.monotonic() - t0
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert elapsed < seconds, f"took {elapsed:.2f} s to refuse"
    assert peak < peak_bytes, f"allocated {peak} bytes to refuse"
    return str(e.value)


L = network_module
NETWORK_OVER_LIMITS = {
    # the attack: a 10 KB file that cost ~9 GB on the cpu backend
    "13 convs at 4096 px": (dict(conv_channels=[64] * 13, pool_after=[False] * 13,
                                 fc_units=[64], image_size=4096), r"image_size 4096"),
    "image size": (dict(conv_channels=[64, 64], pool_after=[False, False], fc_units=[],
                        image_size=L.MAX_IMAGE_SIZE + 2), r"image_size \d+ outside"),
    "layers": (dict(conv_channels=[64] * 20, pool_after=[False] * 20, fc_units=[64] * 12,
                    image_size=4), rf"33 layers .* > {L.MAX_LAYERS}"),
    "channels": (dict(conv_channels=[64, L.MAX_CHANNELS + 64], pool_after=[False, True],
                      fc_units=[], image_size=2), rf"channels > {L.MAX_CHANNELS}"),
    "map values": (dict(conv_channels=[192, 64], pool_after=[False, True], fc_units=[],
                        image_size=64), rf"values per image > {L.MAX_MAP_VALUES}"),
    "weight bits": (dict(conv_channels=[64, 64], pool_after=[False, True], fc_units=[4096] * 9,
                         image_size=8), rf"binary weight bits > {L.MAX_WEIGHT_BITS}"),
    "work per image": (dict(conv_channels=[512] * 6, pool_after=[False] * 6, fc_units=[],
                            image_size=32),
                       rf"multiply-accumulates per image > {L.MAX_OPS_PER_IMAGE}"),
}


@pytest.mark.parametrize("case", sorted(NETWORK_OVER_LIMITS))
def test_every_network_limit_is_checked_when_the_file_is_loaded(tmp_path, case):
    """Each limit, exceeded alone by a tiny file, is refused by load_params before anything is
    sized from the topology (milliseconds, a few MB at most)."""
    net, match = NETWORK_OVER_LIMITS[case]
    meta = _meta()
    meta["network"] = dict(meta["network"], n_classes=3, **net)
    path = _with_meta(tmp_path, json.dumps(meta))
    assert os.path.getsize(path) < 32_000
    msg = _refused_fast(path, match)
    assert msg.startswith("meta.network: ")


@given(convs=st.lists(st.tuples(st.sampled_from([64, 128, 256, 512, 1024, 4096, 8192]),
                                st.booleans()), min_size=2, max_size=40),
       fc=st.lists(st.sampled_from([64, 1024, 4096, 8192]), max_size=12),
       size=st.sampled_from([1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 4096]),
       n_classes=st.integers(2, 64))
@fuzz(EXAMPLES)
def test_any_network_accepted_is_within_every_documented_limit(convs, fc, size, n_classes):
    """The class, not examples: whatever Network accepts satisfies every limit (recomputed
    here independently), so no backend is ever sized beyond them."""
    channels = [c for c, _ in convs]
    pools = [False] + [p for _, p in convs[1:]]
    try:
        net = Network(conv_channels=channels, pool_after=pools, fc_units=fc,
                      n_classes=n_classes, image_size=size)
    except network_module.NetworkError:
        return
    side, cin, ops, bits, biggest = size, 3, 0, 0, 0
    for i, (c, p) in enumerate(zip(channels, pools)):
        ops += side * side * c * (27 if i == 0 else 9 * cin)
        bits += 0 if i == 0 else c * 9 * cin
        biggest = max(biggest, side * side * c)
        side, cin = (side // 2 if p else side), c
    features = side * side * cin
    for units in fc + [n_classes]:
        ops += features * units
        bits += features * units
        features = units
    assert size <= L.MAX_IMAGE_SIZE and len(channels) + len(fc) + 1 <= L.MAX_LAYERS
    assert max(channels + fc) <= L.MAX_CHANNELS and biggest <= L.MAX_MAP_VALUES
    assert bits == net.binary_weight_bits <= L.MAX_WEIGHT_BITS
    assert ops == net.ops_per_image <= L.MAX_OPS_PER_IMAGE


def test_the_largest_file_the_limits_allow_loads(tmp_path):
    """The inflate budget admits every valid model: a network just under the weight-bit limit
    with a meta of nearly MAX_META_CHARS round-trips, and inflates to less than the budget."""
    net = Network(conv_channels=(64, 64), pool_after=(False, True), fc_units=(4096,) * 7 + (2048,),
                  n_classes=64, image_size=8)
    assert net.binary_weight_bits > 0.8 * L.MAX_WEIGHT_BITS
    layers = {}
    for layer in net.layers:
        w = np.zeros(layer.weight_shape, np.int8 if layer.kind == "conv1" else np.uint64)
        lp = LayerParams(w)
        if not layer.last:
            lp.thresholds = np.zeros(layer.out_channels, np.int32)
            lp.directions = np.ones(layer.out_channels, np.int8)
        layers[layer.name] = lp
    names = [f"c{i}" for i in range(64)]
    big = Params(net, names, layers, np.ones(64, np.float32), np.zeros(64, np.float32),
                 training={"log": "x" * (params_module.MAX_META_CHARS - 3000)})
    path = tmp_path / "largest.npz"
    save_params(big, path)
    import zipfile as zf
    with zf.ZipFile(path) as z:
        inflated = sum(i.file_size for i in z.infolist())
    assert inflated < params_module.MAX_INFLATED_BYTES
    assert load_params(path).checksum == big.checksum


# ----------------------------------------------------------------------------- zip structure

def _raw_zip(members, declared_count=None):
    """A stored zip built by hand: (name, data) members; optionally a lying end record."""
    import struct
    import zlib
    local, central, offset = [], [], 0
    for member in members:
        # (name, data) stored; (name, data, deflated stream): sizes and CRC say ``data``;
        # (name, size, crc, deflated stream)
        if len(member) == 4:
            name, size, crc, payload = member
            method = 8
        else:
            name, data = member[:2]
            payload, method = (member[2], 8) if len(member) > 2 else (data, 0)
            size, crc = len(data), zlib.crc32(data)
        n = name.encode()
        hdr = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, method, 0, 0, crc, len(payload),
                          size, len(n), 0) + n
        local.append(hdr + payload)
        central.append(struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, method, 0, 0, crc,
                                   len(payload), size, len(n), 0, 0, 0, 0, 0, offset) + n)
        offset += len(hdr) + len(payload)
    cd = b"".join(central)
    count = len(members) if declared_count is None else declared_count
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, min(count, 0xFFFF), min(count, 0xFFFF),
                      len(cd), offset, 0)
    return b"".join(local) + cd + end


def _model_members():
    return [(k + ".npy", _npy_bytes(a)) for k, a in _arrays_of(original("stored")).items()]


def _npy_bytes(a):
    b = io.BytesIO()
    np.save(b, a)
    return b.getvalue()


def test_two_hundred_thousand_tiny_members_are_refused_fast(tmp_path):
    """Count first: the end record's member count is checked before zipfile parses the
    directory (the attack took 52 s to refuse)."""
    path = tmp_path / "many.npz"
    path.write_bytes(_raw_zip(_model_members() + [(f"x{i}.npy", b"") for i in range(200_000)]))
    _refused_fast(path, r"declares \d+ members; a model has at most", 1.0, 32 << 20)
    # An end record that lies about the count: the directory's size gives it away.
    lying = tmp_path / "lying.npz"
    lying.write_bytes(_raw_zip(_model_members() + [(f"x{i}.npy", b"") for i in range(200_000)],
                               declared_count=30))
    _refused_fast(lying, r"central directory of \d+ bytes is larger than any model", 1.0, 32 << 20)


@pytest.mark.parametrize("name", ["extra.npy", "fc1.weights", "../../etc/passwd.npy",
                                  "fc1.weights.npy.npy", "conv1.weights.npy/", "FC1.weights.npy"])
def test_unexpected_members_are_refused_before_anything_is_inflated(tmp_path, name):
    """A 300 MB deflate bomb under any unexpected name: refused from the directory alone."""
    path = tmp_path / "bomb.npz"
    path.write_bytes(_raw_zip(_model_members() + [(name,) + _bomb()]))
    assert path.stat().st_size < 1 << 20
    _refused_fast(path, r"unexpected member")


@functools.lru_cache(maxsize=None)
def _bomb(megabytes=300):
    """(size, crc, deflate stream) of ``megabytes`` MB of zeros, made without holding them."""
    import zlib
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk, crc, parts = b"\0" * (1 << 20), 0, []
    for _ in range(megabytes):
        crc = zlib.crc32(chunk, crc)
        parts.append(c.compress(chunk))
    parts.append(c.flush())
    return megabytes << 20, crc, b"".join(parts)


def test_the_inflate_budget_is_checked_from_the_directory_and_while_reading(tmp_path):
    # declared: a valid member name holding a 300 MB bomb
    path = tmp_path / "bomb.npz"
    members = [m for m in _model_members() if m[0] != "fc1.weights.npy"]
    path.write_bytes(_raw_zip(members + [("fc1.weights.npy",) + _bomb()]))
    _refused_fast(path, r"members declare \d+ bytes uncompressed \(fc1.weights")
    # lying: the directory declares the true small size, but the deflate stream holds 100 MB
    # more; only the declared bytes are ever inflated (zipfile stops there; then the CRC,
    # "data after the array" or the checksum decides)
    members = _model_members()
    i = [k for k, _ in members].index("fc1.weights.npy")
    real = members[i][1]
    members[i] = ("fc1.weights.npy", real, zlib_compress(real + b"\0" * (100 << 20)))
    lie = tmp_path / "lie.npz"
    lie.write_bytes(_raw_zip(members))
    tracemalloc.start()
    try:
        t0 = time.monotonic()
        with no_hang():
            try:
                assert load_params(lie).checksum == PARAMS.checksum
            except ParamsError:
                pass
        elapsed = time.monotonic() - t0
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert elapsed < 2 and peak < 16 << 20, (elapsed, peak)


def zlib_compress(data: bytes) -> bytes:
    import zlib
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


@pytest.mark.parametrize("how", ["bzip2", "lzma", "encrypted", "duplicate"])
def test_odd_zip_members_are_refused(tmp_path, how):
    import zipfile as zf
    path = tmp_path / "odd.npz"
    members = _model_members()
    if how in ("bzip2", "lzma"):
        method = zf.ZIP_BZIP2 if how == "bzip2" else zf.ZIP_LZMA
        with zf.ZipFile(path, "w", method) as z:
            for k, data in members:
                z.writestr(k, data)
        match = "compression method"
    elif how == "encrypted":
        raw = bytearray(_raw_zip(members))
        cd = raw.find(b"PK\x01\x02")
        raw[cd + 8] |= 1        # general purpose flag bit 0 in the directory
        path.write_bytes(bytes(raw))
        match = "encrypted"
    else:
        path.write_bytes(_raw_zip(members + [members[3]]))
        match = "duplicate member"
    _refused_fast(path, match)


# ----------------------------------------------------------------------------- meta schema

def _leaves(v, where="meta"):
    """(path, setter) for every leaf of a parsed meta."""
    if isinstance(v, dict):
        for k in list(v):
            if isinstance(v[k], (dict, list)):
                yield from _leaves(v[k], f"{where}.{k}")
            else:
                yield f"{where}.{k}", (v, k)
    elif isinstance(v, list):
        for i in range(len(v)):
            if isinstance(v[i], (dict, list)):
                yield from _leaves(v[i], f"{where}[{i}]")
            else:
                yield f"{where}[{i}]", (v, i)


def _meta_refusal(tmp_path, meta_text):
    with no_hang(), pytest.raises(ParamsError) as e:
        load_params(_with_meta(tmp_path, meta_text))
    return str(e.value)


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity", "1e400", "-1e400",
                                   "1" * 30, "-" + "9" * 5000])
def test_non_finite_or_absurd_numbers_anywhere_in_meta_name_their_field(tmp_path, token):
    """Every leaf of the meta tree, replaced in turn by the token: ParamsError naming that
    leaf (never OverflowError/ValueError, never a silent inf)."""
    meta = _meta()
    meta["training"] = {"lr": 0.1, "history": [1, 2.5]}
    for where, (container, key) in list(_leaves(meta)):
        old = container[key]
        container[key] = "@@TOKEN@@"
        text = json.dumps(meta).replace('"@@TOKEN@@"', token)
        container[key] = old
        msg = _meta_refusal(tmp_path, text)
        assert msg.startswith(f"{where}: "), (where, msg)


INT_FIELDS = ["meta.network.conv_channels[0]", "meta.network.conv_channels[1]",
              "meta.network.fc_units[0]", "meta.network.n_classes", "meta.network.image_size",
              "meta.input.scale", "meta.input.offset"]


@pytest.mark.parametrize("bad", [0.9, "float", "str", True, None, [], {}])
def test_every_integer_field_refuses_other_types(tmp_path, bad):
    """Floats where integers belong (8.9 would have been truncated to 8), integral floats
    (8.0), strings, booleans, null, lists, objects: refused naming the field."""
    meta = _meta()
    leaves = dict(_leaves(meta))
    for where in INT_FIELDS:
        container, key = leaves[where]
        old = container[key]
        container[key] = (old + bad if bad == 0.9 else float(old) if bad == "float"
                          else str(old) if bad == "str" else bad)
        msg = _meta_refusal(tmp_path, json.dumps(meta))
        container[key] = old
        field = "meta.input" if where.startswith("meta.input") else where
        assert msg.startswith(f"{field}: "), (where, msg)


@pytest.mark.parametrize("where,depth", [("top", 100_000), ("training", 100_000),
                                         ("training", params_module.MAX_META_DEPTH)])
def test_deep_nesting_is_refused_before_json_recurses(tmp_path, where, depth):
    meta = _meta()
    deep = "[" * depth + "]" * depth
    text = deep if where == "top" else json.dumps(meta)[:-1] + f', "training": {{"x": {deep}}}}}'
    t0 = time.monotonic()
    msg = _meta_refusal(tmp_path, text)
    assert msg.startswith("meta: nested") and time.monotonic() - t0 < 2


def test_brackets_inside_strings_are_not_nesting(tmp_path):
    meta = _meta()
    meta["description"] = "[{" * 5000 + '\\"[' + "}]" * 10
    p = load_params(_with_meta(tmp_path, json.dumps(meta)))
    assert p.description == meta["description"]


@pytest.mark.parametrize("mutate,field", [
    (lambda m: m.update(surprise=1), "meta.surprise: unknown key"),
    (lambda m: m["network"].update(dropout=0.5), "meta.network.dropout: unknown key"),
    (lambda m: m.pop("input"), "meta.input: missing"),
    (lambda m: m["network"].pop("fc_units"), "meta.network.fc_units: missing"),
    (lambda m: m["network"].update(pool_after=[0, 1]),
     r"meta.network.pool_after\[0\]: expected true"),
    (lambda m: m["network"].update(conv_channels=[64] * 40),
     "meta.network.conv_channels: 40 entries"),
    (lambda m: m.update(class_names=["a", "b\nc", "d"]),
     r"meta.class_names\[1\]: .* non-printable"),
    (lambda m: m.update(class_names=["a", "\x1b[31mred", "d"]), r"meta.class_names\[1\]"),
    (lambda m: m.update(class_names=["a", "x" * 101, "d"]), r"meta.class_names\[1\]"),
    (lambda m: m.update(class_names=["a", 2, "d"]), r"meta.class_names\[1\]: expected a string"),
    (lambda m: m.update(class_names="abc"), "meta.class_names: expected a list"),
    (lambda m: m.update(description=["x"]), "meta.description: expected a string"),
    (lambda m: m.update(training=[1]), "meta.training: expected a JSON object"),
    (lambda m: m.update(input={"scale": 2, "offset": -255, "x": 0}), "meta.input: normalisation"),
])
def test_meta_schema(tmp_path, mutate, field):
    meta = _meta()
    mutate(meta)
    assert re.match(field, _meta_refusal(tmp_path, json.dumps(meta)))


def test_meta_length_is_checked_before_parsing(tmp_path):
    long = "y" * params_module.MAX_META_CHARS
    text = json.dumps(_meta())[:-1] + ', "training": {"x": "' + long + '"}}'
    assert _meta_refusal(tmp_path, text).startswith("meta: ")


def test_save_params_refuses_what_load_params_would_refuse(tmp_path):
    deep = [1]
    for _ in range(params_module.MAX_META_DEPTH):
        deep = [deep]
    for training in ({"lr": float("nan")}, {"x": deep}):
        p = random_params(NET, seed=5, images=random_images(3, 8, seed=6))
        p.training = training
        with pytest.raises(ParamsError, match="meta"):
            save_params(p, tmp_path / "x.npz")
        assert not (tmp_path / "x.npz").exists()
