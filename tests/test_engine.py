"""The native CPU engine (pynq_bnn.backends.cpu.engine) against the spec (pynq_bnn.spec.reference).

Every comparison is exact integer equality. Each popcount path this CPU supports is forced in
turn (argument and PYNQ_BNN_ISA), with 1, 2 and 3 threads; the numpy fallback is checked too.
No timing assertions here: benchmarks/bench_cpu_engine.py measures speed.
"""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pynq_bnn import Network
from pynq_bnn.backends.cpu import engine
from pynq_bnn.errors import BackendUnavailable, BnnError, ClosedError, ImageError
from pynq_bnn.host.layer1 import FirstLayer
from pynq_bnn.spec import reference
from pynq_bnn.spec.first_layer import conv1_packed
from pynq_bnn.testing import random_images, random_params

NATIVE = engine.native_available()
ISAS = engine.supported_isas()
needs_native = pytest.mark.skipif(not NATIVE, reason="native engine not built")

NARROW64 = Network(conv_channels=(64,) * 6, fc_units=(64, 64), n_classes=10)
# 6x6 input: 3x3 maps (9 pixels, not a multiple of the 4-pixel kernel block), no pool after,
# odd class count (a partial 32-channel block in the last layer).
ODD = Network(conv_channels=(64, 128, 64), pool_after=(False, True, False), fc_units=(128,),
              n_classes=37, image_size=6)
# maps down to 1x1, dense layer straight from the convs, 64 classes.
TINY = Network(conv_channels=(64, 64, 64, 128), pool_after=(False, True, True, True),
               fc_units=(), n_classes=64, image_size=8)
WIDE_IN = Network(conv_channels=(192, 64), pool_after=(False, False), fc_units=(64,),
                  n_classes=2, image_size=4)

_cache = {}


def case(net: Network, n: int, seed: int = 0, fill=None):
    """(params, packed layer-1 output, reference scores), memoised."""
    key = (net, n, seed, fill)
    if key not in _cache:
        images = random_images(n, net.image_size, seed + 100)
        params = random_params(net, seed=seed, images=images[:3], fill=fill)
        packed = conv1_packed(params, images)
        _cache[key] = (params, images, packed, reference.binary_scores(params, packed))
    return _cache[key]


# ------------------------------------------------------------------------------ native engine

@needs_native
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("n", [1, 7, 64])
def test_narrow_net_all_isas(isa, threads, n):
    params, _, packed, ref = case(NARROW64, 64)
    e = engine.Engine(params, threads=threads, isa=isa)
    assert e.available
    np.testing.assert_array_equal(e.binary_scores(packed[:n]), ref[:n])


@needs_native
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("net", [Network.half(), Network.full()], ids=["half", "full"])
def test_half_and_full(isa, threads, net):
    n = 3 if net == Network.full() else 5
    params, _, packed, ref = case(net, n, seed=1)
    e = engine.Engine(params, threads=threads, isa=isa)
    out = e.binary_scores(packed)
    assert out.dtype == np.int32 and out.shape == (n, net.n_classes)
    np.testing.assert_array_equal(out, ref)


@needs_native
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("net", [ODD, TINY, WIDE_IN], ids=["odd", "tiny", "wide_in"])
@pytest.mark.parametrize("threads", [1, 2])
def test_awkward_shapes(isa, net, threads):
    params, _, packed, ref = case(net, 9, seed=2)
    e = engine.Engine(params, threads=threads, isa=isa)
    np.testing.assert_array_equal(e.binary_scores(packed), ref)
    np.testing.assert_array_equal(e.binary_scores(packed[:1]), ref[:1])


@needs_native
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("fill", ["ones", "zeros"])
@pytest.mark.parametrize("net", [NARROW64, Network.half()], ids=["narrow64", "half"])
def test_constant_maps(isa, fill, net):
    params, _, packed, ref = case(net, 4, seed=3, fill=fill)
    e = engine.Engine(params, threads=2, isa=isa)
    np.testing.assert_array_equal(e.binary_scores(packed), ref)


