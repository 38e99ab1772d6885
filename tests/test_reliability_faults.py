"""Device faults through the mock, seen from the Classifier (issue #8).

tests/test_driver.py covers each fault at driver/backend level. Here: the same faults through
the public Classifier (bounded time, the documented exception, usable again afterwards), with
the interrupt path, faults at load time, output the kernel never wrote, and results already
returned that a later fault must not touch.
"""
import time

import numpy as np
import pytest

from pynq_bnn.backends import accelerated
from pynq_bnn.backends.sim.kernel import SimBnnKernel
from pynq_bnn.errors import BnnError, HardwareError, HardwareTimeout
from pynq_bnn.host.classifier import Classifier
from pynq_bnn.spec import abi, reference
from pynq_bnn.spec.network import Network
from pynq_bnn.testing import random_images, random_params

NET = Network(conv_channels=(64, 64), pool_after=(False, True), fc_units=(64,), n_classes=3,
              image_size=8)
PARAMS = random_params(NET, seed=11, images=random_images(3, 8, seed=12))
IMAGES = random_images(9, 8, seed=13)
EXPECTED = reference.scores(PARAMS, IMAGES)
TIMEOUT = 0.3
SLACK = 5.0   # seconds of scheduling noise allowed on a loaded CI machine


def classifier(**options):
    options.setdefault("kernel", "reference")
    return Classifier(PARAMS, backend="mock", **options)


def spy_backends(monkeypatch):
    """Record every mock backend the Classifier opens (also ones it closes after a failure)."""
    opened = []
    real = accelerated.open_mock

    def spy(*args, **kw):
        be = real(*args, **kw)
        opened.append(be)
        return be
    monkeypatch.setattr(accelerated, "open_mock", spy)
    return opened


@pytest.mark.parametrize("interrupt", [False, True])
def test_never_done_is_bounded_then_reset_through_the_classifier(interrupt):
    with classifier(timeout=TIMEOUT, interrupt=interrupt) as c:
        c.open()
        be = c.backend
        be.sim.faults.never_done = True
        t0 = time.monotonic()
        with pytest.raises(HardwareTimeout, match="did not finish within"):
            c.classify(IMAGES[:2])
        assert TIMEOUT <= time.monotonic() - t0 < TIMEOUT + SLACK
        # Still hung: the next call is refused at once, it does not wait again.
        t0 = time.monotonic()
        with pytest.raises(HardwareError, match="reset"):
            c.classify(IMAGES[:1])
        assert time.monotonic() - t0 < SLACK
        # The Classifier has no reset() of its own (reported); its backend has.
        be.sim.faults.never_done = False
        be.reset()
        np.testing.assert_array_equal(c.classify(IMAGES).scores, EXPECTED)


def test_timeout_is_a_timeout_error_and_a_hardware_error():
    """Callers may catch the builtin TimeoutError or HardwareError/BnnError."""
    with classifier(timeout=0.05, faults={"never_done": True}) as c:
        for cls in (TimeoutError, HardwareError, BnnError):
            with pytest.raises(cls):
                c.open()


def test_never_done_during_the_load_probe_frees_everything(monkeypatch):
    opened = spy_backends(monkeypatch)
    c = classifier(timeout=TIMEOUT, faults={"never_done": True})
    t0 = time.monotonic()
    with pytest.raises(HardwareTimeout):
        c.classify(IMAGES[:1])
    assert time.monotonic() - t0 < TIMEOUT + SLACK
    (be,) = opened
    assert be.closed and be.memory.live_allocations == 0
    assert be.sim.starts == 1   # the probe; no image start was attempted
    # A failed open leaves nothing half-open: the next call opens a fresh backend (which
    # fails the same bounded way here, the fault being part of the options) ...
    with pytest.raises(HardwareTimeout):
        c.classify(IMAGES[:1])
    assert len(opened) == 2 and all(b.closed and b.memory.live_allocations == 0 for b in opened)
    c.close()
    c.close()


@pytest.mark.parametrize("wrong,match", [
    (0x424E0001, r"version 1\).*version 2\)"),   # a version-1 bitstream, this ABI 2 driver
    (abi.ABI_ID + 1, "version"),
    (0xDEADBEEF, "not a pynq-bnn kernel"),
    (0, "not a pynq-bnn kernel"),
])
def test_wrong_abi_id_through_the_classifier(monkeypatch, wrong, match):
    opened = spy_backends(monkeypatch)
    c = classifier(faults={"wrong_id": wrong})
    with pytest.raises(HardwareError, match=match) as e:
        c.classify(IMAGES[:1])
    assert f"0x{wrong:08x}" in str(e.value) and f"0x{abi.ABI_ID:08x}" in str(e.value)
    assert opened[0].closed and opened[0].memory.live_allocations == 0
    c.close()


