"""Build tests/arm/harness.c with the engine sources for ARM and run it under qemu-user.

Used by tests/test_arm_neon.py (NEON bit-exactness under emulation) and
benchmarks/bench_layer1.py (guest instructions per image). Nothing here needs root.

Tools: ``arm-linux-gnueabihf-gcc`` (Debian ``gcc-arm-linux-gnueabihf``) and ``qemu-arm``
(Debian ``qemu-user``); optionally ``aarch64-linux-gnu-gcc`` + ``qemu-aarch64``. Binaries
are linked statically, so no ARM sysroot is needed at run time. Instruction counts use the
TCG plugin of benchmarks/arm/insn_count.c (built with the host gcc) when it is there.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import subprocess
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
ENGINE_DIR = os.path.join(REPO, "pynq_bnn", "backends", "cpu")
SOURCES = [os.path.join(HERE, "harness.c"), os.path.join(ENGINE_DIR, "bnn_engine.c"),
           os.path.join(ENGINE_DIR, "bnn_layer1.c"),
           os.path.join(ENGINE_DIR, "bnn_resize.c")]
HEADERS = [os.path.join(ENGINE_DIR, "bnn_cpu.h")]
PLUGIN_SRC = os.path.join(REPO, "benchmarks", "arm", "insn_count.c")

#: arch -> (compiler, qemu, qemu -cpu). armhf: the Pynq-Z2's Cortex-A9 userland.
ARCHES = {
    "armhf": ("arm-linux-gnueabihf-gcc", "qemu-arm", "cortex-a9"),
    "aarch64": ("aarch64-linux-gnu-gcc", "qemu-aarch64", "cortex-a53"),
}
CFLAGS = ["-O3", "-std=gnu11", "-fno-strict-aliasing", "-pthread", "-static"]
ISA = {"portable": 0, "neon": 4}

_cache_dir = os.path.join(tempfile.gettempdir(), f"pynq-bnn-arm-harness-{os.getuid()}")


def missing(arch: str = "armhf") -> str | None:
    """Why the harness cannot run for ``arch`` here, or None."""
    cc, qemu, _ = ARCHES[arch]
    for tool in (cc, qemu):
        if shutil.which(tool) is None:
            return f"{tool} not installed"
    return None


def build(arch: str = "armhf", cflags=()) -> str:
    """Path of the static harness binary for ``arch`` (rebuilt when a source or a flag
    changes). ``cflags``: extra flags, e.g. ``("-DBNN_NEON_NO_ASM",)`` for the intrinsics
    path on AArch32, ``("-DBNN_MARKERS",)`` for per-layer markers."""
    cc = ARCHES[arch][0]
    flags = CFLAGS + list(cflags)
    h = hashlib.sha256(" ".join(flags).encode())
    for path in SOURCES + HEADERS:
        with open(path, "rb") as f:
            h.update(f.read())
    os.makedirs(_cache_dir, exist_ok=True)
    exe = os.path.join(_cache_dir, f"harness-{arch}-{h.hexdigest()[:16]}")
    if not os.path.exists(exe):
        tmp = exe + f".tmp{os.getpid()}"
        subprocess.run([cc, *flags, "-I", ENGINE_DIR, "-o", tmp, *SOURCES], check=True,
                       capture_output=True, text=True)
        os.replace(tmp, exe)
    return exe


def plugin() -> str | None:
    """The instruction-count TCG plugin (built from benchmarks/arm/insn_count.c), or None."""
    if not os.path.exists(PLUGIN_SRC) or shutil.which("gcc") is None:
        return None
    with open(PLUGIN_SRC, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:16]
    os.makedirs(_cache_dir, exist_ok=True)
    so = os.path.join(_cache_dir, f"insn_count-{digest}.so")
    if not os.path.exists(so):
        tmp = so + f".tmp{os.getpid()}"
        r = subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-fvisibility=hidden", "-o", tmp,
                            PLUGIN_SRC], capture_output=True, text=True)
        if r.returncode != 0:
            return None
        os.replace(tmp, so)
    return so


def _header(mode: int, isa: str, threads: int, reps: int) -> bytes:
    return b"BNNJ" + struct.pack("<4i", mode, ISA[isa], threads, reps)


def layer1_job(params, images: np.ndarray, isa: str = "neon", threads: int = 1,
               reps: int = 1) -> bytes:
    lp = params.layers[params.network.first_layer.name]
    c1 = lp.weights.shape[0]
    n, size = images.shape[0], images.shape[1]
    return b"".join([
        _header(1, isa, threads, reps), struct.pack("<3i", c1, size, n),
        np.ascontiguousarray(lp.weights, dtype=np.int8).tobytes(),
        np.ascontiguousarray(lp.thresholds, dtype="<i4").tobytes(),
        np.ascontiguousarray(lp.directions, dtype=np.int8).tobytes(),
        np.ascontiguousarray(images, dtype=np.uint8).tobytes()])


def engine_job(params, packed: np.ndarray, isa: str = "neon", threads: int = 1,
               reps: int = 1) -> bytes:
    layers = params.network.binary_layers
    desc = np.array([(0 if L.kind == "conv" else 1, L.in_channels, L.out_channels, L.in_size,
                      int(L.pool), int(L.last)) for L in layers], dtype="<i4")
    parts = [_header(2, isa, threads, reps), struct.pack("<i", len(layers)), desc.tobytes()]
    for L in layers:
        lp = params.layers[L.name]
        parts.append(np.ascontiguousarray(lp.weights, dtype="<u8").tobytes())
        if not L.last:
            parts.append(np.ascontiguousarray(lp.thresholds, dtype="<i4").tobytes())
            parts.append(np.ascontiguousarray(lp.directions, dtype=np.int8).tobytes())
    parts += [struct.pack("<i", packed.shape[0]),
              np.ascontiguousarray(packed, dtype="<u8").tobytes()]
    return b"".join(parts)


def fit_area_job(image: np.ndarray, n: int, isa: str = "neon", reps: int = 1,
                 pad: int = 0) -> bytes:
    """Mode 3: bnn_fit_area_u8_isa on ``image`` (uint8 H x W x C), rows ``pad`` bytes apart
    more than ``W * C``."""
    h, w, c = image.shape
    rows = np.zeros((h, w * c + pad), np.uint8)
    rows[:, :w * c] = np.ascontiguousarray(image, dtype=np.uint8).reshape(h, w * c)
    return b"".join([_header(3, isa, 1, reps), struct.pack("<5i", h, w, c, n, w * c + pad),
                     rows.tobytes()])


def run(job: bytes, arch: str = "armhf", count: bool = False, timeout: float = 600,
        cflags=(), events: bool = False):
    """Run a job; returns (output bytes, instruction counts per rep or None), plus the raw
    marker events when ``events``."""
    exe = build(arch, cflags)
    _, qemu, cpu = ARCHES[arch]
    so = plugin() if count else None
    with tempfile.TemporaryDirectory() as d:
        jf, of, cf = (os.path.join(d, n) for n in ("job", "out", "counts.json"))
        with open(jf, "wb") as f:
            f.write(job)
        cmd = [qemu, "-cpu", cpu]
        if so:
            cmd += ["-plugin", f"{so},out={cf}"]
        r = subprocess.run(cmd + [exe, jf, of], capture_output=True, text=True,
                           timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"harness failed ({r.returncode}): {r.stderr.strip()}")
        with open(of, "rb") as f:
            out = f.read()
        counts, evs = None, None
        if so and os.path.exists(cf):
            with open(cf) as f:
                evs = json.load(f)["events"]
            begin = {e["id"]: e["total"] for e in evs if e["kind"] == 0 and e["id"] < 100}
            counts = [e["total"] - begin[e["id"]] for e in evs
                      if e["kind"] == 1 and e["id"] in begin]
    return (out, counts, evs) if events else (out, counts)


def layer_counts(evs) -> dict:
    """Instructions per layer index from BNN_MARKERS events (ids 100 + layer), summed."""
    total, start = {}, {}
    for e in evs or []:
        if e["id"] >= 100:
            if e["kind"] == 0:
                start[e["id"]] = e["total"]
            else:
                total[e["id"] - 100] = total.get(e["id"] - 100, 0) + e["total"] - start[e["id"]]
    return total


def layer1(params, images, isa="neon", threads=1, arch="armhf", reps=1, count=False, cflags=()):
    """Packed layer-1 output (uint64 [N, S, S, C1/64]) computed under emulation."""
    out, counts = run(layer1_job(params, images, isa, threads, reps), arch, count, cflags=cflags)
    c1 = params.layers[params.network.first_layer.name].weights.shape[0]
    n, s = images.shape[0], images.shape[1]
    return np.frombuffer(out, dtype="<u8").reshape(n, s, s, c1 // 64), counts


def binary_scores(params, packed, isa="neon", threads=1, arch="armhf", reps=1, count=False,
                  cflags=()):
    """int32 scores of the binary layers computed under emulation."""
    out, counts = run(engine_job(params, packed, isa, threads, reps), arch, count, cflags=cflags)
    return np.frombuffer(out, dtype="<i4").reshape(packed.shape[0], -1), counts


def fit_area(image, n, isa="neon", arch="armhf", reps=1, count=False, pad=0):
    """(uint8 [n, n, C] from bnn_fit_area_u8_isa under emulation, instruction counts)."""
    out, counts = run(fit_area_job(image, n, isa, reps, pad), arch, count)
    return np.frombuffer(out, np.uint8).reshape(n, n, image.shape[2]), counts
