"""Training code: one step, checkpoint/resume, export round trip, and bit-exactness of the
PyTorch eval mode against the numpy reference (docs/FORMAT.md)."""
import json
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.needs_torch

from helpers import CIFAR_DIR  # noqa: E402
from pynq_bnn.spec.network import Network  # noqa: E402
from pynq_bnn.spec.params import load_params, save_params  # noqa: E402
from pynq_bnn.spec.reference import scores as reference_scores  # noqa: E402
from training import train as train_mod  # noqa: E402
from training.export import CIFAR10_CLASSES, model_to_params  # noqa: E402
from training.model import BinaryNet  # noqa: E402

TINY = Network(conv_channels=(64, 64), pool_after=(False, True), fc_units=(64,), n_classes=10,
               image_size=8)


@pytest.fixture(autouse=True)
def _threads():
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(old)


def _images(n, size, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _train_steps(model, images, labels, steps=2, lr=1e-2):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    x, y = torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64))
    losses = []
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        model.clip_latent()
        losses.append(float(loss.detach()))
    return losses


def _perturb_bn(model, seed=0, zero_gamma=True):
    """Non-trivial BN statistics, some negative gammas and a zero gamma in every layer."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, bn in model.bns.items():
            n = bn.weight.numel()
            sign = torch.where(torch.rand(n, generator=g) < 0.3, -1.0, 1.0)
            bn.weight.mul_(sign * (0.5 + torch.rand(n, generator=g)))
            bn.bias.add_(0.3 * torch.randn(n, generator=g))
            if zero_gamma:
                bn.weight[0] = 0.0
                bn.bias[0] = -0.1 if name.endswith("2") else 0.2
                if n > 1:
                    bn.weight[1] = 0.0
                    bn.bias[1] = 0.0  # beta = 0 -> always +1
            if name != "conv1":  # conv1 keeps its trained stats (its sums are scaled)
                bn.running_mean.add_(torch.randn(n, generator=g) * 3)
                bn.running_var.mul_(1 + torch.rand(n, generator=g) * 5)


def test_sign_ste():
    from training.model import binarize
    x = torch.tensor([-2.0, -0.5, 0.0, 0.5, 2.0], requires_grad=True)
    y = binarize(x)
    assert y.tolist() == [-1, -1, 1, 1, 1]
    y.sum().backward()
    assert x.grad.tolist() == [0, 1, 1, 1, 0]


@pytest.mark.slow
def test_one_training_step_tiny():
    torch.manual_seed(0)
    model = BinaryNet(TINY)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    imgs = _images(16, 8)
    labels = np.arange(16) % 10
    losses = _train_steps(model, imgs, labels, steps=1)
    assert np.isfinite(losses[0])
    after = model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    for layer in TINY.layers[1:]:
        w = model.weights[layer.name]
        assert float(w.detach().abs().max()) <= 1.0
    # eval mode returns logits of the right shape and the int scores are integers
    model.eval()
    out = model(torch.from_numpy(imgs))
    assert out.shape == (16, 10)
    s = model.int_scores(imgs)
    assert s.dtype == np.int32 and s.shape == (16, 10)


def test_export_roundtrip_and_exact_tiny(tmp_path):
    torch.manual_seed(1)
    model = BinaryNet(TINY)
    imgs = _images(32, 8, seed=3)
    _train_steps(model, imgs, np.arange(32) % 10, steps=3)
    _perturb_bn(model, seed=2)
    model.eval()
    params = model_to_params(model, CIFAR10_CLASSES, "tiny test", {"epochs": 0})
    path = tmp_path / "tiny.npz"
    save_params(params, path)
    p2 = load_params(path)
    assert p2.network == TINY
    assert p2.class_names == CIFAR10_CLASSES
    assert p2.training == {"epochs": 0}
    for name, lp in params.layers.items():
        np.testing.assert_array_equal(lp.weights, p2.layers[name].weights)
    d = p2.layers["conv1"].directions
    assert (d == -1).any() and (d == 1).any()
    test_imgs = _images(64, 8, seed=4)
    mine = model.int_scores(test_imgs)
    ref = reference_scores(p2, test_imgs)
    np.testing.assert_array_equal(ref, mine)
    # the forward logits are k * s + h of the very same sums
    logits = model(torch.from_numpy(test_imgs)).numpy()
    np.testing.assert_allclose(logits, mine * p2.out_scale + p2.out_bias, rtol=1e-5, atol=1e-4)


def test_folding_matches_float_batchnorm():
    """The folded integer path agrees with the float training path with BN in eval mode
    (this checks the conv1 fold through the 1/255 and per-channel int8 scales)."""
    torch.manual_seed(2)
    model = BinaryNet(TINY)
    imgs = _images(64, 8, seed=5)
    _train_steps(model, imgs, np.arange(64) % 10, steps=3)
    _perturb_bn(model, seed=3, zero_gamma=False)
    x = torch.from_numpy(_images(64, 8, seed=6))
    model.train()
    for bn in model.bns.values():
        bn.eval()
    with torch.no_grad():
        float_logits = model(x).numpy()
    model.eval()
    with torch.no_grad():
        int_logits = model(x).numpy()
    close = np.isclose(float_logits, int_logits, rtol=1e-3, atol=1e-3).all(axis=1)
    assert close.mean() >= 0.9, close.mean()


def test_augment_shapes_and_flip():
    gen = torch.Generator().manual_seed(0)
    imgs = torch.from_numpy(_images(50, 32))
    out = train_mod.augment(imgs, gen)
    assert out.shape == imgs.shape and out.dtype == torch.uint8
    # with pad 0, the crop is the identity or a horizontal flip
    out0 = train_mod.augment(imgs, gen, pad=0)
    same = (out0 == imgs).flatten(1).all(1)
    flipped = (out0 == imgs.flip(2)).flatten(1).all(1)
    assert bool((same | flipped).all()) and bool(flipped.any()) and bool(same.any())


def test_lr_schedule():
    lrs = [train_mod.lr_at(s, 100, 10, 1.0, 0.01) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:]))
    assert lrs[-1] < 0.05


@pytest.mark.slow
def test_train_cli_checkpoint_resume_export(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    np.savez(data / "train.npz", x=rng.integers(0, 256, (60, 32, 32, 3), dtype=np.uint8),
             y=(np.arange(60) % 10).astype(np.uint8))
    np.savez(data / "test.npz", x=rng.integers(0, 256, (10, 32, 32, 3), dtype=np.uint8),
             y=(np.arange(10) % 10).astype(np.uint8))
    out = tmp_path / "run"
    common = ["--width", "tiny", "--data", str(data), "--val-size", "20", "--batch", "20",
              "--out", str(out)]
    assert train_mod.main(common + ["--epochs", "1"]) == 0
    assert train_mod.main(common + ["--epochs", "3", "--max-steps", "3"]) == 0  # mid-epoch stop
    ck = torch.load(out / "model.pt", weights_only=False)
    assert (ck["epoch"], ck["step_in_epoch"], ck["global_step"]) == (1, 1, 3)
    # an epoch logged after the last checkpoint (killed before its save) is trained again
    with open(out / "log.jsonl", "a") as f:
        f.write(json.dumps({"epoch": 2, "stale": True}) + "\n")
    assert train_mod.main(common + ["--epochs", "2"]) == 0  # resume with a new plan
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2] and not any("stale" in r for r in log)
    for r in log:
        assert {"loss", "train_acc", "val_acc", "epoch_seconds", "lr"} <= set(r)
    for f in ("model.pt", "optim.pt", "best.pt"):
        assert (out / f).exists()
    opt = torch.load(out / "optim.pt", weights_only=False)
    assert any(v.dtype == torch.bfloat16 for s in opt["optim"]["state"].values()
               for v in s.values() if torch.is_tensor(v) and v.dim() > 0)

    from training import export as export_mod
    npz = tmp_path / "m.npz"
    assert export_mod.main(["--checkpoint", str(out), "--out", str(npz), "--data", str(data),
                            "--test", "--verify", "10"]) == 0
    p = load_params(npz)
    assert p.training["epochs"] >= 1 and "test_acc" in p.training
    assert p.class_names == CIFAR10_CLASSES


@pytest.mark.slow
def test_exact_half_width_real_images(cifar10_test):
    d = np.load(cifar10_test)
    x, y = d["x"], d["y"]
    idx = np.random.default_rng(0).permutation(len(x))
    train_idx, test_idx = idx[:200], idx[200:400]
    torch.manual_seed(3)
    model = BinaryNet(Network.half()).to(memory_format=torch.channels_last)
    _train_steps(model, x[train_idx[:100]], y[train_idx[:100]], steps=1, lr=5e-3)
    _train_steps(model, x[train_idx[100:]], y[train_idx[100:]], steps=1, lr=5e-3)
    with torch.no_grad():  # some negative and zero gammas, stats otherwise from training
        for name, bn in model.bns.items():
            n = bn.weight.numel()
            bn.weight[: n // 4].mul_(-1)
            bn.weight[n // 4] = 0.0
            bn.bias[n // 4] = 0.1
    model.eval()
    params = model_to_params(model)
    d1 = params.layers["conv2"].directions
    assert (d1 == -1).any()
    mine = model.int_scores(x[test_idx])
    ref = reference_scores(params, x[test_idx])
    np.testing.assert_array_equal(ref, mine)


def test_train_deadline_shrinks_plan(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(1)
    np.savez(data / "train.npz", x=rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8),
             y=(np.arange(40) % 10).astype(np.uint8))
    out = tmp_path / "run"
    assert train_mod.main(["--width", "tiny", "--data", str(data), "--val-size", "20",
                           "--batch", "20", "--out", str(out), "--epochs", "5",
                           "--deadline", "2000-01-01T00:00"]) == 0
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1]  # deadline passed: stop after the first epoch


def test_compact_data_pack_is_lossless(tmp_path):
    from training import compact_data
    # real JPEG-derived pixels when the data is here (the pack's intended input), else noise
    path = os.path.join(CIFAR_DIR, "test.npz")
    if os.path.exists(path):
        with np.load(path) as d:
            x, y = d["x"][:40], d["y"][:40]
    else:
        x, y = _images(40, 32, seed=4), (np.arange(40) % 10).astype(np.uint8)
    arrays = compact_data.pack(x, y)
    np.savez(tmp_path / "p.npz", **arrays)
    x2, y2 = compact_data.load_arrays(tmp_path / "p.npz")
    np.testing.assert_array_equal(x2, x)
    np.testing.assert_array_equal(y2, y)
    assert len(arrays["residual_idx"]) > 0  # the residual path was exercised
    # damaged content is caught by the digest (strict), or only warned about
    bad = dict(arrays)
    bad["y"] = arrays["y"].copy()
    bad["y"][0] ^= 1
    with pytest.raises(ValueError, match="SHA-256"):
        compact_data.unpack(bad)
    x3, _ = compact_data.unpack(bad, strict=False)
    np.testing.assert_array_equal(x3, x)


def test_eval_checkpoint_keeps_eval_mode_exact(tmp_path):
    from training.export import load_model, save_eval_checkpoint
    torch.manual_seed(5)
    model = BinaryNet(TINY)
    imgs = _images(24, 8, seed=8)
    _train_steps(model, imgs, (np.arange(24) % 10), steps=2)
    _perturb_bn(model, seed=2)
    model.eval()
    save_eval_checkpoint(model, tmp_path / "e.pt", {"epoch": 3})
    loaded, ck, _ = load_model(tmp_path / "e.pt")
    assert ck["epoch"] == 3
    np.testing.assert_array_equal(loaded.int_scores(imgs), model.int_scores(imgs))
    a, b = model_to_params(model), model_to_params(loaded)
    for name in a.layers:
        np.testing.assert_array_equal(a.layers[name].weights, b.layers[name].weights)
        if a.layers[name].thresholds is not None:
            np.testing.assert_array_equal(a.layers[name].thresholds, b.layers[name].thresholds)
    # far smaller than the float32 latent weights
    full = tmp_path / "full.pt"
    torch.save(model.state_dict(), full)
    assert (tmp_path / "e.pt").stat().st_size < full.stat().st_size / 4


def test_training_tools_name_bad_inputs(tmp_path):
    from training import compact_data
    from training import export as export_mod
    base = ["--width", "tiny", "--out", str(tmp_path / "run")]
    with pytest.raises(SystemExit, match="--data .*missing.*No such file"):
        train_mod.main(base + ["--data", str(tmp_path / "missing")])
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(SystemExit, match="other.npz.*expected arrays x and y"):
        train_mod.main(base + ["--data", str(tmp_path / "other.npz")])
    np.savez(tmp_path / "gray.npz", x=np.zeros((4, 32, 32), np.uint8), y=np.zeros(4, np.uint8))
    with pytest.raises(SystemExit, match=r"gray.npz: expected x uint8 \[N, H, W, 3\]"):
        train_mod.main(base + ["--data", str(tmp_path / "gray.npz")])
    with pytest.raises(SystemExit, match="--checkpoint .*nothing.pt"):
        export_mod.main(["--checkpoint", str(tmp_path / "nothing.pt"),
                         "--out", str(tmp_path / "m.npz")])
    with pytest.raises(SystemExit, match="other.npz: not a pack"):
        compact_data.main(["unpack", str(tmp_path / "other.npz"), str(tmp_path / "o.npz")])


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")


@needs_cuda
def test_cuda_eval_path_is_exact():
    """The GPU eval path (unfold + float32 matmul, TF32 off) gives the reference's integers."""
    from training.model import disable_tf32
    disable_tf32()
    torch.manual_seed(7)
    model = BinaryNet(Network.half()).to(memory_format=torch.channels_last)
    imgs = _images(64, 32, seed=9)
    _train_steps(model, imgs, np.arange(64) % 10, steps=1, lr=5e-3)
    _perturb_bn(model, seed=3)
    model.eval()
    ref = reference_scores(model_to_params(model), imgs)
    np.testing.assert_array_equal(model.int_scores(imgs), ref)      # CPU
    model.cuda()
    np.testing.assert_array_equal(model.int_scores(imgs), ref)      # GPU


@needs_cuda
def test_cuda_train_cli_and_export(tmp_path):
    """The GPU loop (data and augmentation on the device, bf16 autocast) trains and exports."""
    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, (80, 32, 32, 3), dtype=np.uint8)
    y = (np.arange(80) % 10).astype(np.uint8)
    np.savez(data / "train.npz", x=x, y=y)
    np.savez(data / "test.npz", x=x[:20], y=y[:20])
    out = tmp_path / "run"
    assert train_mod.main(["--width", "tiny", "--device", "cuda", "--data", str(data),
                           "--val-size", "20", "--batch", "20", "--epochs", "2",
                           "--out", str(out)]) == 0
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2] and np.isfinite(log[-1]["loss"])
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["device"] == "cuda" and cfg["amp"] == "auto"
    from training import export as export_mod
    assert export_mod.main(["--checkpoint", str(out), "--out", str(tmp_path / "m.npz"),
                            "--data", str(data), "--verify", "20"]) == 0
