"""The Vivado overlay flow (overlays/), checked without Vivado.

overlays/build_overlay.tcl runs under plain tclsh with tests/vivado_stub.tcl standing in for the
Vivado commands: this exercises the script's Tcl and control flow for every board file and
records the block design it builds (cells, nets, addresses), which is checked here against the
kernel ABI (pynq_bnn/spec/abi.py) and the HLS kernel's m_axi bundles (hls_src/src/bnn_kernel.cpp).
It cannot show that Vivado accepts the same commands; overlays/README.md says what was run.
The Makefile is checked with `make -n` (the commands it would run, per board).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest

from pynq_bnn.spec import abi

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
OVERLAYS = os.path.join(REPO, "overlays")
SCRIPT = os.path.join(OVERLAYS, "build_overlay.tcl")
STUB = os.path.join(os.path.dirname(__file__), "vivado_stub.tcl")
KERNEL_CPP = os.path.join(REPO, "hls_src", "src", "bnn_kernel.cpp")

BOARDS = ["pynq-z2", "pynq-z1", "zcu104", "ultra96v2", "kv260"]
# What the "installed" board files would be called (any version; the script takes the newest).
BOARD_PARTS = ("tul.com.tw:pynq-z2:part0:1.0 www.digilentinc.com:pynq-z1:part0:1.0 "
               "xilinx.com:zcu104:part0:1.1 avnet.com:ultra96v2:part0:1.2 "
               "xilinx.com:kv260_som:part0:1.3")

TCLSH = shutil.which("tclsh")
pytestmark = pytest.mark.skipif(TCLSH is None, reason="no tclsh")


def board_config(board):
    """The `set NAME value` lines of overlays/boards/<board>.tcl (simple values only)."""
    cfg = {}
    with open(os.path.join(OVERLAYS, "boards", board + ".tcl")) as f:
        for line in f:
            m = re.match(r"set\s+(\w+)\s+(\"[^\"]*\"|\{[^}]*\}|\S+)", line)
            if m:
                cfg[m.group(1)] = m.group(2).strip('"{}')
    return cfg


def kernel_bundles():
    """The m_axi bundle names of the HLS top function, in order of first appearance."""
    if not os.path.isfile(KERNEL_CPP):
        return ["gmem0", "gmem1", "gmem2", "gmem3"]
    with open(KERNEL_CPP) as f:
        src = f.read()
    bundles = []
    for line in re.findall(r"#pragma\s+HLS\s+INTERFACE\s+(?:mode=)?m_axi\b[^\n]*", src):
        m = re.search(r"bundle=(\w+)", line)
        name = m.group(1) if m else "gmem"
        if name not in bundles:
            bundles.append(name)
    return bundles


def hp_port_map():
    """HP_PORT_MAP_DEFAULT of build_overlay.tcl: bundle -> HP port number (as a string)."""
    with open(SCRIPT) as f:
        m = re.search(r"set HP_PORT_MAP_DEFAULT \{([^}]*)\}", f.read())
    words = m.group(1).split()
    return dict(zip(words[::2], words[1::2]))


def run_flow(tmp_path, board, board_parts=BOARD_PARTS, bundles=None, **env_extra):
    ip_repo = tmp_path / "ip"
    ip_repo.mkdir(exist_ok=True)
    out = tmp_path / "out"
    record = tmp_path / "record.json"
    env = dict(os.environ, STUB_BOARD_PARTS=board_parts,
               STUB_KERNEL_MAXI=" ".join(bundles or kernel_bundles()), **env_extra)
    r = subprocess.run([TCLSH, STUB, str(record), SCRIPT, board, str(ip_repo), str(out), "2"],
                       cwd=str(tmp_path), env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=60)
    rec = json.loads(record.read_text()) if record.exists() else None
    return r, rec, out


def peers(rec, pin):
    """Pins on the same (interface) net as pin."""
    for net in rec["intf_nets"] + rec["nets"]:
        if pin in net:
            return [p for p in net if p != pin]
    return []


def test_kernel_has_one_to_four_m_axi_bundles():
    assert 1 <= len(kernel_bundles()) <= 4


@pytest.mark.parametrize("preset", [True, False], ids=["board-files", "no-board-files"])
@pytest.mark.parametrize("board", BOARDS)
def test_block_design(tmp_path, board, preset):
    cfg = board_config(board)
    r, rec, out = run_flow(tmp_path, board, board_parts=BOARD_PARTS if preset else "")
    assert r.returncode == 0, r.stdout[-3000:]
    assert rec["exit"] == 0
    assert bool(rec["preset"]) == preset
    zynq7 = cfg["PS_KIND"] == "ps7"
    ps = "/processing_system7_0" if zynq7 else "/zynq_ultra_ps_e_0"
    assert rec["cells"][ps].split(":")[2] == ("processing_system7" if zynq7 else "zynq_ultra_ps_e")
    kernel = "/bnn_kernel_0"
    assert rec["cells"][kernel].rsplit(":", 1)[0] == abi.KERNEL_VLNV.rsplit(":", 1)[0]

    # every m_axi bundle reaches the HP port HP_PORT_MAP gives it: the parameters on HP0
    # (gmem0) and HP2 (gmem3, ABI version 2; HP0/HP1 and HP2/HP3 share a DDR port), input and
    # scores on HP1, one interconnect per used HP port
    hp_map = hp_port_map()
    hps, ics = {}, {}
    for b in kernel_bundles():
        (ic_in,) = peers(rec, f"{kernel}/m_axi_{b}")
        ic = ic_in.rsplit("/", 1)[0]
        (hp,) = peers(rec, f"{ic}/M00_AXI")
        hps[b] = hp
        ics.setdefault(ic, []).append(b)
    assert hps == {b: (f"{ps}/S_AXI_HP{hp_map[b]}" if zynq7 else f"{ps}/S_AXI_HP{hp_map[b]}_FPD")
                   for b in kernel_bundles()}
    assert hps["gmem0"].endswith(("S_AXI_HP0", "S_AXI_HP0_FPD"))
    assert hps["gmem3"].endswith(("S_AXI_HP2", "S_AXI_HP2_FPD"))
    assert hps["gmem1"] == hps["gmem2"] and hps["gmem1"].endswith(("S_AXI_HP1", "S_AXI_HP1_FPD"))
    # each parameter master alone on its interconnect (1:1, no arbiter in the weight path)
    for b in ("gmem0", "gmem3"):
        assert [m for m in ics.values() if b in m] == [[b]]
    used = {int(hp_map[b]) for b in kernel_bundles()}
    assert len(ics) == len(used)
    for ic, members in ics.items():
        assert rec["props"][ic]["CONFIG.NUM_SI"] == str(len(members))
    props = rec["props"][ps]
    for i in range(4):
        if zynq7:
            assert props[f"CONFIG.PCW_USE_S_AXI_HP{i}"] == str(int(i in used))
            if i in used:
                assert props[f"CONFIG.PCW_S_AXI_HP{i}_DATA_WIDTH"] == "64"
        else:
            assert props[f"CONFIG.PSU__USE__S_AXI_GP{i + 2}"] == str(int(i in used))
            if i in used:
                assert props[f"CONFIG.PSU__SAXIGP{i + 2}__DATA_WIDTH"] == "64"
    # an implementation strategy is chosen, not left at the default
    assert rec["props"]["impl_1"]["strategy"] == "Performance_ExplorePostRoutePhysOpt"
    assert rec["props"]["synth_1"]["strategy"] == "Flow_PerfOptimized_high"

    # control through the PS master; interrupt through an AXI INTC into the PS
    master = f"{ps}/M_AXI_GP0" if zynq7 else f"{ps}/M_AXI_HPM0_FPD"
    (ctrl_in,) = peers(rec, master)
    ctrl_ic = ctrl_in.rsplit("/", 1)[0]
    ctrl_targets = sorted(p for m in ("M00_AXI", "M01_AXI") for p in peers(rec, f"{ctrl_ic}/{m}"))
    assert ctrl_targets == ["/axi_intc_0/s_axi", f"{kernel}/s_axi_control"]
    assert peers(rec, f"{kernel}/interrupt") == ["/axi_intc_0/intr"]
    assert peers(rec, "/axi_intc_0/irq") == [f"{ps}/IRQ_F2P" if zynq7 else f"{ps}/pl_ps_irq0"]
    assert rec["cells"]["/axi_intc_0"].startswith("xilinx.com:ip:axi_intc:")

    # one clock (FCLK0 / pl_clk0 at FCLK_MHZ) for the kernel, the PS ports and the interconnects
    clk = f"{ps}/FCLK_CLK0" if zynq7 else f"{ps}/pl_clk0"
    on_clk = set(peers(rec, clk))
    assert f"{kernel}/ap_clk" in on_clk
    for hp in set(hps.values()):
        port = hp.rsplit("/", 1)[1]
        aclk = f"{ps}/{port}_ACLK" if zynq7 else f"{ps}/saxihp{port[8]}_fpd_aclk"
        assert aclk in on_clk
    freq_key = ("CONFIG.PCW_FPGA0_PERIPHERAL_FREQMHZ" if zynq7
                else "CONFIG.PSU__CRL_APB__PL0_REF_CTRL__FREQMHZ")
    assert float(props[freq_key]) == float(cfg["FCLK_MHZ"]) == 100.0
    assert f"{kernel}/ap_rst_n" in peers(rec, "/rst_ps_100M/peripheral_aresetn")

    # addresses: registers at CTRL_BASE with the ABI's span; each master sees DDR at 0
    addr = {(a[0], a[1]): (int(a[2], 16), int(a[3], 16)) for a in rec["addr"]}
    assert addr[(f"{ps}/Data", f"{kernel}/s_axi_control/Reg")] == \
        (int(cfg["CTRL_BASE"], 16), abi.REGISTER_SPAN)
    assert addr[(f"{ps}/Data", "/axi_intc_0/S_AXI/Reg")][0] == int(cfg["INTC_BASE"], 16)
    for b in kernel_bundles():
        assert any(space == f"{kernel}/Data_m_axi_{b}" and off == 0
                   for (space, _seg), (off, _rng) in addr.items())
    if zynq7:
        assert 0x40000000 <= int(cfg["CTRL_BASE"], 16) < 0x80000000  # M_AXI_GP0 window
    else:
        assert 0xA0000000 <= int(cfg["CTRL_BASE"], 16) < 0xB0000000  # HPM0_FPD window

    # outputs, named as pynq wants them (same base name), plus the build record
    assert sorted(os.listdir(out)) == ["bnn.bit", "bnn.hwh", "bnn.json"]
    info = json.loads((out / "bnn.json").read_text())
    assert info["board"] == cfg["BOARD_NAME"] and info["part"] == cfg["PART"]
    assert info["kernel_m_axi_ports"] == len(hps)
    assert info["hp_ports"] == {f"m_axi_{b}": f"HP{hp_map[b]}" for b in kernel_bundles()}
    assert info["impl_strategy"] == "Performance_ExplorePostRoutePhysOpt"
    if not preset and cfg.get("PS_FALLBACK_CONFIG"):
        assert props.get("CONFIG.PCW_CRYSTAL_PERIPHERAL_FREQMHZ") == "50"


def test_too_many_m_axi_ports_is_refused(tmp_path):
    r, rec, out = run_flow(tmp_path, "pynq-z2", bundles=["g0", "g1", "g2", "g3", "g4"])
    assert r.returncode == 1 and "m_axi ports" in r.stdout
    assert not out.exists()


def test_unmapped_m_axi_bundle_is_refused(tmp_path):
    """A bundle without an explicit HP port is an error, not "the next free port"."""
    r, rec, out = run_flow(tmp_path, "pynq-z2", bundles=["gmem0", "gmem1", "gmem7"])
    assert r.returncode == 1 and "gmem7 has no HP port" in r.stdout
    assert not out.exists()


def test_strategy_can_be_overridden(tmp_path):
    r, rec, _ = run_flow(tmp_path, "pynq-z2", PYNQ_BNN_IMPL_STRATEGY="Congestion_SpreadLogic_high")
    assert r.returncode == 0, r.stdout[-3000:]
    assert rec["props"]["impl_1"]["strategy"] == "Congestion_SpreadLogic_high"


def test_io_pll_mismatch_is_refused(tmp_path):
    """PYNQ 3.x applies the .hwh's FCLK divisors: a wrong IO PLL means a wrong kernel clock."""
    r, _, out = run_flow(tmp_path, "pynq-z2", board_parts="", STUB_IO_PLL_MHZ="1600")
    assert r.returncode == 1 and "IO PLL" in r.stdout
    assert not out.exists()


