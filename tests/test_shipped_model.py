"""The shipped model: every implementation gives the same integer scores on real images.

Training model (PyTorch eval mode, from the committed checkpoint), numpy reference, native CPU
engine (every ISA this machine has), the mock accelerator (numpy kernel and, when built, the
compiled HLS C model) and the Classifier agree score for score. HLS C-simulation of the shipped
model is in tests/test_hls_csim.py.
"""
import os

import numpy as np
import pytest

from pynq_bnn import engine, load_params, reference
from pynq_bnn.backends import open_backend
from pynq_bnn.classifier import Classifier, default_model_path
from pynq_bnn.first_layer import conv1_packed

from conftest import CIFAR_DIR

ROOT = os.path.join(os.path.dirname(__file__), "..")
# the compact eval checkpoint the shipped file was exported from (sign bits + batch norms)
CHECKPOINT = os.path.join(ROOT, "training", "runs", "full", "best_eval.pt")
N_IMAGES = 48


@pytest.fixture(scope="module")
def params():
    return load_params(default_model_path())


@pytest.fixture(scope="module")
def images():
    """Real CIFAR-10 test images (every class) when the data is here, else the shipped samples."""
    path = os.path.join(CIFAR_DIR, "test.npz")
    if os.path.exists(path):
        with np.load(path) as d:
            idx = np.random.default_rng(0).choice(len(d["y"]), N_IMAGES, replace=False)
            return d["x"][np.sort(idx)]
    from pynq_bnn.preprocess import load_images
    samples = os.path.join(ROOT, "pynq_bnn", "samples")
    return load_images(sorted(os.path.join(samples, f) for f in os.listdir(samples)
                              if f.endswith(".png")))


@pytest.fixture(scope="module")
def expected(params, images):
    return reference.scores(params, images)


def test_shipped_model_is_the_trained_topology(params):
    assert params.network.conv_channels == (128, 128, 256, 256, 512, 512)
    assert params.network.fc_units == (1024, 1024)
    assert params.class_names[3] == "cat"
    assert params.training.get("test_acc", 0) >= 0.85


def test_shipped_samples_are_classified_correctly(params):
    with Classifier(backend="cpu") as clf:
        samples = os.path.join(ROOT, "pynq_bnn", "samples")
        files = sorted(f for f in os.listdir(samples) if f.endswith(".png"))
        result = clf.classify([os.path.join(samples, f) for f in files])
    right = sum(name == f[:-4] for name, f in zip(result.class_names, files))
    assert right >= 8, list(zip(files, result.class_names))


@pytest.mark.parametrize("isa", engine.supported_isas() if engine.native_available() else ["reference"])
def test_cpu_engine_matches_reference(params, images, expected, isa):
    eng = engine.Engine(params, isa=None if isa == "reference" else isa,
                        native=isa != "reference")
    np.testing.assert_array_equal(eng.binary_scores(conv1_packed(params, images)), expected)


@pytest.mark.parametrize("kernel", ["reference", "engine", "hls-lib"])
def test_mock_accelerator_matches_reference(params, images, expected, kernel):
    from pynq_bnn import hls_lib
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
    with Classifier(backend="mock", kernel="reference") as clf:
        r = clf.classify(images)
    np.testing.assert_array_equal(r.scores, expected)
    np.testing.assert_array_equal(r.labels, reference.predict(params, expected))


def test_pytorch_eval_mode_matches_reference(params, images, expected):
    pytest.importorskip("torch")
    if not os.path.exists(CHECKPOINT):
        pytest.skip("training checkpoint not in this tree")
    from training.export import load_model, model_to_params
    model, _, _ = load_model(CHECKPOINT)
    # the shipped file is this checkpoint's export ...
    exported = model_to_params(model, params.class_names)
    for name, lp in params.layers.items():
        np.testing.assert_array_equal(exported.layers[name].weights, lp.weights)
    # ... and PyTorch's eval mode computes the reference's integers
    np.testing.assert_array_equal(model.int_scores(images), expected)
