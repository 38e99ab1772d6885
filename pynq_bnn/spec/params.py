"""The parameter file: load, save, validate (docs/FORMAT.md section 8).

A model is one ``.npz`` read with ``allow_pickle=False``. :func:`load_params` validates every
array against the topology in the file's ``meta`` and the content checksum, and raises
:class:`~pynq_bnn.errors.ParamsError` naming the field and the problem.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import struct
import tempfile
import zipfile
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple, cast

import numpy as np

from ..errors import ParamsError
from ..files import open_regular
from .network import MAX_LAYERS, MAX_WEIGHT_BITS, Layer, Network, NetworkError

FORMAT_VERSION = 1
INPUT_NORMALISATION = {"scale": 2, "offset": -255}  # x = 2*p - 255, docs/FORMAT.md s.6

# --- limits of a parameter file (docs/RELIABILITY.md, "Limits"), all checked before the data
# they bound is read. A full model is 1.8 MB inflated, 30 members.
MAX_INFLATED_BYTES = MAX_WEIGHT_BITS // 8 + (16 << 20)  # the largest network the limits allow,
                                      # plus room for meta (4 bytes a character) and thresholds
MAX_FILE_BYTES = MAX_INFLATED_BYTES + (1 << 20)  # on disk: stored members plus zip overhead
MAX_MEMBERS = 3 * MAX_LAYERS + 3      # weights, thresholds, directions per layer (the last:
                                      # weights, scale, bias) + format_version, meta, checksum
MAX_DIRECTORY_BYTES = MAX_MEMBERS * 1024  # zip central directory (46 bytes + name + extras each)
MAX_META_CHARS = 1 << 20              # the meta JSON text
MAX_META_DEPTH = 32                   # nesting of [ and { in meta (a model uses 3)
MAX_CLASS_NAME_CHARS = 100
MAX_DESCRIPTION_CHARS = 1 << 16

_EOCD_SIZE = 22                       # zip end-of-central-directory record without comment
_MAX_NPY_HEADER = 10_000              # numpy's own default limit for .npy headers
_MEMBER_NAME = re.compile(r"(?:format_version|meta|checksum|(?:conv|fc)[1-9][0-9]?\."
                          r"(?:weights|thresholds|directions|scale|bias))\.npy")
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_META_KEYS = frozenset({"network", "class_names", "input", "description", "training"})
_NETWORK_KEYS = ("conv_channels", "pool_after", "fc_units", "n_classes", "image_size")

__all__ = ["Params", "LayerParams", "load_params", "save_params", "ParamsError", "FORMAT_VERSION"]


@dataclass
class LayerParams:
    """Weights and (for all but the last layer) folded thresholds of one layer."""

    weights: np.ndarray
    thresholds: Optional[np.ndarray] = None
    directions: Optional[np.ndarray] = None


@dataclass
class Params:
    """A complete model: topology, per-layer parameters, output affine and class names."""

    network: Network
    class_names: Tuple[str, ...]
    layers: Dict[str, LayerParams]
    out_scale: np.ndarray
    out_bias: np.ndarray
    description: str = ""
    training: dict = field(default_factory=dict)

    def __post_init__(self):
        self.class_names = tuple(self.class_names)
        validate(self)

    @property
    def checksum(self) -> str:
        """sha256 (hex) of the content, as stored in the file."""
        return _checksum(_to_arrays(self))

    def layer(self, name: str) -> LayerParams:
        return self.layers[name]


# ----------------------------------------------------------------------------- validation

def _expect(cond: bool, name: str, problem: str) -> None:
    if not cond:
        raise ParamsError(f"{name}: {problem}")


def _check_array(a, name: str, dtype, shape) -> np.ndarray:
    """``a``, checked (and so typed) as an array of that dtype and shape."""
    _expect(isinstance(a, np.ndarray), name, f"expected a numpy array, got {type(a).__name__}")
    _expect(a.dtype == np.dtype(dtype), name, f"dtype {a.dtype} (expected {np.dtype(dtype)})")
    _expect(tuple(a.shape) == tuple(shape), name,
            f"shape {tuple(a.shape)} (expected {tuple(shape)})")
    return a


def _check_thresholds(lp: LayerParams, layer: Layer) -> None:
    n = layer.out_channels
    t = _check_array(lp.thresholds, f"{layer.name}.thresholds", np.int32, (n,))
    d = _check_array(lp.directions, f"{layer.name}.directions", np.int8, (n,))
    bound = layer.fan_in + 1
    _expect(bool(np.all((t >= -bound) & (t <= bound))), f"{layer.name}.thresholds",
            f"values outside [-{bound}, {bound}]")
    _expect(bool(np.all((d == 1) | (d == -1))), f"{layer.name}.directions",
            "values other than +1/-1")


def validate(p: Params) -> None:
    """Check a Params object against its own topology; raise ParamsError on the first problem."""
    _expect(isinstance(p.network, Network), "meta.network", "not a Network")
    net = p.network
    _expect(len(p.class_names) == net.n_classes, "meta.class_names",
            f"{len(p.class_names)} names for {net.n_classes} classes")
    for i, c in enumerate(p.class_names):
        _expect(isinstance(c, str) and 0 < len(c) <= MAX_CLASS_NAME_CHARS, f"meta.class_names[{i}]",
                f"names must be strings of 1..{MAX_CLASS_NAME_CHARS} characters")
        # printed one per line by the CLI: no newline, tab, escape or other control characters
        _expect(c.isprintable(), f"meta.class_names[{i}]", f"{c!r} has non-printable characters")
    _expect(isinstance(p.description, str) and len(p.description) <= MAX_DESCRIPTION_CHARS,
            "meta.description", f"expected a string of at most {MAX_DESCRIPTION_CHARS} characters")
    _expect(isinstance(p.training, dict), "meta.training", "expected a dict")
    names = {layer.name for layer in net.layers}
    _expect(set(p.layers) == names, "layers",
            f"layer names {sorted(p.layers)} do not match the topology {sorted(names)}")
    for layer in net.layers:
        lp = p.layers[layer.name]
        wname = f"{layer.name}.weights"
        if layer.kind == "conv1":
            _check_array(lp.weights, wname, np.int8, layer.weight_shape)
            _expect(bool(np.all(lp.weights >= -127)), wname, "value -128 (range is [-127, 127])")
        else:
            _check_array(lp.weights, wname, np.uint64, layer.weight_shape)
        if layer.last:
            _expect(lp.thresholds is None and lp.directions is None, layer.name,
                    "the last layer has no thresholds")
        else:
            _check_thresholds(lp, layer)
    for name, a in (("out_scale", p.out_scale), ("out_bias", p.out_bias)):
        key = f"{net.last_layer.name}.{'scale' if name == 'out_scale' else 'bias'}"
        _check_array(a, key, np.float32, (net.n_classes,))
        _expect(bool(np.all(np.isfinite(a))), key, "non-finite values")


# ----------------------------------------------------------------------------- file format

def _meta(p: Params) -> dict:
    return {
        "network": p.network.to_dict(),
        "class_names": list(p.class_names),
        "input": dict(INPUT_NORMALISATION),
        "description": p.description,
        "training": p.training,
    }


def _to_arrays(p: Params) -> Dict[str, np.ndarray]:
    try:
        meta_text = json.dumps(_meta(p), sort_keys=True)
    except (TypeError, ValueError, RecursionError) as e:
        raise ParamsError(f"meta.training: not plain JSON data ({type(e).__name__}: {e})") from None
    arrays = {
        "format_version": np.array(FORMAT_VERSION, dtype=np.int64),
        "meta": np.array(meta_text),
    }
    for layer in p.network.layers:
        lp = p.layers[layer.name]
        arrays[f"{layer.name}.weights"] = lp.weights
        if not layer.last:
            # validate() has checked both are arrays for every layer but the last
            assert lp.thresholds is not None and lp.directions is not None
            arrays[f"{layer.name}.thresholds"] = lp.thresholds
            arrays[f"{layer.name}.directions"] = lp.directions
    last = p.network.last_layer.name
    arrays[f"{last}.scale"] = p.out_scale
    arrays[f"{last}.bias"] = p.out_bias
    return arrays


def _checksum(arrays: Dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for key in sorted(arrays):
        if key == "checksum":
            continue
        a = np.ascontiguousarray(arrays[key])
        if a.dtype.byteorder == ">":
            a = a.astype(a.dtype.newbyteorder("<"))
        h.update(key.encode())
        h.update(a.dtype.str.encode())
        h.update(repr(tuple(a.shape)).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def save_params(p: Params, path) -> str:
    """Write ``p`` to ``path`` (an .npz) and return its checksum.

    The file is written under a fresh name in the target directory (``tempfile.mkstemp``:
    created exclusively, so a symlink or file planted there is never followed or reused),
    then renamed over ``path`` (atomic: a reader sees the old file or the new one). Its
    permissions are those ``open()`` would give a new file (0o666 minus the umask).
    """
    validate(p)
    arrays = _to_arrays(p)
    _parse_meta(str(arrays["meta"]))    # what load_params would refuse is never written
    arrays["checksum"] = np.array(_checksum(arrays))
    path = os.fspath(path)
    directory, name = os.path.split(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
    try:
        try:
            os.fchmod(fd, 0o666 & ~_umask())
        except (OSError, AttributeError):  # AttributeError: no fchmod (Windows)
            pass
        with os.fdopen(fd, "wb") as f:
            # mypy matches **arrays against savez_compressed's allow_pickle: bool as well
            np.savez_compressed(f, **arrays)  # type: ignore[arg-type]
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return str(arrays["checksum"])


def _umask() -> int:
    """The process umask, read without changing it where Linux says it (/proc)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


