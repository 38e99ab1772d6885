#!/usr/bin/env python3
"""Measure the datapath units of units.v with Debian's yosys (synth_xilinx -family xc7).

    python3 hls_src/resource_model/synth.py [--abc9 | --no-abc9] [--out measured.json]

Each module of units.v is synthesized on its own (flattened, no I/O buffers) and its cell
counts are written to measured.json: LUT (LUT1..LUT6), CARRY4, FF (FD*), MUXF7/F8, DSP48E1,
plus the yosys version and the exact command. Takes ~1 minute; not part of CI (the committed
measured.json is what hls_src/resource_model/resource_model.py reads). Needs `yosys`
(`apt-get install -y yosys`; 0.23 was used for the committed numbers).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
UNITS = os.path.join(HERE, "units.v")
MODULES = ["xnor_popcount64_swar", "xnor_popcount64_lut6", "acc_threshold_dir",
           "acc_threshold_xor", "pool_word64", "conv_pe_pair", "conv_pe_pair_old", "dense_unit"]


def synth(module: str, abc9: bool) -> dict:
    script = (f"read_verilog {UNITS}; synth_xilinx -family xc7 -top {module} -flatten "
              f"-noiopad{' -abc9' if abc9 else ''}; stat")
    r = subprocess.run(["yosys", "-p", script], capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise RuntimeError(f"yosys failed on {module}:\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
    stat = r.stdout[r.stdout.rindex("Printing statistics"):]
    cells = {name: int(n) for name, n in re.findall(r"^\s+(\w+)\s+(\d+)\s*$", stat, re.M)}
    return {
        "LUT": sum(v for k, v in cells.items() if re.fullmatch(r"LUT[1-6]", k)),
        "CARRY4": cells.get("CARRY4", 0),
        "FF": sum(v for k, v in cells.items() if k.startswith("FD")),
        "MUXF": cells.get("MUXF7", 0) + cells.get("MUXF8", 0),
        "DSP48E1": cells.get("DSP48E1", 0),
        "cells": {k: v for k, v in cells.items() if k not in ("BUFG",)},
        "command": f"yosys -p \"{script.replace(UNITS, 'units.v')}\"",
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-abc9", dest="abc9", action="store_false", help="classic abc mapping")
    ap.add_argument("--out", default=os.path.join(HERE, "measured.json"))
    args = ap.parse_args(argv)
    version = subprocess.run(["yosys", "-V"], capture_output=True, text=True).stdout.strip()
    result = {"MEASURED": "yosys synth_xilinx -family xc7 cell counts of the Verilog unit MODELS "
                          "in units.v (not Vitis HLS / Vivado results)",
              "yosys": version, "abc9": args.abc9, "units": {}}
    for m in MODULES:
        for mode in ([True, False] if args.abc9 else [False]):
            key = m if mode == args.abc9 else f"{m}@{'abc9' if mode else 'abc'}"
            result["units"][key] = synth(m, mode)
            u = result["units"][key]
            print(f"{key:36s} LUT {u['LUT']:4d}  CARRY4 {u['CARRY4']:3d}  FF {u['FF']:4d}  "
                  f"MUXF {u['MUXF']:2d}  DSP {u['DSP48E1']}")
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1, sort_keys=True)
        f.write("\n")
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
