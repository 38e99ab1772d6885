#!/usr/bin/env python3
"""Benchmark the CPU engine (binary layers and layer 1) against the numpy reference and a
PyTorch float32 eager model of the same topology, all in one process. Prints JSON.

    python benchmarks/bench_cpu_engine.py --threads 2 [--out results.json]

Images/s at batch 1 and 64 for:
  * engine.<isa>: the native engine, binary layers 2..9, each popcount path this CPU has;
  * pipeline: FirstLayer + engine (best ISA), uint8 images -> integer scores;
  * reference: pynq_bnn.spec.reference.binary_scores on a few images;
  * torch: float32 eager BinaryNet (conv+bn+sign, channels_last, float weights), the
    baseline every "x_vs_torch" ratio is taken against;
  * layer1: FirstLayer (native where built, and its numpy path) vs
    torch.nn.functional.conv2d + threshold (and the spec conv1_packed).

Each number is the median over --rounds rounds of at least --min-time seconds; "best" is the
fastest round. The machine may be shared (a training job): compare ratios, not absolutes.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from pynq_bnn import Network
from pynq_bnn.backends.cpu import engine
from pynq_bnn.host.layer1 import FirstLayer  # noqa: E402
from pynq_bnn.spec import reference  # noqa: E402
from pynq_bnn.spec.first_layer import conv1_packed  # noqa: E402
from pynq_bnn.testing import random_images, random_params  # noqa: E402
from pynq_bnn.tools.bench import cpu_model, emit_json, timed_rounds  # noqa: E402


def measure(fn, batch: int, min_time: float, rounds: int) -> dict:
    runs = timed_rounds(fn, min_time, rounds)
    rates = [reps * batch / dt for reps, dt, _ in runs]
    cpu_rates = [reps * batch / max(cpu, 1e-9) for reps, _, cpu in runs]
    # images per CPU-second of this process (all its threads): what one fully used core
    # delivers, robust to other jobs stealing the CPUs (but counts spin-waiting as work)
    return {"images_per_s": round(statistics.median(rates), 1), "best": round(max(rates), 1),
            "images_per_cpu_s": round(statistics.median(cpu_rates), 1),
            "rounds": [round(r, 1) for r in rates]}


def torch_model(torch, net: Network, params):
    """BinaryNet in float32 eager PyTorch: conv/linear + batch norm + sign, same shapes."""
    nn = torch.nn

    class Sign(nn.Module):
        def forward(self, x):
            return torch.sign(x)

    layers = []
    for layer in net.layers:
        if layer.kind in ("conv1", "conv"):
            layers += [nn.Conv2d(layer.in_channels, layer.out_channels, 3, padding=1, bias=False)]
            if layer.pool:
                layers.append(nn.MaxPool2d(2))
            layers += [nn.BatchNorm2d(layer.out_channels), Sign()]
        else:
            if layer.name == "fc1":
                layers.append(_Flatten(torch))
            layers += [nn.Linear(layer.in_channels, layer.out_channels, bias=False),
                       nn.BatchNorm1d(layer.out_channels)]
            if not layer.last:
                layers.append(Sign())
    model = nn.Sequential(*layers).eval()
    with torch.no_grad():  # +-1 weights, as the binary model has
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.copy_(torch.sign(torch.randn_like(m.weight)))
    return model.to(memory_format=torch.channels_last)


def _Flatten(torch):
    class Flatten(torch.nn.Module):
        def forward(self, x):  # NHWC order, as the packed format (docs/FORMAT.md s.2)
            return x.permute(0, 2, 3, 1).flatten(1)
    return Flatten()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=None, help="default: usable CPUs")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    ap.add_argument("--min-time", type=float, default=0.5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--ref-images", type=int, default=2, help="batch for the numpy reference")
    ap.add_argument("--isa", nargs="*", default=None, help="default: every supported ISA")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--test-set", type=int, default=0, metavar="N",
                    help="also time N images (e.g. 10000) end to end, uint8 -> scores, batch 64")
    ap.add_argument("--out", default=None, help="also write the JSON here")
    args = ap.parse_args(argv)

    threads = args.threads or engine._default_threads()
    net = Network.full()
    nmax = max(args.batches)
    images = random_images(nmax, net.image_size, seed=1)
    params = random_params(net, seed=0, images=images[:4])
    packed = conv1_packed(params, images)
    expected = reference.binary_scores(params, packed[:args.ref_images])

    res = {
        "machine": {"cpu": cpu_model(), "cpus": os.cpu_count(), "threads": threads,
                    "python": platform.python_version(), "numpy": np.__version__,
                    "loadavg_start": list(os.getloadavg())},
        "network": "BinaryNet full (128-128-256-256-512-512 / 1024-1024-10), random weights",
        "native_available": engine.native_available(),
        "supported_isas": engine.supported_isas(),
        "results": {},
    }
    R = res["results"]

    # ---------------------------------------------------------------- torch baseline
    torch = None
    if not args.no_torch:
        try:
            import torch  # noqa: F811
        except ImportError:
            torch = None
    if torch is not None:
        torch.set_num_threads(threads)
        res["machine"]["torch"] = torch.__version__
        model = torch_model(torch, net, params)
        fimgs = torch.from_numpy(images.astype(np.float32) * 2 - 255).permute(0, 3, 1, 2)
        fimgs = fimgs.contiguous(memory_format=torch.channels_last)
        R["torch"] = {}
        with torch.inference_mode():
            for b in args.batches:
                xb = fimgs[:b]
                R["torch"][f"batch{b}"] = measure(lambda: model(xb), b, args.min_time, args.rounds)
            if threads > 1:  # intra-op threads can collapse on a busy machine: keep the better
                torch.set_num_threads(1)
                for b in args.batches:
                    xb = fimgs[:b]
                    R["torch"][f"batch{b}_1thread"] = measure(lambda: model(xb), b,
                                                              args.min_time, args.rounds)
                torch.set_num_threads(threads)

    # ---------------------------------------------------------------- native engine
    isas = args.isa if args.isa else engine.supported_isas()
    for isa in isas:
        e = engine.Engine(params, threads=threads, isa=isa)
        assert np.array_equal(e.binary_scores(packed[:args.ref_images]), expected), isa
        key = f"engine.{e.isa}"
        R[key] = {}
        for b in args.batches:
            xb = packed[:b]
            mt = args.min_time if isa in ("avx512", "avx2", "neon") else args.min_time / 2
            R[key][f"batch{b}"] = measure(lambda: e.binary_scores(xb), b, mt, args.rounds)
        for b in args.batches:
            if threads > 1:  # single-thread number for scale
                e1 = engine.Engine(params, threads=1, isa=isa)
                if isa in ("avx512", "avx2", "neon"):
                    R[key][f"batch{b}_1thread"] = measure(lambda: e1.binary_scores(packed[:b]), b,
                                                          args.min_time, args.rounds)

    # full pipeline: FirstLayer + engine (best ISA)
    if engine.native_available():
        e = engine.Engine(params, threads=threads)
        assert np.array_equal(e.scores(images[:args.ref_images]), expected)
        R["pipeline"] = {"isa": e.isa}
        for b in args.batches:
            ib = images[:b]
            R["pipeline"][f"batch{b}"] = measure(lambda: e.scores(ib), b, args.min_time,
                                                 args.rounds)

    if args.test_set and engine.native_available():
        e = engine.Engine(params, threads=threads)
        many = random_images(args.test_set, net.image_size, seed=2)
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(0, len(many), 64):
            e.scores(many[i:i + 64])
        dt = time.perf_counter() - t0
        R["test_set"] = {"images": args.test_set, "batch": 64, "seconds": round(dt, 2),
                         "images_per_s": round(args.test_set / dt, 1),
                         "cpu_seconds": round(time.process_time() - c0, 2)}

    # ---------------------------------------------------------------- numpy reference
    rb = args.ref_images
    R["reference"] = {f"batch{rb}": measure(lambda: reference.binary_scores(params, packed[:rb]),
                                            rb, 0.0, 1)}

    # ---------------------------------------------------------------- layer 1
    # FirstLayer as the package runs it (native where built; "path" says which) and its
    # numpy/BLAS path (what it was before the native layer 1; benchmarks/bench_layer1.py
    # compares every path)
    fl = FirstLayer(params)
    fl_numpy = FirstLayer(params, native=False)
    R["layer1"] = {"path": fl.isa, "ours": {}, "ours_numpy_path": {}, "conv1_packed_spec": {}}
    for b in args.batches:
        assert np.array_equal(fl(images[:b]), packed[:b])
        R["layer1"]["ours"][f"batch{b}"] = measure(lambda: fl(images[:b]), b, args.min_time,
                                                   args.rounds)
        R["layer1"]["ours_numpy_path"][f"batch{b}"] = measure(lambda: fl_numpy(images[:b]), b,
                                                              args.min_time, args.rounds)
        R["layer1"]["conv1_packed_spec"][f"batch{b}"] = measure(
            lambda: conv1_packed(params, images[:b]), b, args.min_time / 2, 1)
    if torch is not None:
        lp = params.layers["conv1"]
        w = torch.from_numpy(lp.weights.astype(np.float32)).permute(0, 3, 1, 2).contiguous()
        w = w.contiguous(memory_format=torch.channels_last)
        thr = torch.from_numpy(lp.thresholds.astype(np.float32)).view(1, -1, 1, 1)
        pos = torch.from_numpy(lp.directions > 0).view(1, -1, 1, 1)
        F = torch.nn.functional
        R["layer1"]["torch_conv2d_threshold"] = {}

        def torch_l1(xb):
            s = F.conv2d(xb, w, padding=1)
            return torch.where(pos, s >= thr, s <= thr)

        with torch.inference_mode():
            for b in args.batches:
                xb = fimgs[:b]
                R["layer1"]["torch_conv2d_threshold"][f"batch{b}"] = measure(
                    lambda: torch_l1(xb), b, args.min_time, args.rounds)

    # ---------------------------------------------------------------- ratios
    ratios = {}
    if "torch" in R:
        def torch_best(b):  # the faster of torch with `threads` and with 1 thread
            t = R["torch"]
            return max(t[f"batch{b}"]["images_per_s"],
                       t.get(f"batch{b}_1thread", {}).get("images_per_s", 0.0))
        ratios["torch_baseline_images_per_s"] = {f"batch{b}": torch_best(b) for b in args.batches}
        for key, v in R.items():
            if key.startswith("engine.") or key == "pipeline":
                for b in args.batches:
                    ratios[f"{key}.batch{b}_vs_torch"] = round(
                        v[f"batch{b}"]["images_per_s"] / torch_best(b), 2)
        for b in args.batches:
            ratios[f"layer1.batch{b}_vs_torch_conv2d"] = round(
                R["layer1"]["ours"][f"batch{b}"]["images_per_s"]
                / R["layer1"]["torch_conv2d_threshold"][f"batch{b}"]["images_per_s"], 2)
    if "torch" in R:  # the same ratios from CPU time: robust to other jobs on the machine
        def torch_best_cpu(b):
            t = R["torch"]
            return max(t[f"batch{b}"]["images_per_cpu_s"],
                       t.get(f"batch{b}_1thread", {}).get("images_per_cpu_s", 0.0))
        for key, v in R.items():
            if key.startswith("engine.") or key == "pipeline":
                for b in args.batches:
                    ratios[f"{key}.batch{b}_vs_torch_per_cpu_s"] = round(
                        v[f"batch{b}"]["images_per_cpu_s"] / torch_best_cpu(b), 2)
    best = f"engine.{engine.Engine(params).isa}" if engine.native_available() else None
    if best and best in R and "reference" in R:  # --isa may have left the default ISA out
        ratios[f"{best}.batch1_vs_numpy_reference"] = round(
            R[best]["batch1"]["images_per_s"] / R["reference"][f"batch{rb}"]["images_per_s"], 1)
    if "pipeline" in R and 64 in args.batches:
        ratios["cifar10_test_set_seconds_at_batch64"] = round(
            10000 / R["pipeline"]["batch64"]["images_per_s"], 1)
    res["ratios"] = ratios
    res["machine"]["loadavg_end"] = list(os.getloadavg())
    emit_json(res, args.out)


if __name__ == "__main__":
    main()
