#!/usr/bin/env python3
"""Preprocessing: the exact integer area resize against the Pillow path it replaced.

    python benchmarks/bench_preprocess.py [--out benchmarks/results/preprocess.json]
    python benchmarks/bench_preprocess.py --accuracy [--limit 2000] \\
        [--out benchmarks/results/preprocess_accuracy.json]

Speed (default): per image, old vs new in the same process, ratios old/new:
  * frame640: a 480 x 640 x 3 uint8 frame array -> uint8 [32, 32, 3]
    (old: load_image of the baseline, PIL.Image.fromarray + Lanczos of the centre square;
    new: preprocess.fit_array, what camera.preprocess_frame and load_image do with arrays);
  * jpeg640: a 640 x 480 JPEG file (quality 90, 4:2:0) -> [32, 32, 3]
    (load_image, old and new: the same DCT scale, >= 64 px; Lanczos / exact area);
  * png32: a 32 x 32 PNG file, no resize;
  * bgr640: the BGR -> RGB swap of a 480 x 640 frame when OpenCV is not there to do it.
"old" is pynq_bnn/host/preprocess.py as of BASELINE_REV, loaded from git into this process.
Each figure is the median over --rounds rounds of at least --min-time seconds.

Accuracy (--accuracy): both shipped models on the first --limit images of an even stride
through the CIFAR-10 test set (the JPEG copy in ../shared/data/cifar10), each image
  * as is (32 x 32: must be identical, old and new);
  * upscaled with Pillow's bicubic to 64 x 64 and 96 x 96;
  * upscaled to 480 x 480 and framed into a 640 x 480 frame (grey side bars the crop removes);
  * that frame saved as a quality-90 JPEG and decoded by each path (plus the new resize after
    a full-size decode and after a 1/8-scale decode, the DCT scale that keeps only >= 32
    pixels: the rule considered and rejected for its accuracy);
classified through the cpu backend after the old and the new preprocessing: accuracy for each,
and the fraction of images whose label the two paths agree on.
"""
from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import sys
import tempfile
import time

import numpy as np
import PIL
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from pynq_bnn.camera.sources import _bgr_to_rgb  # noqa: E402
from pynq_bnn.host import preprocess as pp  # noqa: E402
from pynq_bnn.tools.bench import cpu_model, emit_json, loadavg, timed_rounds  # noqa: E402

SIZE = 32
_BICUBIC = getattr(Image, "Resampling", Image).BICUBIC


# ----------------------------------------------------------------------------- the old path

BASELINE_REV = "8b0e527"
"""The last commit with the Pillow resize (Lanczos, fractional centre box); its preprocess
module is loaded from git into this process as the baseline."""


def load_baseline():
    import subprocess
    import types
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    src = subprocess.run(["git", "-C", root, "show",
                          f"{BASELINE_REV}:pynq_bnn/host/preprocess.py"],
                         capture_output=True, text=True, check=True).stdout
    mod = types.ModuleType("pynq_bnn.host._preprocess_baseline")
    mod.__package__ = "pynq_bnn.host"   # its relative imports (..errors) resolve as before
    sys.modules[mod.__name__] = mod
    exec(compile(src, f"{BASELINE_REV}:pynq_bnn/host/preprocess.py", "exec"), mod.__dict__)
    return mod


OLD = load_baseline()


def old_frame(a: np.ndarray, size: int = SIZE) -> np.ndarray:
    return OLD.load_image(a, size)


def old_jpeg(path, size: int = SIZE) -> np.ndarray:
    return OLD.load_image(path, size)


def new_jpeg_at(path, draft, size: int = SIZE) -> np.ndarray:
    """The new resize after a decode at another DCT scale (draft=None: full size)."""
    with Image.open(path) as img:
        if draft:
            img.draft(img.mode, (draft, draft))
        img.load()
        return pp.fit_array(np.asarray(img.convert("RGB")), size)


# ----------------------------------------------------------------------------- inputs

