"""Native layer 1 (pynq_bnn.backends.cpu.engine.Layer1, behind pynq_bnn.host.layer1.FirstLayer)
against the spec (pynq_bnn.spec.first_layer.conv1_packed), integer for integer.

Every layer-1 path this CPU runs is forced in turn (x86: avx512-vnni, avx2, portable), on
random networks with 64/128/256 channels and on the awkward inputs: flat all-0 / all-255
images, thresholds equal to actual sums (ties), both directions, constant channels, extreme
weights, borders and corners of small and odd-sized images, odd batch sizes, batch 1 on
several threads, and ``out=`` views of a larger buffer (and refusals of a bad ``out``). The
NEON path is tested under emulation in tests/test_arm_neon.py.
"""
from __future__ import annotations

import subprocess
import sys
import threading

import numpy as np
import pytest

from pynq_bnn import Network
from pynq_bnn.backends.cpu import engine
from pynq_bnn.errors import BackendUnavailable, ClosedError, ImageError
from pynq_bnn.host.layer1 import FirstLayer
from pynq_bnn.spec.first_layer import conv1_packed
from pynq_bnn.testing import random_images, random_params

NATIVE = engine.native_available()
L1_ISAS = engine.layer1_isas()
needs_native = pytest.mark.skipif(not NATIVE, reason="native engine not built")
# the native paths, plus the numpy path (FirstLayer(native=False)) as one more "ISA"
PATHS = L1_ISAS + ["numpy"]


def net(c1: int = 128, size: int = 32) -> Network:
    return Network(conv_channels=(c1, 64), pool_after=(False, False), fc_units=(),
                   n_classes=2, image_size=size)


def layer(params, path: str, threads: int = 1) -> FirstLayer:
    if path == "numpy":
        fl = FirstLayer(params, threads=threads, native=False)
        assert not fl.native and fl.isa == "numpy"
        return fl
    fl = FirstLayer(params, threads=threads, isa=path)
    assert fl.native and fl.isa == path
    return fl


_cases = {}


def random_case(c1: int):
    """(params, images, expected) of a random network with c1 layer-1 channels, memoised."""
    if c1 not in _cases:
        images = random_images(7, 32, seed=c1)
        params = random_params(net(c1), seed=c1 * 7, images=images[:3])
        _cases[c1] = (params, images, conv1_packed(params, images))
    return _cases[c1]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("c1", [64, 128, 256])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_random_networks_every_path(path, c1, threads):
    params, images, expected = random_case(c1)
    fl = layer(params, path, threads)
    out = fl(images)
    assert out.dtype == np.uint64 and out.shape == expected.shape and out.flags.c_contiguous
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(fl(images[:1]), expected[:1])     # batch 1
    np.testing.assert_array_equal(fl(images[2:5]), expected[2:5])   # odd batch, reused object


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("value", [0, 255, 127, 128])
def test_flat_images_and_exact_ties(path, value):
    """Flat images: every interior sum equal; the thresholds are drawn from those sums, so
    many channels sit exactly on their threshold; borders and corners have their own sums."""
    images = np.full((3, 32, 32, 3), value, dtype=np.uint8)
    images[2, :, :16] = 255 - value
    params = random_params(net(128), seed=value, images=images)
    np.testing.assert_array_equal(layer(params, path, 2)(images), conv1_packed(params, images))


def _sums(params, images):
    from pynq_bnn.spec.first_layer import conv1_sums
    lp = params.layers["conv1"]
    return conv1_sums(lp.weights, images).astype(np.int64)


