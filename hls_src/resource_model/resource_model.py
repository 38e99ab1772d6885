#!/usr/bin/env python3
"""Resource ESTIMATE of the pynq-bnn HLS kernel on the XC7Z020 (Pynq-Z1/Z2).

    python3 hls_src/resource_model/resource_model.py            # print the table
    python3 hls_src/resource_model/resource_model.py --merge F  # add "resources" to estimate JSON F

Three kinds of numbers, each labelled in the output:

* MEASURED (units): the repeated datapath units (XNOR-popcount + accumulate + threshold of a
  conv filter over a pixel pair, the dense unit, the pooling word) as Verilog models of the same
  structure (units.v), synthesized by Debian's yosys `synth_xilinx -family xc7 -abc9`
  (synth.py -> measured.json, committed). The unit counts are multiplied by how many the
  kernel instantiates (bnn_config.hpp).
* SHAPE (BRAM): every on-chip buffer from its depth x width, packed into the XC7 block RAM
  aspect ratios (BRAM36 512x72 .. 32Kx1, BRAM18 512x36 .. 16Kx1 as half a BRAM36); m_axi
  buffers by the UG1399 "M_AXI Resources" formula (outstanding x burst length x width) from
  the INTERFACE pragmas of src/bnn_kernel.cpp.
* ASSUMED: what cannot be measured here (the Vitis m_axi adapters and AXI-Lite block, the
  kernel's control logic, HLS pipeline registers). Each has its reasoning next to it; the
  first real csynth / Vivado run replaces them (hls_src/README.md, "First synthesis").

Nothing here is a Vitis HLS or Vivado result.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
HLS = os.path.dirname(HERE)
DEVICE = {"name": "XC7Z020", "LUT": 53200, "FF": 106400, "BRAM36": 140, "DSP": 220}
GOALS = {"LUT": 0.75, "BRAM36": 0.85}
#: HLS adds multiplexers, enables and FSM decoding around a measured datapath; the model adds
#: this share on top of every MEASURED and ASSUMED LUT figure (a margin, stated, not measured).
HLS_LUT_MARGIN = 0.15

# BRAM aspect ratios (depth, width) in SDP mode.
BRAM36 = [(512, 72), (1024, 36), (2048, 18), (4096, 9), (8192, 4), (16384, 2), (32768, 1)]
BRAM18 = [(512, 36), (1024, 18), (2048, 9), (4096, 4), (8192, 2), (16384, 1)]


def bram36_for(depth: int, width: int) -> float:
    """Fewest BRAM36 (a BRAM18 counts 0.5) that hold depth x width bits, one port each way."""
    best = min(math.ceil(depth / d) * math.ceil(width / w) for d, w in BRAM36)
    best18 = min(math.ceil(depth / d) * math.ceil(width / w) for d, w in BRAM18) / 2
    return min(best, best18)


def config():
    """The constants of include/bnn_config.hpp the model needs."""
    c = {}
    for name in ("bnn_abi.hpp", "bnn_config.hpp"):  # limits may come from the ABI header
        text = open(os.path.join(HLS, "include", name)).read()
        for k, v in re.findall(r"\b([A-Z][A-Z0-9_]*)\s*=\s*(?:abi::)?(\w+)\s*[;,]", text):
            if re.fullmatch(r"\d+u?", v):
                c.setdefault(k, int(v.rstrip("u")))
            elif v in c:
                c.setdefault(k, c[v])
    c["MAX_CIN_WORDS"] = c["MAX_CHANNELS"] // 64
    c["MAX_FILTER_WORDS"] = 9 * c["MAX_CIN_WORDS"]
    c["ACT_BANK_WORDS"] = c["MAX_CONV_SIZE"] ** 2 * c["MAX_CIN_WORDS"]
    c["DENSE_BUF_WORDS"] = c["MAX_DENSE_IN"] // 64 + 2 * (c["MAX_DENSE_OUT"] // 64)
    return c


def m_axi_ports():
    """[(port, bundle, width, {options})] from the INTERFACE pragmas of src/bnn_kernel.cpp."""
    src = open(os.path.join(HLS, "src", "bnn_kernel.cpp")).read()
    widths = {"params": 64, "params2": 64, "input": 64, "scores": 32}  # Word / Score
    out = []
    for line in re.findall(r"#pragma HLS INTERFACE m_axi([^\n]*)", src):
        o = dict(re.findall(r"(\w+)=(\S+)", line))
        out.append((o["port"], o["bundle"], widths[o["port"]], o))
    return out


def model(measured_path: str = os.path.join(HERE, "measured.json")) -> dict:
    meas = json.load(open(measured_path))
    units = meas["units"]
    c = config()
    pe, batch = c["CONV_PE"], c["DENSE_BATCH"]
    items = []

    def add(name, kind, derivation, lut=0, ff=0, bram36=0.0, dsp=0, carry4=0):
        items.append({"block": name, "kind": kind, "derivation": derivation, "LUT": int(lut),
                      "FF": int(ff), "CARRY4": int(carry4), "BRAM36": bram36, "DSP": int(dsp)})

    # ---- MEASURED datapath units ----
    u = units["conv_pe_pair"]
    add("conv XNOR-popcount-accumulate-threshold array", "MEASURED",
        f"{pe} filters x conv_pe_pair (2 pixels x (xnor_popcount64_lut6 + acc_threshold_xor)): "
        f"{u['LUT']} LUT, {u['CARRY4']} CARRY4, {u['FF']} FF each (yosys, units.v)",
        lut=pe * u["LUT"], ff=pe * u["FF"], carry4=pe * u["CARRY4"])
    u = units["pool_word64"]
    add("conv 2x2 pooling on bits", "MEASURED",
        f"1 x pool_word64 (pair + row merge of one 64-channel word): {u['LUT']} LUT, {u['FF']} FF",
        lut=u["LUT"], ff=u["FF"])
    u = units["dense_unit"]
    add("dense XNOR-popcount-accumulate-threshold array", "MEASURED",
        f"{batch} units x dense_unit: {u['LUT']} LUT, {u['CARRY4']} CARRY4, {u['FF']} FF each "
        f"(one row x {batch} images per cycle, or two rows x {batch // 2} images: the same "
        f"units, not a second array)",
        lut=batch * u["LUT"], ff=batch * u["FF"], carry4=batch * u["CARRY4"])

    # ---- SHAPE: on-chip buffers ----
    fw = c["MAX_FILTER_WORDS"]
    add("conv weight double buffer", "SHAPE",
        f"{pe} banks x {2 * fw} x 64 bit (2 halves x MAX_FILTER_WORDS); width-bound: one "
        f"512x72 BRAM36 per bank", bram36=pe * bram36_for(2 * fw, 64))
    aw = c["ACT_BANK_WORDS"]
    add("activation memory (even / odd column banks)", "SHAPE",
        f"2 banks x {aw} x 64 bit, simple dual port", bram36=2 * bram36_for(aw, 64))
    dw = c["DENSE_BUF_WORDS"]
    add("dense buffer (fc1 input + hidden ping-pong)", "SHAPE",
        f"{batch} banks (one per image) x {dw} x 64 bit", bram36=batch * bram36_for(dw, 64))
    add("dense thresholds (two row halves)", "SHAPE",
        f"2 tables x {c['MAX_DENSE_OUT'] // 2} x 34 bit (two prepared 17-bit entries per "
        f"word): one 512x36 BRAM18 each", bram36=2 * bram36_for(c["MAX_DENSE_OUT"] // 2, 34))
    sb_bits = c["MAX_CLASSES"] * 32
    add("scores of a chunk (LUTRAM)", "SHAPE",
        f"{batch} banks (one per dense unit) x {c['MAX_CLASSES']} x 32 bit in RAM64M "
        f"(64 x 3 bit per 4 LUT): {batch} x ceil(32 / 3) x 4 LUT",
        lut=batch * math.ceil(32 / 3) * 4)
    del sb_bits
    fd = c["WEIGHT_FIFO_DEPTH"]
    add("weight stream FIFOs (conv x 2, dense x 2: one per parameter port)", "SHAPE",
        f"4 x {fd} x 64 bit: shift-register LUTs (SRLC32E, 1 LUT per bit for depth <= 32)",
        lut=4 * 64 if fd <= 32 else 0, bram36=0 if fd <= 32 else 4 * bram36_for(fd, 64))
    for port, bundle, width, o in m_axi_ports():
        rd = int(o["num_read_outstanding"]) * int(o["max_read_burst_length"])
        wr = int(o["num_write_outstanding"]) * int(o["max_write_burst_length"])
        b = 0.0
        parts = []
        for words, what in ((rd, "read"), (wr, "write")):
            if words >= 64:  # smaller buffers go to LUTRAM/SRL
                b += bram36_for(words, width)
                parts.append(f"{what} {words} x {width} bit -> {bram36_for(words, width)} BRAM36")
            else:
                parts.append(f"{what} {words} x {width} bit -> LUTRAM")
        add(f"m_axi {bundle} ({port}) buffers", "SHAPE",
            "UG1399 M_AXI Resources, outstanding x burst length x width: " + "; ".join(parts),
            bram36=b)

    # ---- ASSUMED: what no tool here can measure ----
    n_maxi = len(m_axi_ports())
    add(f"m_axi adapters ({n_maxi})", "ASSUMED",
        "Vitis HLS m_axi adapter logic (request FIFOs, burst counters, AXI3-length "
        "splitting), about 1,000 LUT / 1,400 FF each for a one-direction 16-beat port; "
        "not measured here", lut=n_maxi * 1000, ff=n_maxi * 1400)
    add("AXI-Lite control + ap_ctrl_hs", "ASSUMED",
        "10 argument registers (4 x 64-bit pointers, n_images, abi_id with ap_vld), address "
        "decode, interrupt logic", lut=350, ff=520)
    add("parameter weight readers (conv x 2, dense x 2)", "ASSUMED",
        "per reader a 32-bit address adder, a loop counter and its compare (~100 LUT, "
        "~100 FF); the port-1 readers are the second port's cost besides its adapter",
        lut=4 * 100, ff=4 * 100)
    add("conv address and control logic", "ASSUMED",
        "the conv_step counters and adders (about 20 values of <= 16 bit: ~320 LUT), "
        "the even/odd input swap (2 x 64 LUT), output word select (2 x 64 LUT), weight bank "
        "write decode (64 LUT), threshold load decode + 2 incrementers (~100 LUT)",
        lut=320 + 128 + 128 + 64 + 100, ff=64 * 17 * 2 + 400)
    add("dense control, output bit packing", "ASSUMED",
        "threshold read + unpack of both row halves (2 x ~40 LUT), 16 x 64 output bit "
        "registers with a shared 64-way enable decode (64 LUT), counters (~60 LUT)",
        lut=2 * 40 + 64 + 60, ff=16 * 64 + 100)
    half = batch // 2
    add("dense two-row mode routing", "ASSUMED",
        f"the upper {half} units take the lower images' input word ({half} x 64-bit 2:1 mux, "
        f"LUT6_2: 32 LUT each) and the gmem3 weight word (one 64-bit 2:1 mux, 32 LUT) and "
        f"thresholds (17-bit mux, 9 LUT); the lower {half} banks' write data chooses the unit's "
        f"word or the upper unit's word of the cycle before ({half} x 32 LUT); {half} x 64 "
        f"pending-word registers", lut=half * 32 + 32 + 9 + half * 32, ff=half * 64 + 20)
    add("descriptor table, plan, loaders, top FSM", "ASSUMED",
        "16 descriptors x 134 bit as registers with a 16:1 read mux (~540 LUT), make_plan and "
        "descriptor checks (~400 LUT, small multiplies: up to 6 DSP48), load_input / flatten "
        "counters (~150 LUT), slot FSM (~300 LUT), the dense layer's rows x words of gmem0 "
        "(one multiply per layer: 1 DSP48), the params2 header compare (2 x 64 bit, ~45 LUT)",
        lut=540 + 400 + 150 + 300 + 45, ff=16 * 134 + 600, dsp=7)
    add("HLS pipeline registers in the popcount trees", "ASSUMED",
        "one register stage inside each of the 144 popcount trees at 100 MHz "
        "(11 x 3 bit after level 1)", ff=144 * 33)

    lut_raw = sum(i["LUT"] for i in items)
    lut = int(round(lut_raw * (1 + HLS_LUT_MARGIN)))
    ff = sum(i["FF"] for i in items)
    bram = sum(i["BRAM36"] for i in items)
    dsp = sum(i["DSP"] for i in items)
    totals = {
        "LUT": lut, "LUT_before_margin": lut_raw, "FF": ff, "BRAM36": bram, "DSP": dsp,
        "CARRY4": sum(i["CARRY4"] for i in items),
    }
    util = {k: round(totals[k] / DEVICE[k if k != "BRAM36" else "BRAM36"], 3)
            for k in ("LUT", "FF", "BRAM36", "DSP")}
    return {
        "kind": "ESTIMATE",
        "ESTIMATE": "Resource ESTIMATE: datapath units MEASURED as yosys synth_xilinx models "
                    "(units.v), buffers by SHAPE and the UG1399 m_axi formula, the rest ASSUMED "
                    "(stated per block). Not a Vitis HLS or Vivado result.",
        "device": DEVICE,
        "yosys": meas.get("yosys"),
        "hls_lut_margin": HLS_LUT_MARGIN,
        "blocks": items,
        "totals": totals,
        "utilization": util,
        "goals": GOALS,
        "goals_met": util["LUT"] <= GOALS["LUT"] and util["BRAM36"] <= GOALS["BRAM36"],
        "former_design": {
            "note": "the same model on the former kernel (SWAR popcount, direction-mux "
                    "comparator, 3 dense instances, 256-beat m_axi buffers)",
            "conv_array_LUT": pe * units["conv_pe_pair_old"]["LUT"],
            "m_axi_BRAM36": 8 + 4 + 1,
        },
    }


def table(m: dict) -> str:
    rows = [f"{'block':48s} {'kind':9s} {'LUT':>7s} {'FF':>7s} {'BRAM36':>7s} {'DSP':>4s}"]
    for i in m["blocks"]:
        rows.append(f"{i['block'][:48]:48s} {i['kind']:9s} {i['LUT']:7d} {i['FF']:7d} "
                    f"{i['BRAM36']:7.1f} {i['DSP']:4d}")
    t, u = m["totals"], m["utilization"]
    rows.append(f"{'total (LUT + %d%% HLS margin)' % round(100 * m['hls_lut_margin']):48s} "
                f"{'ESTIMATE':9s} {t['LUT']:7d} {t['FF']:7d} {t['BRAM36']:7.1f} {t['DSP']:4d}")
    rows.append(f"{'XC7Z020 share':48s} {'':9s} {100 * u['LUT']:6.1f}% {100 * u['FF']:6.1f}% "
                f"{100 * u['BRAM36']:6.1f}% {100 * u['DSP']:3.1f}%")
    return "\n".join(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--merge", action="append", default=[],
                    help="estimate JSON to add the 'resources' section to (repeatable)")
    args = ap.parse_args(argv)
    m = model()
    print(table(m))
    for path in args.merge:
        with open(path) as f:
            data = json.load(f)
        data["resources"] = m
        with open(path, "w") as f:
            json.dump(data, f, indent=1)
            f.write("\n")
        print(f"resources -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
