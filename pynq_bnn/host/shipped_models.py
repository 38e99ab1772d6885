"""The trained models shipped in the package, by name (kept import-light for the CLI's help)."""
from __future__ import annotations

import os

from ..resources import MODELS_DIR

SHIPPED_MODELS = {
    "cifar10": "cifar10_bnn.npz",            # full width, the default
    "cifar10-half": "cifar10_bnn_half.npz",  # half width: about 4x less work per image
}
"""Name -> file in :data:`MODELS_DIR` (``model="cifar10-half"``, ``--model cifar10-half``)."""

DEFAULT_MODEL = os.path.join(MODELS_DIR, SHIPPED_MODELS["cifar10"])
"""The shipped trained CIFAR-10 model (full width)."""


def shipped_model_path(name: str) -> str:
    """Path of the shipped model called ``name`` (a key of :data:`SHIPPED_MODELS`)."""
    if name not in SHIPPED_MODELS:
        raise KeyError(f"no shipped model {name!r} (shipped: {', '.join(SHIPPED_MODELS)})")
    return os.path.join(MODELS_DIR, SHIPPED_MODELS[name])
