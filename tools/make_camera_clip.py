#!/usr/bin/env python3
"""Regenerate tests/data/camera_clip/: a short fake-camera clip for the tests and notebooks.

Each frame is 160 x 120 RGB PNG: one CIFAR-10 test image upscaled (bicubic) to 120 x 120 in the
centre of a dark grey-blue border, so the camera preprocessing (centre square, resize to 32 x 32)
gets back close to the original image. Source images: test set rows 1 + 1000 * k of the
JPEG-recompressed copy (../shared/data/cifar10/test.npz), one per class for the classes listed
in FRAMES, i.e. the second test image of each (the first ones are pynq_bnn/samples/).

Usage: python tools/make_camera_clip.py [--data PATH] [--out DIR]

Used as ``PYNQ_BNN_CAMERA=folder:tests/data/camera_clip`` (tests/test_notebooks.py) and by
tests/test_camera.py.
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
FRAMES = (1, 9, 7, 8, 3, 0)  # class index of each frame, in clip order
WIDTH, HEIGHT, SIDE = 160, 120, 120
BORDER = (40, 44, 52)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data",
                    default=os.path.join(ROOT, "..", "shared", "data", "cifar10", "test.npz"))
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "data", "camera_clip"))
    args = ap.parse_args(argv)
    with np.load(args.data, allow_pickle=False) as d:
        x, y = d["x"], d["y"]
    os.makedirs(args.out, exist_ok=True)
    for k, label in enumerate(FRAMES):
        rows = np.flatnonzero(y == label)
        i = int(rows[1])
        big = Image.fromarray(x[i], "RGB").resize((SIDE, SIDE), Image.BICUBIC)
        frame = Image.new("RGB", (WIDTH, HEIGHT), BORDER)
        frame.paste(big, ((WIDTH - SIDE) // 2, (HEIGHT - SIDE) // 2))
        path = os.path.join(args.out, f"frame_{k:02d}_{CLASSES[label]}.png")
        frame.save(path, format="PNG", optimize=True)
        print(f"{path}: test image {i} (class {label})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