def test_failed_timing_installs_nothing(tmp_path):
    r, _, out = run_flow(tmp_path, "zcu104", STUB_WNS="-0.3")
    assert r.returncode == 1 and "timing not met" in r.stdout
    assert not out.exists()


def test_missing_ip_repo_is_reported(tmp_path):
    r = subprocess.run([TCLSH, STUB, str(tmp_path / "r.json"), SCRIPT, "pynq-z2",
                        str(tmp_path / "nope"), str(tmp_path / "out")], cwd=str(tmp_path),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
    assert r.returncode == 1 and "run Vitis HLS first" in r.stdout


# ----------------------------------------------------------------------------- Makefile

@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
@pytest.mark.parametrize("board", BOARDS)
def test_makefile_commands(tmp_path, board):
    """`make -n <board>`: Vitis HLS for the board's part, then Vivado into pynq_bnn/overlays."""
    cfg = board_config(board)
    hls = tmp_path / "hls_src"
    (hls / "src").mkdir(parents=True)
    (hls / "run_hls.tcl").write_text("# stand-in\n")
    r = subprocess.run(["make", "-n", "-C", OVERLAYS, board, f"HLS_SRC={hls}",
                        f"BUILD={tmp_path / 'build'}", "OUT=../pynq_bnn/overlays"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
    assert r.returncode == 0, r.stdout
    hls_line = [line for line in r.stdout.splitlines() if "vitis_hls -f" in line]
    assert len(hls_line) == 1
    # run_hls.tcl's key=value arguments (hls_src/run_hls.tcl)
    assert f"-tclargs part={cfg['PART']} period=10 steps=csynth,export project=" in hls_line[0]
    viv = [line for line in r.stdout.splitlines() if "vivado -mode batch" in line]
    assert len(viv) == 1
    assert f"-tclargs {board} " in viv[0]
    assert viv[0].split()[-2] == os.path.join(REPO, "pynq_bnn", "overlays", cfg["BOARD_NAME"])
    assert f"hls-{cfg['PART']}/" in viv[0]


def test_board_files_match_the_package_layout():
    """BOARD_NAME is PYNQ's board name, the folder find_overlay and the package use."""
    names = {board_config(b)["BOARD_NAME"] for b in BOARDS}
    assert names == {"Pynq-Z2", "Pynq-Z1", "ZCU104", "Ultra96", "KV260"}
    with open(os.path.join(OVERLAYS, "Makefile")) as f:
        mk = f.read()
    for b in BOARDS:
        cfg = board_config(b)
        assert f"$(call BOARD_RULES,{b},{cfg['BOARD_NAME']},{cfg['PART']})" in mk


FAKE_VITIS_HLS = r"""#!/bin/sh
# stand-in for vitis_hls: "exports" an IP the way run_hls.tcl would (project beside the script)
script=""; project=bnn_kernel_prj
while [ $# -gt 0 ]; do
  case "$1" in -f) script="$2"; shift;; project=*) project="${1#project=}";; esac; shift
done
ip="$(dirname "$script")/$project/sol1/impl/ip"
mkdir -p "$ip"
if [ -n "$FAKE_HLS_ZIP" ]; then
  python3 -c "import sys, zipfile; z = zipfile.ZipFile(sys.argv[1], 'w'); \
z.writestr('component.xml', '<spirit:name>bnn_kernel</spirit:name>')" \
    "$ip/pynq-bnn_hls_bnn_kernel_1_0.zip"
else
  echo '<spirit:name>bnn_kernel</spirit:name>' > "$ip/component.xml"
fi
"""

FAKE_VIVADO = r"""#!/bin/sh
# stand-in for vivado -mode batch: runs the -source script under tclsh with the stub
src=""
while [ $# -gt 0 ]; do
  case "$1" in -source) src="$2"; shift;; -tclargs) shift; break;; esac; shift
done
exec "$TCLSH" "$STUB" "$STUB_RECORD" "$src" "$@"
"""


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
@pytest.mark.parametrize("zipped", [False, True], ids=["ip-folder", "ip-zip"])
def test_make_runs_the_flow_with_stand_in_tools(tmp_path, zipped):
    """`make pynq-z2` for real, with stand-ins for vitis_hls and vivado (the stubbed Tcl)."""
    if zipped and shutil.which("unzip") is None:
        pytest.skip("no unzip")
    hls = tmp_path / "hls_src"
    (hls / "src").mkdir(parents=True)
    (hls / "run_hls.tcl").write_text("# stand-in\n")
    tools = tmp_path / "bin"
    tools.mkdir()
    for name, text in (("vitis_hls", FAKE_VITIS_HLS), ("vivado", FAKE_VIVADO)):
        (tools / name).write_text(text)
        (tools / name).chmod(0o755)
    env = dict(os.environ, TCLSH=TCLSH, STUB=STUB, STUB_RECORD=str(tmp_path / "record.json"),
               STUB_BOARD_PARTS=BOARD_PARTS, STUB_KERNEL_MAXI=" ".join(kernel_bundles()))
    if zipped:
        env["FAKE_HLS_ZIP"] = "1"
    out = tmp_path / "out"
    r = subprocess.run(["make", "-C", OVERLAYS, "pynq-z2", f"HLS_SRC={hls}",
                        f"BUILD={tmp_path / 'build'}", f"OUT={out}",
                        f"VITIS_HLS={tools / 'vitis_hls'}",
                        f"VIVADO={tools / 'vivado'}", "JOBS=2"],
                       env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stdout[-3000:]
    assert sorted(os.listdir(out / "Pynq-Z2")) == ["bnn.bit", "bnn.hwh", "bnn.json"]
    assert (hls / "bnn_kernel_prj_xc7z020clg400_1").is_dir()
    ip_path = (tmp_path / "build" / "hls-xc7z020clg400-1" / "ip.path").read_text().strip()
    assert os.path.isfile(os.path.join(ip_path, "component.xml"))
    # the Vivado step got the right arguments
    rec = json.loads((tmp_path / "record.json").read_text())
    assert rec["exit"] == 0 and rec["board_part"].startswith("tul.com.tw:pynq-z2")
