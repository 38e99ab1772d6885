"""Parameter file: round trip, and every corruption raises ParamsError naming the field."""
import json
import zipfile

import numpy as np
import pytest

from pynq_bnn import ParamsError, load_params, save_params
from pynq_bnn.spec.network import Network
from pynq_bnn.spec.params import _checksum
from pynq_bnn.testing import random_params

NET = Network(conv_channels=(64, 64, 128), pool_after=(False, True, True), fc_units=(64,),
              n_classes=10, image_size=8)


@pytest.fixture(scope="module")
def params():
    return random_params(NET, seed=1)


@pytest.fixture
def good_file(params, tmp_path):
    path = tmp_path / "model.npz"
    save_params(params, path)
    return path


def _arrays(path):
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _write(path, arrays, fix_checksum=True):
    if fix_checksum:
        arrays["checksum"] = np.array(_checksum(arrays))
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


def test_round_trip_is_exact(params, good_file):
    loaded = load_params(good_file)
    assert loaded.network == params.network
    assert loaded.class_names == params.class_names
    assert loaded.checksum == params.checksum
    for name, lp in params.layers.items():
        other = loaded.layers[name]
        np.testing.assert_array_equal(other.weights, lp.weights)
        assert other.weights.dtype == lp.weights.dtype
        if lp.thresholds is not None:
            np.testing.assert_array_equal(other.thresholds, lp.thresholds)
            np.testing.assert_array_equal(other.directions, lp.directions)
    np.testing.assert_array_equal(loaded.out_scale, params.out_scale)
    np.testing.assert_array_equal(loaded.out_bias, params.out_bias)


def test_full_network_round_trip(tmp_path):
    p = random_params(Network.full(), seed=2)
    save_params(p, tmp_path / "full.npz")
    assert load_params(tmp_path / "full.npz").checksum == p.checksum


def test_missing_file(tmp_path):
    with pytest.raises(ParamsError, match="cannot read"):
        load_params(tmp_path / "nope.npz")


def test_directory(tmp_path):
    with pytest.raises(ParamsError):
        load_params(tmp_path)


def test_not_an_npz(tmp_path):
    (tmp_path / "x.npz").write_text("hello")
    with pytest.raises(ParamsError):
        load_params(tmp_path / "x.npz")


def test_plain_npy_refused(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros(3))
    with pytest.raises(ParamsError, match="not an .npz"):
        load_params(tmp_path / "x.npy")


def test_truncated_everywhere(good_file, tmp_path):
    data = good_file.read_bytes()
    cut = tmp_path / "cut.npz"
    for n in list(range(0, len(data), 1024)) + [len(data) - 1]:
        cut.write_bytes(data[:n])
        with pytest.raises(ParamsError):
            load_params(cut)


@pytest.mark.parametrize("key", ["format_version", "meta", "checksum", "conv1.weights",
                                 "conv2.thresholds", "conv3.directions", "fc2.weights",
                                 "fc2.scale", "fc2.bias"])
def test_missing_key(good_file, tmp_path, key):
    arrays = _arrays(good_file)
    del arrays[key]
    path = _write(tmp_path / "m.npz", arrays, fix_checksum=key != "checksum")
    with pytest.raises(ParamsError, match=key.split(".")[0]):
        load_params(path)


def test_every_array_field_corrupted_in_turn(good_file, tmp_path):
    """Wrong shape, wrong dtype for every array field: each names the field."""
    arrays = _arrays(good_file)
    for key in sorted(arrays):
        if key in ("checksum", "meta", "format_version"):
            continue
        for bad in (arrays[key].reshape(-1)[:-1], arrays[key].astype(np.float64)):
            broken = dict(arrays)
            broken[key] = bad
            path = _write(tmp_path / "c.npz", broken)
            with pytest.raises(ParamsError, match=key.replace(".", r"\.")):
                load_params(path)


@pytest.mark.parametrize("key,value,match", [
    ("conv2.directions", 0, "directions"),
    ("conv2.thresholds", 10**6, "thresholds"),
    ("conv1.weights", -128, "conv1.weights"),
    ("fc2.scale", np.nan, "fc2.scale"),
])
def test_out_of_range_values(good_file, tmp_path, key, value, match):
    arrays = _arrays(good_file)
    arrays[key] = arrays[key].copy()
    arrays[key].reshape(-1)[0] = value
    with pytest.raises(ParamsError, match=match):
        load_params(_write(tmp_path / "r.npz", arrays))


def test_object_array_never_unpickled(good_file, tmp_path):
    arrays = _arrays(good_file)
    arrays["conv1.weights"] = np.array([object()], dtype=object)
    with open(tmp_path / "o.npz", "wb") as f:
        np.savez(f, **arrays)
    with pytest.raises(ParamsError, match="refused"):
        load_params(tmp_path / "o.npz")


def test_wrong_version(good_file, tmp_path):
    arrays = _arrays(good_file)
    arrays["format_version"] = np.array(2, dtype=np.int64)
    with pytest.raises(ParamsError, match="format_version.*version 2"):
        load_params(_write(tmp_path / "v.npz", arrays))


def test_checksum_mismatch(good_file, tmp_path):
    arrays = _arrays(good_file)
    arrays["fc1.weights"] = arrays["fc1.weights"] ^ np.uint64(1)
    with pytest.raises(ParamsError, match="checksum"):
        load_params(_write(tmp_path / "k.npz", arrays, fix_checksum=False))


def test_other_topology(good_file, tmp_path):
    arrays = _arrays(good_file)
    meta = json.loads(str(arrays["meta"]))
    meta["network"]["conv_channels"] = [64, 128, 128]
    arrays["meta"] = np.array(json.dumps(meta))
    with pytest.raises(ParamsError, match="conv2.weights"):
        load_params(_write(tmp_path / "t.npz", arrays))


@pytest.mark.parametrize("mutate,match", [
    (lambda m: m.update(input={"scale": 1, "offset": 0}), "meta.input"),
    (lambda m: m["network"].update(conv_channels=[64, 65, 128]), "meta.network"),
    (lambda m: m.update(class_names=["a"]), "class_names"),
    (lambda m: m.pop("network"), "meta.network"),
])
def test_bad_meta(good_file, tmp_path, mutate, match):
    arrays = _arrays(good_file)
    meta = json.loads(str(arrays["meta"]))
    mutate(meta)
    arrays["meta"] = np.array(json.dumps(meta))
    with pytest.raises(ParamsError, match=match):
        load_params(_write(tmp_path / "b.npz", arrays))


def test_meta_not_json(good_file, tmp_path):
    arrays = _arrays(good_file)
    arrays["meta"] = np.array("{not json")
    with pytest.raises(ParamsError, match="meta: invalid JSON"):
        load_params(_write(tmp_path / "j.npz", arrays))


def test_absurd_declared_size(good_file, tmp_path):
    """A zip entry that claims a huge uncompressed size is refused before it is read."""
    src = zipfile.ZipFile(good_file)
    out = tmp_path / "huge.npz"
    with zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, src.read(info))
    src.close()
    data = bytearray(out.read_bytes())
    # patch the central directory's uncompressed size of the first entry to 4 GB - 1
    first = data.find(b"PK\x01\x02")
    data[first + 24:first + 28] = (0xFFFFFFF0).to_bytes(4, "little")
    out.write_bytes(bytes(data))
    with pytest.raises(ParamsError, match=r"members declare \d+ bytes uncompressed "
                                          r"\(format_version: 4294967280\); a model inflates"):
        load_params(out)