@needs_native
@pytest.mark.parametrize("isa", ISAS)
def test_isa_forced_by_environment(monkeypatch, isa):
    monkeypatch.setenv("PYNQ_BNN_ISA", isa)
    params, _, packed, ref = case(NARROW64, 64)
    e = engine.Engine(params, threads=2)
    assert e.isa == ("avx512-vpopcntdq" if isa == "avx512" else isa)
    np.testing.assert_array_equal(e.binary_scores(packed[:7]), ref[:7])


@needs_native
def test_auto_picks_the_best_isa():
    params, _, _, _ = case(NARROW64, 64)
    e = engine.Engine(params)
    expected = {"avx512": "avx512-vpopcntdq"}.get(ISAS[0], ISAS[0])
    assert e.isa == expected == {"avx512": "avx512-vpopcntdq"}.get(engine.best_isa(),
                                                                    engine.best_isa())
    assert e.threads >= 1


@needs_native
def test_unsupported_or_unknown_isa_is_refused():
    params, _, _, _ = case(NARROW64, 64)
    missing = [i for i in engine.ISA_CODES if i not in ISAS]
    for isa in missing:
        with pytest.raises(BackendUnavailable):
            engine.Engine(params, isa=isa)
    with pytest.raises(ValueError):
        engine.Engine(params, isa="sse9")


@needs_native
def test_engine_is_reusable_across_calls_and_batch_sizes():
    """Workspaces persist between calls: padding borders must stay zero, nothing may leak."""
    params, _, packed, ref = case(NARROW64, 64)
    e = engine.Engine(params, threads=2)
    for sl in (slice(0, 64), slice(5, 6), slice(10, 17), slice(0, 64), slice(63, 64)):
        np.testing.assert_array_equal(e.binary_scores(packed[sl]), ref[sl])
    # more threads than before grows the workspaces
    e.threads = 3
    np.testing.assert_array_equal(e.binary_scores(packed[:5]), ref[:5])


