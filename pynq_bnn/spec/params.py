"""The parameter file: load, save, validate (docs/FORMAT.md section 8).

A model is one ``.npz`` read with ``allow_pickle=False``. :func:`load_params` validates every
array against the topology in the file's ``meta`` and the content checksum, and raises
:class:`~pynq_bnn.errors.ParamsError` naming the field and the problem.
"""
from __future__ import annotations

import hashlib
import json
import os
import zipfile
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

import numpy as np

from ..errors import ParamsError
from .network import Layer, Network, NetworkError

FORMAT_VERSION = 1
INPUT_NORMALISATION = {"scale": 2, "offset": -255}  # x = 2*p - 255, docs/FORMAT.md s.6
MAX_FILE_BYTES = 256 * 1024 * 1024  # a full model is ~2 MB; refuse absurd files early
MAX_META_CHARS = 1 << 20

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


def _check_array(a, name: str, dtype, shape) -> None:
    _expect(isinstance(a, np.ndarray), name, f"expected a numpy array, got {type(a).__name__}")
    _expect(a.dtype == np.dtype(dtype), name, f"dtype {a.dtype} (expected {np.dtype(dtype)})")
    _expect(tuple(a.shape) == tuple(shape), name, f"shape {tuple(a.shape)} (expected {tuple(shape)})")


def _check_thresholds(lp: LayerParams, layer: Layer) -> None:
    n = layer.out_channels
    _check_array(lp.thresholds, f"{layer.name}.thresholds", np.int32, (n,))
    _check_array(lp.directions, f"{layer.name}.directions", np.int8, (n,))
    bound = layer.fan_in + 1
    t = lp.thresholds
    _expect(bool(np.all((t >= -bound) & (t <= bound))), f"{layer.name}.thresholds",
            f"values outside [-{bound}, {bound}]")
    d = lp.directions
    _expect(bool(np.all((d == 1) | (d == -1))), f"{layer.name}.directions", "values other than +1/-1")


def validate(p: Params) -> None:
    """Check a Params object against its own topology; raise ParamsError on the first problem."""
    _expect(isinstance(p.network, Network), "meta.network", "not a Network")
    net = p.network
    _expect(len(p.class_names) == net.n_classes, "meta.class_names",
            f"{len(p.class_names)} names for {net.n_classes} classes")
    _expect(all(isinstance(c, str) and c for c in p.class_names), "meta.class_names",
            "names must be non-empty strings")
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
    arrays = {
        "format_version": np.array(FORMAT_VERSION, dtype=np.int64),
        "meta": np.array(json.dumps(_meta(p), sort_keys=True)),
    }
    for layer in p.network.layers:
        lp = p.layers[layer.name]
        arrays[f"{layer.name}.weights"] = lp.weights
        if not layer.last:
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
    """Write ``p`` to ``path`` (an .npz) and return its checksum."""
    validate(p)
    arrays = _to_arrays(p)
    arrays["checksum"] = np.array(_checksum(arrays))
    path = os.fspath(path)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)
    os.replace(tmp, path)
    return str(arrays["checksum"])


def _check_npy_header(zf: zipfile.ZipFile, info: zipfile.ZipInfo, key: str) -> None:
    """Refuse an entry whose .npy header declares more data than the entry holds.

    numpy allocates the whole declared array before it reads a byte of an entry in a zip
    (``numpy.lib.format.read_array`` on a non-file object), so a few bytes claiming shape
    ``(2**40,)`` would ask for a terabyte. The header is read here first; the declared size
    must fit in the entry's uncompressed size (itself bounded by MAX_FILE_BYTES, and enforced
    by zipfile while reading).
    """
    fmt = np.lib.format
    with zf.open(info) as f:
        version = fmt.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = fmt.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, _, dtype = fmt.read_array_header_2_0(f)
        else:
            raise ParamsError(f"{key}: .npy format version {version} is not supported")
        header_bytes = f.tell()
    count = 1
    for n in shape:  # Python ints: no int64 overflow for absurd shapes
        count *= int(n)
    declared = count * dtype.itemsize
    if declared > info.file_size - header_bytes:
        raise ParamsError(f"{key}: header declares shape {tuple(shape)} {dtype} ({declared} bytes) "
                          f"but the entry holds {info.file_size - header_bytes} bytes")


