"""A lossless compact copy of the CIFAR-10 training set, small enough to travel to a GPU machine.

    python -m training.compact_data pack ../shared/data/cifar10/train.npz .devdata/train.pack.npz
    python -m training.compact_data unpack .devdata/train.pack.npz /tmp/cifar10/train.npz

The shared copy (../shared/data/cifar10) is 142 MB: its pixels are Pillow decodes of quality-75
JPEG files. Re-encoding each image with Pillow at quality 75 gives back the same pixels for
about 60% of them and pixels within a few levels for the rest, at about 0.9 KB per image. The
pack stores those JPEG bytes plus, for the images that do not decode exactly, the difference
(mod 256, zlib-compressed), so ``unpack`` returns the very same arrays (checked against a
SHA-256 of the original pixels and labels): about 48 MB for the 50,000 training images.
Training code reads either form (:func:`load_arrays`).
"""
from __future__ import annotations

import argparse
import hashlib
import io
import sys
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

FORMAT = "pynq-bnn-cifar-pack-1"
QUALITY = 75


def _digest(x: np.ndarray, y: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(x, dtype=np.uint8).tobytes())
    h.update(np.ascontiguousarray(y, dtype=np.uint8).tobytes())
    return h.hexdigest()


def _decode(jpeg: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))


def pack(x: np.ndarray, y: np.ndarray) -> dict:
    """uint8 images [N, H, W, 3] and labels -> arrays of the lossless pack."""
    blobs, offsets, residual_idx, residuals = [], [0], [], []
    for i, img in enumerate(x):
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, "JPEG", quality=QUALITY)
        blob = buf.getvalue()
        blobs.append(blob)
        offsets.append(offsets[-1] + len(blob))
        decoded = _decode(blob)
        if not np.array_equal(decoded, img):
            residual_idx.append(i)
            residuals.append(img - decoded)  # uint8 arithmetic: wraps mod 256, undone exactly
    res = np.stack(residuals) if residuals else np.zeros((0,) + x.shape[1:], np.uint8)
    return {
        "format": np.array(FORMAT),
        "shape": np.array(x.shape, dtype=np.int64),
        "jpeg": np.frombuffer(b"".join(blobs), dtype=np.uint8),
        "offsets": np.array(offsets, dtype=np.int64),
        "y": np.asarray(y, dtype=np.uint8),
        "residual_idx": np.array(residual_idx, dtype=np.int64),
        "residual_zlib": np.frombuffer(zlib.compress(res.tobytes(), 9), dtype=np.uint8),
        "sha256": np.array(_digest(x, y)),
    }


def unpack(d, strict: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Arrays of a pack (an open npz or dict) -> (x uint8 [N, H, W, 3], y uint8 [N]).

    ``strict=False`` warns instead of failing when the pixels do not match the recorded
    digest (a JPEG decoder other than the packer's): good enough to train on, never to test on.
    """
    if str(d["format"]) != FORMAT:
        raise ValueError(f"not a {FORMAT} file (format {str(d['format'])!r})")
    shape = tuple(int(s) for s in d["shape"])
    jpeg, offsets = d["jpeg"].tobytes(), d["offsets"]
    x = np.empty(shape, dtype=np.uint8)
    for i in range(shape[0]):
        x[i] = _decode(jpeg[offsets[i]:offsets[i + 1]])
    idx = d["residual_idx"]
    res = np.frombuffer(zlib.decompress(d["residual_zlib"].tobytes()), dtype=np.uint8)
    x[idx] += res.reshape((len(idx),) + shape[1:])
    y = np.array(d["y"], dtype=np.uint8)
    if _digest(x, y) != str(d["sha256"]):
        msg = "unpacked images do not match the recorded SHA-256 (another Pillow/libjpeg?)"
        if strict:
            raise ValueError(msg)
        print(f"warning: {msg}; using them anyway", file=sys.stderr)
    return x, y


def load_arrays(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels from a data folder (``train.npz``), a plain npz or a pack.

    Raises ValueError naming the file when it is missing or not one of those.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "train.npz"
    try:
        with np.load(path) as d:
            if "format" in d.files:
                return unpack(d)
            if not {"x", "y"} <= set(d.files):
                raise ValueError(f"has {sorted(d.files)}, expected arrays x and y")
            x, y = d["x"], d["y"]
    except (OSError, ValueError, EOFError) as e:
        raise ValueError(f"{path}: not a CIFAR-10 npz or pack: {e}") from None
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[3] != 3 or len(y) != len(x):
        raise ValueError(f"{path}: expected x uint8 [N, H, W, 3] and N labels, got x "
                         f"{x.dtype} {x.shape} and {len(y)} labels")
    return x, y


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack", help="npz (x, y) -> lossless pack")
    p.add_argument("src", type=Path)
    p.add_argument("dst", type=Path)
    u = sub.add_parser("unpack", help="pack -> plain npz (x, y)")
    u.add_argument("src", type=Path)
    u.add_argument("dst", type=Path)
    u.add_argument("--allow-mismatch", action="store_true",
                   help="warn instead of failing when the pixels differ from the packed digest")
    args = ap.parse_args(argv)
    args.dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        return _run(args)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None


def _run(args) -> int:
    if args.cmd == "pack":
        arrays = pack(*load_arrays(args.src))
        np.savez(args.dst, **arrays)
        n_res = len(arrays["residual_idx"])
        print(f"{args.dst}: {args.dst.stat().st_size / 2**20:.1f} MiB, "
              f"{int(arrays['shape'][0])} images, {n_res} with a residual", flush=True)
    else:
        try:
            with np.load(args.src) as d:
                x, y = unpack(d, strict=not args.allow_mismatch)
        except (OSError, KeyError, EOFError) as e:
            raise ValueError(f"{args.src}: not a pack: {e}") from None
        np.savez(args.dst, x=x, y=y)
        print(f"{args.dst}: {len(x)} images", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
