"""Per-stage regions for the armhf instruction-count harness (benchmarks/arm/run.sh).

Runs inside the armhf rootfs, in the board-like venv, normally under
``qemu-arm -cpu cortex-a9 -plugin insn_count.so``. Around every region it issues the marker
syscall (``syscall(4093, region_id, 0 | 1)``), which the plugin snapshots and any kernel
answers with ENOSYS, so this script also runs unchanged on a real board or a PC (then only its
wall-clock times mean anything). It writes a JSON description of the regions (ids, names, image
counts, wall times, notes, skipped stages) to ``--out``; run.sh joins it with the plugin's
counts (benchmarks/arm/report.py).

Batch stages run once untimed (warm-up: buffers, lazy imports, first-call caches), then once
between markers, with a whole batch of ``--batch`` images (default 16) counted.

Adding a stage is one entry in :func:`stage_table`: a name, what it does, how many images it
covers, and a ``run()`` closure over the context ``ctx`` (the Classifier, the inputs, the
previous stages' outputs). Look the code under test up through
:func:`find` (dotted names, first match wins), so a missing function skips the stage with a
note in the JSON instead of crashing, whatever the package layout is.
"""
from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import os
import platform
import sys
import time
import traceback

MARKER_NR = 4093
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def mark(region_id: int, kind: int) -> None:
    _libc.syscall(ctypes.c_long(MARKER_NR), ctypes.c_long(region_id), ctypes.c_long(kind))


class Skip(Exception):
    """A stage cannot run with this version of the package (the message says why)."""


def find(*dotted: str):
    """The first of ``dotted`` ("pkg.module.attr.attr") that imports; else Skip."""
    import importlib
    tried = []
    for name in dotted:
        parts = name.split(".")
        for cut in range(len(parts), 0, -1):
            try:
                obj = importlib.import_module(".".join(parts[:cut]))
            except ImportError:
                continue
            try:
                for attr in parts[cut:]:
                    obj = getattr(obj, attr)
            except AttributeError:
                break
            return obj
        tried.append(name)
    raise Skip("not found: " + ", ".join(tried))


class Harness:
    def __init__(self, only=None):
        self.regions = []
        self.only = set(only) if only else None
        self._next_id = 1

    def wanted(self, name: str) -> bool:
        return self.only is None or name in self.only or any(
            name.startswith(p.rstrip("*")) for p in self.only if p.endswith("*"))

    def region(self, name, fn, n_images=None, what="", warmup=False, **extra):
        """Run ``fn`` between markers (after one unmeasured call if ``warmup``)."""
        if not self.wanted(name):
            return None
        rec = {"name": name, "what": what, "n_images": n_images, **extra}
        try:
            if warmup:
                fn()
            rid = self._next_id
            self._next_id += 1
            mark(rid, 0)
            t0 = time.perf_counter()
            result = fn()
            t1 = time.perf_counter()
            mark(rid, 1)
            rec.update(id=rid, wall_s=t1 - t0, status="ok")
        except Skip as e:
            rec.update(status="skipped", note=str(e))
            result = None
        except Exception as e:  # a stage that breaks must not take the others with it
            rec.update(status="error", note=f"{type(e).__name__}: {e}",
                       traceback=traceback.format_exc(limit=6))
            result = None
        self.regions.append(rec)
        return result


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def make_inputs(ctx, workdir):
    """Deterministic inputs: the shipped 32x32 samples, and 640x480 JPEGs made from them
    (bicubic upscale + fixed-seed noise of +-6 so the entropy decoder has camera-like work,
    quality 90, Pillow's default 4:2:0), and the decoded 480x640x3 frames."""
    import numpy as np
    from PIL import Image

    import pynq_bnn
    samples_dir = os.path.join(os.path.dirname(pynq_bnn.__file__), "samples")
    pngs = sorted(os.path.join(samples_dir, f) for f in os.listdir(samples_dir)
                  if f.endswith(".png"))
    if not pngs:
        raise SystemExit(f"no samples in {samples_dir}")
    batch = ctx["batch"]
    ctx["png_paths"] = [pngs[i % len(pngs)] for i in range(batch)]
    rng = np.random.RandomState(0)
    jpegs = []
    for i, p in enumerate(pngs):
        big = Image.open(p).convert("RGB").resize((640, 480), Image.BICUBIC)
        a = np.asarray(big).astype(np.int16) + rng.randint(-6, 7, size=(480, 640, 3))
        out = os.path.join(workdir, f"{os.path.splitext(os.path.basename(p))[0]}_640x480.jpg")
        Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).save(out, quality=90)
        jpegs.append(out)
    ctx["jpeg_paths"] = [jpegs[i % len(jpegs)] for i in range(batch)]
    ctx["jpeg_sha256"] = {os.path.basename(j): sha256(j) for j in jpegs}
    frames = [np.asarray(Image.open(j).convert("RGB")) for j in jpegs]
    ctx["frames"] = [frames[i % len(frames)] for i in range(batch)]