@pytest.mark.parametrize("path", PATHS)
def test_thresholds_equal_to_actual_sums_both_directions(path):
    """Each channel's threshold is the sum at a chosen pixel (a corner, an edge, the centre),
    with both directions: the rule's >= / <= boundary is hit exactly everywhere."""
    images = random_images(4, 32, seed=1)
    params = random_params(net(128), seed=2, images=images)
    lp = params.layers["conv1"]
    s = _sums(params, images)
    where = [(0, 0, 0), (1, 31, 31), (2, 0, 17), (3, 16, 16), (0, 31, 0), (1, 5, 31)]
    for c in range(128):
        n, y, x = where[c % len(where)]
        lp.thresholds[c] = s[n, y, x, c] + (c // len(where)) % 3 - 1   # T - 1, T, T + 1
    lp.directions[:] = np.where(np.arange(128) % 2 == 0, 1, -1)
    np.testing.assert_array_equal(layer(params, path)(images), conv1_packed(params, images))


@pytest.mark.parametrize("path", PATHS)
def test_extreme_weights_and_constant_channels(path):
    """|sum| at its bound 27*255*127; thresholds at the clip bounds (constant channels: always
    1 / always 0) and at +-bound exactly."""
    params = random_params(net(64), seed=7)
    lp = params.layers["conv1"]
    lp.weights[:] = 127
    lp.weights[::2] = -127
    lp.weights[1::4, 1] = 0
    bound = 27 * 255 * 127
    lp.thresholds[:] = np.resize(np.array([bound + 1, -bound - 1, bound, -bound, 0, 1, -1],
                                          dtype=np.int32), 64)
    lp.directions[:] = np.resize(np.array([1, -1, -1], dtype=np.int8), 64)
    images = np.zeros((3, 32, 32, 3), dtype=np.uint8)
    images[1] = 255
    images[2, ::2] = 255
    np.testing.assert_array_equal(layer(params, path)(images), conv1_packed(params, images))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("size", [1, 2, 3, 5, 6, 7])
def test_small_and_odd_sizes_borders_and_corners(path, size):
    images = random_images(3, size, seed=size)
    images[0] = 255
    params = random_params(net(64, size), seed=size, images=images)
    for threads in (1, 2):
        np.testing.assert_array_equal(layer(params, path, threads)(images),
                                      conv1_packed(params, images))


@needs_native
@pytest.mark.parametrize("n", [1, 2, 17])
def test_threads_split_rows_at_every_batch_size(n):
    images = random_images(n, 32, seed=n)
    params = random_params(net(128), seed=n, images=images[:2])
    expected = conv1_packed(params, images)
    for threads in (1, 2, 4, 64):
        np.testing.assert_array_equal(FirstLayer(params, threads=threads)(images), expected)


# ------------------------------------------------------------------------------ out=

@pytest.mark.parametrize("path", PATHS)
def test_out_is_written_in_place_in_a_view_of_a_larger_buffer(path):
    images = random_images(3, 32, seed=4)
    params = random_params(net(128), seed=4, images=images)
    expected = conv1_packed(params, images)
    buf = np.full((8, 32, 32, 2), 0xDEADBEEF, dtype=np.uint64)
    view = buf[2:5]
    got = layer(params, path)(images, out=view)
    assert got is view
    np.testing.assert_array_equal(buf[2:5], expected)
    assert (buf[:2] == 0xDEADBEEF).all() and (buf[5:] == 0xDEADBEEF).all()
    flat = np.zeros(3 * 32 * 32 * 2 + 1, dtype=np.uint64)   # a reshaped slice of a flat buffer
    out = flat[1:].reshape(3, 32, 32, 2)
    layer(params, path)(images, out=out)
    np.testing.assert_array_equal(out, expected)
    assert flat[0] == 0


@pytest.mark.parametrize("path", PATHS)
def test_bad_out_is_refused_with_a_clear_error(path):
    images = random_images(2, 32, seed=5)
    params = random_params(net(128), seed=5, images=images)
    fl = layer(params, path)
    good = (2, 32, 32, 2)
    bad = [
        (np.zeros(good, dtype=np.uint32), "dtype"),
        (np.zeros(good, dtype=np.int64), "dtype"),
        (np.zeros(good, dtype=">u8"), "dtype"),
        (np.zeros((3, 32, 32, 2), dtype=np.uint64), "shape"),
        (np.zeros((2, 32, 32, 4), dtype=np.uint64), "shape"),
        (np.zeros((4, 32, 32, 2), dtype=np.uint64)[::2], "contiguous"),
        (np.zeros((2, 32, 32, 4), dtype=np.uint64)[..., :2], "contiguous"),
        (np.zeros(good, dtype=np.uint64).tolist(), "numpy"),
    ]
    ro = np.zeros(good, dtype=np.uint64)
    ro.flags.writeable = False
    bad.append((ro, "read-only"))
    raw = np.zeros(2 * 32 * 32 * 2 * 8 + 1, dtype=np.uint8)
    bad.append((raw[1:].view(np.uint64).reshape(good), "aligned"))
    for out, word in bad:
        with pytest.raises(ImageError, match=word):
            fl(images, out=out)
        assert issubclass(ImageError, ValueError)


@pytest.mark.parametrize("path", PATHS)
def test_bad_images_are_refused(path):
    params = random_params(net(64), seed=6)
    fl = layer(params, path)
    images = random_images(2, 32, seed=6)
    for x, word in [(images.astype(np.float32), "uint8"), (images.astype(np.int16), "uint8"),
                    (images[:, :16], "shape"), (images[0], "shape"), (images[..., :2], "shape")]:
        with pytest.raises(ImageError, match=word):
            fl(x)
    # non-contiguous uint8 input is fine (copied), empty batch too
    np.testing.assert_array_equal(fl(images[:, ::-1]), conv1_packed(params, images[:, ::-1]))
    assert fl(images[:0]).shape == (0, 32, 32, 1)


# ------------------------------------------------------------------------------ selection

def test_fallback_when_native_disabled(monkeypatch):
    monkeypatch.setenv("PYNQ_BNN_NATIVE", "0")
    params = random_params(net(64), seed=8)
    fl = FirstLayer(params, threads=2)
    assert not fl.native and fl.isa == "numpy"
    images = random_images(3, 32, seed=8)
    np.testing.assert_array_equal(fl(images), conv1_packed(params, images))
    with pytest.raises(BackendUnavailable):
        FirstLayer(params, native=True)
    with pytest.raises(BackendUnavailable):
        FirstLayer(params, isa="portable")


@needs_native
def test_default_is_the_best_path_and_isa_env_forces_one(monkeypatch):
    params = random_params(net(64), seed=9)
    assert FirstLayer(params).isa == L1_ISAS[0] == engine.status()["layer1_isa"]
    monkeypatch.setenv("PYNQ_BNN_ISA", "portable")
    assert FirstLayer(params).isa == "portable"
    monkeypatch.setenv("PYNQ_BNN_ISA", "popcnt")   # layer 1 has no popcount: its portable path
    assert FirstLayer(params).isa == "portable"
    for isa in ("avx512", "avx2", "neon"):
        if isa not in [i.split("-")[0] for i in L1_ISAS]:
            with pytest.raises(BackendUnavailable):
                FirstLayer(params, isa=isa)
    with pytest.raises(ValueError):
        FirstLayer(params, isa="sse9")


@needs_native
def test_concurrent_calls_and_close():
    images = random_images(9, 32, seed=10)
    params = random_params(net(128), seed=10, images=images[:2])
    expected = conv1_packed(params, images)
    fl = FirstLayer(params, threads=2)
    errors = []

    def work(a, b):
        try:
            for _ in range(5):
                np.testing.assert_array_equal(fl(images[a:b]), expected[a:b])
        except Exception as ex:  # pragma: no cover - reported below
            errors.append(ex)

    ts = [threading.Thread(target=work, args=(i, i + 3)) for i in (0, 3, 6)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors
    fl.close()
    with pytest.raises(ClosedError):
        fl(images[:1])


@needs_native
def test_engine_scores_use_the_native_layer1():
    from pynq_bnn.spec import reference
    n = Network(conv_channels=(64,) * 6, fc_units=(64, 64), n_classes=10)
    images = random_images(5, 32, seed=12)
    params = random_params(n, seed=12, images=images[:2])
    e = engine.Engine(params, threads=2)
    np.testing.assert_array_equal(e.scores(images), reference.scores(params, images))
    assert isinstance(e._first, engine.Layer1)
    e.close()
    with pytest.raises(ClosedError):
        e.scores(images)


def test_backends_do_not_import_host():
    """Dependency direction spec <- backends <- host: the engine must not import host/."""
    code = ("import sys, pynq_bnn.backends.cpu.engine, pynq_bnn.backends.cpu.backend; "
            "bad = [m for m in sys.modules if m.startswith(('pynq_bnn.host', "
            "'pynq_bnn.camera', 'pynq_bnn.tools'))]; print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
