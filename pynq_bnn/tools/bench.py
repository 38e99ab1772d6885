"""The figures of ``pynq-bnn bench``: stages, throughput per configuration, HLS estimate.

    from pynq_bnn.tools.bench import bench_report, format_report
    report = bench_report(backend="mock", batch=64)     # a JSON-ready dict
    print(format_report(report))

* ``throughput``: one images/s figure per configuration, each labelled with what it includes
  and whether it is measured or modelled: sample PNG files -> labels (measured by the CLI,
  passed in), decoded arrays -> scores sequentially, and the same with layer 1 of batch i+1
  overlapped with layers 2..L of batch i (:func:`pynq_bnn.host.pipeline.run_pipelined`).
* ``pipeline``: the sequential and overlapped passes in detail, against
  ``max(host, backend)`` (the best overlap can do) and their sum (no overlap). "host" is
  layer 1, "backend" is layers 2..L: the FPGA on "pynq", the native engine on "cpu" (which
  shares the host's CPU cores, so overlap gains little there). On the **mock** the kernel's
  time is **modelled from the HLS cycle estimate** (a fixed time per start plus a time per
  image, fitted to the estimate's batch-1 and batch-16 figures; labelled so in every output)
  and its scores come from a table precomputed on the CPU, read back through the simulated
  DDR: the figures are those of the driver and the overlap against a modelled kernel, not a
  measurement of any hardware. Without an estimate the mock's pipeline figures are not shown.
* ``driver_overhead`` (mock): what one :meth:`~pynq_bnn.backends.driver.Accelerator.run` costs
  the host beyond the kernel (Python, register accesses, copies, flush/invalidate, score
  checks), with the simulated kernel's computation replaced by an immediate answer and its
  time subtracted.
* ``hls_cycle_estimate``: the kernel's cycle ESTIMATE (C-simulation loop counts, not a
  synthesis or board measurement), from ``hls_src/reports/cycle_estimate.json`` in a source
  tree, else the copy shipped as ``pynq_bnn/data/cycle_estimate.json``; printed in its own
  block.

The simulated kernel's computation is replaced through the simulator's plug-in (``compute``,
:class:`pynq_bnn.backends.sim.kernel.KernelStart`).

Wall-clock figures depend on what else the machine runs; ratios taken in one process are the
robust part.
"""
from __future__ import annotations

import glob
import json
import logging
import os
import platform
import statistics
import time
from typing import Any, Callable, Dict, Optional

import numpy as np

from ..resources import DATA_DIR, HLS_SRC_DIR

logger = logging.getLogger(__name__)

#: Where the HLS cycle estimates are looked for, first match wins: the source tree's (fresh
#: after ``make -C hls_src estimate``), then the copies inside the package (wheels).
CYCLE_ESTIMATE_DIRS = (
    os.path.join(HLS_SRC_DIR, "reports"),
    DATA_DIR,
)
#: The full model's estimate, in each of those folders; other topologies have their own
#: ``cycle_estimate_<name>.json`` (``make -C hls_src estimate ESTIMATE_CASE=...``).
CYCLE_ESTIMATE_PATHS = tuple(os.path.join(d, "cycle_estimate.json") for d in CYCLE_ESTIMATE_DIRS)

#: The timed stages of one classify call, in pipeline order (ClassifyResult.timings keys).
STAGE_ORDER = ("preprocess", "layer1", "transfer", "kernel", "post", "total")


def stage_labels(backend: str, kernel: Optional[str] = None) -> Dict[str, str]:
    """Names of the :data:`STAGE_ORDER` stages that say where each one runs on ``backend``."""
    runs_on = {"pynq": "FPGA kernel", "mock": f"simulated kernel: {kernel or 'mock'}",
               "cpu": kernel or "cpu engine"}.get(backend, kernel or backend)
    return {
        "preprocess": "preprocess (decode, resize; host)",
        "layer1": "layer 1 (host)",
        "transfer": {"pynq": "transfer (DMA buffers, cache flush)",
                     "mock": "transfer (simulated DDR)"}.get(backend, "transfer"),
        "kernel": f"layers 2..L ({runs_on})",
        "post": "post (affine, argmax; host)",
        "total": "total",
    }


