"""Small helpers the notebooks share: backend, model, data and limits from the environment.

The notebooks run unchanged on a board and off-board; what differs is read from environment
variables (all optional):

``PYNQ_BNN_BACKEND``
    backend name for :class:`~pynq_bnn.host.classifier.Classifier`: ``auto`` (default: the board
    when there is one, else the CPU engine), ``pynq``, ``mock`` or ``cpu``.
``PYNQ_BNN_MOCK_KERNEL``
    what the ``mock`` backend's simulated IP computes with: ``engine`` (default here when the
    native CPU engine is built, else ``reference``: the numpy reference, ~0.1-0.5 s per image)
    or ``auto`` / ``hls-lib`` (the compiled HLS C model,
    slower still).
``PYNQ_BNN_MODEL``
    a parameter file to use instead of the shipped model.
``PYNQ_BNN_CAMERA``
    the camera of notebook 2, an :func:`pynq_bnn.camera.open_source` spec (``usb:0`` default,
    ``folder:PATH`` for a fake camera).
``PYNQ_BNN_CIFAR10``
    the CIFAR-10 test set, anything :func:`pynq_bnn.tools.datasets.load_dataset` reads: the
    official ``cifar-10-binary.tar.gz``, its extracted ``cifar-10-batches-bin/`` folder, a
    folder holding either, or an .npz. Default: ``../shared/data/cifar10`` beside a source
    checkout, then ``./cifar-10-binary.tar.gz``, ``./cifar-10-batches-bin`` and
    ``~/cifar-10-binary.tar.gz`` (where a board user copies it).
``PYNQ_BNN_EVAL_LIMIT``, ``PYNQ_BNN_MAX_FRAMES``, ``PYNQ_BNN_TRAIN_STEPS``
    caps that keep a notebook short (CI sets them). The evaluation subset is
    :func:`pynq_bnn.tools.datasets.balanced_subset`, as ``pynq-bnn eval --limit``.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Optional, Tuple, Union

from ..host.classifier import default_model_path
from ..host.preprocess import decode_image  # for showing a file: the raster allow-list applies
from ..resources import SAMPLES_DIR, SOURCE_TREE
from ..spec.network import Network
from ..spec.params import Params, load_params
from .datasets import Dataset, load_dataset
from .progress import notebook_bar

__all__ = ["backend_from_env", "model_or_fallback", "ModelChoice", "cifar10_test", "Cifar10",
           "decode_image", "env_int", "describe_backend", "progress", "SAMPLES_DIR", "BACKEND_ENV",
           "MOCK_KERNEL_ENV", "MODEL_ENV", "CIFAR10_ENV"]

log = logging.getLogger(__name__)

BACKEND_ENV = "PYNQ_BNN_BACKEND"
MOCK_KERNEL_ENV = "PYNQ_BNN_MOCK_KERNEL"
MODEL_ENV = "PYNQ_BNN_MODEL"
CIFAR10_ENV = "PYNQ_BNN_CIFAR10"

Cifar10 = Dataset
"""What :func:`cifar10_test` returns (:class:`pynq_bnn.tools.datasets.Dataset`)."""

progress = notebook_bar
"""A progress bar for a cell: ``tqdm.auto`` when tqdm is installed, else a plain line."""


def describe_backend(classifier) -> str:
    """The line ``pynq-bnn eval`` starts with: which backend runs, its kernel, and why."""
    from .cli import backend_facts, backend_line
    return backend_line(backend_facts(classifier.backend))


def env_int(name: str, default: Optional[int] = None) -> Optional[int]:
    """``int($name)``, or ``default`` when it is unset or empty.

    Raises
    ------
    ValueError
        The variable is set to something that is not a non-negative integer.
    """
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"${name}={text!r} is not an integer") from None
    if value < 0:
        raise ValueError(f"${name}={value} must be >= 0")
    return value


def backend_from_env(default: str = "auto") -> Tuple[str, dict]:
    """``(backend name, options)`` for :class:`~pynq_bnn.host.classifier.Classifier`.

    The name is ``$PYNQ_BNN_BACKEND`` (else ``default``). For ``mock`` the options pick the
    native-engine kernel, or the numpy reference without it (``$PYNQ_BNN_MOCK_KERNEL``
    overrides), so a notebook stays fast.
    """
    name = os.environ.get(BACKEND_ENV, "").strip().lower() or default
    options = {}
    if name == "mock":
        from ..backends.cpu.engine import native_available
        fast = "engine" if native_available() else "reference"
        options["kernel"] = os.environ.get(MOCK_KERNEL_ENV, "").strip() or fast
    return name, options


@dataclass
class ModelChoice:
    """What :func:`model_or_fallback` picked.

    Attributes
    ----------
    model : str or Params
        Pass it to ``Classifier(model, ...)``.
    params : Params
        The loaded parameters.
    trained : bool
        False for the random stand-in network.
    note : str
        One line to show the reader.
    """

    model: Union[str, Params]
    params: Params
    trained: bool
    note: str


def model_or_fallback(path: Optional[str] = None, fallback: Optional[Network] = None,
                      seed: int = 0) -> ModelChoice:
    """The trained model, or a clearly labelled random network when the file is missing.

    Parameters
    ----------
    path : str, optional
        Parameter file; default ``$PYNQ_BNN_MODEL``, else the shipped model.
    fallback : Network, optional
        Topology of the random stand-in (default :meth:`Network.half`, the shipped model's).
    seed : int
        Seed of the random stand-in.

    Raises
    ------
    ParamsError
        The file exists but is invalid (a broken file is not silently replaced).
    """
    path = path or os.environ.get(MODEL_ENV, "").strip() or default_model_path()
    if os.path.exists(path):
        params = load_params(path)
        acc = (params.training or {}).get("test_acc")
        extra = f"; CIFAR-10 test accuracy {acc:.2%} (JPEG copy)" if isinstance(acc, float) else ""
        return ModelChoice(path, params, True, f"model: {path} ({params.description}{extra})")
    from ..testing import random_params

    network = fallback or Network.half()
    params = random_params(network, seed=seed)
    note = (f"NOTE: the trained model {path} is not there, so this notebook uses a RANDOM "
            f"network of the same shape (seed {seed}): everything runs, but its labels are "
            "meaningless.")
    log.debug("%s", note)
    return ModelChoice(params, params, False, note)


def _cifar_candidates():
    env = os.environ.get(CIFAR10_ENV, "").strip()
    if env:
        yield env
        return
    # a source checkout: <repo>/pynq_bnn/ with ../shared/data/cifar10 beside <repo>
    yield os.path.join(os.path.dirname(SOURCE_TREE), "shared", "data", "cifar10", "test.npz")
    for base in (os.getcwd(), os.path.expanduser("~")):
        yield os.path.join(base, "cifar-10-binary.tar.gz")
        yield os.path.join(base, "cifar-10-batches-bin")
    yield os.path.join(os.getcwd(), "cifar10", "test.npz")


def cifar10_test() -> Optional[Dataset]:
    """The CIFAR-10 test set if it can be found (see the module docstring), else ``None``.

    Raises
    ------
    DatasetError
        ``$PYNQ_BNN_CIFAR10`` is set but unusable, or a candidate exists but is broken (a
        broken file is reported, not silently skipped).
    """
    for path in _cifar_candidates():
        if os.path.exists(path) or os.environ.get(CIFAR10_ENV, "").strip():
            return load_dataset(path)
    return None
