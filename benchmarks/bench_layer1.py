#!/usr/bin/env python3
"""Layer 1 and the CPU engine: native paths against today's numpy FirstLayer, and guest
instructions per image on an emulated Cortex-A9. Prints JSON.

    python benchmarks/bench_layer1.py [--threads 1 2] [--batches 1 16 64] [--no-arm]
                                      [--out benchmarks/results/layer1.json]

* ``host``: on this CPU, images/s (wall) and images per CPU-second of ``FirstLayer`` for the
  numpy/BLAS path (``FirstLayer(native=False)``: what FirstLayer was before the native path,
  the baseline of every ``speedup_vs_numpy``, measured in the same run) and for every native
  layer-1 path (``FirstLayer(isa=...)``), per batch size and thread count, on the full
  model's layer 1 (128 channels, random weights).
* ``arm``: guest instructions per image under qemu-arm (``-cpu cortex-a9``), counted by the
  TCG plugin of benchmarks/arm/insn_count.c between markers around the native call: layer 1
  (incl. threshold and packing) and the binary layers (full network), NEON, batch 16 (whole
  batch counted, both threads), plus a per-layer split of the engine (1 thread). Only the C
  call is counted: no Python, no decode (benchmarks/arm/ measures the installed package end
  to end). Needs gcc-arm-linux-gnueabihf, qemu-user and the plugin source; skipped otherwise.

Speed claims are ratios inside one run: the machine may be shared.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "arm"))

from pynq_bnn import Network  # noqa: E402
from pynq_bnn.backends.cpu import engine  # noqa: E402
from pynq_bnn.host.layer1 import FirstLayer  # noqa: E402
from pynq_bnn.spec import reference  # noqa: E402
from pynq_bnn.spec.first_layer import conv1_packed  # noqa: E402
from pynq_bnn.testing import random_images, random_params  # noqa: E402
from pynq_bnn.tools.bench import cpu_model, emit_json, loadavg, timed_rounds  # noqa: E402


def measure(fn, batch: int, min_time: float, rounds: int) -> dict:
    runs = timed_rounds(fn, min_time, rounds)
    rates = [reps * batch / dt for reps, dt, _ in runs]
    cpu_rates = [reps * batch / max(cpu, 1e-9) for reps, _, cpu in runs]
    return {"images_per_s": round(statistics.median(rates), 1), "best": round(max(rates), 1),
            "images_per_cpu_s": round(statistics.median(cpu_rates), 1)}


def host_section(args) -> dict:
    net = Network.full()
    images = random_images(max(args.batches), net.image_size, seed=1)
    params = random_params(net, seed=2, images=images[:2])
    expected = conv1_packed(params, images)
    paths = ["numpy"] + engine.layer1_isas()
    R = {"model": "full (layer 1: 3 -> 128 channels, 32x32)", "paths": paths, "results": {},
         "speedup_vs_numpy": {}}
    for threads in args.threads:
        for path in paths:
            fl = (FirstLayer(params, threads=threads, native=False) if path == "numpy"
                  else FirstLayer(params, threads=threads, isa=path))
            assert np.array_equal(fl(images), expected), path  # what is timed is exact
            for b in args.batches:
                out = np.empty((b,) + expected.shape[1:], dtype=np.uint64)
                key = f"{path}.threads{threads}.batch{b}"
                R["results"][key] = measure(lambda: fl(images[:b], out=out), b, args.min_time,
                                            args.rounds)
            fl.close()
        for path in paths[1:]:
            for b in args.batches:
                base = R["results"][f"numpy.threads{threads}.batch{b}"]
                ours = R["results"][f"{path}.threads{threads}.batch{b}"]
                R["speedup_vs_numpy"][f"{path}.threads{threads}.batch{b}"] = {
                    "wall": round(ours["images_per_s"] / base["images_per_s"], 2),
                    "cpu": round(ours["images_per_cpu_s"] / base["images_per_cpu_s"], 2)}
    return R


def arm_section(batch: int) -> dict:
    import qemu_harness as qh
    why = qh.missing("armhf")
    if why:
        return {"skipped": why}
    if qh.plugin() is None:
        return {"skipped": f"no instruction-count plugin ({qh.PLUGIN_SRC} or host gcc missing)"}
    R = {"cpu": "qemu-arm -cpu cortex-a9 (QEMU TCG, guest instructions counted by plugin)",
         "batch": batch, "layer1": {}, "engine": {}, "engine_per_layer": {}}
    for name, net in (("full", Network.full()), ("half", Network.half())):
        images = random_images(batch, net.image_size, seed=3)
        params = random_params(net, seed=4, images=images[:2])
        packed = conv1_packed(params, images)
        for threads in (1, 2):
            out, counts = qh.layer1(params, images, "neon", threads, count=True)
            assert np.array_equal(out, packed)
            R["layer1"][f"{name}.neon.threads{threads}"] = {
                "instructions_per_image": round(counts[0] / batch)}
        ref = reference.binary_scores(params, packed)
        out, counts = qh.binary_scores(params, packed, "neon", 2, count=True)
        assert np.array_equal(out, ref)
        R["engine"][f"{name}.neon.threads2"] = {"instructions_per_image": round(counts[0] / batch)}
        n = min(batch, 4)
        out, counts, evs = qh.run(qh.engine_job(params, packed[:n], "neon", 1), count=True,
                                  cflags=("-DBNN_MARKERS",), events=True)
        per = qh.layer_counts(evs)
        R["engine_per_layer"][name] = {
            layer.name: round(per.get(i, 0) / n) for i, layer in enumerate(net.binary_layers)}
        R["engine_per_layer"][name]["total"] = round(counts[0] / n)
    return R


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 16, 64])
    ap.add_argument("--min-time", type=float, default=0.3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--arm-batch", type=int, default=16)
    ap.add_argument("--no-arm", action="store_true", help="skip the emulated counts")
    ap.add_argument("--out", default=None, help="also write the JSON here")
    args = ap.parse_args(argv)
    result = {"benchmark": "bench_layer1", "cpu": cpu_model(), "machine": platform.machine(),
              "python": platform.python_version(), "numpy": np.__version__,
              "engine_status": engine.status(), "loadavg_before": loadavg(),
              "host": host_section(args)}
    if not args.no_arm:
        result["arm"] = arm_section(args.arm_batch)
    result["loadavg_after"] = loadavg()
    emit_json(result, args.out)


if __name__ == "__main__":
    main()
