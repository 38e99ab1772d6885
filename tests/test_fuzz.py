"""Fuzz targets: the parameter loader and the image entry points (issue 17).

Property-based (hypothesis), structure-aware: inputs start from valid data (a small model
file, a real PNG) and are mutated at the level where bugs hide (zip members, .npy headers,
meta JSON tokens, image headers, array dtypes and shapes, mixed item lists). Every outcome
must be a valid result or the documented error (ParamsError, ImageError): never another
exception, never a hang, and one bad item never costs another item's result.

In the normal test run every target runs a few dozen examples with a fixed seed
(``derandomize``: the same inputs every run, well under a minute in all). Longer runs::

    PYNQ_BNN_FUZZ_EXAMPLES=100000 python3 -m pytest -q -p no:cacheprovider tests/test_fuzz.py
    PYNQ_BNN_FUZZ_SEED=7 PYNQ_BNN_FUZZ_EXAMPLES=20000 python3 -m pytest -q tests/test_fuzz.py

``PYNQ_BNN_FUZZ_SEED`` explores other inputs than the fixed ones; with
``PYNQ_BNN_FUZZ_SAVE=DIR`` every failing input is also written to DIR, to be fixed and then
kept in ``tests/data/fuzz_corpus/<target>/`` (``ok_*`` files must load, all others must be
refused with the documented error), which :func:`test_corpus_replays` replays every run.
"""
import functools
import hashlib
import io
import json
import os
import re
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from PIL import Image

from helpers import no_hang
from pynq_bnn import ParamsError, load_params, save_params
from pynq_bnn.errors import ImageError
from pynq_bnn.host.classifier import Classifier
from pynq_bnn.host.preprocess import load_items
from pynq_bnn.spec import reference
from pynq_bnn.spec.network import Network
from pynq_bnn.spec.params import _checksum, validate
from pynq_bnn.testing import random_images, random_params

EXAMPLES = int(os.environ.get("PYNQ_BNN_FUZZ_EXAMPLES", "150"))
SEED = os.environ.get("PYNQ_BNN_FUZZ_SEED")
SAVE = os.environ.get("PYNQ_BNN_FUZZ_SAVE")
CORPUS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "fuzz_corpus")
SIZE = 8             # the network's input side

NET = Network(conv_channels=(64, 64), pool_after=(False, True), fc_units=(64,), n_classes=3,
              image_size=SIZE)
PARAMS = random_params(NET, seed=61, images=random_images(3, SIZE, seed=62))
_WORK = tempfile.mkdtemp(prefix="pynq-bnn-fuzz-")


def fuzz(factor=1.0):
    """Settings of a fuzz target: fixed seed unless PYNQ_BNN_FUZZ_SEED is set."""
    def wrap(test):
        test = settings(max_examples=max(1, int(EXAMPLES * factor)), deadline=None,
                        database=None, derandomize=SEED is None, print_blob=True,
                        suppress_health_check=list(HealthCheck))(test)
        return seed(int(SEED))(test) if SEED is not None else test
    return wrap


def _keep_failure(target: str, data: bytes):
    """With PYNQ_BNN_FUZZ_SAVE, write a failing input where it can be turned into a corpus file."""
    if SAVE:
        d = os.path.join(SAVE, target)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, hashlib.sha1(data).hexdigest()[:16]), "wb") as f:
            f.write(data)


# ----------------------------------------------------------------------------- outcomes

def check_params(data: bytes) -> str:
    """load_params on ``data``: 'ok' (a valid model the reference runs) or 'refused'."""
    path = os.path.join(_WORK, "fuzzed.npz")
    with open(path, "wb") as f:
        f.write(data)
    try:
        with no_hang():
            try:
                p = load_params(path)
            except ParamsError as e:
                assert str(e), "a ParamsError must say what is wrong"
                return "refused"
        validate(p)
        n = p.network.image_size
        scores = reference.scores(p, random_images(1, n, seed=1))
        assert scores.shape == (1, p.network.n_classes)
        return "ok"
    except BaseException:
        _keep_failure("params", data)
        raise


# A refusal names a field of meta or a member the topology it declares needs.
_FIELD = re.compile(r"(meta[.\[:]|layers: |"
                    r"(conv|fc)\d+\.(weights|thresholds|directions|scale|bias): )")


