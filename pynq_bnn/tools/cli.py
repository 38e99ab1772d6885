"""The ``pynq-bnn`` command: a thin client of :class:`pynq_bnn.host.classifier.Classifier`.

::

    pynq-bnn classify [--backend B] [--model MODEL] [--top-k K] [-r] [--json] IMAGE|DIR...
    pynq-bnn eval     [--backend B] [--model MODEL] [--limit N] [--seed S] [--batch N] [--json] DATA
    pynq-bnn bench    [--backend B] [--model MODEL] [--batch N] [--runs N] [--json]
    pynq-bnn info     [--backend B] [--model MODEL] [--json]

Results go to stdout and nothing else does; diagnostics, progress bars and errors go to stderr
(``-v`` for info messages, ``--debug`` for debug messages and tracebacks). Every command says
which backend ran: ``eval`` and ``bench`` on their first line (and in their JSON, with the
reason), and every command with one line on stderr when ``--backend auto`` chose something other
than the FPGA, or when the cpu backend runs without its native engine. Paths and class names
are printed one line per image with control characters, undecodable bytes and backslashes
escaped as in a Python string literal (``--json`` gives them exactly).

Exit codes
----------
0
    success.
1
    the model, the backend or the hardware failed (``ParamsError``, ``BackendUnavailable``,
    ``HardwareError``...), or an unexpected error; one line on stderr, no traceback unless
    ``--debug``.
2
    bad input: at least one image could not be classified (``classify``; the others are still
    printed), an unusable data file (``eval``), or a command-line usage error (argparse).
130
    interrupted (Ctrl-C).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
from typing import Any, Dict, Iterator, List, Optional

import numpy as np

from .. import __version__
from ..errors import BnnError, ImageError
from ..host.shipped_models import SHIPPED_MODELS
from ..resources import SAMPLES_DIR
from .datasets import DatasetError

log = logging.getLogger("pynq_bnn.tools.cli")

EXIT_OK, EXIT_ERROR, EXIT_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130

#: What a directory given to ``classify`` contributes: files with these endings (any case).
#: A file named on the command line is always tried, whatever its name.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm",
                    ".pgm", ".pbm", ".pnm")


class InputError(BnnError, ValueError):
    """A data file or argument the command cannot use (exit code 2)."""


class _StderrHandler(logging.StreamHandler):
    """A handler that always writes to the *current* ``sys.stderr`` (test capture, redirects)."""

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass

    def format(self, record) -> str:
        return escape(super().format(record))

    def filter(self, record) -> bool:
        # The engine's once-per-process warning that it fell back to numpy: every command
        # says so itself (_announce), with the same reason.
        if record.name == "pynq_bnn.backends.cpu.engine" and record.levelno == logging.WARNING \
                and "unavailable" in str(record.msg):
            return False
        return super().filter(record)


def _setup_logging(level: int):
    """Send the package's log records to stderr; returns a function that undoes it.

    main() restores the logger afterwards, so that calling it in-process (tests, notebooks)
    leaves no handler, level or propagation change behind.
    """
    pkg = logging.getLogger("pynq_bnn")
    saved = (pkg.level, pkg.propagate)
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("pynq-bnn: %(levelname)s: %(message)s"))
    pkg.addHandler(handler)
    pkg.setLevel(level)
    pkg.propagate = False  # no second copy through handlers on the root logger

    def restore() -> None:
        pkg.removeHandler(handler)
        pkg.setLevel(saved[0])
        pkg.propagate = saved[1]
    return restore


# ----------------------------------------------------------------------------- output

_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}


def escape(text) -> str:
    """``text`` as one printable line: undecodable file-name bytes (surrogate escapes) as
    ``\\xNN``, control and other non-printable characters as ``\\n``, ``\\x1b``, ``\\u2028``...,
    backslashes doubled; printable characters (any script) unchanged."""
    text = str(text)
    if text.isprintable() and "\\" not in text:
        return text
    out = []
    for ch in text:
        o = ord(ch)
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif 0xDC80 <= o <= 0xDCFF:           # os.fsdecode's stand-in for a byte >= 0x80
            out.append(f"\\x{o - 0xDC00:02x}")
        elif ch.isprintable():
            out.append(ch)
        elif o < 0x100:
            out.append(f"\\x{o:02x}")
        elif o < 0x10000:
            out.append(f"\\u{o:04x}")
        else:
            out.append(f"\\U{o:08x}")
    return "".join(out)


def _write(stream, text: str) -> None:
    try:
        stream.write(text)
    except UnicodeEncodeError:  # a terminal that cannot show some printable character
        enc = getattr(stream, "encoding", None) or "ascii"
        stream.write(text.encode(enc, "backslashreplace").decode(enc))


def _err(message: str) -> None:
    """One line on stderr (CLI output, not a log record: it must show at every level)."""
    _write(sys.stderr, f"pynq-bnn: {escape(message)}\n")
    sys.stderr.flush()


def _out(line: str = "") -> None:
    _write(sys.stdout, line + "\n")


def _dump_json(obj) -> None:
    # ASCII only (ensure_ascii): a file name that is not UTF-8 comes out as \udcXX escapes,
    # which json.loads + os.fsencode turn back into the original bytes
    sys.stdout.write(json.dumps(obj, indent=None, allow_nan=False, default=_json_default) + "\n")


def _json_default(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def _finite(x) -> Optional[float]:
    return float(x) if x is not None and np.isfinite(x) else None


# ----------------------------------------------------------------------------- shared

def _backend_options(args) -> Dict[str, Any]:
    opts = {}
    if getattr(args, "overlay", None):
        opts["overlay"] = args.overlay
    if getattr(args, "timeout", None) is not None:
        opts["timeout"] = args.timeout
    return opts


def _classifier(args):
    from ..host.classifier import Classifier  # keeps `pynq-bnn --help` fast

    clf = Classifier(args.model, backend=args.backend, **_backend_options(args))
    try:
        clf.open()
    except BaseException:
        clf.close()
        raise
    return clf


def backend_facts(be) -> Dict[str, Any]:
    """What ran and why, for output: name, kernel, board, bitstream, reason."""
    try:
        d = be.describe()
    except Exception as e:  # describing must not stop the work
        d = {"describe_error": f"{type(e).__name__}: {e}"}
    facts = {"name": be.name, "kernel": d.get("kernel"), "board": d.get("board"),
             "bitstream": d.get("bitstream"), "reason": be.reason or None}
    if be.name == "mock":
        facts["note"] = "a register-level simulation of the accelerator, not the board"
    return facts


def backend_line(facts: Dict[str, Any]) -> str:
    """``backend cpu [native engine (avx2)]; auto: pynq is not installed``."""
    what = [str(facts[k]) for k in ("kernel", "board") if facts.get(k)]
    if facts.get("bitstream"):
        what.append(f"bitstream {facts['bitstream']}")
    if facts.get("note"):
        what.append(facts["note"])
    text = f"backend {facts['name']}" + (f" [{', '.join(what)}]" if what else "")
    return text + (f"; {facts['reason']}" if facts.get("reason") else "")


def _announce(args, facts: Dict[str, Any]) -> None:
    """The stderr lines every command owes: auto did not pick the board; no native engine."""
    if args.backend.lower() == "auto" and facts["name"] != "pynq":
        why = str(facts.get("reason") or "").replace("auto: ", "", 1)
        _err(f"not running on the FPGA: backend {facts['name']}"
             + (f" [{facts['kernel']}]" if facts.get("kernel") else "")
             + (f", because {why}" if why else ""))
    if facts["name"] == "cpu" and facts.get("kernel") == "numpy reference":
        state = engine_state()
        _err("WARNING: the native CPU engine is not available"
             + (f" ({state['reason']})" if state.get("reason") else "")
             + ": the cpu backend runs the numpy reference, about 100 times slower "
               "(pynq-bnn info shows the engine state)")


def engine_state() -> Dict[str, Any]:
    """The native CPU engine: ``native`` (bool), ``isa`` and, without it, ``reason``."""
    from ..backends.cpu import engine

    status = getattr(engine, "status", None)
    if callable(status):  # the engine's own report, where it has one
        try:
            st = status()
            if isinstance(st, dict):
                return dict(st)
        except Exception:
            pass
    native = bool(engine.native_available())
    state: Dict[str, Any] = {"native": native, "isa": engine.best_isa(), "reason": None}
    if native:
        state["supported_isas"] = list(engine.supported_isas())
    else:
        disabled = getattr(engine, "_disabled", lambda: False)()
        state["reason"] = ("disabled by PYNQ_BNN_NATIVE" if disabled else
                           getattr(engine, "_lib_error", None) or "the native library is not built")
    return state


# ----------------------------------------------------------------------------- classify

def _expand(args_images: List[str], recursive: bool) -> Iterator["tuple[str, Optional[str]]"]:
    """``(path, error)`` per input: files as given, directories as their image files (sorted;
    with ``recursive`` also those of every subdirectory), in command-line order."""
    for arg in args_images:
        if not os.path.isdir(arg):
            yield arg, None
            continue
        found = 0
        for root, dirs, files in os.walk(arg, onerror=None):
            dirs.sort()
            if not recursive:
                dirs[:] = []
            for f in sorted(files):
                if f.lower().endswith(IMAGE_EXTENSIONS):
                    found += 1
                    yield os.path.join(root, f), None
        if not found:
            yield arg, (f"{arg}: a directory without image files ("
                        + ", ".join(e[1:] for e in IMAGE_EXTENSIONS[:4]) + "...)"
                        + ("" if recursive else "; --recursive to look in its subdirectories"))


def _chunks(items, size: int):
    chunk = []
    for it in items:
        chunk.append(it)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def cmd_classify(args) -> int:
    top_k = args.top_k
    records: Optional[List[Dict[str, Any]]] = None
    facts: Dict[str, Any] = {}
    model = None
    failed = total = 0
    complete = False
    try:
        with _classifier(args) as clf:
            facts = backend_facts(clf.backend)
            model = clf.model_path
            _announce(args, facts)
            names = list(clf.class_names)
            records = []
            # In chunks, so that results stream out while a long list of files is processed.
            for chunk in _chunks(_expand(args.images, args.recursive), clf.chunk):
                paths = [p for p, err in chunk if err is None]
                result = iter(clf.classify_many(paths)) if paths else iter(())
                ranked = None
                for path, err in chunk:
                    total += 1
                    if err is not None:
                        failed += 1
                        _err(err)
                        records.append({"path": path, "ok": False, "error": err})
                        continue
                    p = next(result)
                    if not p.ok:
                        failed += 1
                        _err(str(p.error))
                        records.append({"path": p.source, "ok": False, "error": str(p.error)})
                        continue
                    ranked = p.top(top_k)
                    if args.json:
                        records.append({
                            "path": p.source, "ok": True, "name": p.name, "index": p.index,
                            "label": p.name,  # deprecated alias of "name", for one release
                            "score": _finite(p.score),
                            "top": [{"name": names[k], "index": k, "score": _finite(v)}
                                    for k, v in ranked],
                            "scores": [_finite(v) for v in p.scores],
                            "int_scores": [int(v) for v in p.int_scores]})
                    else:
                        _out(f"{escape(p.source)}: " + ", ".join(
                            f"{escape(names[k])} {v:.4f}" for k, v in ranked))
                sys.stdout.flush()
            complete = True
    finally:
        if args.json and records is not None:  # also when a later chunk fails: keep what we have
            _dump_json({"backend": facts, "model": model, "top_k": top_k,
                        "complete": complete, "failed": failed, "results": records})
    if failed:
        log.info("%d of %d images failed", failed, total)
    return EXIT_INPUT if failed else EXIT_OK


# ----------------------------------------------------------------------------- eval

def cmd_eval(args) -> int:
    from ..host.classifier import Classifier
    from .datasets import check_labels, evaluate, load_dataset
    from .progress import terminal_bar

    # model, then data, then the backend: a bad file fails before a bitstream is loaded
    with Classifier(args.model, backend=args.backend, **_backend_options(args)) as clf:
        data = load_dataset(args.data)
        available = len(data)
        data = data.subset(args.limit, seed=args.seed)
        check_labels(data, clf.network.n_classes)
        clf.open()
        facts = backend_facts(clf.backend)
        _announce(args, facts)
        if not args.json:
            _out(backend_line(facts))
            sys.stdout.flush()
        with terminal_bar(len(data), "eval") as bar:
            report = evaluate(clf, data, batch=args.batch, progress=bar.update)
    subset = None if len(data) == available else {
        "of": available, "seed": args.seed,
        "how": "seeded, class-balanced (pynq_bnn.tools.datasets.balanced_subset)"}
    if args.json:
        _dump_json(dict(report, images_per_s=_finite(report["images_per_s"]), backend=facts,
                        model=clf.model_path, data=data.path, data_format=data.format,
                        subset=subset, batch=args.batch))
        return EXIT_OK
    n, correct = report["n"], report["correct"]
    _out(f"data: {escape(data.path)} ({data.format}), {n} images"
         + (f" of {available} (seeded class-balanced subset, seed {args.seed})" if subset else ""))
    _out(f"accuracy: {report['accuracy']:.4f} ({correct}/{n})")
    _out("per class: " + ", ".join(f"{escape(name)} {acc:.3f}"
                                   for name, acc in report["per_class"].items()
                                   if acc is not None))
    ips = report["images_per_s"]
    _out(f"images/s: {ips:.1f} (batch {args.batch}, {report['seconds']:.2f} s)"
         if ips else f"images/s: - ({report['seconds']:.2f} s)")
    return EXIT_OK


# ----------------------------------------------------------------------------- bench

def _bench_items(batch: int, size: int) -> List[Any]:
    """The shipped sample PNGs, cycled to ``batch`` paths; random images if there are none."""
    samples = []
    if os.path.isdir(SAMPLES_DIR):
        samples = sorted(os.path.join(SAMPLES_DIR, f) for f in os.listdir(SAMPLES_DIR)
                         if f.lower().endswith(".png"))
    if samples:
        return [samples[i % len(samples)] for i in range(batch)]
    from ..testing import random_images

    log.warning("no sample images in %s: benchmarking random images", SAMPLES_DIR)
    return list(random_images(batch, size, seed=0))


def cmd_bench(args) -> int:
    from .bench import STAGE_ORDER, bench_report, format_report, stage_labels

    with _classifier(args) as clf:
        facts = backend_facts(clf.backend)
        _announce(args, facts)
        if not args.json:
            _out(backend_line(facts))
            sys.stdout.flush()
        items = _bench_items(args.batch, clf.image_size)
        clf.classify(items)  # warm-up: caches, lazy allocations, first-touch of buffers
        sums = dict.fromkeys(STAGE_ORDER, 0.0)
        for _ in range(args.runs):
            r = clf.classify(items)
            for k in STAGE_ORDER:
                sums[k] += r.timings.get(k, 0.0)
        backend = clf.backend.name
        model = clf.model_path
        kernel = facts.get("kernel")
    mean = {k: v / args.runs for k, v in sums.items()}
    ips = args.batch / mean["total"] if mean["total"] > 0 else None
    labels = stage_labels(backend, kernel)
    perf = bench_report(backend=backend, batch=args.batch, model=model,
                        files_images_per_s=ips, **_backend_options(args))
    if args.json:
        _dump_json({"backend": facts, "model": model, "batch": args.batch, "runs": args.runs,
                    "images_per_s": _finite(ips), "timings": mean,
                    "per_image_s": {k: v / args.batch for k, v in mean.items()},
                    "stage_labels": labels, "throughput": perf["throughput"],
                    "performance": perf})
        return EXIT_OK
    _out(f"model {model or '<params>'}, batch {args.batch}, {args.runs} timed runs after 1 "
         "warm-up")
    _out("")
    _out("stages, sample PNG files -> labels (Classifier.classify)"
         + (", at the SIMULATION's speed, not the board's:" if backend == "mock" else ":"))
    shown = [k for k in STAGE_ORDER if not (k == "transfer" and backend == "cpu")]
    # time no stage accounts for (on the mock: the simulator computing on this CPU)
    other = mean["total"] - sum(mean[k] for k in STAGE_ORDER if k != "total")
    if other > 0.01 * mean["total"]:
        shown.insert(-1, "other")
        labels["other"] = ("other (the simulator computing layers 2..L on this CPU)"
                           if backend == "mock" else "other (not in a stage)")
        mean["other"] = other
    width = max(len(labels[k]) for k in shown) + 2
    _out(f"  {'stage':<{width}}{'ms/batch':>10}{'ms/image':>10}")
    for k in shown:  # cpu: no transfer row (the engine reads the host's arrays in place)
        _out(f"  {labels[k]:<{width}}{1e3 * mean[k]:>10.3f}{1e3 * mean[k] / args.batch:>10.4f}")
    _out("")
    _out(format_report(perf, header=False))
    return EXIT_OK


# ----------------------------------------------------------------------------- info

def _board() -> Optional[str]:
    """The board name (pynq's device, else $BOARD), else the device-tree model, if any."""
    from ..backends.pynq.overlay_files import detect_board

    board = detect_board()
    if board:
        return board
    try:
        with open("/proc/device-tree/model", "rb") as f:
            return f.read(256).rstrip(b"\0").decode("utf-8", "replace").strip() or None
    except OSError:
        return None


def _package_version(name: str) -> Optional[str]:
    try:
        from importlib import metadata
    except ImportError:  # Python < 3.8 is not supported, but do not crash info
        return None
    try:
        return metadata.version(name)
    except Exception:
        return None


def mock_kernel_state() -> Dict[str, Any]:
    """What ``--backend mock`` (kernel "auto") computes with, and why."""
    try:
        from ..backends.sim.kernel import resolve_kernel
        kernel, _ = resolve_kernel("auto")
    except Exception as e:
        return {"kernel": None, "reason": f"{type(e).__name__}: {e}"}
    why = {
        "hls-lib": "the HLS C-simulation library is built (make -C hls_src lib): the kernel's "
                   "own C++ source, the closest model of the board, and the slowest",
        "native engine": "no HLS C-simulation library; the native CPU engine is built",
        "numpy reference": "neither the HLS C-simulation library nor the native CPU engine "
                           "is built: the numpy reference (slow)",
    }
    return {"kernel": kernel, "reason": why.get(kernel, "")}


def cmd_info(args) -> int:
    import importlib.util

    import PIL

    from ..backends import board_status, open_backend
    from ..backends.pynq.overlay_files import find_overlay, installed_boards
    from ..host.classifier import DEFAULT_MODEL, load_model

    board = _board()
    info: Dict[str, Any] = {
        "version": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pillow": PIL.__version__,
        "pynq": _package_version("pynq") if importlib.util.find_spec("pynq") else None,
        "machine": platform.machine(),
        "board": board,
        "installed_overlays": installed_boards(),
    }
    problems = []
    # The bitstream: the one given, else the installed one for this board.
    if args.overlay:
        info["bitstream"] = os.path.abspath(args.overlay)
    else:
        try:
            info["bitstream"] = find_overlay(board) if board else None
        except BnnError as e:
            info["bitstream"] = None
            info["bitstream_note"] = str(e)
    info["bitstream_found"] = bool(info["bitstream"]) and os.path.isfile(info["bitstream"])
    ok, reason = board_status(args.overlay, board)
    info["pynq_backend"] = {"available": ok, "reason": reason}
    info["engine"] = engine_state()
    info["mock_kernel"] = mock_kernel_state()
    try:
        params, path = load_model(args.model)
        info["model"] = path
        info["checksum"] = params.checksum
        info["model_description"] = params.description
        info["network"] = params.network.to_dict()
        info["model_test_acc"] = params.training.get("test_acc")  # None if not recorded
    except BnnError as e:
        info["model"] = os.fspath(args.model) if args.model else DEFAULT_MODEL
        info["checksum"] = None
        info["model_error"] = str(e)
        problems.append(str(e))
    try:
        with open_backend(name=args.backend, **_backend_options(args)) as be:
            info["backend"] = be.name
            info["backend_reason"] = be.reason or None
            info["backend_info"] = be.describe()
    except BnnError as e:
        info["backend"] = None
        info["backend_error"] = str(e)
        problems.append(str(e))
    if args.json:
        _dump_json(info)
    else:
        eng = info["engine"]
        mk = info["mock_kernel"]
        rows = dict(
            info,
            pynq_backend=("available" if ok else "unavailable") + f" ({reason})",
            engine=eng.get("summary") or (
                f"native ({eng.get('isa')})" if eng.get("native") else
                f"numpy fallback ({eng.get('reason') or 'native library unavailable'})"),
            mock_kernel=f"{mk.get('kernel')} ({mk.get('reason')})")
        for key in ("version", "python", "numpy", "pillow", "pynq", "machine", "board",
                    "bitstream", "bitstream_found", "bitstream_note", "pynq_backend", "engine",
                    "mock_kernel", "backend", "backend_reason", "backend_error", "model",
                    "model_description", "model_test_acc", "checksum", "model_error"):
            if key in rows:
                _out(f"{key + ':':<19}{escape(rows[key]) if rows[key] is not None else '-'}")
        for k, v in sorted((info.get("backend_info") or {}).items()):
            _out(f"{'  ' + k + ':':<19}{escape(v)}")
    for p in problems:
        _err(p)
    return EXIT_ERROR if problems else EXIT_OK


# ----------------------------------------------------------------------------- parser

def _int_at_least(low: int):
    """An argparse type: an integer >= ``low``."""
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if v < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {v}")
        return v
    return parse


_positive = _int_at_least(1)
_seed = _int_at_least(0)


def _seconds(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not v > 0 or not np.isfinite(v):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return v


SCORE_HELP = ("SCORE is the class's affine score, the network's logit k * s + h of the last "
              "layer's integer sum s (docs/FORMAT.md section 7): the highest one is the "
              "prediction. It is not a probability and its scale depends on the model.")


def build_parser() -> argparse.ArgumentParser:
    def logging_options(default):
        # Separate parser objects for the top level and the subcommands: argparse shares action
        # objects with every child, so one default would override the other. The subcommands'
        # SUPPRESS default keeps a top-level `pynq-bnn --debug classify ...` in force.
        opts = argparse.ArgumentParser(add_help=False)
        opts.add_argument("--debug", action="store_true", default=default,
                          help="debug logging, and tracebacks on errors")
        opts.add_argument("-v", "--verbose", action="store_true", default=default,
                          help="informational logging on stderr")
        return opts

    common = logging_options(argparse.SUPPRESS)

    backend = argparse.ArgumentParser(add_help=False)
    backend.add_argument("--backend", default="auto", metavar="B",
                         help="auto (default: the board if present, else cpu), pynq, mock, cpu")
    backend.add_argument("--model", default=None, metavar="MODEL",
                         help="parameter file (.npz) or a shipped model: "
                              + ", ".join(SHIPPED_MODELS) + " (default: cifar10)")
    backend.add_argument("--overlay", default=None, metavar="BIT",
                         help="bitstream for the pynq/mock backends (default: the shipped one)")
    backend.add_argument("--timeout", type=_seconds, default=None, metavar="S",
                         help="accelerator timeout in seconds")
    backend.add_argument("--json", action="store_true", help="machine-readable output on stdout")

    p = argparse.ArgumentParser(
        prog="pynq-bnn", parents=[logging_options(False)],
        description="Classify images with a BinaryNet CIFAR-10 accelerator (PYNQ) or its "
                    "CPU/mock backends.",
        epilog="exit codes: 0 ok, 1 model/backend/hardware error, 2 bad input or usage, "
               "130 interrupted")
    p.add_argument("--version", action="version", version=f"pynq-bnn {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    c = sub.add_parser("classify", parents=[common, backend], help="classify image files",
                       description="Print 'PATH: LABEL SCORE' per image, in input order (with "
                                   "--top-k K: 'PATH: LABEL1 SCORE1, LABEL2 SCORE2, ...'). "
                                   + SCORE_HELP,
                       epilog="A directory stands for the image files in it "
                              f"({', '.join(IMAGE_EXTENSIONS)}), sorted by name.")
    c.add_argument("images", nargs="+", metavar="IMAGE|DIR")
    c.add_argument("-r", "--recursive", action="store_true",
                   help="also the image files in the subdirectories of a DIR")
    c.add_argument("--top-k", type=_positive, default=1, metavar="K",
                   help="the K best classes per image, best first (default 1)")
    c.set_defaults(func=cmd_classify)

    e = sub.add_parser("eval", parents=[common, backend], help="accuracy on labelled data",
                       description="Accuracy and throughput on CIFAR-10 as distributed "
                                   "(cifar-10-binary.tar.gz, or its extracted "
                                   "cifar-10-batches-bin/ folder: the test batch) or an .npz "
                                   "with x (uint8 N x 32 x 32 x 3) and y (labels).")
    e.add_argument("data", metavar="DATA")
    e.add_argument("--limit", type=_positive, default=None, metavar="N",
                   help="a seeded, class-balanced subset of N images (the same one every time "
                        "for the same --seed)")
    e.add_argument("--seed", type=_seed, default=0, metavar="S",
                   help="seed of the --limit subset (default 0)")
    e.add_argument("--batch", type=_positive, default=256, metavar="N",
                   help="images per classify call (default 256)")
    e.set_defaults(func=cmd_eval)

    b = sub.add_parser("bench", parents=[common, backend], help="time every pipeline stage",
                       description="Time each stage on the shipped sample images (random ones "
                                   "if absent), one throughput figure per configuration, and "
                                   "the HLS kernel's cycle estimate in its own block.")
    b.add_argument("--batch", type=_positive, default=16, metavar="N", help="images per run (16)")
    b.add_argument("--runs", type=_positive, default=5, metavar="N",
                   help="timed runs after one warm-up (5)")
    b.set_defaults(func=cmd_bench)

    i = sub.add_parser("info", parents=[common, backend],
                       help="versions, board, bitstream, engine, backend, model")
    i.set_defaults(func=cmd_info)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    """Run the command line; returns the exit code (the console script exits with it)."""
    args = build_parser().parse_args(argv)
    level = logging.DEBUG if args.debug else logging.INFO if args.verbose else logging.WARNING
    restore_logging = _setup_logging(level)
    try:
        return _dispatch(args)
    finally:
        restore_logging()


def _dispatch(args) -> int:
    """Run the subcommand; map every failure to an exit code and one stderr line."""
    try:
        return args.func(args)
    except KeyboardInterrupt:
        _err("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # stdout closed early (e.g. `| head`): exit quietly. Point the stdout descriptor at
        # /dev/null so that Python's flush at exit does not complain (Python docs, "Note on
        # SIGPIPE").
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, AttributeError, ValueError):
            pass
        return EXIT_ERROR
    except (ImageError, InputError, DatasetError) as e:
        if args.debug:
            raise
        _err(f"error: {e}")
        return EXIT_INPUT
    except BnnError as e:
        if args.debug:
            raise
        _err(f"error: {e}")
        return EXIT_ERROR
    except Exception as e:  # never a traceback without --debug
        if args.debug:
            raise
        _err(f"error: {type(e).__name__}: {e} (rerun with --debug for the traceback)")
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
