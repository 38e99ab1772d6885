"""Structural checks of the HLS kernel source (hls_src/) that need no tool: what the first real
Vitis HLS run would otherwise find out the hard way (issue 14).

* every m_axi bundle carries one data width and one option set (mixed widths or options in a
  bundle disable burst inference or fall back to defaults), and bursts are at most 16 beats
  (Zynq-7000 HP ports are AXI3);
* the overlay flow maps every bundle to an HP port explicitly: the two parameter masters
  (gmem0, gmem3: ABI version 2) on HP0 and HP2, which reach the DDR controller through
  different ports (HP0/HP1 and HP2/HP3 share one each), input and scores on a third port;
* params2 is the last argument of the top function (its registers follow abi_id_ctrl, every
  version-1 offset stays) and feeds only the second-port readers;
* one call site per engine (conv_layer, dense_layer, load_input, flatten_to_dense), so no
  engine is instantiated twice, and ALLOCATION limit=1 on the conv engine;
* DEPENDENCE pragmas inside the body of the pipelined loop they are about, not at function
  scope;
* no variable-by-variable multiply in any II=1 loop body (counters and adders only);
* load_dense_thresholds writes one table entry per iteration (II = 1 on a plain BRAM).
"""
from __future__ import annotations

import os
import re

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HLS = os.path.join(REPO, "hls_src")
KERNEL = os.path.join(HLS, "src", "bnn_kernel.cpp")
HEADERS = [os.path.join(HLS, "include", f) for f in sorted(os.listdir(os.path.join(HLS, "include")))
           if f.endswith(".hpp")]
TYPE_BITS = {"Word": 64, "bnn::Word": 64, "Score": 32, "bnn::Score": 32}


def read(path):
    with open(path) as f:
        return f.read()


def strip_comments(src):
    src = re.sub(r"/\*.*?\*/", lambda m: "\n" * m.group(0).count("\n"), src, flags=re.S)
    return re.sub(r"//[^\n]*", "", src)


def m_axi_pragmas():
    """[(port, {option: value})] of the top function's m_axi INTERFACE pragmas."""
    out = []
    for line in re.findall(r"^\s*#pragma\s+HLS\s+INTERFACE\s+(?:mode=)?m_axi\b([^\n]*)$",
                           read(KERNEL), re.M):
        opts = dict(re.findall(r"(\w+)=(\S+)", line))
        out.append((opts.pop("port"), opts))
    return out


def top_pointer_widths():
    sig = re.search(r"void\s+bnn_kernel\s*\(([^)]*)\)", strip_comments(read(KERNEL))).group(1)
    widths = {}
    for arg in sig.split(","):
        m = re.match(r"\s*(?:const\s+)?([\w:]+)\s*\*\s*(\w+)\s*$", arg)
        if m and m.group(1) in TYPE_BITS:
            widths[m.group(2)] = TYPE_BITS[m.group(1)]
    return widths


def test_each_m_axi_bundle_has_one_width_and_one_option_set():
    pragmas = m_axi_pragmas()
    widths = top_pointer_widths()
    assert {p for p, _ in pragmas} == {"params", "input", "scores", "params2"}
    bundles = {}
    for port, opts in pragmas:
        bundles.setdefault(opts["bundle"], []).append((port, opts))
    for bundle, ports in bundles.items():
        assert len({widths[p] for p, _ in ports}) == 1, f"{bundle}: mixed widths {ports}"
        option_sets = {tuple(sorted((k, v) for k, v in o.items() if k != "depth"))
                       for _, o in ports}
        assert len(option_sets) == 1, f"{bundle}: differing options {ports}"
    for port, opts in pragmas:
        assert opts.get("offset") == "slave"
        for key in ("max_read_burst_length", "max_write_burst_length", "num_read_outstanding",
                    "num_write_outstanding"):
            assert key in opts, f"{port}: {key} not set deliberately"
        assert int(opts["max_read_burst_length"]) <= 16, f"{port}: AXI3 HP ports burst 16 beats"
        assert int(opts["max_write_burst_length"]) <= 16, f"{port}: AXI3 HP ports burst 16 beats"


