"""The packed numpy reference against the textbook float model, and the pooling contract."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import textbook
from pynq_bnn.spec import reference
from pynq_bnn.spec.first_layer import conv1_packed
from pynq_bnn.spec.folding import apply_threshold
from pynq_bnn.spec.network import Network
from pynq_bnn.testing import random_images, random_params

NETS = {
    "full": Network.full(),
    "half": Network.half(),
    "tiny": Network(conv_channels=(64, 64, 128), pool_after=(False, True, True),
                    fc_units=(64,), n_classes=3, image_size=8),
}


@pytest.mark.parametrize("name,n_images", [pytest.param("full", 2, marks=pytest.mark.slow),
                                            ("half", 3), ("tiny", 16)])
@pytest.mark.parametrize("seed", [0, 1])
def test_reference_equals_textbook_float_model(name, n_images, seed):
    net = NETS[name]
    images = random_images(n_images, net.image_size, seed=100 + seed)
    model = textbook.random_model(net, seed, images)
    params = textbook.to_params(model)
    sums, float_scores = textbook.forward(model, images)
    ints = reference.scores(params, images)
    assert ints.dtype == np.int32
    np.testing.assert_array_equal(ints, sums.astype(np.int64))
    np.testing.assert_allclose(reference.affine_scores(params, ints), float_scores,
                               rtol=1e-5, atol=1e-4)


def test_textbook_model_exercises_every_direction():
    net = NETS["half"]
    images = random_images(2, 32, seed=3)
    params = textbook.to_params(textbook.random_model(net, 0, images))
    dirs = np.concatenate([params.layers[layer.name].directions for layer in net.layers
                           if not layer.last])
    assert (dirs == 1).any() and (dirs == -1).any()
    # some gamma == 0 channels became constants at the clip bound
    consts = [np.abs(params.layers[layer.name].thresholds) == layer.fan_in + 1
              for layer in net.layers if not layer.last]
    assert np.concatenate(consts).any()


def test_reference_bits_are_not_degenerate():
    """A random network must produce mixed bits, or the equality tests prove little."""
    params = random_params(Network.half(), seed=4)
    images = random_images(2, 32, seed=5)
    _, acts = reference.binary_scores(params, conv1_packed(params, images), return_activations=True)
    for name, words in acts.items():
        ones = np.unpackbits(words.view(np.uint8)).mean()
        assert 0.05 < ones < 0.95, name


@pytest.mark.parametrize("fill,expected", [("ones", 0xFFFFFFFFFFFFFFFF), ("zeros", 0)])
def test_all_ones_and_all_zeros_maps(fill, expected):
    params = random_params(Network.half(), seed=6, fill=fill)
    images = random_images(2, 32, seed=7)
    scores, acts = reference.binary_scores(params, conv1_packed(params, images),
                                           return_activations=True)
    for name in ("conv2", "conv3", "conv4", "conv5", "conv6"):
        assert (acts[name] == np.uint64(expected)).all()
    # both images see the same constant map, so the same scores
    np.testing.assert_array_equal(scores[0], scores[1])


def test_threshold_rule_at_the_threshold():
    sums = np.array([[4, 5, 6, 4, 5, 6]])
    t = np.array([5, 5, 5, 5, 5, 5], dtype=np.int32)
    d = np.array([1, 1, 1, -1, -1, -1], dtype=np.int8)
    assert apply_threshold(sums, t, d).tolist() == [[False, True, True, True, True, False]]


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 4), st.integers(1, 8))
def test_pool_then_threshold_equals_threshold_then_or_and(seed, half, channels):
    """max-pool of sums then threshold == OR (direction +1) / AND (direction -1) of bits."""
    rng = np.random.default_rng(seed)
    sums = rng.integers(-20, 21, size=(2, 2 * half, 2 * half, channels))
    t = rng.integers(-21, 22, size=channels).astype(np.int32)
    d = rng.choice(np.array([-1, 1], dtype=np.int8), size=channels)
    pooled_then_bits = apply_threshold(reference.max_pool(sums), t, d)
    bits = apply_threshold(sums, t, d)
    n, h, w, c = bits.shape
    blocks = bits.reshape(n, h // 2, 2, w // 2, 2, c)
    bits_then_pooled = np.where(d > 0, blocks.any(axis=(2, 4)), blocks.all(axis=(2, 4)))
    np.testing.assert_array_equal(pooled_then_bits, bits_then_pooled)


def test_first_layer_is_exact_for_extreme_inputs():
    """Largest possible |sum|: all pixels 0 or 255 and all weights +-127 stay exact in float32."""
    net = NETS["tiny"]
    params = random_params(net, seed=8)
    w = params.layers["conv1"].weights
    w[...] = 127
    w[::2] = -127
    images = np.zeros((2, 8, 8, 3), np.uint8)
    images[1] = 255
    from pynq_bnn.spec.first_layer import conv1_sums
    sums = conv1_sums(w, images)
    expected = textbook.conv3x3(images.astype(np.float64) * 2 - 255, w.astype(np.float64))
    np.testing.assert_array_equal(sums, expected)
    assert np.abs(sums).max() == 27 * 255 * 127  # the bound of docs/FORMAT.md s.6 is reached