def camera_frame(seed: int = 0) -> np.ndarray:
    """A deterministic 480 x 640 frame with camera-like texture (gradient + noise + edges)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:480, 0:640]
    base = np.stack([x * 255 // 640, y * 255 // 480, 128 + 90 * np.sin(x / 23.0) *
                     np.cos(y / 31.0)], -1)
    base[160:320, 240:400] = (220, 40, 30)
    return np.clip(base + rng.integers(-6, 7, base.shape), 0, 255).astype(np.uint8)


def framed_640x480(img32: np.ndarray) -> np.ndarray:
    big = np.asarray(Image.fromarray(img32).resize((480, 480), _BICUBIC))
    frame = np.full((480, 640, 3), 128, np.uint8)
    frame[:, 80:560] = big
    return frame


def jpeg_bytes(a: np.ndarray, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


# ----------------------------------------------------------------------------- speed

def old_and_new_us(old, new, min_time: float, rounds: int) -> tuple:
    """Per-image microseconds of ``old`` and ``new``, their rounds interleaved (a shared
    machine's load drifts; alternating keeps the ratio fair)."""
    us = {"old": [], "new": []}
    for _ in range(rounds):
        for key, fn in (("old", old), ("new", new)):
            (reps, dt, _), = timed_rounds(fn, min_time, 1)
            us[key].append(1e6 * dt / reps)
    return tuple({"us_per_image": round(statistics.median(u), 1), "best_us": round(min(u), 1),
                  "rounds_us": [round(v, 1) for v in u]} for u in (us["old"], us["new"]))


def speed(args) -> dict:
    frame = camera_frame()
    tmp = tempfile.mkdtemp(prefix="bench-preprocess-")
    jpeg = os.path.join(tmp, "frame640.jpg")
    with open(jpeg, "wb") as f:
        f.write(jpeg_bytes(frame))
    png = os.path.join(tmp, "img32.png")
    Image.fromarray(frame[::15, 80:560:15]).save(png)
    cases = {
        "frame640": (lambda: old_frame(frame), lambda: pp.fit_array(frame, SIZE)),
        "jpeg640": (lambda: old_jpeg(jpeg), lambda: pp.load_image(jpeg, SIZE)),
        "png32": (lambda: old_jpeg(png), lambda: pp.load_image(png, SIZE)),
        "bgr640": (lambda: np.ascontiguousarray(frame[:, :, 2::-1]),
                   lambda: _bgr_to_rgb(frame, "frame")),
    }
    out = {}
    for name, (old, new) in cases.items():
        o, n = old_and_new_us(old, new, args.min_time, args.rounds)
        diff = np.abs(old().astype(int) - new().astype(int))
        out[name] = {"old": o, "new": n,
                     "old_over_new": round(o["us_per_image"] / n["us_per_image"], 2),
                     "old_over_new_best": round(o["best_us"] / n["best_us"], 2),
                     "pixels_differing": int((diff > 0).sum()),
                     "max_abs_difference": int(diff.max()),
                     "mean_abs_difference": round(float(diff.mean()), 3)}
    out["frame640"]["what"] = ("480x640x3 uint8 array -> 32x32 (old: load_image, PIL fromarray + "
                               "Lanczos; new: preprocess.fit_array)")
    out["jpeg640"]["what"] = ("640x480 JPEG q90 file -> 32x32, load_image (both: draft >= 64 px; "
                              "old: Lanczos, new: exact area)")
    out["png32"]["what"] = "32x32 PNG file, no resize, load_image"
    out["bgr640"]["what"] = ("480x640x3 BGR -> RGB copy without OpenCV (old: a[:, :, ::-1] as "
                             "one copy; new: camera.sources._bgr_to_rgb, one channel at a time)")
    return out


# ----------------------------------------------------------------------------- accuracy

def accuracy(args) -> dict:
    from pynq_bnn.host.classifier import Classifier
    from pynq_bnn.host.shipped_models import SHIPPED_MODELS

    with np.load(args.data) as d:
        x, y = d["x"], d["y"].astype(np.int64)
    step = max(1, len(y) // args.limit)
    x, y = x[::step][:args.limit], y[::step][:args.limit]   # the file is sorted by class
    t0 = time.perf_counter()
    variants = {"32x32": {"old": x, "new": x}}
    for side in (64, 96):
        big = [np.asarray(Image.fromarray(a).resize((side, side), _BICUBIC)) for a in x]
        variants[f"{side}x{side} bicubic"] = {
            "old": np.stack([old_frame(b) for b in big]),
            "new": np.stack([pp.fit_array(b, SIZE) for b in big])}
    frames_old, frames_new = [], []
    jpeg_old, jpeg_new, jpeg_full, jpeg_eighth = [], [], [], []
    tmp = tempfile.mkdtemp(prefix="bench-preprocess-acc-")
    path = os.path.join(tmp, "f.jpg")
    for a in x:
        f = framed_640x480(a)
        frames_old.append(old_frame(f))
        frames_new.append(pp.fit_array(f, SIZE))
        with open(path, "wb") as fh:
            fh.write(jpeg_bytes(f))
        jpeg_old.append(old_jpeg(path))
        jpeg_new.append(pp.load_image(path, SIZE))
        jpeg_full.append(new_jpeg_at(path, None))
        jpeg_eighth.append(new_jpeg_at(path, SIZE))
    variants["640x480 frame array"] = {"old": np.stack(frames_old), "new": np.stack(frames_new)}
    variants["640x480 JPEG q90"] = {"old": np.stack(jpeg_old), "new": np.stack(jpeg_new),
                                    "new resize, full-size decode": np.stack(jpeg_full),
                                    "new resize, 1/8-scale decode (draft >= 32 px)":
                                        np.stack(jpeg_eighth)}
    t_prep = time.perf_counter() - t0
    models = {}
    for name in SHIPPED_MODELS:
        with Classifier(name, "cpu") as clf:
            res = {}
            for vname, ways in variants.items():
                labels = {k: clf.classify(v).indices for k, v in ways.items()}
                entry = {k: round(float((lab == y).mean()), 4) for k, lab in labels.items()}
                entry["old_new_agree"] = round(float((labels["old"] == labels["new"]).mean()),
                                               4)
                entry["pixels_identical_old_new"] = bool(np.array_equal(ways["old"],
                                                                        ways["new"]))
                res[vname] = entry
            models[name] = res
    return {"n_images": int(len(y)), "subset": f"every {step}th test image (balanced classes)",
            "data": os.path.relpath(args.data), "preprocessing_seconds": round(t_prep, 1),
            "accuracy": models}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--accuracy", action="store_true")
    ap.add_argument("--limit", type=int, default=2000)
    ap.add_argument("--data", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                   "..", "..", "shared", "data", "cifar10",
                                                   "test.npz"))
    ap.add_argument("--min-time", type=float, default=0.3)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    result = {"benchmark": "preprocess", "baseline": BASELINE_REV, "cpu": cpu_model(),
              "machine": platform.machine(), "loadavg_at_start": loadavg(),
              "python": platform.python_version(), "numpy": np.__version__,
              "pillow": PIL.__version__, "date": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                               time.gmtime())}
    if args.accuracy:
        result.update(accuracy(args))
    else:
        result.update({"min_time_s": args.min_time, "rounds": args.rounds,
                       "cases": speed(args)})
    emit_json(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