# ----------------------------------------------------------------------------- reading

def _check_zip_directory(f, size: int, path: str) -> None:
    """Refuse an archive whose end record declares too many members or too large a central
    directory, before zipfile parses that directory (200,000 members must fail fast)."""
    tail_len = min(size, _EOCD_SIZE + 0xFFFF)
    f.seek(size - tail_len)
    tail = f.read(tail_len)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < _EOCD_SIZE:
        raise ParamsError(f"{path}: not an .npz archive (no zip end record)")
    fields = struct.unpack("<4s4H2LH", tail[at:at + _EOCD_SIZE])
    counts, dir_sizes = [fields[4]], [fields[5]]
    loc = at - 20
    if loc >= 0 and tail[loc:loc + 4] == b"PK\x06\x07" and loc - 56 >= 0:
        rec = tail[loc - 56:loc]       # the zip64 end record zipfile will use
        if rec[:4] == b"PK\x06\x06":
            z64 = struct.unpack("<4sQ2H2L4Q", rec)
            counts.append(z64[7])
            dir_sizes.append(z64[8])
    if max(counts) > MAX_MEMBERS:
        raise ParamsError(f"{path}: the archive declares {max(counts)} members; a model has "
                          f"at most {MAX_MEMBERS}")
    if max(dir_sizes) > MAX_DIRECTORY_BYTES:
        raise ParamsError(f"{path}: zip central directory of {max(dir_sizes)} bytes is larger "
                          f"than any model's ({MAX_DIRECTORY_BYTES} max)")
    f.seek(0)


