"""The shipped models: every implementation gives the same integer scores on real images.

For each model in pynq_bnn.host.shipped_models.SHIPPED_MODELS: training model (PyTorch eval
mode, from the committed checkpoint), numpy reference, native CPU engine (every ISA this
machine has), the mock accelerator (numpy kernel and, when built, the compiled HLS C model)
and the Classifier agree score for score. HLS C-simulation of both models is in
tests/test_hls_csim.py.
"""
import os

import numpy as np
import pytest

from helpers import CIFAR_DIR
from pynq_bnn import load_params
from pynq_bnn.backends import open_backend
from pynq_bnn.backends.cpu import engine
from pynq_bnn.host.classifier import Classifier, default_model_path
from pynq_bnn.host.shipped_models import SHIPPED_MODELS, shipped_model_path
from pynq_bnn.spec import reference
from pynq_bnn.spec.first_layer import conv1_packed

# Full-size networks on real images through every implementation: ~30 s in all.
pytestmark = pytest.mark.slow

ROOT = os.path.join(os.path.dirname(__file__), "..")
N_IMAGES = 48
# name -> (run folder of the compact eval checkpoint it was exported from, conv channels,
# dense units, least test accuracy (CIFAR-10 test, JPEG copy))
TRAINED = {
    "cifar10": ("full", (128, 128, 256, 256, 512, 512), (1024, 1024), 0.85),
    "cifar10-half": ("half-gpu", (64, 64, 128, 128, 256, 256), (512, 512), 0.82),
}


@pytest.fixture(scope="module", params=sorted(SHIPPED_MODELS))
def model_name(request):
    return request.param


@pytest.fixture(scope="module")
def params(model_name):
    return load_params(shipped_model_path(model_name))


@pytest.fixture(scope="module")
def images():
    """Real CIFAR-10 test images (every class) when the data is here, else the shipped samples."""
    path = os.path.join(CIFAR_DIR, "test.npz")
    if os.path.exists(path):
        with np.load(path) as d:
            idx = np.random.default_rng(0).choice(len(d["y"]), N_IMAGES, replace=False)
            return d["x"][np.sort(idx)]
    from pynq_bnn.host.preprocess import load_images
    samples = os.path.join(ROOT, "pynq_bnn", "samples")
    return load_images(sorted(os.path.join(samples, f) for f in os.listdir(samples)
                              if f.endswith(".png")))[1]


@pytest.fixture(scope="module")
def expected(params, images):
    return reference.scores(params, images)


def test_default_model_is_the_full_network():
    assert Classifier().model_path == default_model_path()
    assert load_params(default_model_path()).network.conv_channels[0] == 128


def test_shipped_model_is_the_trained_topology(model_name, params):
    _, conv, fc, least_acc = TRAINED[model_name]
    assert params.network.conv_channels == conv and params.network.fc_units == fc
    assert params.class_names[3] == "cat"
    assert params.training.get("test_acc", 0) >= least_acc


def test_shipped_samples_are_classified_correctly(model_name):
    with Classifier(model_name, backend="cpu") as clf:
        samples = os.path.join(ROOT, "pynq_bnn", "samples")
        files = sorted(f for f in os.listdir(samples) if f.endswith(".png"))
        result = clf.classify([os.path.join(samples, f) for f in files])
    right = sum(name == f[:-4] for name, f in zip(result.names, files))
    assert right >= 8, list(zip(files, result.names))


@pytest.mark.parametrize("isa", engine.supported_isas() if engine.native_available()
                         else ["reference"])
def test_cpu_engine_matches_reference(params, images, expected, isa):
    eng = engine.Engine(params, isa=None if isa == "reference" else isa,
                        native=isa != "reference")
    np.testing.assert_array_equal(eng.binary_scores(conv1_packed(params, images)), expected)


@pytest.mark.parametrize("kernel", ["reference", "engine", "hls-lib"])
def test_mock_accelerator_matches_reference(params, images, expected, kernel):
    from pynq_bnn.backends.sim import hls_lib
    if kernel == "hls-lib" and hls_lib.load() is None:
        pytest.skip("HLS C-simulation library not built (make -C hls_src lib)")
    if kernel == "engine" and not engine.native_available():
        pytest.skip("native CPU engine not built")
    n = len(images) if kernel == "reference" else 8  # the C model is slow
    with open_backend("mock", kernel=kernel, max_batch=16) as be:
        be.load(params)
        scores = be.run(conv1_packed(params, images[:n]))
    np.testing.assert_array_equal(scores, expected[:n])


def test_classifier_matches_reference(params, images, expected):
    with Classifier(params, backend="mock", kernel="reference") as clf:
        r = clf.classify(images)
    np.testing.assert_array_equal(r.scores, expected)
    np.testing.assert_array_equal(r.indices, reference.predict(params, expected))


@pytest.mark.needs_torch
def test_pytorch_eval_mode_matches_reference(model_name, params, images, expected):
    pytest.importorskip("torch")
    # the compact eval checkpoint the shipped file was exported from (sign bits + batch norms)
    checkpoint = os.path.join(ROOT, "training", "runs", TRAINED[model_name][0], "best_eval.pt")
    if not os.path.exists(checkpoint):
        pytest.skip("training checkpoint not in this tree")
    from training.export import load_model, model_to_params
    model, _, _ = load_model(checkpoint)
    # the shipped file is this checkpoint's export ...
    exported = model_to_params(model, params.class_names)
    for name, lp in params.layers.items():
        np.testing.assert_array_equal(exported.layers[name].weights, lp.weights)
    # ... and PyTorch's eval mode computes the reference's integers
    np.testing.assert_array_equal(model.int_scores(images), expected)