def test_kernel_done_without_writing_scores_is_detected(monkeypatch):
    """AP_DONE but no output (a bus error, a kernel that skipped its write): the poison left in
    the scores buffer is caught and named, not returned as a score."""
    real = SimBnnKernel._execute

    def lose_output(self, n):
        abi_id, addr, _ = real(self, n)
        return abi_id, addr, None
    with classifier() as c:
        c.open()
        monkeypatch.setattr(SimBnnKernel, "_execute", lose_output)
        with pytest.raises(HardwareError, match="did not write it"):
            c.classify(IMAGES[:2])
        monkeypatch.setattr(SimBnnKernel, "_execute", real)
        np.testing.assert_array_equal(c.classify(IMAGES[:2]).scores, EXPECTED[:2])


def test_corruption_in_a_later_chunk_fails_the_call_but_not_the_classifier():
    """max_batch 4, 9 images: chunks 0..3, 4..7, 8. Corrupt output is never returned; the
    accelerator stays usable (no reset needed) once the fault is gone."""
    with classifier(max_batch=4) as c:
        c.open()
        sim = c.backend.sim
        real = sim._execute

        def corrupt_second(n):
            sim.faults.corrupt_output = sim.starts == 3   # probe, chunk 1, chunk 2
            return real(n)
        sim._execute = corrupt_second
        with pytest.raises(HardwareError, match="impossible output.*image 4"):
            c.classify(IMAGES)
        sim._execute = real
        sim.faults.corrupt_output = False
        np.testing.assert_array_equal(c.classify(IMAGES).scores, EXPECTED)


def test_results_already_returned_survive_later_faults():
    """A ClassifyResult owns its arrays: later runs (which reuse the DMA buffers) and later
    faults do not change a result the caller already has."""
    with classifier(max_batch=4, timeout=TIMEOUT) as c:
        first = c.classify(IMAGES[:4])
        kept = first.scores.copy(), first.indices.copy(), first.affine_scores.copy()
        c.classify(IMAGES[4:8])                       # overwrites the DMA scores buffer
        c.backend.sim.faults.corrupt_output = True
        with pytest.raises(HardwareError):
            c.classify(IMAGES[4:8])
        c.backend.sim.faults.corrupt_output = False
        c.backend.sim.faults.never_done = True
        with pytest.raises(HardwareTimeout):
            c.classify(IMAGES[4:8])
    np.testing.assert_array_equal(first.scores, kept[0])
    np.testing.assert_array_equal(first.indices, kept[1])
    np.testing.assert_array_equal(first.affine_scores, kept[2])
    np.testing.assert_array_equal(first.scores, EXPECTED[:4])


def test_slow_kernel_with_interrupt_and_chunks_is_still_exact():
    with classifier(max_batch=2, interrupt=True, faults={"latency": 0.02}) as c:
        r = c.classify(IMAGES[:5])
        np.testing.assert_array_equal(r.scores, EXPECTED[:5])
        assert r.timings["kernel"] >= 3 * 0.02   # three starts, each at least the latency


def test_cli_json_keeps_results_computed_before_a_hardware_error(tmp_path, capsys, monkeypatch):
    import json

    from PIL import Image

    import pynq_bnn.tools.cli as cli
    from pynq_bnn.spec.params import save_params

    model = str(tmp_path / "m.npz")
    save_params(PARAMS, model)
    image = str(tmp_path / "a.png")
    Image.fromarray(IMAGES[0]).save(image)
    real = SimBnnKernel._execute

    def corrupt_from_the_second_chunk(self, n):
        self.faults.corrupt_output = self.starts >= 3   # probe, chunk 1, then chunk 2
        return real(self, n)
    monkeypatch.setattr(SimBnnKernel, "_execute", corrupt_from_the_second_chunk)
    monkeypatch.setattr(cli, "_backend_options", lambda args: {"kernel": "reference"})
    paths = [image] * 70                                   # two chunks of the CLI (64 + 6)
    code = cli.main(["classify", "--backend", "mock", "--model", model, *paths])
    out, err = capsys.readouterr()
    assert code == 1 and len(out.splitlines()) == 64       # text mode: the first chunk is out
    code = cli.main(["classify", "--backend", "mock", "--model", model, "--json", *paths])
    out, err = capsys.readouterr()
    assert code == 1 and "impossible output" in err
    doc = json.loads(out)
    assert len(doc["results"]) == 64 and doc["complete"] is False   # the first chunk is kept


def test_bitstream_register_map_of_another_abi_is_refused_naming_every_difference():
    """The other half of "wrong ABI": the .hwh register map is checked before any start."""
    from pynq_bnn.backends.pynq.hardware import check_register_map
    good = {name: {"address_offset": off} for name, off in abi.HWH_REGISTER_NAMES.items()}
    assert check_register_map(good) is True
    assert check_register_map(None) is False and check_register_map({}) is False
    names = sorted(abi.HWH_REGISTER_NAMES, key=abi.HWH_REGISTER_NAMES.get)
    moved, gone = names[1], names[-1]
    bad = dict(good)
    bad[moved] = {"address_offset": abi.HWH_REGISTER_NAMES[moved] + 8}
    del bad[gone]
    with pytest.raises(HardwareError, match="register map") as e:
        check_register_map(bad, "bnn_kernel_0")
    assert f"{moved} at 0x" in str(e.value) and f"{gone} missing" in str(e.value)
