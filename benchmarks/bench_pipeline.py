#!/usr/bin/env python3
"""Sequential vs overlapped (layer 1 on the host || kernel) images/s on the mock. Prints JSON.

    nice -n 10 python benchmarks/bench_pipeline.py [--batch 64] [--ratios 0.5 1 2] [--out FILE]

For each ratio r the simulated kernel takes r x (measured layer-1 time) per image of wall-clock
time, during which CTRL reads busy and the host is free (pynq_bnn.backends.sim.kernel,
Faults.latency_per_image). Its scores come from a table computed beforehand on the CPU and are
read back through the simulated DDR, so the figures are the driver's and the overlap's. Per
ratio: sequential and overlapped images/s, and the overlapped rate as a fraction of
max(ARM, FPGA) (the best overlap can do on an endless stream), of that plus the pipeline fill
(the first layer 1 or the last kernel run, which a pass of --batches batches cannot overlap)
and of ARM + FPGA (no overlap), each taken within one (sequential, overlapped) pair of passes
and the median reported. Scores are checked equal.
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from pynq_bnn import Network  # noqa: E402
from pynq_bnn.testing import random_params  # noqa: E402
from pynq_bnn.tools.bench import cpu_model, emit_json, loadavg, pipeline_overlap  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--batches", type=int, default=8, help="batches per pass")
    ap.add_argument("--rounds", type=int, default=7, help="(sequential, overlapped) pass pairs")
    ap.add_argument("--ratios", type=float, nargs="+", default=[0.5, 1.0, 2.0],
                    help="simulated kernel time / layer-1 time")
    ap.add_argument("--threads", type=int, default=1, help="FirstLayer threads")
    ap.add_argument("--no-interrupt", action="store_true", help="poll CTRL instead")
    ap.add_argument("--out", default=None, help="also write the JSON here")
    args = ap.parse_args(argv)
    params = random_params(Network.full(), seed=0)
    result = {"machine": {"cpu": cpu_model(), "cpus": os.cpu_count(),
                          "load_average_before": loadavg()},
              "network": "full BinaryNet (random weights)", "backend": "mock", "runs": []}
    for r in args.ratios:
        result["runs"].append(dict(kernel_vs_layer1=r, **pipeline_overlap(
            params, "mock", args.batch, args.batches, args.rounds, kernel_vs_layer1=r,
            interrupt=not args.no_interrupt, threads=args.threads)))
    result["machine"]["load_average_after"] = loadavg()
    emit_json(result, args.out)


if __name__ == "__main__":
    main()
