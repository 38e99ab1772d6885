#!/usr/bin/env python3
"""Regenerate pynq_bnn/samples/: the first test image of each CIFAR-10 class, as <class>.png.

Source: the CIFAR-10 test set in its JPEG-recompressed copy, ../shared/data/cifar10/test.npz
(x: uint8 [10000, 32, 32, 3] RGB, y: uint8 labels, rows sorted by class). PNG is lossless, so
each file's pixels equal the npz row exactly (tests/test_preprocess.py checks this when the
data is there).

Usage: python tools/make_samples.py [--data PATH] [--out DIR]
"""
import argparse
import os
import sys

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
           "dog", "frog", "horse", "ship", "truck")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data",
                    default=os.path.join(ROOT, "..", "shared", "data", "cifar10", "test.npz"))
    ap.add_argument("--out", default=os.path.join(ROOT, "pynq_bnn", "samples"))
    args = ap.parse_args(argv)
    with np.load(args.data, allow_pickle=False) as d:
        x, y = d["x"], d["y"]
    if x.dtype != np.uint8 or x.shape[1:] != (32, 32, 3) or y.shape != x.shape[:1]:
        sys.exit(f"{args.data}: unexpected arrays x {x.dtype} {x.shape}, y {y.shape}")
    os.makedirs(args.out, exist_ok=True)
    for label, name in enumerate(CLASSES):
        rows = np.flatnonzero(y == label)
        if not len(rows):
            sys.exit(f"{args.data}: no image of class {label} ({name})")
        i = int(rows[0])
        path = os.path.join(args.out, f"{name}.png")
        # optimize + no metadata: byte-for-byte reproducible output
        Image.fromarray(x[i], "RGB").save(path, format="PNG", optimize=True)
        print(f"{path}: test image {i} (class {label})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
