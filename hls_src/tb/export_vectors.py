#!/usr/bin/env python3
"""Export C-simulation test vectors for hls_src/tb/bnn_kernel_tb.cpp.

Each case NAME is written as NAME.params.bin (the uint64 parameter image of
pynq_bnn.spec.abi.build_param_image), NAME.input.bin (packed layer-1 output, uint64 NHWC),
NAME.scores.bin (expected int32 scores from pynq_bnn.spec.reference) and NAME.txt (a small
"key value" header); manifest.txt lists the cases in order. All binaries are little-endian.

    python3 hls_src/tb/export_vectors.py OUTDIR [--cases a,b,...] [--model PATH]
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from pynq_bnn.spec import abi, reference  # noqa: E402
from pynq_bnn.spec.first_layer import conv1_packed  # noqa: E402
from pynq_bnn.spec.network import Network  # noqa: E402
from pynq_bnn.testing import random_images, random_params  # noqa: E402

DEFAULT_MODEL = os.path.join(REPO, "pynq_bnn", "models", "cifar10_bnn.npz")
HALF_MODEL = os.path.join(REPO, "pynq_bnn", "models", "cifar10_bnn_half.npz")


def _all_negative(params):
    """Every threshold direction -1 (the flaw of the original design), thresholds kept."""
    for layer in params.network.binary_layers:
        lp = params.layers[layer.name]
        if lp.directions is not None:
            lp.directions = np.full_like(lp.directions, -1)
    return params


def _random_case(network, n, seed, fill=None, post=None):
    images = random_images(n, network.image_size, seed + 1000)
    # Calibrating on the test images themselves puts sums exactly on thresholds.
    params = random_params(network, seed=seed, images=images, fill=fill)
    if post is not None:
        params = post(params)
    return params, images


def _split_network():
    return Network(conv_channels=(64, 192, 128), pool_after=(False, True, False),
                   fc_units=(192, 320, 64), n_classes=7, image_size=8)


# name -> (description, builder). Builders return (params, uint8 images).
CASES = {
    "full_b2": ("full model 128-128-256-256-512-512 / 1024-1024-10, random, 2 images",
                lambda: _random_case(Network.full(), 2, 11)),
    "half_b3": ("Network.half(), random, 3 images",
                lambda: _random_case(Network.half(), 3, 12)),
    "c64_b2": ("64 channels everywhere, fc 64-64-10, 2 images",
               lambda: _random_case(Network(conv_channels=(64,) * 6, fc_units=(64, 64)), 2, 13)),
    "ones_b2": ("half width, fill=ones (all conv maps +1)",
                lambda: _random_case(Network.half(), 2, 14, fill="ones")),
    "zeros_b2": ("half width, fill=zeros (all conv maps -1)",
                 lambda: _random_case(Network.half(), 2, 15, fill="zeros")),
    "neg_b2": ("half width, every direction -1 (AND pooling everywhere)",
               lambda: _random_case(Network.half(), 2, 16, post=_all_negative)),
    "chunk_b19": ("64-channel convs, fc 128-5, 19 images (dense chunks of 16 + 3)",
                  lambda: _random_case(Network(conv_channels=(64,) * 6, fc_units=(128,),
                                               n_classes=5), 19, 17)),
    "odd6_b3": ("6x6 input, 3 convs (64-128-64), pool to an odd 3x3 map, fc 64-2, 3 images",
                lambda: _random_case(Network(conv_channels=(64, 128, 64),
                                             pool_after=(False, True, False), fc_units=(64,),
                                             n_classes=2, image_size=6), 3, 18)),
    "limits_b1": ("at the limits: 512 channels at 32x32, fc1 8192 -> 1024, 64 classes, 1 image",
                  lambda: _random_case(Network(conv_channels=(512, 512, 64, 512),
                                               pool_after=(False, True, True, True),
                                               fc_units=(1024,), n_classes=64), 1, 19)),
    "limits_b2": ("at the limits, 2 images: no conv layer fits a whole chunk, every image is "
                  "flattened right after its convs (bnn_plan.hpp fallback)",
                  lambda: _random_case(Network(conv_channels=(512, 512, 512, 64, 512),
                                               pool_after=(False, False, True, True, True),
                                               fc_units=(1024,), n_classes=64), 2, 23)),
    "full_b17": ("full model, 17 images: chunk of 16 with conv5/conv6 over the chunk "
                 "(staging after conv4), then a chunk of 1",
                 lambda: _random_case(Network.full(), 17, 24)),
    "split_b3": ("uneven splits over the two parameter ports (gmem0 / gmem3), two rows per "
                 "cycle: fc 192 (128 + 64 rows), 320 (192 + 128), 64 (64 + 0), 7 classes "
                 "(4 + 3); a 192-channel conv (3 filter groups), 3 images",
                 lambda: _random_case(_split_network(), 3, 25)),
    "split_b24": ("the same network, 24 images: a chunk of 16 (one row per cycle, all rows "
                  "through gmem0), then a chunk of 8 (two rows per cycle, all 16 units)",
                  lambda: _random_case(_split_network(), 24, 26)),
    "full_b16": ("full model, random, 16 images (cycle estimate)",
                 lambda: _random_case(Network.full(), 16, 21)),
    "half_b16": ("half-width model, random, 16 images (cycle estimate)",
                 lambda: _random_case(Network.half(), 16, 22)),
}
DEFAULT_CASES = ["full_b2", "half_b3", "c64_b2", "ones_b2", "zeros_b2", "neg_b2", "chunk_b19",
                 "odd6_b3", "limits_b1", "limits_b2", "full_b17", "split_b3", "split_b24",
                 "model_b3",
                 "model_half_b3"]


def write_case(outdir: str, name: str, description: str, params, images) -> dict:
    network = params.network
    packed = conv1_packed(params, images)
    expected = reference.binary_scores(params, packed).astype("<i4")
    image = abi.build_param_image(params).astype("<u8")
    base = os.path.join(outdir, name)
    image.tofile(base + ".params.bin")
    np.ascontiguousarray(packed, dtype="<u8").tofile(base + ".input.bin")
    expected.tofile(base + ".scores.bin")
    header = {
        "n_images": int(images.shape[0]),
        "n_classes": int(network.n_classes),
        "input_words_per_image": int(network.input_words_per_image),
        "params_words": int(image.size),
        "layers": [layer.name for layer in network.binary_layers],
        "network": json.dumps(network.to_dict(), separators=(",", ":")),
        "description": description,
    }
    with open(base + ".txt", "w") as f:
        for key, value in header.items():
            if isinstance(value, list):
                value = " ".join(value)
            f.write(f"{key} {value}\n")
    return header


def export(outdir: str, cases=None, model: str | None = DEFAULT_MODEL) -> list:
    """Write the cases (default: DEFAULT_CASES) to ``outdir``; returns the names written.

    ``model_b3`` (the shipped model on 3 random images) is skipped when ``model`` is missing,
    ``model_half_b3`` (the shipped half-width model) when that file is.
    """
    os.makedirs(outdir, exist_ok=True)
    written = []
    for name in cases or DEFAULT_CASES:
        if name in ("model_b3", "model_half_b3"):
            path = model if name == "model_b3" else HALF_MODEL
            if not path or not os.path.exists(path):
                continue
            from pynq_bnn.spec.params import load_params
            params = load_params(path)
            images = random_images(3, params.network.image_size, 7)
            write_case(outdir, name, f"shipped model {os.path.basename(path)}, 3 random images",
                       params, images)
        else:
            description, build = CASES[name]
            params, images = build()
            write_case(outdir, name, description, params, images)
        written.append(name)
    with open(os.path.join(outdir, "manifest.txt"), "w") as f:
        f.write("".join(n + "\n" for n in written))
    return written


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("outdir")
    ap.add_argument("--cases", help="comma-separated case names (default: the csim set); "
                    f"known: {', '.join(list(CASES) + ['model_b3', 'model_half_b3'])}")
    ap.add_argument("--model", default=DEFAULT_MODEL, help="shipped .npz for model_b3")
    args = ap.parse_args(argv)
    cases = args.cases.split(",") if args.cases else None
    names = export(args.outdir, cases, args.model)
    print(f"exported {len(names)} cases to {args.outdir}: {' '.join(names)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