def test_m_axi_read_buffers_by_the_ug1399_formula():
    """buff_rdata = num_read_outstanding x max_read_burst_length x width: the parameter port
    holds 128 words (one BRAM36 at most), nothing near the former 16 x 256 x 64 bits."""
    widths = top_pointer_widths()
    for port, o in m_axi_pragmas():
        bits = int(o["num_read_outstanding"]) * int(o["max_read_burst_length"]) * widths[port]
        bits += int(o["num_write_outstanding"]) * int(o["max_write_burst_length"]) * widths[port]
        assert bits <= 512 * 72, f"{port}: {bits} bits of m_axi buffers is more than a BRAM36"


def test_overlay_maps_the_parameter_masters_to_hp0_and_hp2():
    tcl = read(os.path.join(REPO, "overlays", "build_overlay.tcl"))
    m = re.search(r"set HP_PORT_MAP_DEFAULT \{([^}]*)\}", tcl)
    hp = dict(zip(m.group(1).split()[::2], m.group(1).split()[1::2]))
    bundles = {p: o["bundle"] for p, o in m_axi_pragmas()}
    assert set(bundles.values()) == set(hp)
    assert hp[bundles["params"]] == "0" and hp[bundles["params2"]] == "2"
    # Zynq-7000 (UG585): HP0/HP1 share DDR controller port 1, HP2/HP3 port 2
    assert int(hp[bundles["params"]]) // 2 != int(hp[bundles["params2"]]) // 2
    # input and scores never share an HP port (and its interconnect) with a parameter master
    others = {hp[bundles[p]] for p in ("input", "scores")}
    assert others.isdisjoint({hp[bundles["params"]], hp[bundles["params2"]]})


def test_params2_is_the_last_argument_and_feeds_the_second_port_only():
    sig = re.search(r"void\s+bnn_kernel\s*\(([^)]*)\)", strip_comments(read(KERNEL))).group(1)
    args = [a.split()[-1].lstrip("*") for a in sig.split(",")]
    assert args == ["params", "input", "scores", "n_images", "abi_id", "params2"]
    assert top_pointer_widths()["params2"] == top_pointer_widths()["params"] == 64
    opts = dict(m_axi_pragmas())
    same = {k: v for k, v in opts["params"].items() if k != "bundle"}
    assert {k: v for k, v in opts["params2"].items() if k != "bundle"} == same
    assert opts["params2"]["bundle"] != opts["params"]["bundle"]
    src = "".join(strip_comments(read(h)) for h in HEADERS)
    # the port-1 readers are called with params2, the port-0 readers with params
    for reader in (r"conv_weight_reader<CONV_PE,\s*", r"dense_weight_reader<"):
        assert re.search(reader + r"0>\(params,", src), reader
        assert re.search(reader + r"1>\(params2,", src), reader
    assert re.search(r"same_header\(params, params2\)", strip_comments(read(KERNEL)))


def _call_sites(src, func):
    src = strip_comments(src)
    src = re.sub(r"^\s*#pragma[^\n]*$", "", src, flags=re.M)
    # calls: name( or name<...>( not preceded by a type (definitions) or "instances="
    calls = re.findall(rf"(?<![\w:]){func}\s*(?:<[^;()]*>)?\s*\(", src)
    defs = re.findall(rf"\b(?:void|inline void)\s+{func}\s*\(", src)
    return len(calls) - len(defs)


