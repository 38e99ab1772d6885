"""pynq_bnn.host.classifier on the cpu and mock backends: reference labels and scores, every input
form, per-item errors, lifecycle."""
import os

import numpy as np
import pytest
from PIL import Image

from helpers import SMALL_32 as SMALL
from pynq_bnn.errors import BnnError, ImageError, ParamsError
from pynq_bnn.host import classifier as clf_mod
from pynq_bnn.host.classifier import STAGES, Classifier, ClassifyResult
from pynq_bnn.resources import SAMPLES_DIR
from pynq_bnn.spec import reference
from pynq_bnn.spec.network import Network
from pynq_bnn.spec.params import save_params
from pynq_bnn.testing import random_images, random_params

BACKENDS = ["cpu", "mock"]
# Small but complete: conv1 on the host, two binary convs with pools, two dense layers.


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    params = random_params(SMALL, seed=3, images=random_images(4, 32, seed=9))
    path = str(tmp_path_factory.mktemp("model") / "small.npz")
    save_params(params, path)
    return params, path


@pytest.fixture(scope="module")
def images():
    return random_images(7, 32, seed=21)


@pytest.fixture(params=BACKENDS)
def clf(request, model):
    c = Classifier(model[1], backend=request.param)
    yield c
    c.close()


def expected(params, imgs):
    ints = reference.scores(params, imgs)
    return ints, reference.affine_scores(params, ints), reference.predict(params, ints)


def check(result, params, imgs):
    ints, affine, labels = expected(params, imgs)
    assert isinstance(result, ClassifyResult)
    assert result.scores.dtype == np.int32
    np.testing.assert_array_equal(result.scores, ints)
    np.testing.assert_array_equal(result.indices, labels)
    np.testing.assert_allclose(result.affine_scores, affine, rtol=0, atol=0)
    assert result.names == [params.class_names[k] for k in labels]
    assert set(STAGES) <= set(result.timings) and "total" in result.timings
    assert all(v >= 0 for v in result.timings.values())


def test_batch_matches_reference(clf, model, images):
    result = clf.classify(images)
    check(result, model[0], images)
    assert result.sources == [f"array #{i}" for i in range(len(images))]
    assert result.backend == clf.backend.name
    assert result.ok.all() and result.n_failed == 0
    top = result.top_scores
    np.testing.assert_array_equal(top, result.affine_scores.max(axis=1))


def test_every_input_form(clf, model, images, tmp_path):
    params = model[0]
    path = str(tmp_path / "img.png")
    Image.fromarray(images[0]).save(path)
    check(clf.classify(path), params, images[:1])
    check(clf.classify(Image.fromarray(images[1])), params, images[1:2])
    check(clf.classify(images[2]), params, images[2:3])
    r = clf.classify([path, Image.fromarray(images[1]), images[2], images[3:5]])
    check(r, params, images[:5])
    assert r.sources == [path, "image #1", "array #2", "array #3[0]", "array #3[1]"]
    p = r[0]
    assert p.ok and p.source == path and p.name == r.names[0] and p.index == r.indices[0]
    assert p.score == r.affine_scores[0].max()
    np.testing.assert_array_equal(p.int_scores, r.scores[0])


def test_resized_inputs_match_the_reference_on_preprocessed_pixels(clf, model):
    big = random_images(2, 64, seed=5)
    from pynq_bnn.host.preprocess import load_images
    _, small = load_images(big)
    check(clf.classify(big), model[0], small)


def test_a_bad_file_in_a_list_keeps_the_others(clf, model, images, tmp_path):
    good = []
    for i in range(3):
        good.append(str(tmp_path / f"g{i}.png"))
        Image.fromarray(images[i]).save(good[-1])
    bad = tmp_path / "bad.png"
    bad.write_text("hello")
    missing = str(tmp_path / "missing.png")
    items = [good[0], str(bad), good[1], missing, good[2]]
    r = clf.classify_many(items)
    assert len(r) == 5 and r.sources == items
    assert list(r.ok) == [True, False, True, False, True] and r.n_failed == 2
    ints, affine, labels = expected(model[0], images[:3])
    np.testing.assert_array_equal(r.scores[[0, 2, 4]], ints)
    np.testing.assert_array_equal(r.indices[[0, 2, 4]], labels)
    assert list(r.indices[[1, 3]]) == [-1, -1]
    assert np.isnan(r.affine_scores[[1, 3]]).all() and r.names[1] is None
    assert str(bad) in str(r.errors[1]) and missing in str(r.errors[3])
    preds = list(r)
    assert [p.ok for p in preds] == [True, False, True, False, True]
    assert isinstance(preds[1].error, ImageError)
    with pytest.raises(ImageError, match="bad.png"):
        clf.classify(items)