@needs_native
def test_concurrent_callers_share_one_engine():
    params, _, packed, ref = case(NARROW64, 64)
    e = engine.Engine(params, threads=2)
    errors = []

    def work(sl):
        try:
            for _ in range(3):
                np.testing.assert_array_equal(e.binary_scores(packed[sl]), ref[sl])
        except Exception as ex:  # pragma: no cover - reported below
            errors.append(ex)

    ts = [threading.Thread(target=work, args=(slice(i, i + 9),)) for i in (0, 20, 40)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors


@needs_native
def test_input_checks_and_empty_batch():
    params, _, packed, _ = case(NARROW64, 64)
    e = engine.Engine(params, threads=2)
    assert e.binary_scores(packed[:0]).shape == (0, 10)
    with pytest.raises(ValueError):
        e.binary_scores(packed[:, :-1])
    with pytest.raises(ValueError):
        e.binary_scores(packed[0])
    # non-contiguous and big-endian inputs are converted, not misread
    big = packed[:4].astype(">u8")
    np.testing.assert_array_equal(e.binary_scores(big), reference.binary_scores(params, packed[:4]))
    strided = np.concatenate([packed[:4], packed[:4]], axis=-1)[..., ::2]
    np.testing.assert_array_equal(e.binary_scores(strided),
                                  reference.binary_scores(params, strided))


@needs_native
def test_scores_and_predict_end_to_end():
    params, images, _, ref = case(NARROW64, 64)
    e = engine.Engine(params, threads=2)
    np.testing.assert_array_equal(e.scores(images[:8]), reference.scores(params, images[:8]))
    np.testing.assert_array_equal(e.predict(images[:8]), reference.predict(params, ref[:8]))


@st.composite
def topologies(draw):
    n_conv = draw(st.integers(2, 4))
    size = draw(st.sampled_from([2, 4, 6, 8, 12]))
    pools, s = [False], size
    for _ in range(n_conv - 1):
        p = s % 2 == 0 and s > 1 and draw(st.booleans())
        pools.append(p)
        s = s // 2 if p else s
    channels = tuple(draw(st.sampled_from([64, 128, 192])) for _ in range(n_conv))
    fc = tuple(draw(st.sampled_from([64, 128])) for _ in range(draw(st.integers(0, 2))))
    return Network(conv_channels=channels, pool_after=tuple(pools), fc_units=fc,
                   n_classes=draw(st.integers(2, 64)), image_size=size)


@needs_native
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(net=topologies(), n=st.integers(1, 6), seed=st.integers(0, 1000),
       threads=st.integers(1, 3), isa_index=st.integers(0, 10))
def test_random_topologies(net, n, seed, threads, isa_index):
    images = random_images(n, net.image_size, seed)
    params = random_params(net, seed=seed, images=images[:2])
    packed = conv1_packed(params, images)
    isa = ISAS[isa_index % len(ISAS)]
    out = engine.Engine(params, threads=threads, isa=isa).binary_scores(packed)
    np.testing.assert_array_equal(out, reference.binary_scores(params, packed))


@pytest.mark.parametrize("native", [True, False], ids=["native", "numpy"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int64, np.uint32, np.float64, bool])
def test_binary_scores_refuses_words_that_are_not_uint64(native, dtype):
    """Issue 17: uint8/int8/... input was converted silently and gave wrong scores."""
    if native and not NATIVE:
        pytest.skip("native engine not built")
    params, _, packed, _ = case(NARROW64, 64)
    e = engine.Engine(params, threads=2, native=native)
    with pytest.raises(ImageError, match="uint64"):
        e.binary_scores(packed[:2].astype(dtype))
    with pytest.raises(ImageError, match="shape"):
        e.binary_scores(packed[:2, :, :, :0])
    assert issubclass(ImageError, BnnError) and issubclass(ImageError, ValueError)


def test_status_names_what_runs(monkeypatch):
    st = engine.status()
    assert st["native"] is NATIVE and isinstance(st["summary"], str)
    if NATIVE:
        assert st["isa"] in {"avx512-vpopcntdq", "avx2", "neon", "popcnt", "portable"}
        assert st["layer1_isa"] in engine.layer1_isas() and st["library"]
        assert st["reason"] is None and st["supported_isas"] == ISAS
    monkeypatch.setenv("PYNQ_BNN_NATIVE", "0")
    st = engine.status()
    assert not st["native"] and st["isa"] == "numpy fallback"
    assert "PYNQ_BNN_NATIVE" in st["summary"]


@needs_native
def test_engine_close_waits_for_running_calls_and_then_refuses():
    """Issue 17: close() while another thread ran freed the native engine under it (SIGSEGV)."""
    params, _, packed, ref = case(NARROW64, 64)
    for _ in range(5):
        e = engine.Engine(params, threads=2)
        stop, bad, done = threading.Event(), [], []

        def runner():
            while not stop.is_set():
                try:
                    out = e.binary_scores(packed[:7])
                except ClosedError:
                    return
                except Exception as ex:  # pragma: no cover - reported below
                    bad.append(ex)
                    return
                if not np.array_equal(out, ref[:7]):
                    bad.append(AssertionError("wrong scores"))
                done.append(1)

        ts = [threading.Thread(target=runner) for _ in range(4)]
        for t in ts:
            t.start()
        while len(done) < 4:
            time.sleep(0.001)
        e.close()
        stop.set()
        for t in ts:
            t.join(10)
        assert not bad and not any(t.is_alive() for t in ts)
        with pytest.raises(ClosedError):
            e.binary_scores(packed[:1])
        e.close()  # idempotent


def test_cpu_backend_load_and_close_while_other_threads_run():
    """load() swaps the engine and close() frees it while runs are in flight: every run gets
    its scores or a BnnError, never a crash; after close every run is refused."""
    from pynq_bnn.backends.cpu.backend import CpuBackend
    params, _, packed, ref = case(NARROW64, 64)
    for round_ in range(3):
        be = CpuBackend()
        be.load(params)
        stop, bad, ok = threading.Event(), [], []

        def runner():
            while not stop.is_set():
                try:
                    out = be.run(packed[:5])
                except ClosedError:
                    return
                except Exception as ex:  # pragma: no cover - reported below
                    bad.append(ex)
                    return
                if not np.array_equal(out, ref[:5]):
                    bad.append(AssertionError("wrong scores"))
                ok.append(1)

        ts = [threading.Thread(target=runner) for _ in range(4)]
        for t in ts:
            t.start()
        for _ in range(15):
            be.load(params)
        be.close()
        stop.set()
        for t in ts:
            t.join(10)
        assert not bad, bad[:3]
        assert not any(t.is_alive() for t in ts) and ok
        with pytest.raises(ClosedError):
            be.run(packed[:1])
        with pytest.raises(ClosedError):
            be.load(params)


# ------------------------------------------------------------------------------ fallback

@pytest.mark.parametrize("net", [NARROW64, ODD], ids=["narrow64", "odd"])
def test_fallback_when_native_disabled(monkeypatch, caplog, net):
    monkeypatch.setenv("PYNQ_BNN_NATIVE", "0")
    monkeypatch.setattr(engine, "_warned", False)
    params, _, packed, ref = case(net, 7, seed=4)
    with caplog.at_level("WARNING", logger="pynq_bnn.backends.cpu.engine"):
        e = engine.Engine(params)
        engine.Engine(params)
    assert not engine.native_available()
    assert e.available is False and e.isa == engine.FALLBACK_ISA
    assert sum("numpy reference" in r.getMessage() for r in caplog.records) == 1  # once
    np.testing.assert_array_equal(e.binary_scores(packed), ref)
    with pytest.raises(BackendUnavailable):
        engine.Engine(params, isa="portable")


def test_fallback_by_argument():
    params, _, packed, ref = case(NARROW64, 64)
    e = engine.Engine(params, native=False)
    assert not e.available and e.isa == engine.FALLBACK_ISA
    np.testing.assert_array_equal(e.binary_scores(packed[:3]), ref[:3])


def test_missing_library_falls_back(monkeypatch, tmp_path):
    monkeypatch.setattr(engine, "_lib", None)
    monkeypatch.setattr(engine, "_lib_error", None)
    monkeypatch.setattr(engine, "_warned", False)
    monkeypatch.setenv("PYNQ_BNN_ENGINE_LIB", str(tmp_path / "nope.so"))
    params, _, packed, ref = case(NARROW64, 64)
    e = engine.Engine(params)
    assert not e.available
    np.testing.assert_array_equal(e.binary_scores(packed[:2]), ref[:2])
    # later tests get the real library back (monkeypatch restores _lib / _lib_error)


# ------------------------------------------------------------------------------ layer 1

@pytest.mark.parametrize("net", [Network.full(), Network.half(), NARROW64, ODD, WIDE_IN],
                         ids=["full", "half", "narrow64", "odd", "wide_in"])
@pytest.mark.parametrize("chunk,threads", [(1, 1), (3, 1), (64, 1), (1, 2), (2, 3)])
def test_first_layer_matches_conv1_packed(net, chunk, threads):
    params, images, packed, _ = case(net, 7, seed=5)
    fl = FirstLayer(params, chunk=chunk, threads=threads)
    out = fl(images)
    assert out.dtype == np.uint64 and out.shape == packed.shape
    np.testing.assert_array_equal(out, packed)
    np.testing.assert_array_equal(fl(images[:1]), packed[:1])  # buffers reused, smaller batch


@pytest.mark.parametrize("value", [0, 255, 127, 128])
def test_first_layer_flat_images_and_ties(value):
    """Flat images give many equal sums; thresholds drawn from those sums sit on exact ties."""
    images = np.full((3, 32, 32, 3), value, dtype=np.uint8)
    params = random_params(Network.half(), seed=6, images=images)
    np.testing.assert_array_equal(FirstLayer(params)(images), conv1_packed(params, images))


def test_first_layer_extreme_weights():
    """|sum| at its bound 27*255*127 with thresholds at the clip bound."""
    params = random_params(NARROW64, seed=7)
    lp = params.layers["conv1"]
    lp.weights[:] = 127
    lp.weights[::2] = -127
    bound = 27 * 255 * 127 + 1
    lp.thresholds[:] = np.resize(np.array([bound, -bound, 27 * 255 * 127, -27 * 255 * 127, 0],
                                          dtype=np.int32), lp.thresholds.shape)
    images = np.zeros((2, 32, 32, 3), dtype=np.uint8)
    images[1] = 255
    np.testing.assert_array_equal(FirstLayer(params)(images), conv1_packed(params, images))


def test_first_layer_restores_blas_threads():
    from pynq_bnn.host.layer1 import blas_thread_control
    ctl = blas_thread_control()
    if ctl is None:
        pytest.skip("numpy's BLAS is not an OpenBLAS with a thread control")
    before = ctl[1]()
    params, images, packed, _ = case(NARROW64, 64)
    np.testing.assert_array_equal(FirstLayer(params, blas_threads=1)(images[:3]), packed[:3])
    assert ctl[1]() == before


def test_first_layer_rejects_bad_shape():
    params, images, _, _ = case(NARROW64, 64)
    with pytest.raises(ValueError):
        FirstLayer(params)(images[:, :, :16])


# ------------------------------------------------------------------------------ build hook

def _broken_build(tmp_path):
    import importlib.util
    import os

    from setuptools import Distribution, Extension

    path = os.path.join(os.path.dirname(engine.__file__), "build.py")
    spec = importlib.util.spec_from_file_location("bnn_build_under_test", path)
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    bad = tmp_path / "broken.c"
    bad.write_text("this is not C\n")
    dist = Distribution({"name": "x", "ext_modules": [Extension("x._broken", [str(bad)])]})
    cmd = build.OptionalBuildExt(dist)
    cmd.build_lib = str(tmp_path / "lib")
    cmd.build_temp = str(tmp_path / "tmp")
    cmd.ensure_finalized()
    return build, cmd


def test_failed_native_build_fails_the_install(tmp_path, monkeypatch):
    """Issue 18: a build without the native engine is loud unless explicitly allowed."""
    monkeypatch.delenv("PYNQ_BNN_ALLOW_NO_NATIVE", raising=False)
    build, cmd = _broken_build(tmp_path)
    with pytest.raises(build.NativeBuildError, match="PYNQ_BNN_ALLOW_NO_NATIVE=1"):
        cmd.run()


def test_failed_native_build_is_a_warning_when_allowed(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PYNQ_BNN_ALLOW_NO_NATIVE", "1")
    build, cmd = _broken_build(tmp_path)
    cmd.run()  # must not raise
    assert "native CPU engine was not built" in capsys.readouterr().err


def test_native_build_opt_out_and_sources(monkeypatch):
    import importlib.util
    import os
    path = os.path.join(os.path.dirname(engine.__file__), "build.py")
    spec = importlib.util.spec_from_file_location("bnn_build_under_test2", path)
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    monkeypatch.setenv("PYNQ_BNN_NO_NATIVE", "1")
    assert build.ext_modules() == []
    monkeypatch.delenv("PYNQ_BNN_NO_NATIVE")
    (ext,) = build.ext_modules()
    assert ext.name == build.EXT_NAME
    assert sorted(os.path.basename(s) for s in ext.sources) == ["bnn_engine.c", "bnn_layer1.c",
                                                                  "bnn_resize.c"]
    # no global vector flags: every vector function carries its own target attribute
    assert not [a for a in ext.extra_compile_args if a.startswith(("-march", "-mfpu", "-mavx"))]
