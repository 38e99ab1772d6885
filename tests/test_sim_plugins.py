"""The simulated kernel's plug-in API: ``SimBnnKernel(compute=..., latency=...)``.

What benchmarks (pynq_bnn/tools/bench.py) need without monkey-patching private methods: a
computation of their own and a latency model, behind the same register-level protocol, DDR
snapshots and fault checks as the built-in kernels.
"""
import time

import numpy as np
import pytest

from pynq_bnn.backends import open_backend
from pynq_bnn.backends.sim.kernel import KernelStart, SimBnnKernel, SimMemory
from pynq_bnn.errors import HardwareError, HardwareTimeout
from pynq_bnn.spec import reference
from pynq_bnn.spec.first_layer import conv1_packed
from pynq_bnn.spec.network import Network
from pynq_bnn.testing import random_images, random_params

NET = Network(conv_channels=(64, 64), pool_after=(False, True), fc_units=(), n_classes=3,
              image_size=4)
PARAMS = random_params(NET, seed=51, images=random_images(4, 4, seed=52))
PACKED = conv1_packed(PARAMS, random_images(6, 4, seed=53))
EXPECTED = reference.binary_scores(PARAMS, PACKED)


def _table_compute(calls):
    """Scores looked up by the input bytes read from simulated DDR (what bench does)."""
    table = {PACKED[i].tobytes(): EXPECTED[i] for i in range(len(PACKED))}

    def compute(start: KernelStart):
        calls.append(start)
        rows = start.inputs.reshape(start.n_images, -1)
        return np.stack([table[r.tobytes()] for r in rows])
    return compute


def test_a_compute_plug_in_answers_every_start_and_never_the_probe():
    calls = []
    with open_backend("mock", kernel="reference", max_batch=4) as be:
        be.sim.compute = _table_compute(calls)
        be.load(PARAMS)                      # the load's probe (n_images=0) is not a call
        assert calls == []
        np.testing.assert_array_equal(be.run(PACKED), EXPECTED)   # two chunks: 4 + 2
        assert [c.n_images for c in calls] == [4, 2]
        assert calls[0].model.network == NET
        assert calls[0].inputs.dtype == np.uint64
        assert calls[0].inputs.shape == (4, NET.input_words_per_image)
        assert be.sim.host_seconds > 0


def test_the_constructor_takes_the_plug_ins():
    calls = []
    sim = SimBnnKernel(SimMemory(), compute=_table_compute(calls), latency=0.01)
    assert sim.kernel == "plug-in" and sim.latency == 0.01
    with pytest.raises(TypeError, match="callable"):
        SimBnnKernel(SimMemory(), compute=42)


@pytest.mark.parametrize("failure", ["none", "raises", "wrong shape", "floats"])
def test_a_failing_plug_in_costs_that_call_only(failure):
    """No scores (None), an exception, a wrong shape or dtype: the run completes without
    writing scores, the driver refuses the poisoned output, and the next call works."""
    good = _table_compute([])

    def bad(start):
        if failure == "none":
            return None
        if failure == "raises":
            raise KeyError("unknown input")
        if failure == "wrong shape":
            return np.zeros((start.n_images, 99), np.int32)
        return np.zeros((start.n_images, 3), np.float32)
    with open_backend("mock", kernel="reference", max_batch=8) as be:
        be.load(PARAMS)
        be.sim.compute = bad
        with pytest.raises(HardwareError):
            be.run(PACKED)
        if failure != "none":
            assert be.sim.log.errors and "no scores written" in be.sim.log.errors[-1]
        be.sim.compute = good
        np.testing.assert_array_equal(be.run(PACKED), EXPECTED)


def test_latency_plug_in_seconds_or_callable_and_the_timeout_still_holds():
    with open_backend("mock", kernel="reference", max_batch=8, timeout=5) as be:
        be.load(PARAMS)
        be.sim.latency = 0.2
        t0 = time.monotonic()
        np.testing.assert_array_equal(be.run(PACKED), EXPECTED)
        assert time.monotonic() - t0 >= 0.2
        seen = []
        be.sim.compute = _table_compute([])
        be.sim.latency = lambda start: seen.append(start.n_images) or 0.05 * start.n_images
        t0 = time.monotonic()
        np.testing.assert_array_equal(be.run(PACKED), EXPECTED)
        assert seen == [6] and time.monotonic() - t0 >= 0.3
    with open_backend("mock", kernel="reference", timeout=0.2) as be:
        be.load(PARAMS)
        be.sim.latency = 30.0
        with pytest.raises(HardwareTimeout):
            be.run(PACKED[:1])