def load_images_fn():
    return find("pynq_bnn.preprocess.load_images", "pynq_bnn.host.preprocess.load_images")


def stage_table(ctx):
    """(name, what, n_images, run) for the batch stages; ``run()`` does the measured work."""
    b = ctx["batch"]
    clf = ctx["clf"]

    def preprocess(key):
        def run():
            names, images = load_images_fn()(ctx[key], clf.image_size)
            ctx["images_" + key] = images
            return images
        return run

    def layer1():
        packed = clf.layer1(ctx["images"])
        ctx["packed"] = packed
        return packed

    def first_layer_threads(threads):
        cls = find("pynq_bnn.FirstLayer", "pynq_bnn.host.layer1.FirstLayer",
                   "pynq_bnn.fast_first_layer.FirstLayer")
        inst = cls(clf.params, threads=threads)
        return lambda: inst(ctx["images"])

    def engine():
        return clf.backend.run(ctx["packed"])

    def batch1(fn):
        return lambda: fn(ctx["images"][:1])

    def layer1_parts():
        """Today's FirstLayer algorithm step by step (its own buffers and kernel), one region
        per step, so the share of each step is visible; Skip if FirstLayer changed shape."""
        import numpy as np
        fl = clf.layer1
        for attr in ("_buffers", "_windows", "kernel", "size"):
            if not hasattr(fl, attr):
                raise Skip(f"clf.layer1 has no {attr} (not today's FirstLayer)")
        images = ctx["images"]
        n, s = images.shape[0], fl.size
        pad, cols, acc, bits = fl._buffers(n)
        inner = pad[:, 1:-1, 1:-1, :]
        steps = [
            ("scale", "x = 2p - 255 into the padded float32 buffer",
             lambda: (np.multiply(images, np.float32(2.0), out=inner, dtype=np.float32,
                                  casting="unsafe"), np.subtract(inner, np.float32(255.0),
                                                                 out=inner))),
            ("im2col", "27 taps per pixel into the [N*S*S, 28] matrix",
             lambda: cols[..., :27].reshape(n, s, s, 3, 9).__setitem__(
                 Ellipsis, fl._windows(pad))),
            ("matmul", "float32 [N*S*S, 28] x [28, C1] (BLAS sgemm)",
             lambda: np.matmul(cols.reshape(n * s * s, 28), fl.kernel, out=acc)),
            ("compare", "acc >= 0 -> bool", lambda: np.greater_equal(acc, np.float32(0.0),
                                                                      out=bits)),
            ("packbits", "bool -> packed bits (little bit order)",
             lambda: np.packbits(bits, axis=-1, bitorder="little")),
        ]
        return steps

    def classify(key):
        def run():
            r = clf.classify(ctx[key])
            ctx["result_" + key] = r
            return r
        return run

    def frames_to_packed():
        import numpy as np
        fit = find("pynq_bnn.camera.preprocess_frame")
        return clf.layer1(np.stack([fit(f, clf.image_size) for f in ctx["frames"]]))

    def jpegs_to_packed():
        return clf.layer1(load_images_fn()(ctx["jpeg_paths"], clf.image_size)[1])

    ctx["_layer1_parts"] = layer1_parts
    return [
        ("preprocess_png32", "load_images: decode a 32x32 PNG file (no resize)", b,
         preprocess("png_paths")),
        ("preprocess_jpeg640", "load_images: decode a 640x480 JPEG file, resize + crop to 32x32",
         b, preprocess("jpeg_paths")),
        ("preprocess_frame640", "load_images: a 480x640x3 uint8 frame array to 32x32", b,
         preprocess("frames")),
        ("layer1", "Classifier.layer1 (the default host layer 1), uint8 [N,32,32,3] -> packed",
         b, layer1),
        ("layer1_firstlayer_threads2", "FirstLayer(params, threads=2), same input", b,
         lambda: first_layer_threads(2)()),
        ("engine_binary_layers", "cpu backend run(): every binary layer, packed -> scores", b,
         engine),
        ("layer1_batch1", "Classifier.layer1 on one image", 1, batch1(clf.layer1)),
        ("engine_batch1", "cpu backend run() on one image's packed layer 1", 1,
         lambda: clf.backend.run(ctx["packed"][:1])),
        ("classify_png32", "Classifier(backend='cpu').classify(16 PNG paths): everything", b,
         classify("png_paths")),
        ("classify_array", "Classifier.classify(uint8 [N,32,32,3] array): no decode", b,
         classify("images")),
        ("classify_jpeg640", "Classifier.classify(16 640x480 JPEG paths)", b,
         classify("jpeg_paths")),
        # issue 13's preprocessing goals: a frame array / a JPEG file to packed layer 1
        ("frame640_to_packed", "camera.preprocess_frame of each 480x640x3 frame array, then "
         "Classifier.layer1 of the batch", b, frames_to_packed),
        ("jpeg640_to_packed", "load_images(640x480 JPEG paths), then Classifier.layer1", b,
         jpegs_to_packed),
        # New implementations are one line each; find() skips them (with a note) until they
        # exist, e.g. (names illustrative):
        # ("layer1_native", "native fused layer 1", b,
        #  lambda: find("pynq_bnn.backends.cpu.engine.Engine.layer1")(engine, ctx["images"])),
    ]


