"""pynq-bnn: a binarized neural network (BinaryNet CIFAR-10) on PYNQ boards, from Python."""
from .errors import (BackendUnavailable, BnnError, HardwareError, HardwareTimeout, ImageError,
                     ParamsError)
from .network import Network
from .params import LayerParams, Params, load_params, save_params

__version__ = "0.1.0"

__all__ = ["Network", "Params", "LayerParams", "load_params", "save_params", "BnnError",
           "ParamsError", "ImageError", "HardwareError", "HardwareTimeout", "BackendUnavailable",
           "__version__"]