def _read_arrays(path: str) -> Dict[str, np.ndarray]:
    try:
        size = os.path.getsize(path)
    except OSError as e:
        raise ParamsError(f"{path}: cannot read ({e.strerror or e})") from None
    if size > MAX_FILE_BYTES:
        raise ParamsError(f"{path}: {size} bytes is larger than any model ({MAX_FILE_BYTES} max)")
    arrays = {}
    try:
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise ParamsError(f"{path}: not an .npz archive")
        with z:
            for key in z.files:
                info = z.zip.getinfo(key + ".npy")
                if info.file_size > MAX_FILE_BYTES:
                    raise ParamsError(f"{key}: declared size {info.file_size} bytes is absurd")
                _check_npy_header(z.zip, info, key)
                arrays[key] = z[key]
    except ParamsError:
        raise
    except ValueError as e:
        # numpy raises ValueError for object arrays with allow_pickle=False
        raise ParamsError(f"{path}: refused ({e})") from None
    except (OSError, EOFError, zipfile.BadZipFile, KeyError, zipfile.LargeZipFile) as e:
        raise ParamsError(f"{path}: not a readable .npz archive ({e})") from None
    except Exception as e:  # any other parse failure of corrupt data: never a raw traceback
        raise ParamsError(f"{path}: corrupt archive ({type(e).__name__}: {e})") from None
    return arrays


def _scalar_str(arrays, key: str) -> str:
    _expect(key in arrays, key, "missing")
    a = arrays[key]
    _expect(a.dtype.kind == "U" and a.shape == (), key, f"expected a string scalar, got {a.dtype} {a.shape}")
    return str(a)


def load_params(path) -> Params:
    """Load and validate a parameter file.

    Raises
    ------
    ParamsError
        The file is missing, not an npz, holds object arrays, has the wrong version, a missing
        or malformed field, or a checksum mismatch. The message names the field.
    """
    path = os.fspath(path)
    arrays = _read_arrays(path)
    _expect("format_version" in arrays, "format_version", "missing")
    v = arrays["format_version"]
    _expect(v.shape == () and v.dtype.kind in "iu", "format_version", "expected an integer scalar")
    _expect(int(v) == FORMAT_VERSION, "format_version",
            f"version {int(v)} is not supported (this pynq-bnn reads version {FORMAT_VERSION})")
    stored = _scalar_str(arrays, "checksum")
    actual = _checksum(arrays)
    _expect(stored == actual, "checksum", f"mismatch: file says {stored[:16]}..., content is {actual[:16]}...")
    meta_text = _scalar_str(arrays, "meta")
    _expect(len(meta_text) <= MAX_META_CHARS, "meta", "too long")
    try:
        meta = json.loads(meta_text)
    except ValueError as e:
        raise ParamsError(f"meta: invalid JSON ({e})") from None
    _expect(isinstance(meta, dict), "meta", "expected a JSON object")
    _expect(meta.get("input") == INPUT_NORMALISATION, "meta.input",
            f"normalisation {meta.get('input')!r} is not {INPUT_NORMALISATION!r}")
    try:
        net = Network.from_dict(meta.get("network") or {})
    except NetworkError as e:
        raise ParamsError(f"meta.network: {e}") from None
    names = meta.get("class_names")
    _expect(isinstance(names, list), "meta.class_names", "expected a list")
    expected = set(_to_arrays_keys(net))
    missing = sorted(expected - set(arrays))
    _expect(not missing, missing[0] if missing else "", "missing")
    extra = sorted(set(arrays) - expected - {"checksum"})
    _expect(not extra, extra[0] if extra else "", "unexpected key for this topology")
    layers = {}
    for layer in net.layers:
        lp = LayerParams(arrays[f"{layer.name}.weights"])
        if not layer.last:
            lp.thresholds = arrays[f"{layer.name}.thresholds"]
            lp.directions = arrays[f"{layer.name}.directions"]
        layers[layer.name] = lp
    last = net.last_layer.name
    training = meta.get("training", {})
    description = meta.get("description", "")
    _expect(isinstance(training, dict), "meta.training", "expected a JSON object")
    _expect(isinstance(description, str), "meta.description", "expected a string")
    return Params(net, tuple(names), layers, arrays[f"{last}.scale"], arrays[f"{last}.bias"],
                  description, training)


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
