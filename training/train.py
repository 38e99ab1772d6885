"""Train BinaryNet on CIFAR-10 with checkpoints and automatic resume (docs/TRAINING.md).

    python -m training.train --width full --device cuda --batch 200 --lr 3e-3 \
        --epochs 500 --time-budget-minutes 8          # the shipped model's recipe, on one GPU
    python -m training.train --width half --epochs 24   # CPU-sized variant

Files in --out (default training/runs/<width>): ``model.pt`` (model state float32 + progress),
``optim.pt`` (Adam state in bfloat16, same progress stamp), ``best.pt`` (model state with the
best validation accuracy), ``log.jsonl`` (one JSON line per epoch), ``config.json``.
Checkpoints are written every ``--ckpt-minutes``, within an epoch or at its end, and after the
last epoch (tmp file + rename); rerunning the same command resumes from them (a larger
``--epochs`` stretches the cosine schedule from the current step on). ``--deadline`` /
``--time-budget-minutes`` fit the number of epochs to the time. Validation accuracy comes from
the bit-exact integer eval path. ``--data`` takes the CIFAR-10 folder or a compact pack
(training/compact_data.py).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from pynq_bnn.spec.network import Network
from training.compact_data import load_arrays
from training.model import BinaryNet, disable_tf32

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10"
N_VAL = 5000


def make_network(width: str) -> Network:
    if width == "half":
        return Network.half()
    if width == "full":
        return Network.full()
    if width == "tiny":  # for tests
        return Network(conv_channels=(64, 64), pool_after=(False, True), fc_units=(64,))
    raise SystemExit(f"unknown --width {width!r} (half, full)")


def load_split(data: Path, seed: int, n_val: int = N_VAL):
    """Train/validation split of a data folder's train.npz or of a compact pack file."""
    x, y = load_arrays(data)
    y = y.astype(np.int64)
    perm = np.random.default_rng(seed).permutation(len(x))
    val, tr = perm[:n_val], perm[n_val:]
    return (torch.from_numpy(x[tr]), torch.from_numpy(y[tr]),
            torch.from_numpy(x[val]), torch.from_numpy(y[val]))