def test_one_call_site_per_engine():
    top = read(KERNEL)
    for func in ("conv_layer", "dense_layer", "load_input", "flatten_to_dense", "write_scores"):
        assert _call_sites(top, func) == 1, f"{func}: expected one call site in bnn_kernel.cpp"
        for h in HEADERS:
            assert _call_sites(read(h), func) == 0, f"{func} called from {h}"
    assert re.search(r"#pragma HLS ALLOCATION function instances=conv_layer limit=1", top)
    # the engines the conv_layer DATAFLOW region calls: once each
    conv = read(os.path.join(HLS, "include", "bnn_conv.hpp"))
    assert _call_sites(conv, "conv_compute<CONV_PE>") == 1
    assert _call_sites(conv, "conv_weight_reader<CONV_PE, 0>") == 1   # gmem0
    assert _call_sites(conv, "conv_weight_reader<CONV_PE, 1>") == 1   # gmem3
    # the dense layer: one engine fed by one reader per parameter port (DATAFLOW)
    dense = read(os.path.join(HLS, "include", "bnn_dense.hpp"))
    for func in ("dense_compute<BATCH>", "dense_stream<BATCH>", "dense_weight_reader<0>",
                 "dense_weight_reader<1>"):
        assert _call_sites(dense, func) == 1, func


def _blocks(src):
    """(start, end, header) of every {...} block; header = text before the brace."""
    stack, out = [], []
    for i, ch in enumerate(src):
        if ch == "{":
            stack.append(i)
        elif ch == "}":
            start = stack.pop()
            head = src[max(0, start - 300):start]
            out.append((start, i, head))
    return out


def _enclosing(blocks, pos):
    inner = [b for b in blocks if b[0] < pos < b[1]]
    return min(inner, key=lambda b: b[1] - b[0]) if inner else None


def test_dependence_pragmas_sit_in_pipelined_loop_bodies():
    found = 0
    for path in HEADERS + [KERNEL]:
        src = strip_comments(read(path))
        blocks = _blocks(src)
        for m in re.finditer(r"#pragma HLS DEPENDENCE[^\n]*", src):
            found += 1
            b = _enclosing(blocks, m.start())
            assert b is not None, f"{path}: {m.group(0)} outside any block"
            head = b[2].rstrip()
            assert re.search(r"\b(for|while)\s*\([^{};]*(;[^{}]*)?\)\s*$", head), \
                f"{path}: {m.group(0)} is not in a loop body (function scope?)"
            body = src[b[0]:b[1]]
            assert "#pragma HLS PIPELINE" in body, f"{path}: {m.group(0)} not in a pipelined loop"
            assert "dependent=false" in m.group(0) and "type=" in m.group(0)
    assert found >= 4


def test_no_variable_multiplies_in_ii1_loops():
    """A `a * b` of two run-time values in an II=1 loop body is a DSP (or a LUT multiplier)
    and pipeline depth on the address path; the kernel uses counters there."""
    for path in HEADERS + [KERNEL]:
        src = strip_comments(read(path))
        blocks = _blocks(src)
        for m in re.finditer(r"#pragma HLS PIPELINE II=1", src):
            b = _enclosing(blocks, m.start())
            body = re.sub(r"^\s*#pragma[^\n]*$", "", src[b[0]:b[1]], flags=re.M)
            for mm in re.finditer(r"([\w.\])]+)\s*\*\s*([\w.:(]+)", body):
                left, right = mm.group(1), mm.group(2)
                if re.fullmatch(r"\d+u?", left) or re.fullmatch(r"\d+u?", right):
                    continue  # by a literal: a shift or constant adder
                if re.fullmatch(r"[A-Z_][A-Z0-9_]*", right.split("::")[-1]):
                    continue  # by a named constant
                raise AssertionError(f"{os.path.basename(path)}: '{mm.group(0)}' in an II=1 loop")


def test_dense_threshold_loader_writes_one_entry_per_cycle():
    src = strip_comments(read(os.path.join(HLS, "include", "bnn_ddr.hpp")))
    blocks = _blocks(src)
    m = re.search(r"load_thresholds:\s*for", src)
    b = _enclosing(blocks, src.index("#pragma HLS PIPELINE II=1", m.end()))
    body = src[b[0]:b[1]]
    assert len(re.findall(r"\w+(?:\[[^\]]+\])+\s*=(?!=)", body)) == 1, body