def check_meta(text: str) -> str:
    """The valid model's arrays under ``text`` as meta (checksum fixed, so the schema and the
    topology checks are what decides). A refusal must name a field of meta."""
    arrays = dict(_arrays("stored"))
    arrays["meta"] = np.array(text)
    arrays["checksum"] = np.array(_checksum(arrays))
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    try:
        out = check_params(buf.getvalue())
    except BaseException:
        _keep_failure("meta", text.encode("utf-8", "surrogatepass"))
        raise
    return out


def check_image(data: bytes) -> str:
    """One encoded image given as bytes and as a file path: ok (uint8[SIZE, SIZE, 3]) or
    ImageError, the same outcome both ways."""
    path = os.path.join(_WORK, "fuzzed.img")
    with open(path, "wb") as f:
        f.write(data)
    try:
        outcomes = []
        for item in (data, path):
            with no_hang():
                items = load_items([item], SIZE)
            assert len(items) == 1
            it = items[0]
            if it.error is None:
                assert it.image.dtype == np.uint8 and it.image.shape == (SIZE, SIZE, 3)
                outcomes.append(("ok", it.image.tobytes()))
            else:
                assert isinstance(it.error, ImageError) and str(it.error)
                outcomes.append(("refused", None))
        assert outcomes[0] == outcomes[1], "bytes and path disagree"
        return outcomes[0][0]
    except BaseException:
        _keep_failure("images", data)
        raise


# ----------------------------------------------------------------------------- seeds

@functools.lru_cache(maxsize=None)
def _saved(which: str) -> bytes:
    path = os.path.join(_WORK, "seed.npz")
    save_params(PARAMS, path)
    with open(path, "rb") as f:
        deflated = f.read()
    if which == "deflated":
        return deflated
    with np.load(io.BytesIO(deflated)) as z:
        buf = io.BytesIO()
        np.savez(buf, **{k: z[k] for k in z.files})
    return buf.getvalue()


def _arrays(which: str):
    with np.load(io.BytesIO(_saved(which)), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


@functools.lru_cache(maxsize=None)
def _png(mode: str = "RGB", size=(5, 4)) -> bytes:
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB")
    if mode != "RGB":
        img = img.convert(mode)
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def _encoded(fmt: str) -> bytes:
    rng = np.random.default_rng(1)
    img = Image.fromarray(rng.integers(0, 256, (6, 7, 3), dtype=np.uint8), "RGB")
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


HOSTILE_TOKENS = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1e-400", "8.9", "8.0",
                  "-1", "0", "2147483648", "9" * 25, '"8"', '""', "true", "null", "[]", "{}",
                  "[64]", '{"a": 1}', "[" * 50 + "]" * 50, '"\\u0000"', '"\\ud800"',
                  '"\\n\\u001b[2J"', "4096", "65"]


# ----------------------------------------------------------------------------- parameter loader

@st.composite
def zip_mutations(draw):
    """A list of structural edits of the model zip (applied by _apply)."""
    return draw(st.lists(st.one_of(
        st.tuples(st.just("flip"), st.floats(0, 1, exclude_max=True), st.integers(1, 255)),
        st.tuples(st.just("truncate"), st.floats(0, 1, exclude_max=True)),
        st.tuples(st.just("insert"), st.floats(0, 1), st.binary(min_size=1, max_size=32)),
        st.tuples(st.just("drop"), st.integers(0, 99)),
        st.tuples(st.just("duplicate"), st.integers(0, 99)),
        st.tuples(st.just("rename"), st.integers(0, 99),
                  st.sampled_from(["extra.npy", "fc9.weights.npy", "conv1.weights", "meta.npy",
                                   "fc1.scale.npy", "../x.npy", "a" * 300 + ".npy", ""])),
        st.tuples(st.just("npy_header"), st.integers(0, 99),
                  st.sampled_from(["|u1", "<u8", ">u8", "<i4", "|O", "<f8", "|V0", "<U2", "|b1"]),
                  st.lists(st.integers(0, 2**40), max_size=4), st.booleans()),
        st.tuples(st.just("meta_token"), st.integers(0, 999), st.sampled_from(HOSTILE_TOKENS)),
    ), min_size=1, max_size=4))


def _members(data: bytes):
    import zipfile
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            return [(i.filename, z.read(i)) for i in z.infolist()]
    except Exception:
        return None


def _rezip(members, deflate: bool) -> bytes:
    import warnings
    import zipfile
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")        # duplicate names are what we want here
        method = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
        with zipfile.ZipFile(buf, "w", method) as z:
            for name, data in members:
                z.writestr(name or "noname", data)
    return buf.getvalue()