def _pipeline_sides(backend: str) -> "tuple[str, str]":
    """(what the host does, what the backend does) in the overlap figures."""
    return "host (layer 1)", {"pynq": "FPGA (layers 2..L)",
                              "mock": "modelled kernel (layers 2..L)",
                              "cpu": "cpu engine (layers 2..L)"}.get(backend, "backend")


# ----------------------------------------------------------------------------- HLS estimate

def _read_estimate(path: str) -> Optional[Dict[str, Any]]:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        logger.warning("cycle estimate %s unreadable: %s", path, e)
        return None


def _find_estimate(network) -> "tuple[Optional[str], Optional[Dict[str, Any]]]":
    """The estimate made for ``network`` (matched by topology), else the full model's."""
    if network is not None:
        wanted = json.loads(json.dumps(network.to_dict()))  # tuples -> lists, as in the file
        for d in CYCLE_ESTIMATE_DIRS:
            for p in sorted(glob.glob(os.path.join(d, "cycle_estimate*.json"))):
                data = _read_estimate(p)
                if data is not None and data.get("network") == wanted:
                    return p, data
    for p in CYCLE_ESTIMATE_PATHS:
        if os.path.isfile(p):
            return p, _read_estimate(p)
    return None, None


def cycle_estimate(path: Optional[str] = None, network=None) -> Optional[Dict[str, Any]]:
    """Summary of the HLS kernel's cycle ESTIMATE, or None when no estimate file is found.

    With ``network`` (a :class:`pynq_bnn.spec.network.Network`), the estimate made for that topology
    when there is one (``"network_matches": True``), else the full model's (False).
    The returned dict says ``"kind": "ESTIMATE"`` and quotes the file's own caveat: the numbers
    are C-simulation loop counts at the design clock, not synthesis, co-simulation or a board.
    """
    if path:
        p, data = (path, _read_estimate(path)) if os.path.isfile(path) else (None, None)
    else:
        p, data = _find_estimate(network)
    if data is None:
        return None
    summary = data.get("summary", {})
    model = data.get("model", {})
    runs = {int(r["batch"]): r for r in data.get("runs", []) if "batch" in r}
    out = {
        "kind": "ESTIMATE",
        "caveat": data.get("ESTIMATE", "cycle estimate, not a measurement"),
        "source": p,
        "case": data.get("case"),
        "clock_mhz": model.get("clock_mhz"),
        "parallelism": data.get("parallelism"),
    }
    if network is not None:
        out["network_matches"] = data.get("network") == json.loads(json.dumps(network.to_dict()))
    for b, r in sorted(runs.items()):
        out[f"batch{b}_ms_per_image"] = r.get("estimated_ms_per_image")
        out[f"batch{b}_images_per_s"] = r.get("estimated_images_per_s")
    for key in ("goal_met", "comparison"):
        if key in summary:
            out[key] = summary[key]
    return out