def test_classify_many_all_bad_and_empty(clf, tmp_path):
    r = clf.classify_many([str(tmp_path / "x.png"), np.zeros((3, 3), np.uint8)])
    assert list(r.ok) == [False, False] and list(r.indices) == [-1, -1]
    r = clf.classify_many([])
    assert len(r) == 0 and r.scores.shape == (0, 10)


def test_chunking_gives_the_same_result(model, images):
    with Classifier(model[1], backend="cpu", chunk=3) as c:
        check(c.classify(images), model[0], images)


def test_params_object_and_layer1_swap(model, images):
    params = model[0]
    calls = []
    with Classifier(params, backend="cpu") as c:
        assert c.model_path is None
        default = c.layer1

        def counting(x, out=None):
            calls.append(len(x))
            return default(x, out=out)
        c.layer1 = counting
        check(c.classify(images), params, images)
    assert calls == [len(images)]


def test_init_is_lazy_and_close_is_idempotent(model, monkeypatch, images):
    import pynq_bnn.backends as backends
    opened = []
    real = backends.open_backend

    def spy(*a, **kw):
        opened.append(kw.get("name"))
        return real(*a, **kw)
    monkeypatch.setattr(backends, "open_backend", spy)
    c = Classifier(model[1], backend="cpu")
    assert opened == []
    c.classify(images[:1])
    c.classify(images[:1])
    assert opened == ["cpu"]
    c.close()
    c.close()
    with pytest.raises(BnnError, match="closed"):
        c.classify(images[:1])
    with Classifier(model[1], backend="cpu") as c2:
        c2.open()
        be = c2.backend
    assert c2._backend is None
    be.close()  # the backend's own close is idempotent too


def test_describe(model):
    with Classifier(model[1], backend="cpu") as c:
        d = c.describe()
    assert d["model"] == model[1] and d["checksum"] == model[0].checksum
    assert d["class_names"][0] == "airplane" and isinstance(d["backend"], dict)
    assert d["backend"]["reason"] == "backend 'cpu' requested"


def test_auto_backend_says_why(model, monkeypatch):
    import pynq_bnn.backends as backends
    monkeypatch.setattr(backends, "board_status", lambda *a: (False, "pynq is not installed"))
    with Classifier(model[1], backend="auto") as c:
        assert c.backend.name == "cpu"
        assert c.describe()["backend"]["reason"] == "auto: pynq is not installed"


def test_bad_model_file_raises_params_error(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ParamsError, match="bad.npz"):
        Classifier(str(bad), backend="cpu")
    with pytest.raises(ParamsError):
        Classifier(str(tmp_path / "missing.npz"), backend="cpu")
    with pytest.raises(ParamsError, match="expected a path or Params"):
        Classifier(42, backend="cpu")


def test_shipped_models_by_name(monkeypatch, tmp_path):
    from pynq_bnn.host.shipped_models import SHIPPED_MODELS, shipped_model_path
    half = Classifier("cifar10-half", backend="cpu")
    assert half.model_path == shipped_model_path("cifar10-half")
    assert half.network.conv_channels[0] == 64
    assert Classifier("cifar10", backend="cpu").model_path == clf_mod.DEFAULT_MODEL
    with pytest.raises(ParamsError, match="cifar10-full: no such file, and not a shipped model "
                                          r"\(cifar10, cifar10-half\)"):
        Classifier("cifar10-full", backend="cpu")
    # a file of that name in the working directory wins over the shipped model
    monkeypatch.chdir(tmp_path)
    save_params(random_params(Network(conv_channels=(64, 64), pool_after=(False, True),
                                      fc_units=(), n_classes=3, image_size=8), seed=1),
                tmp_path / "cifar10")
    assert Classifier("cifar10", backend="cpu").network.n_classes == 3
    assert set(SHIPPED_MODELS) == {"cifar10", "cifar10-half"}


def test_missing_shipped_model_says_so(monkeypatch, tmp_path):
    monkeypatch.setattr(clf_mod, "DEFAULT_MODEL", str(tmp_path / "cifar10_bnn.npz"))
    with pytest.raises(ParamsError, match="shipped model is missing"):
        Classifier(backend="cpu")


