"""The exceptions pynq-bnn raises (docs/RELIABILITY.md lists what each means)."""


class BnnError(Exception):
    """Base class of every error pynq-bnn raises on purpose."""


class ParamsError(BnnError, ValueError):
    """A parameter file (or Params object) is missing, malformed or inconsistent.

    The message names the field and the problem.
    """


class ImageError(BnnError, ValueError):
    """An input image cannot be read or has an unusable shape, dtype or content."""


class HardwareError(BnnError, RuntimeError):
    """The accelerator or its overlay misbehaved (wrong ID/ABI, impossible output, ...)."""


class HardwareTimeout(HardwareError, TimeoutError):
    """The accelerator did not signal done within the timeout."""


class BackendUnavailable(BnnError, RuntimeError):
    """The requested backend cannot run here (no board, no bitstream, no pynq, ...)."""


class CameraError(BnnError, RuntimeError):
    """A frame source (USB camera, video file, image folder) cannot be opened or read.

    The message names the device or file and says what is wrong (no OpenCV, no camera
    attached, no frame, unreadable image, ...).
    """


class NetworkError(BnnError, ValueError):
    """A topology that pynq-bnn cannot represent (pynq_bnn.spec.network)."""


class AbiError(BnnError, ValueError):
    """A network or parameter image that this kernel build cannot run (pynq_bnn.spec.abi)."""


class SimBusError(HardwareError):
    """An access of the simulated kernel outside every live allocation (a DECERR on the board)."""


class ClosedError(BnnError, RuntimeError):
    """The object (Classifier, backend, engine) was closed, or is closing, and cannot run."""
