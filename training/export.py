"""Export a trained checkpoint to the pynq-bnn parameter file (docs/FORMAT.md section 8).

    python -m training.export --checkpoint training/runs/full/best_eval.pt \
        --out pynq_bnn/models/cifar10_bnn.npz --test --verify 200

Takes ``best.pt`` (best validation accuracy) from a run folder by default (``--which last``
takes ``model.pt``), or a checkpoint file, including the compact eval checkpoint that
``--eval-checkpoint`` writes (sign bits + batch norms: all that eval mode uses). The folded
integers come from :meth:`training.model.BinaryNet.folded`, the same ones the PyTorch eval mode
uses, so the file scores bit-exactly as the model evaluated in training. ``--test`` adds the
CIFAR-10 test accuracy (JPEG copy) to the training metadata and ``--verify N`` checks
``pynq_bnn.spec.reference.scores`` against the PyTorch int scores on N test images.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from pynq_bnn.spec.bitpack import pack_signs
from pynq_bnn.spec.network import Network
from pynq_bnn.spec.params import LayerParams, Params, save_params
from training.model import BinaryNet

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10"


def model_to_params(model: BinaryNet, class_names=CIFAR10_CLASSES, description: str = "",
                    training: dict | None = None) -> Params:
    """Build :class:`pynq_bnn.spec.params.Params` from a model (its folded eval-mode integers)."""
    net = model.network
    folded = model.folded()
    layers = {}
    out_scale = out_bias = None
    for layer in net.layers:
        f = folded[layer.name]
        w = f["weights"]
        if layer.kind == "conv1":
            # torch [out, rgb, ky, kx] -> [out][ky][kx][rgb]
            lp = LayerParams(np.ascontiguousarray(w.transpose(0, 2, 3, 1)).astype(np.int8),
                             f["thresholds"].astype(np.int32), f["directions"].astype(np.int8))
        elif layer.kind == "conv":
            wp = pack_signs(np.ascontiguousarray(w.transpose(0, 2, 3, 1)))  # [Cout, 3, 3, Cin]
            lp = LayerParams(wp, f["thresholds"].astype(np.int32), f["directions"].astype(np.int8))
        else:
            wp = pack_signs(w)  # [Nout, Nin], fc1's Nin already in (y, x, c) order
            if layer.last:
                lp = LayerParams(wp)
                out_scale = f["scale"].astype(np.float32)
                out_bias = f["bias"].astype(np.float32)
            else:
                lp = LayerParams(wp, f["thresholds"].astype(np.int32),
                                 f["directions"].astype(np.int8))
        layers[layer.name] = lp
    return Params(net, tuple(class_names), layers, out_scale, out_bias, description,
                  dict(training or {}))


EVAL_FORMAT = "pynq-bnn-eval-checkpoint-1"


def save_eval_checkpoint(model: BinaryNet, path: Path, meta: dict) -> None:
    """What the eval mode needs, compactly: binary layers' latent weights as packed sign bits
    (eval uses only their signs), layer 1's weights and every batch norm in float32.

    A full-width model is 1.8 MB this way instead of 56 MB of float32 latent weights.
    """
    state = {}
    for k, v in model.state_dict().items():
        name = k.split(".", 1)[1] if k.startswith("weights.") else None
        if name is not None and name != model.layer_specs[0].name:
            w = v.detach().cpu()
            state[k] = {"signs": torch.from_numpy(np.packbits((w >= 0).numpy().ravel())),
                        "shape": tuple(w.shape)}
        else:
            state[k] = v.detach().cpu().clone()
    torch.save(dict(meta, format=EVAL_FORMAT, network=model.network.to_dict(), model=state), path)


def _expand_eval_state(state: dict) -> dict:
    out = {}
    for k, v in state.items():
        if isinstance(v, dict):
            n = int(np.prod(v["shape"]))
            bits = np.unpackbits(v["signs"].numpy())[:n].reshape(v["shape"])
            out[k] = torch.from_numpy(np.where(bits == 1, 1.0, -1.0).astype(np.float32))
        else:
            out[k] = v
    return out


def load_model(run_dir: Path, which: str = "best", device: str = "cpu"):
    """A model in eval mode from a run folder, a training checkpoint or an eval checkpoint."""
    path = Path(run_dir)
    if path.is_dir():
        path = path / ("best.pt" if which == "best" else "model.pt")
    ck = torch.load(path, map_location="cpu", weights_only=False)
    net = Network.from_dict(ck["network"])
    model = BinaryNet(net)
    state = ck["model"]
    if ck.get("format") == EVAL_FORMAT:
        state = _expand_eval_state(state)
    model.load_state_dict(state)
    model.to(device).eval()
    return model, ck, path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", type=Path, required=True, help="run folder or .pt file")
    ap.add_argument("--which", choices=["best", "last"], default="best")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--test", action="store_true", help="measure CIFAR-10 test accuracy")
    ap.add_argument("--verify", type=int, default=0,
                    help="check reference == torch on N test images")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--description", default="")
    ap.add_argument("--eval-checkpoint", type=Path,
                    help="also write the compact eval checkpoint (sign bits + batch norms) here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    try:
        model, ck, path = load_model(args.checkpoint, args.which)
    except (OSError, RuntimeError, KeyError, ValueError) as e:
        raise SystemExit(f"error: --checkpoint {args.checkpoint}: {e}") from None
    cfg = ck.get("config", {})
    run_dir = path.parent
    log = []
    if (run_dir / "log.jsonl").exists():
        log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()
               if line.strip()]
    epoch = ck.get("epoch")
    val_acc = ck.get("val_acc")
    if val_acc is None and log:
        val_acc = next((r["val_acc"] for r in log if r["epoch"] == epoch), None)
    training = {
        "framework": f"PyTorch {cfg.get('torch', torch.__version__)}",
        "device": cfg.get("device_name", cfg.get("device")),
        "dataset": "CIFAR-10 (JPEG-recompressed copy), 45k train / 5k validation split",
        "epochs": epoch,
        "epochs_run": log[-1]["epoch"] if log else epoch,
        # the schedule's length: --epochs, or what --deadline / --time-budget-minutes fitted
        "planned_epochs": (log[-1].get("planned_epochs", cfg.get("epochs")) if log
                           else cfg.get("epochs")),
        "val_acc": val_acc,
        "train_minutes": round(sum(r["epoch_seconds"] for r in log) / 60, 1) if log else None,
        "recipe": cfg.get("recipe"),
        "lr_peak": cfg.get("lr"),
        "batch": cfg.get("batch"),
        "seed": cfg.get("seed"),
        "checkpoint": path.name,
    }
    test_x = test_y = None
    if args.test or args.verify:
        d = np.load(args.data / "test.npz")
        test_x, test_y = d["x"], d["y"].astype(np.int64)
    if args.test:
        pred = model.predict(test_x)
        training["test_acc"] = float((pred == test_y).mean())
        training["test_set"] = "CIFAR-10 test (JPEG copy), 10000 images"
        print(f"test accuracy {training['test_acc']:.4f}", flush=True)
    desc = args.description or (
        f"BinaryNet {'-'.join(map(str, model.network.conv_channels))}/"
        f"{'-'.join(map(str, model.network.fc_units))}-{model.network.n_classes} for CIFAR-10")
    params = model_to_params(model, CIFAR10_CLASSES, desc, training)
    if args.eval_checkpoint:
        save_eval_checkpoint(model, args.eval_checkpoint,
                             {"epoch": epoch, "val_acc": val_acc, "config": cfg})
        print(f"wrote {args.eval_checkpoint}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    checksum = save_params(params, args.out)
    print(f"wrote {args.out} (sha256 content {checksum[:16]}...)", flush=True)
    if args.verify:
        from pynq_bnn.spec.params import load_params
        from pynq_bnn.spec.reference import scores
        p2 = load_params(args.out)
        imgs = test_x[:args.verify]
        ref = scores(p2, imgs)
        mine = model.int_scores(imgs)
        if not np.array_equal(ref, mine):
            print(f"MISMATCH: reference != torch on {int((ref != mine).any(1).sum())} images",
                  file=sys.stderr)
            return 1
        print(f"verified: reference scores == torch int scores on {len(imgs)} images", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