def test_unavailable_backend_raises_on_open(model):
    from pynq_bnn.errors import BackendUnavailable
    c = Classifier(model[1], backend="pynq")  # no board here
    try:
        with pytest.raises(BackendUnavailable):
            c.open()
    finally:
        c.close()


def test_hardware_faults_surface_as_hardware_errors(model, images):
    from pynq_bnn.errors import HardwareError, HardwareTimeout
    with Classifier(model[1], backend="mock", faults={"never_done": True}, timeout=0.2) as c:
        with pytest.raises(HardwareTimeout):
            c.classify(images[:2])
    with Classifier(model[1], backend="mock", faults={"corrupt_output": True}) as c:
        with pytest.raises(HardwareError):
            c.classify(images[:2])


def test_mock_reports_transfer_and_kernel_time(model, images):
    with Classifier(model[1], backend="mock", faults={"latency": 0.05}) as c:
        r = c.classify(images[:3])
    assert r.timings["kernel"] >= 0.05
    assert r.timings["total"] >= sum(r.timings[k] for k in STAGES) * 0.99


def test_bad_chunk():
    with pytest.raises(ValueError):
        Classifier(random_params(SMALL, seed=0), chunk=0)


@pytest.mark.skipif(not os.path.exists(clf_mod.DEFAULT_MODEL), reason="shipped model not built yet")
@pytest.mark.slow
def test_shipped_model_on_the_samples():
    samples = SAMPLES_DIR
    files = sorted(os.path.join(samples, f) for f in os.listdir(samples) if f.endswith(".png"))
    with Classifier(backend="cpu") as c:
        r = c.classify(files)
        assert c.network.n_classes == 10 and len(r) == len(files)
        from pynq_bnn.host.preprocess import load_images
        check(r, c.params, load_images(files)[1])


def test_old_names_still_work_with_a_deprecation_warning(clf, images):
    r = clf.classify(images[:2])
    with pytest.warns(DeprecationWarning,
                      match=r"ClassifyResult\.labels .*ClassifyResult\.indices"):
        assert r.labels is r.indices
    with pytest.warns(DeprecationWarning, match=r"ClassifyResult\.names"):
        assert r.class_names is r.names
    with pytest.warns(DeprecationWarning, match=r"Prediction\.name"):
        assert r[0].label == r[0].name == r.names[0]
    assert clf.class_names[r.indices[0]] == r.names[0]   # the class list keeps its name


def test_top_k_is_the_best_k_by_affine_score(clf, model, images, tmp_path):
    missing = str(tmp_path / "missing.png")
    r = clf.classify_many([images[0], missing, images[1]])
    idx, sc = r.top_k(3)
    assert idx.shape == sc.shape == (3, 3)
    affine = expected(model[0], images[:2])[1]
    for row, a in zip((0, 2), affine):
        order = sorted(range(10), key=lambda k: (-a[k], k))[:3]
        assert list(idx[row]) == order and list(sc[row]) == [a[k] for k in order]
        assert idx[row, 0] == r.indices[row]          # top-1 is the prediction (ties included)
        assert r[row].top(3) == [(k, a[k]) for k in order]
    assert list(idx[1]) == [-1, -1, -1] and np.isnan(sc[1]).all() and r[1].top(3) == []
    assert r.top_k(50)[0].shape == (3, 10)
    with pytest.raises(ValueError):
        r.top_k(0)


class _BrokenFile:
    """A file object whose read raises something preprocess does not expect."""

    name = "broken-stream"

    def read(self, *a):
        raise RuntimeError("device went away")

    def seek(self, *a):
        raise RuntimeError("device went away")

    def tell(self):
        return 0


@pytest.mark.parametrize("bad", [b"raw bytes", "nul\0byte.png", _BrokenFile()],
                         ids=["bytes", "nul-path", "raising-file"])
def test_one_bad_item_costs_one_result(clf, model, images, bad):
    """Issue 17.5: classify_many([img, <bad>, img]) keeps both good results."""
    r = clf.classify_many([images[0], bad, images[1], images[2:4]])
    assert list(r.ok) == [True, False, True, True, True]
    ints, _, labels = expected(model[0], images[:4])
    np.testing.assert_array_equal(r.scores[[0, 2, 3, 4]], ints)
    np.testing.assert_array_equal(r.indices[[0, 2, 3, 4]], labels)
    assert r.sources[0] == "array #0" and r.sources[2] == "array #2"
    assert r.sources[3:] == ["array #3[0]", "array #3[1]"]
    assert isinstance(r.errors[1], ImageError) and r.indices[1] == -1