def _member_key(info: zipfile.ZipInfo) -> str:
    name = info.filename
    if not _MEMBER_NAME.fullmatch(name):
        raise ParamsError(f"{name!r}: unexpected member (a model holds only format_version, "
                          "meta, checksum and <layer>.<array> entries)")
    if info.flag_bits & 0x1:
        raise ParamsError(f"{name[:-4]}: encrypted zip member")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise ParamsError(f"{name[:-4]}: zip compression method {info.compress_type} refused "
                          "(save_params writes deflate)")
    return name[:-4]


class _Archive:
    """The members of a model file, checked from the central directory before any is
    inflated: names, count, methods and declared sizes (each and in total)."""

    def __init__(self, path: str):
        self.path = path
        self._file = open_regular(path, max_bytes=MAX_FILE_BYTES, what="model",
                                  error=ParamsError)
        try:
            size = os.fstat(self._file.fileno()).st_size
            _check_zip_directory(self._file, size, path)
            try:
                self._zip = zipfile.ZipFile(self._file)
            except Exception as e:  # BadZipFile, bad name encodings, ...: never a traceback
                raise ParamsError(f"{path}: not a readable .npz archive "
                                  f"({type(e).__name__}: {e})") from None
            infos = self._zip.infolist()
            if len(infos) > MAX_MEMBERS:
                raise ParamsError(f"{path}: {len(infos)} members; a model has at most "
                                  f"{MAX_MEMBERS}")
            self.members: Dict[str, zipfile.ZipInfo] = {}
            for info in infos:
                key = _member_key(info)
                if key in self.members:
                    raise ParamsError(f"{key}: duplicate member")
                self.members[key] = info
            total = sum(i.file_size for i in infos)
            if total > MAX_INFLATED_BYTES:
                big = max(infos, key=lambda i: i.file_size)
                raise ParamsError(f"{path}: members declare {total} bytes uncompressed "
                                  f"({big.filename[:-4]}: {big.file_size}); a model inflates to "
                                  f"at most {MAX_INFLATED_BYTES}")
        except BaseException:
            self.close()
            raise
        self.inflated = 0

    def close(self) -> None:
        z = getattr(self, "_zip", None)
        if z is not None:
            z.close()
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def read(self, key: str, max_bytes: int = MAX_INFLATED_BYTES) -> np.ndarray:
        """One member as an array, reading no more than its header declares (and at most
        ``max_bytes``); object arrays are refused from the header, never unpickled."""
        _expect(key in self.members, key, "missing")
        info = self.members[key]
        _expect(info.file_size <= max_bytes, key,
                f"declared size {info.file_size} bytes exceeds the limit of {max_bytes}")
        try:
            with self._zip.open(info) as f:
                shape, fortran, dtype, header_bytes = _read_npy_header(f, key)
                count = 1
                for n in shape:  # Python ints: no int64 overflow for absurd shapes
                    count *= n
                # (no valid array has more elements than the file has bytes; this also
                # bounds zero-size dtypes)
                _expect(count <= MAX_INFLATED_BYTES, key, f"header declares shape {tuple(shape)}")
                declared = count * dtype.itemsize
                if declared != info.file_size - header_bytes:
                    raise ParamsError(
                        f"{key}: header declares shape {tuple(shape)} {dtype} ({declared} bytes) "
                        f"but the entry holds {info.file_size - header_bytes} bytes")
                # The zip directory may lie too: count what is really inflated.
                self.inflated += declared
                if self.inflated > MAX_INFLATED_BYTES:
                    raise ParamsError(f"{self.path}: inflates to more than "
                                      f"{MAX_INFLATED_BYTES} bytes")
                flat = np.empty(count, dtype=dtype)
                if declared:
                    # a ZipExtFile is a BufferedIOBase (typeshed says IO[bytes]: no readinto)
                    got = cast(io.BufferedIOBase, f).readinto(flat.view(np.uint8).data)
                    if got != declared:
                        raise ParamsError(f"{key}: truncated ({got} of {declared} bytes)")
                if f.read(1):   # also completes the CRC check of the member
                    raise ParamsError(f"{key}: data after the array")
        except ParamsError:
            raise
        except Exception as e:  # corrupt deflate data, CRC mismatch, bad header: never a traceback
            raise ParamsError(f"{key}: corrupt member ({type(e).__name__}: {e})") from None
        if fortran:
            return flat.reshape(shape[::-1]).transpose()
        return flat.reshape(shape)


