#!/usr/bin/env python3
"""Driver overhead per kernel start on the mock (Python, registers, copies, cache sync, checks).

    nice -n 10 python benchmarks/bench_driver_overhead.py [--batches 1 16 64] [--out FILE]

The simulated kernel answers at once (all-zero scores, no latency) and the time spent inside
it is measured and subtracted, so what remains is what pynq_bnn.backends.driver costs the host per
start: run() and submit()+wait(). Prints JSON. ``cpu_ms`` (process CPU time per start) is the
figure to quote on a shared machine; ``wall_best_ms`` is the least-disturbed round. The
target is under 0.2 ms per batch (docs/PERFORMANCE.md).
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from pynq_bnn import Network  # noqa: E402
from pynq_bnn.testing import random_params  # noqa: E402
from pynq_bnn.tools.bench import cpu_model, driver_overhead, emit_json, loadavg  # noqa: E402

TARGET_MS = 0.2


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 16, 64])
    ap.add_argument("--calls", type=int, default=500, help="starts per round")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--interrupt", action="store_true", help="simulated IP with its interrupt")
    ap.add_argument("--out", default=None, help="also write the JSON here")
    args = ap.parse_args(argv)
    params = random_params(Network.full(), seed=0)
    result = {"machine": {"cpu": cpu_model(), "cpus": os.cpu_count(),
                          "load_average_before": loadavg()},
              "network": "full BinaryNet (random weights)", "target_ms_per_batch": TARGET_MS}
    result.update(driver_overhead(params, batches=args.batches, calls=args.calls,
                                  rounds=args.rounds, interrupt=args.interrupt))
    result["machine"]["load_average_after"] = loadavg()
    result["under_target_cpu"] = all(
        v[k]["cpu_ms"] < TARGET_MS for key, v in result.items() if key.startswith("batch")
        for k in ("run", "submit_wait"))
    emit_json(result, args.out)


if __name__ == "__main__":
    main()