def _npy_header(descr, shape, fortran) -> bytes:
    header = "{'descr': '%s', 'fortran_order': %s, 'shape': %r, }" % (descr, fortran, tuple(shape))
    header += " " * (63 - (10 + len(header)) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode()


def _meta_with_token(index: int, token: str) -> str:
    """The model's meta text with the index-th JSON scalar (number, string, bool) replaced."""
    text = str(_arrays("stored")["meta"])
    scalar = r'-?\d+(?:\.\d+)?|true|false|"(?:[^"\\]|\\.)*"(?!\s*:)'   # not keys
    spots = [m.span() for m in re.finditer(scalar, text)]
    a, b = spots[index % len(spots)]
    return text[:a] + token + text[b:]


def _apply(data: bytes, mutations, deflate: bool, fix_checksum: bool) -> bytes:
    for m in mutations:
        kind = m[0]
        if kind in ("flip", "truncate", "insert"):
            b = bytearray(data)
            if not b:
                continue
            where = int(m[1] * len(b)) if kind != "insert" else int(m[1] * len(b))
            if kind == "flip":
                b[min(where, len(b) - 1)] ^= m[2]
            elif kind == "truncate":
                del b[where:]
            else:
                b[where:where] = m[2]
            data = bytes(b)
            continue
        members = _members(data)
        if members is None or not members:
            continue
        i = m[1] % len(members)
        if kind == "drop":
            del members[i]
        elif kind == "duplicate":
            members.append(members[i])
        elif kind == "rename":
            members[i] = (m[2], members[i][1])
        elif kind == "npy_header":
            _, _, descr, shape, fortran = m
            members[i] = (members[i][0], _npy_header(descr, shape, fortran) + members[i][1][128:])
        elif kind == "meta_token":
            text = _meta_with_token(m[1], m[2])
            b = io.BytesIO()
            np.save(b, np.array(text))
            members = [(n, b.getvalue() if n == "meta.npy" else d) for n, d in members]
        if fix_checksum:
            members = _fix_checksum(members)
        data = _rezip(members, deflate)
    return data


def _fix_checksum(members):
    """Recompute the checksum member when every member is a plain array (so that mutations
    reach the checks behind the checksum)."""
    arrays = {}
    try:
        for name, data in members:
            if name.endswith(".npy"):
                arrays[name[:-4]] = np.load(io.BytesIO(data), allow_pickle=False)
        arrays["checksum"] = np.array(_checksum(arrays))
    except Exception:
        return members
    b = io.BytesIO()
    np.save(b, arrays["checksum"])
    return [(n, b.getvalue() if n == "checksum.npy" else d) for n, d in members]


@fuzz(1.0)
@given(which=st.sampled_from(["deflated", "stored"]), mutations=zip_mutations(),
       deflate=st.booleans(), fix_checksum=st.booleans())
def test_fuzz_parameter_loader(which, mutations, deflate, fix_checksum):
    check_params(_apply(_saved(which), mutations, deflate, fix_checksum))


# JSON values with hostile leaves, as text (hypothesis builds the tree, we print it)
_json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                       st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20),
                       st.sampled_from(HOSTILE_TOKENS).map(lambda t: ("raw", t)))
_json_value = st.recursive(_json_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12)


def _dump(v) -> str:
    if isinstance(v, tuple) and v[:1] == ("raw",):
        return v[1]
    if isinstance(v, list):
        return "[" + ", ".join(_dump(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(k)}: {_dump(x)}" for k, x in v.items()) + "}"
    return json.dumps(v)


_FIELDS = ["network", "class_names", "input", "description", "training",
           "network.conv_channels", "network.pool_after", "network.fc_units",
           "network.n_classes", "network.image_size", "network.extra", "input.scale", "surprise"]


@fuzz(1.0)
@given(field=st.sampled_from(_FIELDS), value=_json_value)
def test_fuzz_meta_schema(field, value):
    """Any JSON value (with NaN, Infinity, 1e400, floats, deep nesting...) at any field of
    meta: loads, or ParamsError naming meta or one of its fields."""
    meta = json.loads(str(_arrays("stored")["meta"]))
    parts = field.split(".")
    target = meta
    for p in parts[:-1]:
        target = target[p]
    target[parts[-1]] = "@@VALUE@@"
    text = json.dumps(meta).replace('"@@VALUE@@"', _dump(value))
    try:
        outcome = check_meta(text)
    except ParamsError:
        raise
    if outcome == "refused":
        path = os.path.join(_WORK, "fuzzed.npz")
        with pytest.raises(ParamsError) as e:
            load_params(path)
        assert _FIELD.match(str(e.value)), str(e.value)