def _read_npy_header(f, key: str):
    """(shape, fortran_order, dtype, header bytes) of a .npy stream; the header is read with
    a bounded length and parsed by numpy's own (literal-only) parser."""
    prefix = f.read(8)
    if len(prefix) < 8 or prefix[:6] != b"\x93NUMPY":
        raise ParamsError(f"{key}: not a .npy array")
    version = (prefix[6], prefix[7])
    if version == (1, 0):
        size_bytes = f.read(2)
        hlen = int.from_bytes(size_bytes, "little")
    elif version == (2, 0):
        size_bytes = f.read(4)
        hlen = int.from_bytes(size_bytes, "little")
    else:
        raise ParamsError(f"{key}: .npy format version {version} is not supported")
    if hlen > _MAX_NPY_HEADER:
        raise ParamsError(f"{key}: .npy header of {hlen} bytes (at most {_MAX_NPY_HEADER})")
    header = f.read(hlen)
    if len(header) != hlen:
        raise ParamsError(f"{key}: truncated .npy header")
    fmt = np.lib.format
    buf = io.BytesIO(prefix + size_bytes + header)
    fmt.read_magic(buf)
    reader = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
    try:
        shape, fortran, dtype = reader(buf)
    except ValueError as e:
        raise ParamsError(f"{key}: bad .npy header ({e})") from None
    if dtype.hasobject:
        raise ParamsError(f"{key}: refused: object arrays are never unpickled")
    return tuple(int(n) for n in shape), bool(fortran), dtype, len(prefix) + len(size_bytes) + hlen


# ----------------------------------------------------------------------------- meta schema

class _BadNumber:
    """What the json hooks put where a number cannot be used (``NaN``, ``Infinity``, a float
    that overflows, an absurdly long integer), so that the error can name the field."""

    def __init__(self, problem: str):
        self.problem = problem

    def __repr__(self):
        return self.problem


def _constant(name: str):
    return _BadNumber(f"{name} (not a finite number)")


