"""pynq-bnn: a binarized neural network (BinaryNet CIFAR-10) on PYNQ boards, from Python."""
from .errors import (
    BackendUnavailable,
    BnnError,
    CameraError,
    HardwareError,
    HardwareTimeout,
    ImageError,
    ParamsError,
)
from .spec.network import Network
from .spec.params import LayerParams, Params, load_params, save_params

__version__ = "0.1.0"

__all__ = ["Network", "Params", "LayerParams", "load_params", "save_params", "BnnError",
           "ParamsError", "ImageError", "HardwareError", "HardwareTimeout", "BackendUnavailable",
           "CameraError", "Classifier", "__version__"]


def __getattr__(name):
    # Lazy: the classifier pulls in Pillow and the backends; `import pynq_bnn` stays light.
    if name == "Classifier":
        from .host.classifier import Classifier
        return Classifier
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