# ----------------------------------------------------------------------------- images

_SIGNATURES = [b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"GIF89a", b"GIF87a", b"BM", b"II*\0",
               b"MM\0*", b"RIFF\0\0\0\0WEBPVP8 ", b"\0\0\1\0", b"P6\n", b"P5\n",
               b"%!PS-Adobe-3.0 EPSF-3.0\n",
               b"\xc5\xd0\xd3\xc6", b"8BPS", b"DDS ", b"\0\0\0\x0cjP  ", b"qoif", b"SIMPLE  =", b""]


@st.composite
def image_bytes(draw):
    kind = draw(st.sampled_from(["signature", "mutated", "mutated", "truncated"]))
    if kind == "signature":
        return draw(st.sampled_from(_SIGNATURES)) + draw(st.binary(max_size=200))
    base = draw(st.sampled_from(["png", "png-P", "png-LA", "png-I;16", "gif", "bmp", "jpeg",
                                 "tiff", "ppm", "webp", "ico"]))
    if base.startswith("png"):
        data = bytearray(_png(base[4:] or "RGB"))
    else:
        try:
            data = bytearray(_encoded(base.upper() if base != "jpeg" else "JPEG"))
        except (KeyError, OSError, ValueError):  # a format this Pillow cannot write
            data = bytearray(_png())
    if kind == "truncated":
        return bytes(data[:draw(st.integers(0, len(data)))])
    for where, xor in draw(st.lists(st.tuples(st.floats(0, 1, exclude_max=True),
                                              st.integers(1, 255)), min_size=1, max_size=6)):
        data[int(where * len(data))] ^= xor
    return bytes(data)


@fuzz(1.0)
@given(data=image_bytes())
def test_fuzz_encoded_images(data):
    check_image(data)


_dtypes = st.sampled_from([np.uint8, np.int8, np.uint16, np.int32, np.int64, np.float16,
                           np.float32, np.float64, np.bool_, np.complex64, np.uint64, object])


@st.composite
def arrays(draw):
    """2-D and 3-D arrays of any dtype (3-D: often 1, 3 or 4 channels), some with NaN/inf or
    out-of-range values, some non-contiguous. (4-D arrays are batches: not generated here.)"""
    shape = tuple(draw(st.lists(st.integers(0, 40), min_size=0, max_size=3)))
    if draw(st.booleans()) and len(shape) >= 2:
        shape = shape[:2] + (draw(st.sampled_from([1, 3, 4])),)
    dtype = draw(_dtypes)
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    values = np.asarray(rng.integers(-300, 70000, size=shape), dtype=np.float64)
    if values.size and draw(st.booleans()):
        values.reshape(-1)[rng.integers(0, values.size)] = draw(
            st.sampled_from([float("nan"), float("inf"), -1.5, 0.5]))
    if draw(st.booleans()):
        np.clip(values, 0, 255, out=values)     # (in place: a 0-d array stays an array)
    with np.errstate(all="ignore"):
        a = values.astype(dtype)
    if draw(st.booleans()) and a.ndim >= 2:
        a = a[::-1]                                   # non-contiguous
    return a


_MODES = ["1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB",
          "HSV", "I", "I;16", "I;16B", "I;16L", "F"]


@st.composite
def pil_images(draw):
    mode = draw(st.sampled_from(_MODES))
    w, h = draw(st.integers(1, 20)), draw(st.integers(1, 20))
    rgb = Image.fromarray(np.random.default_rng(draw(st.integers(0, 99))).integers(
        0, 256, (h, w, 3), dtype=np.uint8), "RGB")
    try:
        return rgb.convert(mode)
    except ValueError:
        return Image.new(mode, (w, h))


def _item(draw_kind, draw):
    if draw_kind == "array":
        return draw(arrays())
    if draw_kind == "good":
        side = draw(st.sampled_from([SIZE, 13, 40]))
        return random_images(1, side, seed=draw(st.integers(0, 9)))[0]
    if draw_kind == "pil":
        return draw(pil_images())
    if draw_kind == "bytes":
        return draw(image_bytes())
    if draw_kind == "path":
        return draw(st.sampled_from([os.path.join(_WORK, "missing.png"), _WORK, "",
                                     "a\0b.png", "/dev/null", os.path.join(_WORK, "good.png")]))
    return draw(st.sampled_from([None, 3, 2.5, [], [np.zeros((2, 2, 3), np.uint8)], object(),
                                 io.BytesIO(b"not an image"), io.BytesIO(_png())]))