def kernel_time_model(estimate: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    """The HLS estimate as ``per_start_s + per_image_s * n`` seconds for a start of ``n``.

    Fitted exactly through the estimate's two smallest batch sizes (batch 1 and 16 in the
    shipped estimates: the fixed part is mostly the weights streamed once per start). None
    without an estimate of at least two batch sizes. A MODEL of an ESTIMATE: label it so.
    """
    if not estimate:
        return None
    points = sorted((int(k[5:-len("_ms_per_image")]), v) for k, v in estimate.items()
                    if k.startswith("batch") and k.endswith("_ms_per_image")
                    and isinstance(v, (int, float)) and v > 0)
    if len(points) < 2:
        return None
    (b0, m0), (b1, m1) = points[:2]
    t0, t1 = b0 * m0 / 1e3, b1 * m1 / 1e3          # seconds per start
    per_image = (t1 - t0) / (b1 - b0)
    per_start = t0 - per_image * b0
    if per_image <= 0 or per_start < 0:
        return None
    return {"kind": "MODELLED from the HLS cycle ESTIMATE (not measured)",
            "per_start_s": per_start, "per_image_s": per_image,
            "fitted_to_batches": [b0, b1], "source": estimate.get("source")}


# ----------------------------------------------------------------------------- helpers

def timed_rounds(fn: Callable[[], Any], min_time: float, rounds: int) -> list:
    """One warm-up call of ``fn``, then ``rounds`` rounds of calls lasting at least
    ``min_time`` s each: ``[(calls, wall seconds, process CPU seconds), ...]``."""
    fn()  # allocations, thread pools, caches
    out = []
    for _ in range(rounds):
        reps, t0, c0 = 0, time.perf_counter(), time.process_time()
        while True:
            fn()
            reps += 1
            dt = time.perf_counter() - t0
            if dt >= min_time:
                break
        out.append((reps, dt, time.process_time() - c0))
    return out


def _median_seconds_per_call(fn: Callable[[], Any], min_time: float, rounds: int) -> float:
    return statistics.median(dt / reps for reps, dt, _ in timed_rounds(fn, min_time, rounds))


class _TableKernel:
    """Replaces the simulated kernel's computation (benchmarks only), through the simulator's
    plug-in interface (``sim.compute``, :class:`pynq_bnn.backends.sim.kernel.KernelStart`).

    ``table`` maps the packed input bytes of one image to its int32 scores (precomputed on the
    CPU); the inputs are what the simulator read from simulated DDR at the address the driver
    wrote, so a missing flush still gives no answer (an unwritten, poisoned score the driver
    rejects). With ``table=None`` every score is 0 (a valid score for an even last-layer
    fan-in): an immediate kernel. ``seconds`` is the host time the simulator spent on starts
    since :meth:`reset` (its ``host_seconds``), to be subtracted.
    """

    def __init__(self, sim, network, table: Optional[dict]):
        self.sim = sim
        self.network = network
        self.table = table
        sim.compute = self._compute
        self.reset()

    def reset(self) -> None:
        self.calls = 0
        self._base = self.sim.host_seconds

    @property
    def seconds(self) -> float:
        return self.sim.host_seconds - self._base

    def _compute(self, start):
        self.calls += 1
        n = start.n_images
        scores = np.zeros((n, self.network.n_classes), dtype=np.int32)
        if self.table is not None:
            try:
                for i in range(n):
                    scores[i] = self.table[start.inputs[i].tobytes()]
            except KeyError:
                return None                         # unknown input: write nothing
        return scores


def _default_params(model):
    from ..host.shipped_models import DEFAULT_MODEL
    from ..spec.network import Network
    from ..spec.params import Params, load_params
    from ..testing import random_params

    if isinstance(model, Params):
        return model, "<params>"
    if model is None:
        shipped = DEFAULT_MODEL
        if os.path.isfile(shipped):
            return load_params(shipped), shipped
        return random_params(Network.full(), seed=0), "random full BinaryNet (no shipped model)"
    return load_params(model), os.fspath(model)


def _cpu_scores(params, packed: np.ndarray) -> np.ndarray:
    try:
        from ..backends.cpu.engine import Engine
        with Engine(params) as eng:
            return eng.binary_scores(packed)
    except Exception as e:  # the reference is always there
        logger.info("bench: engine unavailable (%s); scores from the numpy reference", e)
        from ..spec import reference
        return reference.binary_scores(params, packed)


# ----------------------------------------------------------------------------- driver overhead

def driver_overhead(params, batches=(1, 64), calls: int = 300, rounds: int = 5,
                    interrupt: bool = False) -> Dict[str, Any]:
    """Host cost of one start on the mock, the simulated kernel's own time subtracted.

    The simulated kernel answers at once (all-zero scores, no latency), so a call is only the
    driver: argument and CTRL register accesses, the input copy and flush, the poisoned scores
    flush, the done poll, invalidate, copy back and the score check. The time inside the
    stand-in kernel is measured and subtracted. ``cpu_ms`` (process CPU time per call) is the
    figure to quote on a shared machine; ``wall_ms`` is the median and ``wall_best_ms`` the
    fastest round's wall time (the least disturbed).
    """
    from ..backends import open_backend

    network = params.network
    out: Dict[str, Any] = {"backend": "mock", "interrupt": interrupt, "calls_per_round": calls,
                           "rounds": rounds,
                           "what": "per start: run() and submit()+wait() minus the stand-in "
                                   "kernel's own time; the simulated kernel answers at once"}
    rng = np.random.default_rng(0)
    l1 = network.first_layer
    shape = (l1.out_size, l1.out_size, l1.out_channels // 64)
    for batch in batches:
        packed = rng.integers(0, 2**63, size=(batch,) + shape, dtype=np.uint64)
        with open_backend("mock", kernel="reference", max_batch=batch,
                          interrupt=interrupt) as be:
            be.load(params)
            stub = _TableKernel(be.sim, network, None)
            res: Dict[str, Any] = {}
            for name, fn in (("run", lambda: be.run(packed)),
                             ("submit_wait", lambda: be.wait(be.submit(packed)))):
                for _ in range(max(10, calls // 10)):
                    fn()
                walls, cpus = [], []
                for _ in range(rounds):
                    stub.reset()
                    be.log.clear()
                    t0, c0 = time.perf_counter(), time.process_time()
                    for _ in range(calls):
                        fn()
                    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
                    walls.append((wall - stub.seconds) / calls)
                    cpus.append((cpu - stub.seconds) / calls)
                res[name] = {"cpu_ms": round(1e3 * statistics.median(cpus), 4),
                             "wall_ms": round(1e3 * statistics.median(walls), 4),
                             "wall_best_ms": round(1e3 * min(walls), 4),
                             "sim_kernel_ms": round(1e3 * stub.seconds / max(stub.calls, 1), 4)}
            res["register_accesses_per_start"] = round(sum(
                1 for e in be.log.events if e[0] in ("read", "write")) / max(stub.calls, 1), 1)
            out[f"batch{batch}"] = res
    return out


# ----------------------------------------------------------------------------- pipeline

def pipeline_overlap(params, backend: str = "mock", batch: int = 64, n_batches: int = 4,
                     rounds: int = 5, latency_per_image: Optional[float] = None,
                     kernel_vs_layer1: float = 1.0, interrupt: bool = True,
                     threads: int = 1, kernel_model: Optional[Dict[str, Any]] = None,
                     **backend_options) -> Dict[str, Any]:
    """Sequential vs overlapped images/s, against max(host, backend) and host + backend.

    "host" is layer 1 (``arm_*`` keys: the ARM core on a board), "backend" layers 2..L
    (``fpga_*`` keys: the FPGA on a board; the engine on "cpu"; the simulated kernel on "mock").

    Parameters
    ----------
    backend : str
        "mock" (simulated kernel latency), "pynq" (the board) or "cpu" (overlap by a thread,
        ``mode="thread"``, which "auto" does not choose for it).
    kernel_model : dict, optional
        Mock only: :func:`kernel_time_model` (``per_start_s``, ``per_image_s``), the simulated
        kernel's time modelled from the HLS estimate. Takes precedence over the next two.
    latency_per_image : float, optional
        Mock only: seconds of simulated kernel time per image. Default: the measured layer-1
        time per image times ``kernel_vs_layer1`` (a synthetic ratio, for studying overlap).
    interrupt : bool
        Mock only: give the simulated IP its interrupt line (the overlays wire it).
    threads : int
        FirstLayer threads (1: the ARM core that is not busy with the driver).
    """
    from ..backends import open_backend
    from ..backends.accelerated import MockBackend
    from ..host.layer1 import FirstLayer
    from ..host.pipeline import overlap_mode, run_pipelined, run_sequential
    from ..testing import random_images

    network = params.network
    n = batch * n_batches
    images = random_images(n, network.image_size, seed=5)
    layer1 = FirstLayer(params, threads=threads)
    packed = layer1(images)
    l1_s = _median_seconds_per_call(lambda: layer1(images[:batch]), 0.2, 3) / batch
    info: Dict[str, Any] = {"backend": backend, "batch": batch, "images": n,
                            "layer1_threads": threads, "layer1_ms_per_image": round(1e3 * l1_s, 4)}
    options = dict(backend_options)
    stub = None
    lat = fixed = 0.0
    if backend == "mock":
        if kernel_model is not None:
            fixed, lat = float(kernel_model["per_start_s"]), float(kernel_model["per_image_s"])
            info["simulated_kernel"] = dict(kernel_model)
        else:
            lat = l1_s * kernel_vs_layer1 if latency_per_image is None else float(latency_per_image)
            info["simulated_kernel"] = {"kind": "SYNTHETIC: layer-1 time x "
                                                f"{kernel_vs_layer1}" if latency_per_image is None
                                        else "given latency_per_image",
                                        "per_start_s": 0.0, "per_image_s": lat}
        info["simulated_kernel_ms_per_image"] = round(1e3 * (lat + fixed / batch), 4)
        info["interrupt"] = interrupt
        options.update(kernel="reference", max_batch=batch, interrupt=interrupt,
                       faults={"latency_per_image": lat, "latency": fixed})
    elif backend == "pynq":
        options.setdefault("max_batch", batch)
    be = open_backend(backend, **options)
    try:
        be.load(params)
        if isinstance(be, MockBackend):  # the "mock" backend
            expected = _cpu_scores(params, packed)
            table = {packed[i].tobytes(): expected[i] for i in range(n)}
            stub = _TableKernel(be.sim, network, table)
        else:
            expected = None
        mode = "submit" if overlap_mode(be) == "submit" else "thread"
        info["overlap_mode"] = mode
        seq, pipe, identical = [], [], True
        reference_scores = run_sequential(images, layer1, be, batch)   # warm-up, and the truth
        if expected is not None:
            identical &= bool(np.array_equal(reference_scores, expected))
        run_pipelined(images, layer1, be, batch, mode)                  # warm-up
        sim_s = 0.0
        for _ in range(rounds):                  # alternate: both see the same machine load
            if stub is not None:
                stub.reset()
            c0 = time.process_time()
            s_scores, ts = run_sequential(images, layer1, be, batch, return_timings=True)
            ts["cpu"] = time.process_time() - c0
            if stub is not None:
                sim_s += stub.seconds
            c0 = time.process_time()
            p_scores, tp = run_pipelined(images, layer1, be, batch, mode, return_timings=True)
            tp["cpu"] = time.process_time() - c0
            identical &= bool(np.array_equal(s_scores, reference_scores)
                              and np.array_equal(p_scores, reference_scores))
            seq.append(ts)
            pipe.append(tp)
    finally:
        be.close()
    arm = statistics.median(t["layer1"] for t in seq)
    fpga = statistics.median(t["wait"] for t in seq)
    t_seq = statistics.median(t["total"] for t in seq)
    t_pipe = statistics.median(t["total"] for t in pipe)

    def paired(f):   # median over rounds of a ratio within one (sequential, overlapped) pair
        return round(statistics.median(f(a, b) for a, b in zip(seq, pipe)), 3)

    info.update({
        "arm_ms_per_batch": round(1e3 * arm / n_batches, 3),
        "fpga_ms_per_batch": round(1e3 * fpga / n_batches, 3),
        "sequential_images_per_s": round(n / t_seq, 1),
        "overlapped_images_per_s": round(n / t_pipe, 1),
        "bound_max_images_per_s": round(n / max(arm, fpga), 1),
        "bound_sum_images_per_s": round(n / (arm + fpga), 1),
        # max(ARM, FPGA) plus the fill/drain a pass of n_batches cannot overlap (the first
        # layer 1, or the last kernel run): the best this pass length allows
        "bound_pipeline_images_per_s": round(n / (max(arm, fpga) + min(arm, fpga) / n_batches), 1),
        # ratios: each round's overlapped pass against the sequential pass just before it
        "overlapped_vs_max": paired(lambda a, b: max(a["layer1"], a["wait"]) / b["total"]),
        "overlapped_vs_sum": paired(lambda a, b: (a["layer1"] + a["wait"]) / b["total"]),
        "overlapped_vs_sequential": paired(lambda a, b: a["total"] / b["total"]),
        "overlapped_vs_pipeline_bound": paired(
            lambda a, b: (max(a["layer1"], a["wait"])
                          + min(a["layer1"], a["wait"]) / n_batches) / b["total"]),
        # the same bound with the ARM time of the overlapped pass itself (on a shared machine
        # layer 1 runs slower when the process never sleeps: the scheduler's share drops)
        "overlapped_vs_max_same_pass": paired(
            lambda a, b: max(b["layer1"], a["wait"]) / b["total"]),
        # on a shared machine: the layer-1 time inside the overlapped passes, and the share
        # of a CPU the process got (CPU seconds / wall seconds) in each kind of pass
        "arm_ms_per_batch_in_overlapped": round(
            1e3 * statistics.median(t["layer1"] for t in pipe) / n_batches, 3),
        "cpu_share": {"sequential": round(statistics.median(t["cpu"] / t["total"] for t in seq), 3),
                      "overlapped": round(statistics.median(t["cpu"] / t["total"] for t in pipe),
                                          3)},
        "scores_identical": identical,
        "rounds_s": {"sequential": [round(t["total"], 4) for t in seq],
                     "overlapped": [round(t["total"], 4) for t in pipe]},
    })
    if backend == "mock":
        # how much longer than its simulated latency a sequential backend call took: driver
        # overhead plus the wake-up delay after waiting (tens of us on an idle Linux; many ms
        # for a niced process on a machine whose CPUs are all busy)
        info["fpga_beyond_latency_ms_per_batch"] = round(
            1e3 * fpga / n_batches - 1e3 * (lat * batch + fixed), 3)
    if stub is not None:
        info["sim_kernel_cpu_ms_per_batch"] = round(1e3 * sim_s / rounds / n_batches, 4)
    return info


# ----------------------------------------------------------------------------- the report

def bench_report(backend: str = "mock", batch: int = 64, model=None, n_batches: int = 4,
                 rounds: int = 5, latency_per_image: Optional[float] = None,
                 overhead: bool = True, files_images_per_s: Optional[float] = None,
                 **backend_options) -> Dict[str, Any]:
    """Everything ``pynq-bnn bench`` reports beyond its stage table, as a JSON-ready dict.

    Parameters
    ----------
    backend : str
        "mock" (kernel time modelled from the HLS estimate), "pynq", "cpu" or "auto" (pynq on
        a board with a bitstream, else cpu, as ``open_backend``).
    batch : int
        Images per kernel start.
    model : str, Params or None
        Default: the shipped model, else a random full BinaryNet (the speed is the same).
    n_batches, rounds : int
        Batches per timed pass, and passes (medians are reported).
    latency_per_image : float, optional
        Mock: a simulated kernel time per image to use instead of the HLS-estimate model
        (the result is then labelled as given, not modelled).
    overhead : bool
        Include the mock driver-overhead measurement (about 2 s).
    files_images_per_s : float, optional
        The measured files -> labels throughput of the caller (the CLI's stage table), listed
        first in ``throughput``.
    **backend_options
        Passed to ``open_backend`` (e.g. ``overlay=`` for "pynq").
    """
    params, model_name = _default_params(model)
    if backend == "auto":
        from ..backends import board_status
        ok, _ = board_status(backend_options.get("overlay"), backend_options.get("board"))
        backend = "pynq" if ok else "cpu"
    estimate = cycle_estimate(network=params.network)
    report: Dict[str, Any] = {
        "backend": backend, "batch": batch, "model": model_name,
        "machine": {"cpu": cpu_model(), "cpus": os.cpu_count(),
                    "load_average": loadavg()},
        "note": "wall-clock times depend on machine load; ratios are measured in one process",
    }
    model_fit = kernel_time_model(estimate) if backend == "mock" else None
    if backend == "mock" and model_fit is None and latency_per_image is None:
        report["pipeline"] = None
        report["pipeline_note"] = ("not shown on the mock without an HLS cycle estimate to "
                                   "model the kernel's time from (make -C hls_src estimate)")
    else:
        report["pipeline"] = pipeline_overlap(
            params, backend, batch, n_batches, rounds, latency_per_image,
            kernel_model=model_fit if latency_per_image is None else None, **backend_options)
        report["layer1_ms_per_image"] = report["pipeline"]["layer1_ms_per_image"]
    report["throughput"] = _throughput(backend, report["pipeline"], files_images_per_s)
    if overhead and backend in ("mock", "pynq"):
        report["driver_overhead"] = driver_overhead(params, batches=sorted({1, batch}))
    report["hls_cycle_estimate"] = estimate
    return report


def _throughput(backend: str, pipe: Optional[Dict[str, Any]],
                files_ips: Optional[float]) -> list:
    """One entry per configuration: what it includes, images/s, measured or modelled."""
    out = []
    if files_ips is not None:
        out.append({"configuration": "sample PNG files -> labels, sequential",
                    "images_per_s": round(files_ips, 1),
                    "kind": ("SIMULATION speed (the mock computes every layer on this CPU; "
                             "not the board)" if backend == "mock" else "measured")})
    if pipe is not None:
        kind = ("kernel time MODELLED from the HLS estimate; driver and overlap measured"
                if backend == "mock" else "measured")
        out.append({"configuration": "decoded arrays -> scores, sequential",
                    "images_per_s": pipe["sequential_images_per_s"], "kind": kind})
        out.append({"configuration": "decoded arrays -> scores, layer 1 overlapped with "
                                     "layers 2..L",
                    "images_per_s": pipe["overlapped_images_per_s"], "kind": kind})
    return out


def format_report(report: Dict[str, Any], header: bool = True) -> str:
    """The report as the lines ``pynq-bnn bench`` prints (``header``: the first line)."""
    backend = report["backend"]
    p = report.get("pipeline")
    lines = []
    if header:
        lines.append(f"backend {backend}, batch {report['batch']}, model {report['model']}")
    rows = report.get("throughput") or []
    if rows:
        width = max(len(r["configuration"]) for r in rows) + 2
        lines.append("throughput, images/s (one figure per configuration):")
        for r in rows:
            lines.append(f"  {r['configuration']:<{width}}{r['images_per_s']:>9.1f}   "
                         f"{r['kind']}")
    if p is not None:
        host, side = _pipeline_sides(backend)
        lines.append(
            f"overlap ({p['overlap_mode']}, batch {p['batch']}): {host} "
            f"{p['arm_ms_per_batch']:.3f} ms/batch, {side} {p['fpga_ms_per_batch']:.3f} "
            f"ms/batch; overlapped = x{p['overlapped_vs_sequential']:.2f} sequential, "
            f"{100 * p['overlapped_vs_max']:.0f}% of the bound max(host, backend) "
            f"({p['bound_max_images_per_s']:.1f} images/s); scores identical: "
            f"{p['scores_identical']}")
        if backend == "cpu":
            lines.append("  (on the cpu backend layer 1 and the engine share this CPU's cores: "
                         "overlap can gain little)")
        k = p.get("simulated_kernel")
        if k:
            lines.append(f"  simulated kernel time {k['kind']}: "
                         f"{1e3 * k['per_start_s']:.3f} ms per start + "
                         f"{1e3 * k['per_image_s']:.4f} ms per image")
        lines.append(f"  layer 1 (FirstLayer, {p['layer1_threads']} thread): "
                     f"{p['layer1_ms_per_image']:.4f} ms/image")
    elif report.get("pipeline_note"):
        lines.append(f"overlap: {report['pipeline_note']}")
    d = report.get("driver_overhead")
    if d:
        for key, v in d.items():
            if key.startswith("batch"):
                lines.append(f"driver overhead per start, {key}: run {v['run']['cpu_ms']:.3f} ms "
                             f"CPU ({v['run']['wall_best_ms']:.3f} ms best wall), submit+wait "
                             f"{v['submit_wait']['cpu_ms']:.3f} ms CPU (simulated kernel's own "
                             "time subtracted)")
    lines.append("")
    lines += format_estimate(report.get("hls_cycle_estimate"))
    return "\n".join(lines)


def format_estimate(e: Optional[Dict[str, Any]]) -> list:
    """The HLS estimate as its own block of lines, labelled as an estimate."""
    if not e:
        return ["HLS kernel cycle ESTIMATE: none found (make -C hls_src estimate)"]
    lines = [f"HLS kernel cycle ESTIMATE (C-simulation loop counts at {e.get('clock_mhz')} MHz; "
             "not synthesized, not measured on a board):"]
    for key in sorted((k for k in e if k.startswith("batch") and k.endswith("_ms_per_image")),
                      key=lambda k: int(k[5:-len("_ms_per_image")])):
        b = key[5:-len("_ms_per_image")]
        ips = e.get(f"batch{b}_images_per_s")
        lines.append(f"  batch {b}: {e[key]} ms/image"
                     + (f" ({ips} images/s)" if ips is not None else ""))
    source = e.get("source") or "?"
    try:
        source = os.path.relpath(source)
    except ValueError:
        pass
    lines.append(f"  source: {source}"
                 + (f" (case {e['case']})" if e.get("case") else "")
                 + ("" if e.get("network_matches", True) else
                    "; made for another topology than this model's"))
    return lines


def cpu_model() -> str:
    """The CPU's model name (for benchmark records)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def loadavg():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def emit_json(result: dict, out: Optional[str] = None) -> None:
    """Print a benchmark result as JSON, and write it to ``out`` when given."""
    import json

    text = json.dumps(result, indent=2)
    print(text)
    if out:
        with open(out, "w") as f:
            f.write(text + "\n")