def augment(images: torch.Tensor, gen: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop (``pad`` padding, mid-grey 128) + horizontal flip on uint8 NHWC, one gather.

    The random draws come from the CPU generator ``gen`` whatever the images' device, so a run
    sees the same augmentation on a GPU as on the CPU; the gather runs where the images are.
    """
    n, h, w, _ = images.shape
    oy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    ox = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    flip = torch.rand(n, generator=gen) < 0.5
    dev = images.device
    oy, ox, flip = oy.to(dev), ox.to(dev), flip.to(dev)
    padded = F.pad(images.permute(0, 3, 1, 2), (pad, pad, pad, pad), value=128).permute(0, 2, 3, 1)
    ar_h, ar_w = torch.arange(h, device=dev), torch.arange(w, device=dev)
    rows = oy[:, None] + ar_h[None, :]
    cols = torch.where(flip[:, None], ox[:, None] + (w - 1) - ar_w[None, :],
                       ox[:, None] + ar_w[None, :])
    idx = torch.arange(n, device=dev)[:, None, None]
    return padded[idx, rows[:, :, None], cols[:, None, :]].contiguous()


def lr_at(step: int, total: int, warmup: int, peak: float, floor_frac: float) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    p = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (floor_frac + (1 - floor_frac) * 0.5 * (1 + math.cos(math.pi * p)))


def atomic_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def optim_state_compact(opt: torch.optim.Optimizer) -> dict:
    sd = opt.state_dict()
    state = {}
    for k, v in sd["state"].items():
        state[k] = {kk: (vv.to(torch.bfloat16) if torch.is_tensor(vv) and vv.dim() > 0 else vv)
                    for kk, vv in v.items()}
    return {"state": state, "param_groups": sd["param_groups"]}


def optim_state_expand(sd: dict) -> dict:
    state = {}
    for k, v in sd["state"].items():
        state[k] = {kk: (vv.to(torch.float32) if torch.is_tensor(vv) and vv.dim() > 0 else vv)
                    for kk, vv in v.items()}
    return {"state": state, "param_groups": sd["param_groups"]}


def model_state_cpu(model) -> dict:
    return {k: v.detach().to("cpu", torch.float32).clone() if v.is_floating_point()
            else v.detach().cpu().clone() for k, v in model.state_dict().items()}


@torch.no_grad()
def accuracy(model: BinaryNet, x: torch.Tensor, y: torch.Tensor, batch: int = 500) -> float:
    was = model.training
    model.eval()
    pred = model.predict(x, batch_size=batch)
    model.train(was)
    return float((pred == y.numpy()).mean())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--width", default="half", choices=["half", "full", "tiny"])
    ap.add_argument("--epochs", type=int, default=24, help="planned total epochs (schedule length)")
    ap.add_argument("--out", type=Path, default=None, help="run folder (training/runs/<width>)")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--lr", type=float, default=2e-3, help="peak Adam learning rate")
    ap.add_argument("--warmup-epochs", type=float, default=1.0)
    ap.add_argument("--lr-floor", type=float, default=0.01, help="final lr as fraction of peak")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--amp", choices=["auto", "on", "off"], default="auto",
                    help="bfloat16 autocast for the training pass (auto: on for cuda); the "
                         "products of +1/-1 values are exact in bfloat16, eval stays exact")
    ap.add_argument("--ckpt-minutes", type=float, default=10.0)
    ap.add_argument("--deadline", default="",
                    help="UTC time YYYY-mm-ddTHH:MM by which training must end: at every epoch "
                         "boundary the planned epochs shrink to what fits (cosine re-mapped)")
    ap.add_argument("--time-budget-minutes", type=float, default=0.0,
                    help="like --deadline, counted from the start of this command")
    ap.add_argument("--val-size", type=int, default=N_VAL, help="validation images held out")
    ap.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (testing)")
    ap.add_argument("--limit-train", type=int, default=0,
                    help="use only N training images (testing)")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda requested but CUDA is not available")
    dev = torch.device(args.device)
    disable_tf32()
    use_amp = args.amp == "on" or (args.amp == "auto" and dev.type == "cuda")
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    out: Path = args.out or Path("training/runs") / args.width
    out.mkdir(parents=True, exist_ok=True)

    network = make_network(args.width)
    try:
        xtr, ytr, xval, yval = load_split(args.data, args.seed, args.val_size)
    except ValueError as e:
        raise SystemExit(f"error: --data {e}") from None
    if args.limit_train:
        xtr, ytr = xtr[:args.limit_train], ytr[:args.limit_train]
    n_train = len(xtr)
    if dev.type == "cuda":  # the whole training set lives on the GPU (150 MB): no copies per step
        xtr, ytr = xtr.to(dev), ytr.to(dev)
    steps_per_epoch = n_train // args.batch

    torch.manual_seed(args.seed)
    model = BinaryNet(network).to(dev).to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)

    epoch, step_in_epoch, global_step, best_val = 0, 0, 0, -1.0
    gen_state = None
    if (out / "model.pt").exists():
        ck = torch.load(out / "model.pt", map_location="cpu", weights_only=False)
        if ck["network"] != network.to_dict():
            raise SystemExit(f"checkpoint in {out} is for another network: {ck['network']}")
        model.load_state_dict(ck["model"])
        epoch, step_in_epoch, global_step = ck["epoch"], ck["step_in_epoch"], ck["global_step"]
        best_val, gen_state = ck.get("best_val", -1.0), ck.get("gen_state")
        if (out / "optim.pt").exists():
            ok = torch.load(out / "optim.pt", map_location="cpu", weights_only=False)
            if ok.get("global_step") == global_step:
                opt.load_state_dict(optim_state_expand(ok["optim"]))
            else:
                print("warning: optimizer checkpoint does not match the model's step; fresh Adam",
                      file=sys.stderr)
        print(f"resumed from {out}: epoch {epoch} step {step_in_epoch} (global {global_step})",
              flush=True)
        log_path = out / "log.jsonl"
        if log_path.exists():  # epochs logged after the last checkpoint are trained again
            lines = [line for line in log_path.read_text().splitlines() if line.strip()]
            kept = [line for line in lines if json.loads(line)["epoch"] <= epoch]
            if len(kept) != len(lines):
                log_path.write_text("".join(line + "\n" for line in kept))
    model.to(dev)

    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    config["network"] = network.to_dict()
    config["torch"] = torch.__version__
    config["device_name"] = (torch.cuda.get_device_name(dev) if dev.type == "cuda"
                             else f"cpu, {args.threads} threads")
    config["recipe"] = ("BinaryNet (STE sign, hard-tanh grad, latent clip [-1,1]), conv1 int8 "
                        "fake-quant; Adam on latent weights, linear warmup + cosine lr, batch "
                        f"{args.batch}; aug: random crop pad 4 + horizontal flip; BN eps 1e-4"
                        + ("; bf16 autocast" if use_amp else ""))
    (out / "config.json").write_text(json.dumps(config, indent=1))

    planned = args.epochs
    deadline = None
    if args.deadline:
        import calendar
        deadline = calendar.timegm(time.strptime(args.deadline, "%Y-%m-%dT%H:%M"))
    if args.time_budget_minutes:
        budget_end = time.time() + args.time_budget_minutes * 60
        deadline = budget_end if deadline is None else min(deadline, budget_end)
    epoch_times = []

    def fit_plan():
        """Shrink the plan so that the remaining epochs end before --deadline."""
        nonlocal planned
        if deadline is None or not epoch_times:
            return
        per_epoch = epoch_times[-1]  # the latest epoch: follows changes in CPU contention
        fits = epoch + max(0, int((deadline - time.time()) // per_epoch))
        new = max(epoch, min(args.epochs, fits))  # epoch = epochs done: never below it
        if new != planned:
            print(f"deadline: {per_epoch:.1f} s/epoch, plan {planned} -> {new} "
                  "epochs", flush=True)
            planned = new

    warmup = int(args.warmup_epochs * steps_per_epoch)

    best_state = None  # (epoch, val_acc, state) not yet written to best.pt

    def save(tag_epoch, tag_step):
        nonlocal best_state
        if best_state is not None:
            b_epoch, b_val, b_model = best_state
            atomic_save({"network": network.to_dict(), "epoch": b_epoch, "val_acc": b_val,
                         "config": config, "model": b_model}, out / "best.pt")
            best_state = None
        meta = {"network": network.to_dict(), "epoch": tag_epoch, "step_in_epoch": tag_step,
                "global_step": global_step, "best_val": best_val, "planned_epochs": planned,
                "gen_state": gen.get_state(), "config": config}
        atomic_save({"optim": optim_state_compact(opt), "global_step": global_step},
                    out / "optim.pt")
        atomic_save(dict(meta, model=model_state_cpu(model)), out / "model.pt")

    last_ckpt = time.time()
    while epoch < planned:
        rng = np.random.default_rng(args.seed * 1000 + epoch)
        perm = torch.from_numpy(rng.permutation(n_train))
        gen = torch.Generator()
        if gen_state is not None and step_in_epoch > 0:
            gen.set_state(gen_state)
        else:
            gen.manual_seed(args.seed * 7919 + epoch)
        gen_state = None
        model.train()
        t0 = time.time()
        # running sums stay on the device: no host sync per step
        loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
        correct = torch.zeros((), dtype=torch.int64, device=dev)
        seen = 0
        while step_in_epoch < steps_per_epoch:
            idx = perm[step_in_epoch * args.batch:(step_in_epoch + 1) * args.batch]
            if dev.type == "cuda":
                idx = idx.to(dev)
            xb = augment(xtr[idx], gen)
            yb = ytr[idx]
            lr = lr_at(global_step, planned * steps_per_epoch, warmup, args.lr, args.lr_floor)
            for g in opt.param_groups:
                g["lr"] = lr
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_amp):
                logits = model(xb)
            loss = F.cross_entropy(logits.float(), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            model.clip_latent()
            loss_sum += loss.detach() * len(idx)
            correct += (logits.detach().argmax(1) == yb).sum()
            seen += len(idx)
            step_in_epoch += 1
            global_step += 1
            if args.max_steps and global_step >= args.max_steps:
                save(epoch, step_in_epoch)
                print(f"stopped at --max-steps {args.max_steps}", flush=True)
                return 0
            if step_in_epoch % 50 == 0:
                print(f"  epoch {epoch + 1} step {step_in_epoch}/{steps_per_epoch} "
                      f"loss {float(loss_sum) / max(seen, 1):.4f} lr {lr:.2e} "
                      f"{(time.time() - t0) / max(seen, 1) * 1000:.1f} ms/img", flush=True)
            if time.time() - last_ckpt > args.ckpt_minutes * 60:
                save(epoch, step_in_epoch)
                last_ckpt = time.time()
                print(f"  checkpoint epoch {epoch} step {step_in_epoch} "
                      f"loss {float(loss_sum) / max(seen, 1):.4f}", flush=True)
        train_time = time.time() - t0
        val_acc = accuracy(model, xval, yval)
        epoch += 1
        step_in_epoch = 0
        rec = {"epoch": epoch, "global_step": global_step, "loss": float(loss_sum) / max(seen, 1),
               "train_acc": int(correct) / max(seen, 1), "val_acc": val_acc,
               "epoch_seconds": round(time.time() - t0, 1), "train_seconds": round(train_time, 1),
               "images_seen_this_run": seen, "lr": lr, "planned_epochs": planned,
               "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        if val_acc > best_val:
            best_val = val_acc
            best_state = (epoch, val_acc, model_state_cpu(model))
        if seen == steps_per_epoch * args.batch:  # a whole epoch in this process: a fair sample
            epoch_times.append(time.time() - t0)
        fit_plan()
        # checkpoint at the epoch's end when --ckpt-minutes have passed (short GPU epochs) and
        # always after the last one; the log line is written after it, so log and files agree
        if epoch >= planned or time.time() - last_ckpt > args.ckpt_minutes * 60:
            save(epoch, 0)
            last_ckpt = time.time()
        with open(out / "log.jsonl", "a") as f:
            f.write(json.dumps(rec) + "\n")
        print(json.dumps(rec), flush=True)
    print(f"done: {epoch} epochs, best val acc {best_val:.4f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
