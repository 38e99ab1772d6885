"""The ``pynq-bnn`` command: a thin client of :class:`pynq_bnn.host.classifier.Classifier`.

::

    pynq-bnn classify [--backend B] [--model MODEL] [--json] IMAGE...
    pynq-bnn eval     [--backend B] [--model MODEL] [--limit N] [--batch N] [--json] DATA.npz
    pynq-bnn bench    [--backend B] [--model MODEL] [--batch N] [--runs N] [--json]
    pynq-bnn info     [--backend B] [--model MODEL] [--json]

Results go to stdout; diagnostics, progress and errors to stderr (through :mod:`logging`;
``-v`` for info messages, ``--debug`` for debug messages and tracebacks).

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
import time
from typing import Any, Dict, List, Optional

import numpy as np

from .. import __version__
from ..host.shipped_models import SHIPPED_MODELS
from ..errors import BnnError, ImageError

log = logging.getLogger("pynq_bnn.tools.cli")

EXIT_OK, EXIT_ERROR, EXIT_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
from ..resources import SAMPLES_DIR


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


def _err(message: str) -> None:
    """One line on stderr (CLI output, not a log record: it must show at every level)."""
    text = " ".join(str(message).split("\n"))
    sys.stderr.write(f"pynq-bnn: {text}\n")
    sys.stderr.flush()


def _out(line: str = "") -> None:
    sys.stdout.write(line + "\n")


def _dump_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, indent=None, allow_nan=False, default=_json_default) + "\n")


def _json_default(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def _finite(x: float) -> Optional[float]:
    return float(x) if np.isfinite(x) else None


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


class _Progress:
    """A one-line progress bar on stderr, only when stderr is a terminal."""

    def __init__(self, total: int, enabled: bool):
        self.total = max(total, 1)
        self.enabled = enabled
        self.start = time.perf_counter()

    def update(self, done: int) -> None:
        if not self.enabled:
            return
        width = 30
        filled = int(width * done / self.total)
        rate = done / max(time.perf_counter() - self.start, 1e-9)
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} "
                         f"{rate:.1f} img/s")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _stderr_isatty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


# ----------------------------------------------------------------------------- classify

def cmd_classify(args) -> int:
    records = None
    failed = 0
    try:
        with _classifier(args) as clf:
            records = []
            # In chunks, so that results stream out while a long list of files is processed.
            for i in range(0, len(args.images), clf.chunk):
                result = clf.classify_many(list(args.images[i:i + clf.chunk]))
                failed += result.n_failed
                for p in result:
                    if not p.ok:
                        _err(str(p.error))
                    elif args.json:
                        records.append({"path": p.source, "label": p.name, "index": p.index,
                                        "score": _finite(p.score),
                                        "scores": [_finite(v) for v in p.scores],
                                        "int_scores": [int(v) for v in p.int_scores]})
                    else:
                        _out(f"{p.source}: {p.name} {p.score:.4f}")
                sys.stdout.flush()
    finally:
        if args.json and records is not None:  # also when a later chunk fails: keep what we have
            _dump_json(records)
    if failed:
        log.info("%d of %d images failed", failed, len(args.images))
    return EXIT_INPUT if failed else EXIT_OK


# ----------------------------------------------------------------------------- eval

def _load_dataset(path: str, n_classes: int, size: int, limit: Optional[int]):
    """x uint8 [N, H, W, 3] and y int [N] from an npz; every problem is an InputError."""
    import zipfile

    if not os.path.exists(path):
        raise InputError(f"{path}: no such file")
    if os.path.isdir(path):
        raise InputError(f"{path}: is a directory, not an .npz file")
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror or e})") from None
    if not head:
        raise InputError(f"{path}: empty file (0 bytes)")
    if not head.startswith(b"PK"):  # np.load would try to unpickle it and say so, confusingly
        raise InputError(f"{path}: not an .npz archive (no zip header)")
    try:
        with np.load(path, allow_pickle=False) as z:
            if not isinstance(z, np.lib.npyio.NpzFile):
                raise InputError(f"{path}: not an .npz archive")
            missing = [k for k in ("x", "y") if k not in z.files]
            if missing:
                raise InputError(f"{path}: missing array {missing[0]!r} (has {sorted(z.files)}; "
                                 "expected x: uint8 N x 32 x 32 x 3 and y: labels)")
            x, y = z["x"], z["y"]
    except InputError:
        raise
    except AttributeError:  # np.load of a plain .npy returns an ndarray (no context manager)
        raise InputError(f"{path}: not an .npz archive") from None
    except ValueError as e:
        raise InputError(f"{path}: refused ({e})") from None
    except (OSError, EOFError, zipfile.BadZipFile, KeyError) as e:
        raise InputError(f"{path}: not a readable .npz archive ({e})") from None
    except Exception as e:
        raise InputError(f"{path}: corrupt archive ({type(e).__name__}: {e})") from None
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[3] != 3:
        raise InputError(f"{path}: x is {x.dtype} {x.shape}, expected uint8 "
                         f"N x {size} x {size} x 3")
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise InputError(f"{path}: y is {y.dtype} {y.shape}, expected integer labels [N]")
    if len(y) != len(x):
        raise InputError(f"{path}: {len(x)} images but {len(y)} labels")
    if len(x) and (y.min() < 0 or y.max() >= n_classes):
        raise InputError(f"{path}: labels outside 0..{n_classes - 1}")
    if limit is not None:
        x, y = x[:limit], y[:limit]
    if len(x) == 0:
        raise InputError(f"{path}: no images")
    return x, y.astype(np.int64)


def cmd_eval(args) -> int:
    with _classifier(args) as clf:
        x, y = _load_dataset(args.data, clf.network.n_classes, clf.image_size, args.limit)
        n = len(x)
        progress = _Progress(n, _stderr_isatty())
        stages = dict.fromkeys(("preprocess", "layer1", "transfer", "kernel", "post"), 0.0)
        n_classes = clf.network.n_classes
        confusion = np.zeros((n_classes, n_classes), dtype=np.int64)  # [true, predicted]
        t0 = time.perf_counter()
        try:
            for i in range(0, n, args.batch):
                r = clf.classify(x[i:i + args.batch])
                np.add.at(confusion, (y[i:i + args.batch], r.indices), 1)
                for k in stages:
                    stages[k] += r.timings.get(k, 0.0)
                progress.update(min(i + args.batch, n))
        finally:
            progress.close()
        elapsed = time.perf_counter() - t0
        backend = clf.backend.name
        class_names = list(clf.class_names)
    correct = int(np.trace(confusion))
    accuracy = correct / n
    ips = n / elapsed if elapsed > 0 else float("inf")
    totals = confusion.sum(axis=1)
    per_class = {name: (int(confusion[k, k]) / int(totals[k]) if totals[k] else None)
                 for k, name in enumerate(class_names)}
    if args.json:
        _dump_json({"accuracy": accuracy, "n": n, "correct": correct,
                    "images_per_s": _finite(ips), "seconds": elapsed, "backend": backend,
                    "model": clf.model_path, "timings": stages, "per_class": per_class,
                    "confusion": confusion.tolist(), "class_names": class_names})
    else:
        _out(f"accuracy: {accuracy:.4f} ({correct}/{n})")
        _out("per class: " + ", ".join(f"{name} {acc:.3f}" for name, acc in per_class.items()
                                       if acc is not None))
        _out(f"images/s: {ips:.1f} (backend {backend}, batch {args.batch}, {elapsed:.2f} s)")
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
    stage_names = ("preprocess", "layer1", "transfer", "kernel", "post", "total")
    with _classifier(args) as clf:
        items = _bench_items(args.batch, clf.image_size)
        clf.classify(items)  # warm-up: caches, lazy allocations, first-touch of buffers
        sums = dict.fromkeys(stage_names, 0.0)
        for _ in range(args.runs):
            r = clf.classify(items)
            for k in stage_names:
                sums[k] += r.timings.get(k, 0.0)
        backend = clf.backend.name
        model = clf.model_path
    mean = {k: v / args.runs for k, v in sums.items()}
    ips = args.batch / mean["total"] if mean["total"] > 0 else float("inf")
    from .bench import bench_report, format_report  # overlap, driver overhead, HLS estimate
    perf = bench_report(backend=backend, batch=args.batch, model=model,
                        **_backend_options(args))
    if args.json:
        _dump_json({"backend": backend, "model": model, "batch": args.batch, "runs": args.runs,
                    "images_per_s": _finite(ips), "timings": mean,
                    "per_image_s": {k: v / args.batch for k, v in mean.items()},
                    "performance": perf})
        return EXIT_OK
    _out(f"backend {backend}, batch {args.batch}, {args.runs} runs (after 1 warm-up), "
         f"model {model or '<params>'}")
    _out(f"{'stage':<12}{'ms/batch':>12}{'ms/image':>12}")
    for k in stage_names:
        _out(f"{k:<12}{1e3 * mean[k]:>12.3f}{1e3 * mean[k] / args.batch:>12.4f}")
    _out(f"images/s: {ips:.1f}")
    _out(format_report(perf))
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
            return f.read().rstrip(b"\0").decode("utf-8", "replace").strip() or None
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


def cmd_info(args) -> int:
    import importlib.util

    import PIL

    from ..backends import board_status, open_backend
    from ..host.classifier import DEFAULT_MODEL, _load_model
    from ..backends.pynq.overlay_files import find_overlay, installed_boards

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
    try:
        params, path = _load_model(args.model)
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
            info["backend_info"] = be.describe()
    except BnnError as e:
        info["backend"] = None
        info["backend_error"] = str(e)
        problems.append(str(e))
    if args.json:
        _dump_json(info)
    else:
        rows = dict(info, pynq_backend=("available" if ok else "unavailable") + f" ({reason})")
        for key in ("version", "python", "numpy", "pillow", "pynq", "machine", "board",
                    "bitstream", "bitstream_found", "bitstream_note", "pynq_backend", "backend",
                    "backend_error", "model", "model_description", "model_test_acc", "checksum",
                    "model_error"):
            if key in rows:
                _out(f"{key + ':':<19}{rows[key] if rows[key] is not None else '-'}")
        for k, v in sorted((info.get("backend_info") or {}).items()):
            _out(f"{'  ' + k + ':':<19}{v}")
    for p in problems:
        _err(p)
    return EXIT_ERROR if problems else EXIT_OK


# ----------------------------------------------------------------------------- parser

def _positive(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def _seconds(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not v > 0 or not np.isfinite(v):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return v


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
                       description="Print 'PATH: LABEL SCORE' per image (SCORE: the affine "
                                   "score of the label).")
    c.add_argument("images", nargs="+", metavar="IMAGE")
    c.set_defaults(func=cmd_classify)

    e = sub.add_parser("eval", parents=[common, backend], help="accuracy on a labelled .npz",
                       description="Accuracy and throughput on an .npz with x (uint8 N x 32 x 32 "
                                   "x 3) and y (labels).")
    e.add_argument("data", metavar="DATA.npz")
    e.add_argument("--limit", type=_positive, default=None, metavar="N",
                   help="only the first N images (the project's CIFAR-10 npz files are sorted "
                        "by class, so a prefix is not a fair sample)")
    e.add_argument("--batch", type=_positive, default=256, metavar="N",
                   help="images per classify call (default 256)")
    e.set_defaults(func=cmd_eval)

    b = sub.add_parser("bench", parents=[common, backend], help="time every pipeline stage",
                       description="Time preprocess, layer 1, transfer, kernel and post-processing "
                                   "on the shipped sample images (random ones if absent).")
    b.add_argument("--batch", type=_positive, default=16, metavar="N", help="images per run (16)")
    b.add_argument("--runs", type=_positive, default=5, metavar="N",
                   help="timed runs after one warm-up (5)")
    b.set_defaults(func=cmd_bench)

    i = sub.add_parser("info", parents=[common, backend],
                       help="versions, board, backend, bitstream, model")
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
    except (ImageError, InputError) as e:
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