def _finite_float(text: str):
    v = float(text)
    return v if math.isfinite(v) else _BadNumber(f"{text[:40]} (overflows a float)")


def _bounded_int(text: str):
    # int() of a long digit string costs quadratic time (Python < 3.11 has no limit)
    if len(text) > 21:
        return _BadNumber(f"an integer of {len(text)} digits")
    return int(text)


def _find_bad_number(v, where: str) -> None:
    """Raise ParamsError at the first _BadNumber in the parsed tree (depth already bounded)."""
    if isinstance(v, _BadNumber):
        raise ParamsError(f"{where}: {v.problem} is not allowed")
    if isinstance(v, dict):
        for k, item in v.items():
            _find_bad_number(item, f"{where}.{k}")
    elif isinstance(v, list):
        for i, item in enumerate(v):
            _find_bad_number(item, f"{where}[{i}]")


def _json_depth(text: str) -> int:
    """Deepest nesting of [ and { outside strings, in linear time (json itself recurses)."""
    stripped = _JSON_STRING.sub("", text).encode("utf-8", "replace")
    b = np.frombuffer(stripped, dtype=np.uint8)
    if not b.size:
        return 0
    step = (np.isin(b, (0x5B, 0x7B)).astype(np.int32) - np.isin(b, (0x5D, 0x7D)).astype(np.int32))
    return int(np.cumsum(step).max())


def _is_int(v) -> bool:
    return type(v) is int    # not bool, not float: 8.9 (or 8.0) is no image size


def _field(ok: bool, name: str, problem: str) -> None:
    if not ok:
        raise ParamsError(f"{name}: {problem}")


def _describe(v) -> str:
    r = repr(v)
    return f"{r[:40]}{'...' if len(r) > 40 else ''} ({type(v).__name__})"


def _int_list(v, name: str) -> list:
    _field(isinstance(v, list), name, f"expected a list of integers, got {_describe(v)}")
    _field(len(v) <= MAX_LAYERS, name, f"{len(v)} entries (at most {MAX_LAYERS} layers)")
    for i, c in enumerate(v):
        _field(_is_int(c), f"{name}[{i}]", f"expected an integer, got {_describe(c)}")
    return v


def _parse_meta(text: str) -> dict:
    """Parse and check the ``meta`` JSON against its schema (docs/FORMAT.md, section 8).

    Length and nesting are bounded before json sees the text; ``NaN``/``Infinity``, floats
    that overflow (``1e400``) and absurd integers are refused while parsing; then every field
    must have its type and range. Raises ParamsError naming the field.
    """
    _field(len(text) <= MAX_META_CHARS, "meta",
           f"{len(text)} characters (at most {MAX_META_CHARS})")
    depth = _json_depth(text)
    _field(depth <= MAX_META_DEPTH, "meta",
           f"nested {depth} levels deep (at most {MAX_META_DEPTH})")
    try:
        meta = json.loads(text, parse_constant=_constant, parse_float=_finite_float,
                          parse_int=_bounded_int)
    except (ValueError, RecursionError) as e:
        raise ParamsError(f"meta: invalid JSON ({e})") from None
    _find_bad_number(meta, "meta")
    _field(isinstance(meta, dict), "meta", f"expected a JSON object, got {_describe(meta)}")
    unknown = sorted(set(meta) - _META_KEYS)
    _field(not unknown, f"meta.{unknown[0] if unknown else ''}", "unknown key")
    for key in ("network", "class_names", "input"):
        _field(key in meta, f"meta.{key}", "missing")
    inp = meta["input"]
    _field(isinstance(inp, dict) and set(inp) == set(INPUT_NORMALISATION)
           and all(_is_int(v) for v in inp.values()) and inp == INPUT_NORMALISATION,
           "meta.input", f"normalisation {_describe(inp)} is not {INPUT_NORMALISATION!r}")
    net = meta["network"]
    _field(isinstance(net, dict), "meta.network", f"expected a JSON object, got {_describe(net)}")
    unknown = sorted(set(net) - set(_NETWORK_KEYS))
    _field(not unknown, f"meta.network.{unknown[0] if unknown else ''}", "unknown key")
    for key in _NETWORK_KEYS[:4]:
        _field(key in net, f"meta.network.{key}", "missing")
    _int_list(net["conv_channels"], "meta.network.conv_channels")
    _int_list(net["fc_units"], "meta.network.fc_units")
    pools = net["pool_after"]
    _field(isinstance(pools, list) and len(pools) <= MAX_LAYERS, "meta.network.pool_after",
           f"expected a list of at most {MAX_LAYERS} booleans, got {_describe(pools)}")
    for i, flag in enumerate(pools):
        _field(type(flag) is bool, f"meta.network.pool_after[{i}]",
               f"expected true or false, got {_describe(flag)}")
    for key in ("n_classes", "image_size"):
        if key in net:
            _field(_is_int(net[key]), f"meta.network.{key}",
                   f"expected an integer, got {_describe(net[key])}")
    names = meta["class_names"]
    _field(isinstance(names, list), "meta.class_names", f"expected a list, got {_describe(names)}")
    for i, c in enumerate(names):
        _field(isinstance(c, str), f"meta.class_names[{i}]",
               f"expected a string, got {_describe(c)}")
    _field(isinstance(meta.get("description", ""), str), "meta.description",
           f"expected a string, got {_describe(meta.get('description'))}")
    _field(isinstance(meta.get("training", {}), dict), "meta.training",
           f"expected a JSON object, got {_describe(meta.get('training'))}")
    return meta