@st.composite
def item_lists(draw):
    kinds = draw(st.lists(st.sampled_from(["good", "good", "array", "pil", "bytes", "path", "odd"]),
                          min_size=1, max_size=6))
    return [_item(k, draw) for k in kinds]


def _prepare_good_png():
    path = os.path.join(_WORK, "good.png")
    if not os.path.exists(path):
        with open(path, "wb") as f:
            f.write(_png())


@fuzz(1.0)
@given(items=item_lists())
def test_fuzz_load_items(items):
    """Any mix of inputs: one LoadedItem per input (4-D batches: per image), each an RGB
    uint8 image or an ImageError, and each loaded exactly as it loads alone."""
    _prepare_good_png()
    with no_hang():
        loaded = load_items(list(items), SIZE)
    assert len(loaded) == len(items)       # no 4-D arrays are generated
    for item, it in zip(items, loaded):
        if it.error is None:
            assert it.image.dtype == np.uint8 and it.image.shape == (SIZE, SIZE, 3)
        else:
            assert isinstance(it.error, ImageError) and str(it.error)
        if isinstance(item, io.BytesIO):
            continue                       # consumed: a second read sees the rest
        alone = load_items([item], SIZE)[0]
        assert (alone.error is None) == (it.error is None)
        if it.error is None:
            np.testing.assert_array_equal(alone.image, it.image)


@pytest.fixture(scope="module")
def cpu_classifier():
    with Classifier(PARAMS, backend="cpu") as c:
        c.open()
        yield c


@fuzz(0.5)
@given(items=item_lists())
def test_fuzz_classify_many(cpu_classifier, items):
    """classify_many on the cpu backend: one row per item; a good item gets the reference
    scores of its image, a bad one its ImageError, whatever its neighbours are."""
    _prepare_good_png()
    with no_hang():
        r = cpu_classifier.classify_many(list(items))
    assert len(r) == len(items)
    loaded = load_items([it if not isinstance(it, io.BytesIO) else io.BytesIO(it.getvalue())
                         for it in items], SIZE)
    for i, it in enumerate(loaded):
        err = r.errors[i] if r.errors else None
        if isinstance(items[i], io.BytesIO):
            continue
        assert (err is None) == (it.error is None), (i, err, it.error)
        if err is None:
            np.testing.assert_array_equal(r.scores[i], reference.scores(PARAMS, it.image[None])[0])
        else:
            assert isinstance(err, ImageError) and int(r.indices[i]) == -1


def test_every_pillow_mode_loads_or_is_refused_as_documented():
    """The class of image modes: each documented mode loads (``La`` among them, which Pillow
    converts only to LA), F is refused with ImageError."""
    for mode in _MODES:
        img = Image.new("RGB", (3, 2), (200, 100, 50))
        try:
            img = img.convert(mode)
        except ValueError:
            img = Image.new(mode, (3, 2))
        it = load_items([img], SIZE)[0]
        if mode == "F":
            assert isinstance(it.error, ImageError), mode
        else:
            assert it.error is None, (mode, it.error)


# ----------------------------------------------------------------------------- corpus

def _corpus_files():
    out = []
    for target in ("params", "meta", "images"):
        d = os.path.join(CORPUS, target)
        if os.path.isdir(d):
            out += [(target, name) for name in sorted(os.listdir(d)) if not name.startswith(".")
                    and name != "README.md"]
    return out


def test_the_corpus_is_not_empty():
    targets = {t for t, _ in _corpus_files()}
    assert targets == {"params", "meta", "images"}


@pytest.mark.parametrize("target,name", _corpus_files())
def test_corpus_replays(target, name):
    """Each kept input (a past crasher, hang or attack) gives its documented outcome:
    ``ok_*`` loads, every other file is refused with ParamsError / ImageError."""
    with open(os.path.join(CORPUS, target, name), "rb") as f:
        data = f.read()
    if target == "params":
        outcome = check_params(data)
    elif target == "meta":
        outcome = check_meta(data.decode("utf-8"))
    else:
        outcome = check_image(data)
    assert outcome == ("ok" if name.startswith("ok_") else "refused"), (target, name, outcome)