def layer1_parts(ctx):
    return ctx["_layer1_parts"]()


def blas_libraries():
    """Shared objects with 'blas' or 'lapack' in their path mapped into this process."""
    found = set()
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 6 and ("blas" in parts[5] or "lapack" in parts[5]):
                    found.add(os.path.realpath(parts[5]))
    except OSError:
        pass
    return sorted(found)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--workdir", default="/tmp/pynq-bnn-arm-stages")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--model", default=None, help="shipped model name or file (default model)")
    ap.add_argument("--only", default="", help="comma-separated region names (prefix* allowed)")
    ap.add_argument("--label", default="", help="free text stored in the JSON (e.g. BLAS)")
    args = ap.parse_args(argv)
    os.makedirs(args.workdir, exist_ok=True)
    h = Harness([s for s in args.only.split(",") if s] or None)
    ctx = {"batch": args.batch}
    mark(0, 0)  # region 0: an empty marker pair, the cost of the markers themselves
    mark(0, 1)

    # ---- Python overhead: imports, model load, first and later calls (board-side, item 6)
    h.region("import_numpy", lambda: __import__("numpy"), what="import numpy")
    h.region("import_pynq_bnn", lambda: __import__("pynq_bnn"), what="import pynq_bnn")
    h.region("import_classifier", lambda: find("pynq_bnn.Classifier"),
             what="from pynq_bnn import Classifier (lazy: classifier, Pillow, preprocess)")
    if not h.wanted("import_classifier"):
        find("pynq_bnn.Classifier")
    Classifier = find("pynq_bnn.Classifier")
    clf = h.region("model_load", lambda: Classifier(args.model, backend="cpu"),
                   what="Classifier(backend='cpu'): load + validate the .npz, build layer 1")
    if clf is None:
        clf = Classifier(args.model, backend="cpu")
    ctx["clf"] = clf
    h.region("backend_open", clf.open, what="Classifier.open(): cpu backend + native engine load")
    clf.open()
    make_inputs(ctx, args.workdir)
    one_png = ctx["png_paths"][:1]
    h.region("classify_first_call", lambda: clf.classify(one_png), n_images=1,
             what="first classify() of one 32x32 PNG path (cold)")
    h.region("classify_one_png", lambda: clf.classify(one_png), n_images=1,
             what="a later classify() of one 32x32 PNG path (warm): per-call overhead + work")
    import numpy as np
    ctx["images"] = load_images_fn()(ctx["png_paths"], clf.image_size)[1]
    one_arr = np.ascontiguousarray(ctx["images"][:1])
    h.region("classify_one_array", lambda: clf.classify(one_arr), n_images=1,
             what="a later classify() of one uint8 [1,32,32,3] array (warm, no decode)")

    # ---- the batch stages
    for name, what, n, run in stage_table(ctx):
        h.region(name, run, n_images=n, what=what, warmup=True)
    # ---- today's layer 1, step by step (same batch)
    # (one BLAS thread, as FirstLayer sets during its calls: an idle OpenBLAS worker
    # spin-waits, and spinning counts as instructions)
    if h.wanted("layer1_part_*") or any(h.wanted("layer1_part_" + k) for k in
                                        ("scale", "im2col", "matmul", "compare", "packbits")):
        blas = None
        try:
            try:
                blas = find("pynq_bnn.host.layer1.blas_thread_control",
                            "pynq_bnn.fast_first_layer.blas_thread_control")()
            except Skip:
                blas = None
            old_threads = blas[1]() if blas else None
            if blas:
                blas[0](1)
            for step, what, run in layer1_parts(ctx):
                h.region("layer1_part_" + step, run, n_images=args.batch, what=what,
                         warmup=True, blas_threads=1 if blas else "not OpenBLAS")
        except Skip as e:
            h.regions.append({"name": "layer1_part_*", "status": "skipped", "note": str(e)})
        finally:
            if blas and old_threads is not None:
                blas[0](old_threads)

    # ---- facts about this environment
    info = {"python": sys.version.split()[0], "platform_machine": platform.machine(),
            "numpy": np.__version__, "blas_libraries_mapped": blas_libraries(),
            "label": args.label, "batch": args.batch, "marker_syscall": MARKER_NR,
            "cpus_in_affinity": len(os.sched_getaffinity(0))}
    try:
        import PIL
        info["pillow"] = PIL.__version__
    except ImportError:
        pass
    import pynq_bnn
    info["pynq_bnn_version"] = getattr(pynq_bnn, "__version__", None)
    info["pynq_bnn_path"] = os.path.dirname(pynq_bnn.__file__)
    try:
        info["backend_describe"] = clf.backend.describe()
    except Exception as e:
        info["backend_describe"] = f"{type(e).__name__}: {e}"
    try:
        eng = find("pynq_bnn.backends.cpu.engine", "pynq_bnn.engine")
        info["engine"] = {"native_available": eng.native_available(),
                          "best_isa": eng.best_isa(), "supported_isas": eng.supported_isas(),
                          "library": [p for p in eng._candidates()]}
        be_engine = getattr(clf.backend, "_engine", None)
        if be_engine is not None:
            info["engine"]["isa_in_use"] = getattr(be_engine, "isa", None)
            info["engine"]["threads"] = getattr(be_engine, "threads", None)
    except Skip as e:
        info["engine"] = {"note": str(e)}
    try:
        build = find("pynq_bnn.backends.cpu.build", "pynq_bnn._engine.build")
        info["engine_compile_args_here"] = build._compile_args()
    except (Skip, AttributeError) as e:
        info["engine_compile_args_here"] = f"unknown ({e})"
    info["inputs"] = {"jpeg_sha256": ctx.get("jpeg_sha256"),
                      "png": [os.path.basename(p) for p in ctx["png_paths"]]}
    for key in ("result_png_paths", "result_jpeg_paths"):
        r = ctx.get(key)
        if r is not None:
            labels = [p.label for p in r]
            info[key.replace("result_", "labels_")] = labels
            info[key.replace("result_", "scores_sha256_")] = hashlib.sha256(
                np.ascontiguousarray(r.scores).tobytes()).hexdigest()[:16]
    info["regions"] = h.regions
    with open(args.out, "w") as f:
        json.dump(info, f, indent=1, default=str)
    bad = [r["name"] for r in h.regions if r["status"] == "error"]
    print(f"stages.py: {len(h.regions)} regions, errors: {bad or 'none'} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