# ----------------------------------------------------------------------------- loading

def _scalar_str(archive: _Archive, key: str, max_chars: int) -> np.ndarray:
    a = archive.read(key, max_bytes=4 * max_chars + _MAX_NPY_HEADER + 16)
    _expect(a.dtype.kind == "U" and a.shape == (), key,
            f"expected a string scalar, got {a.dtype} {a.shape}")
    return a


def load_params(path) -> Params:
    """Load and validate a parameter file.

    Nothing is inflated before the archive's directory passed (names, member count, declared
    sizes against :data:`MAX_MEMBERS`, :data:`MAX_INFLATED_BYTES`), and no array is read
    before ``meta`` passed its schema and the member set matches the topology it declares
    (whose size is bounded by the limits of :mod:`pynq_bnn.spec.network`).

    Raises
    ------
    ParamsError
        The file is missing, not a regular file, too large, not an npz, holds unexpected or
        object members, has the wrong version, a missing or malformed field, a network beyond
        the limits, or a checksum mismatch. The message names the field (or the path).
    """
    path = os.fsdecode(os.fspath(path))
    with _Archive(path) as archive:
        v = archive.read("format_version", max_bytes=1024)
        _expect(v.shape == () and v.dtype.kind in "iu", "format_version",
                "expected an integer scalar")
        _expect(int(v) == FORMAT_VERSION, "format_version",
                f"version {int(v)} is not supported (this pynq-bnn reads version {FORMAT_VERSION})")
        stored = str(_scalar_str(archive, "checksum", 64))
        meta_array = _scalar_str(archive, "meta", MAX_META_CHARS)
        meta = _parse_meta(str(meta_array))
        try:
            net = Network.from_dict(meta["network"])
        except NetworkError as e:
            raise ParamsError(f"meta.network: {e}") from None
        expected = set(_to_arrays_keys(net))
        missing = sorted(expected - set(archive.members))
        _expect(not missing, missing[0] if missing else "", "missing")
        extra = sorted(set(archive.members) - expected - {"checksum"})
        _expect(not extra, extra[0] if extra else "", "unexpected key for this topology")
        arrays = {"format_version": v, "meta": meta_array}
        for key in sorted(expected - set(arrays)):
            arrays[key] = archive.read(key)
    actual = _checksum(arrays)
    _expect(stored == actual, "checksum",
            f"mismatch: file says {stored[:16]}..., content is {actual[:16]}...")
    layers = {}
    for layer in net.layers:
        lp = LayerParams(arrays[f"{layer.name}.weights"])
        if not layer.last:
            lp.thresholds = arrays[f"{layer.name}.thresholds"]
            lp.directions = arrays[f"{layer.name}.directions"]
        layers[layer.name] = lp
    last = net.last_layer.name
    return Params(net, tuple(meta["class_names"]), layers, arrays[f"{last}.scale"],
                  arrays[f"{last}.bias"], meta.get("description", ""), meta.get("training", {}))


def _to_arrays_keys(net: Network):
    yield "format_version"
    yield "meta"
    for layer in net.layers:
        yield f"{layer.name}.weights"
        if not layer.last:
            yield f"{layer.name}.thresholds"
            yield f"{layer.name}.directions"
    yield f"{net.last_layer.name}.scale"
    yield f"{net.last_layer.name}.bias"
