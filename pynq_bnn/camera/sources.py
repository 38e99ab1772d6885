"""Frame sources (USB camera, video file, image folder, synthetic): every one returns RGB.

::

    from pynq_bnn import camera
    from pynq_bnn.host.classifier import Classifier

    with Classifier() as clf:
        source = camera.open_source("usb:0")          # or "folder:PATH", "video:PATH", ...
        stats = camera.run_live(clf, source, max_frames=100,
                                on_result=lambda r: print(r.class_name, f"{r.fps:.1f} fps"))
        print(stats.fps, stats.mean_ms())

Frames
------
Every source's :meth:`FrameSource.read` returns an **RGB** ``uint8`` ``H x W x 3`` array (a new
array per call), or ``None`` when a finite source (a video file, a folder without ``loop``) has
no more frames. OpenCV delivers BGR: :class:`OpenCVCamera` and :class:`VideoFileSource`
convert to RGB as they read, so nothing downstream needs to know where a frame came from.
:func:`preprocess_frame` turns a frame into the network's input (``order="BGR"`` for a raw
OpenCV frame): the centre square, area-averaged to ``size x size`` by
:func:`pynq_bnn.host.preprocess.fit_array`, exactly as image files are (no PIL round trip).

Sources
-------
:class:`OpenCVCamera`
    ``cv2.VideoCapture(index)`` at 640 x 480, as the PYNQ base-overlay webcam notebooks do
    (OpenCV is preinstalled on PYNQ images). Needs ``cv2``.
:class:`VideoFileSource`
    a video file through OpenCV (optionally looped). Needs ``cv2``.
:class:`ImageFolderSource`
    the image files of a folder in sorted name order, read with Pillow (optionally looped).
:class:`ArraySource`, :class:`SyntheticSource`
    frames from memory, and generated test frames (a moving square on a gradient). Neither
    needs OpenCV.

:func:`open_source` builds one from a short text spec (``"usb:0"``, ``"video:clip.mp4"``,
``"folder:frames/"``, ``"synthetic:50"``), and :func:`source_from_env` reads that spec from
``$PYNQ_BNN_CAMERA`` (the notebooks' fake camera off-board). Every source is a context manager;
:meth:`FrameSource.close` is idempotent and always releases the device.

Closing and blocked reads
-------------------------
:meth:`FrameSource.close` may be called from any thread, also while another thread is inside
:meth:`FrameSource.read`, and it never waits longer than its ``timeout`` (default
:data:`CLOSE_TIMEOUT`). A read in progress is waited for until then; if it is still blocked at
the deadline, a source whose release unblocks its read (``release_interrupts_read``) is released
at once, and any other (OpenCV's capture objects are not safe to release under a read) is
released by the reading thread the moment its read returns. OpenCV gives up a stalled V4L2 read
after ``$OPENCV_VIDEOIO_V4L_SELECT_TIMEOUT`` seconds, which this module sets to 2 (OpenCV's
default is 10) unless it is set already, so a USB camera is let go within about 2 s after a
close, even when its read had hung. A closed source refuses further reads.

"""
from __future__ import annotations

import logging
import os
import sys
import threading
import time
from typing import Iterable, Iterator, List, Optional, Sequence, Union, cast

import numpy as np

from ..errors import CameraError, ImageError
from ..host.preprocess import decode_image, fit_array

__all__ = ["FrameSource", "OpenCVCamera", "VideoFileSource", "ImageFolderSource", "ArraySource",
           "SyntheticSource", "open_source", "source_from_env", "preprocess_frame", "CAMERA_ENV",
           "IMAGE_EXTENSIONS", "CLOSE_TIMEOUT", "cv2_available"]

log = logging.getLogger(__name__)

CAMERA_ENV = "PYNQ_BNN_CAMERA"
"""Environment variable holding an :func:`open_source` spec (the notebooks' camera)."""

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm", ".pbm", ".tif",
                    ".tiff", ".webp")
"""File name endings :class:`ImageFolderSource` picks up (case-insensitive). The content must
also be one of :data:`pynq_bnn.host.preprocess.RASTER_FORMATS`, whatever the name says."""

CLOSE_TIMEOUT = 3.0
"""Seconds :meth:`FrameSource.close` waits for a read in progress in another thread (longer
than the 2 s V4L2 read timeout set below, so a stalled camera is normally released in time)."""

_V4L_SELECT_TIMEOUT_S = "2"

DEFAULT_WIDTH, DEFAULT_HEIGHT = 640, 480


# ----------------------------------------------------------------------------- OpenCV

def _import_cv2():
    """``cv2``, or a :class:`CameraError` saying how to get it."""
    os.environ.setdefault("OPENCV_LOG_LEVEL", "SILENT")  # as the PYNQ webcam notebooks do
    # a stalled V4L2 camera makes each read wait this long (OpenCV: 10 s), and a close waits for
    # the read; OpenCV reads it once, at the first capture
    os.environ.setdefault("OPENCV_VIDEOIO_V4L_SELECT_TIMEOUT", _V4L_SELECT_TIMEOUT_S)
    try:
        import cv2
    except ImportError as e:
        raise CameraError(f"OpenCV (cv2) is not available ({e}): install opencv-python-headless "
                          "(PYNQ board images ship it), or use a 'folder:PATH' source") from None
    return cv2


def cv2_available() -> bool:
    """OpenCV can be imported here (USB cameras and video files need it)."""
    try:
        _import_cv2()
    except CameraError:
        return False
    return True


_CV2_TO_RGB = {1: "COLOR_GRAY2RGB", 3: "COLOR_BGR2RGB", 4: "COLOR_BGRA2RGB"}


def _bgr_to_rgb(frame: np.ndarray, name: str, cv2=None) -> np.ndarray:
    """An OpenCV frame (BGR, BGRA or grey) -> a new contiguous RGB uint8 array.

    With ``cv2``: its ``cvtColor`` (vectorised C). Without: numpy, one channel at a time (a
    whole-array ``a[:, :, ::-1]`` copy runs numpy's inner loop over 3 bytes at a time: several
    times slower, benchmarks/results/preprocess.json ``bgr640``).
    """
    a = np.asarray(frame)
    if a.dtype != np.uint8:
        raise CameraError(f"{name}: frame dtype {a.dtype}, expected uint8")
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (3, 4))):
        raise CameraError(f"{name}: frame of shape {a.shape} is not an image")
    channels = 1 if a.ndim == 2 else a.shape[2]
    convert = getattr(cv2, "cvtColor", None)
    if convert is not None:
        out = np.asarray(convert(a, getattr(cv2, _CV2_TO_RGB[channels])))
        if out.shape == a.shape[:2] + (3,) and out.dtype == np.uint8:
            return np.ascontiguousarray(out)
    out = np.empty(a.shape[:2] + (3,), np.uint8)
    for c in range(3):
        out[:, :, c] = a if channels == 1 else a[:, :, 2 - c]
    return out


# ----------------------------------------------------------------------------- sources

class FrameSource:
    """Where frames come from: ``read()`` -> RGB ``uint8[H, W, 3]`` or ``None`` (no more).

    Subclasses implement :meth:`_read` and :meth:`_release`. A source is a context manager and
    an iterator over its frames; :meth:`close` is idempotent, may be called from another thread
    while a read is in progress (see the module docstring), and a closed source refuses
    :meth:`read` with :class:`~pynq_bnn.errors.CameraError`. :meth:`_release` runs exactly once.

    Attributes
    ----------
    name : str
        What the source is (device, file or folder), used in messages.
    frames_read : int
        Frames returned so far.
    release_interrupts_read : bool
        Class attribute: True when :meth:`_release` may run while :meth:`_read` is blocked in
        another thread and makes that read return (e.g. it closes the socket the read waits
        on); then :meth:`close` releases at its deadline whatever the read does. False (the
        default) when that is unsafe: the release then waits for the read to return.
    """

    name = "frame source"
    release_interrupts_read = False

    def __init__(self):
        self._closed = False
        self._released = False
        self._closing = False          # a close() is waiting for a read (it releases after)
        self._reads = 0                # reads in progress
        self._state = threading.Condition(threading.Lock())
        self.frames_read = 0

    def _mark_unopened(self) -> None:
        """For a constructor that fails: nothing to release, refuse reads."""
        self._closed = self._released = True

    def read(self) -> Optional[np.ndarray]:
        """The next frame, RGB ``uint8[H, W, 3]``; ``None`` at the end of a finite source.

        Raises
        ------
        CameraError
            The source is closed, or the device / file cannot deliver a frame.
        """
        with self._state:
            if self._closed:
                raise CameraError(f"{self.name}: the source is closed")
            self._reads += 1
        try:
            frame = self._read()
        finally:
            with self._state:
                self._reads -= 1
                # a close() that gave up waiting for this read left the release to it
                late = (self._closed and not self._released and not self._closing
                        and self._reads == 0)
                if late:
                    self._released = True
                self._state.notify_all()
            if late:
                self._release_logged("after the read that close() did not wait for")
        if frame is not None:
            self.frames_read += 1
        return frame

    def close(self, timeout: float = CLOSE_TIMEOUT) -> bool:
        """Release the device or files. Idempotent, from any thread, never waits forever.

        Parameters
        ----------
        timeout : float
            Seconds to wait for a read in progress in another thread to return.

        Returns
        -------
        bool
            True when the source is released on return; False when a read was still blocked
            at the deadline and this source cannot be released under it: it is then released
            by the reading thread as soon as that read returns (and refuses any further read).
        """
        deadline = time.monotonic() + max(0.0, float(timeout))
        with self._state:
            if self._released:
                return True
            self._closed = True
            self._closing = True
            try:
                while self._reads and not self._released:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._state.wait(left)
            finally:
                self._closing = False
            if self._released:
                return True
            if self._reads and not self.release_interrupts_read:
                log.warning("%s: a read is still blocked after %.1f s; the device is released "
                            "when it returns", self.name, max(0.0, float(timeout)))
                return False
            self._released = True
        self._release()
        return True

    def _release_logged(self, when: str) -> None:
        try:
            self._release()
        except Exception as e:  # in the reading thread: report it, keep the frame or error
            log.error("%s: releasing %s failed: %s: %s", self.name, when, type(e).__name__, e)

    @property
    def closed(self) -> bool:
        return self._closed

    def _read(self) -> Optional[np.ndarray]:
        raise NotImplementedError

    def _release(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close()
        return False

    def __iter__(self) -> Iterator[np.ndarray]:
        while True:
            frame = self.read()
            if frame is None:
                return
            yield frame

    def __del__(self):
        try:
            self.close(timeout=0)
        except Exception:  # never raise from a finaliser
            pass

    def __repr__(self):
        return f"<{type(self).__name__} {self.name}{' closed' if self._closed else ''}>"


def _device_name(device: Union[int, str]) -> str:
    if isinstance(device, int):
        if sys.platform.startswith("linux"):
            return f"camera {device} (/dev/video{device})"
        return f"camera {device}"
    return f"camera {device}"


class OpenCVCamera(FrameSource):
    """A USB webcam (V4L2 on Linux) through ``cv2.VideoCapture``.

    Parameters
    ----------
    device : int or str
        Camera index (0 is ``/dev/video0``) or a device path / OpenCV URL.
    width, height : int
        Requested capture size (the driver may pick the nearest it supports; frames come at
        whatever size the camera delivers).
    retries : int
        Consecutive failed grabs tolerated before :meth:`read` gives up (cameras drop the
        first frames after opening).

    Raises
    ------
    CameraError
        OpenCV is not installed, or the camera cannot be opened (none attached, busy, no
        permission); the message names the device.
    """

    def __init__(self, device: Union[int, str] = 0, width: int = DEFAULT_WIDTH,
                 height: int = DEFAULT_HEIGHT, retries: int = 5):
        super().__init__()
        self._cap = None
        self.device = device
        self.name = _device_name(device)
        self.retries = max(0, int(retries))
        cv2 = _import_cv2()
        self._cv2 = cv2
        try:
            cap = cv2.VideoCapture(device)
        except Exception as e:  # some OpenCV builds raise instead of returning a closed capture
            self._mark_unopened()
            raise CameraError(f"{self.name}: cannot be opened ({type(e).__name__}: {e})") from None
        if cap is None or not cap.isOpened():
            if cap is not None:
                cap.release()
            self._mark_unopened()
            raise CameraError(f"{self.name}: cannot be opened: no camera attached, or it is in "
                              "use by another program (close other notebooks using it), or no "
                              "permission to open it")
        self._cap = cap
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, int(width))
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, int(height))
        log.info("%s opened at %s x %s", self.name, width, height)

    def _read(self) -> np.ndarray:
        for _ in range(self.retries + 1):
            cap = self._cap
            if self._closed or cap is None:  # closed while a failed grab was retried: stop
                raise CameraError(f"{self.name}: closed during a read")
            ok, frame = cap.read()
            if ok and frame is not None:
                return _bgr_to_rgb(frame, self.name, self._cv2)
        raise CameraError(f"{self.name}: no frame after {self.retries + 1} tries (camera "
                          "unplugged, or in use by another program?)")

    def _release(self) -> None:
        cap, self._cap = self._cap, None
        if cap is not None:
            cap.release()
            log.info("%s released", self.name)


class VideoFileSource(FrameSource):
    """The frames of a video file, decoded by OpenCV (converted to RGB).

    Parameters
    ----------
    path : str or os.PathLike
    loop : bool
        Start again at the first frame at the end (never returns ``None``).

    Raises
    ------
    CameraError
        No such file, OpenCV missing, or OpenCV cannot decode it.
    """

    def __init__(self, path, loop: bool = False):
        super().__init__()
        self._cap = None
        self.path = os.fsdecode(os.fspath(path))
        self.name = f"video {self.path}"
        self.loop = bool(loop)
        if not os.path.isfile(self.path):
            self._mark_unopened()
            raise CameraError(f"{self.name}: no such file")
        cv2 = _import_cv2()
        self._cv2 = cv2
        cap = cv2.VideoCapture(self.path)
        if cap is None or not cap.isOpened():
            if cap is not None:
                cap.release()
            self._mark_unopened()
            raise CameraError(f"{self.name}: OpenCV cannot open it (unknown format or codec)")
        self._cap = cap

    def _read(self) -> Optional[np.ndarray]:
        cap = self._cap
        if cap is None:  # closed by another thread
            raise CameraError(f"{self.name}: closed during a read")
        ok, frame = cap.read()
        if (not ok or frame is None) and self.loop:
            cap.set(self._cv2.CAP_PROP_POS_FRAMES, 0)
            ok, frame = cap.read()
            if not ok or frame is None:
                raise CameraError(f"{self.name}: no frame after rewinding (empty video?)")
        if not ok or frame is None:
            return None
        return _bgr_to_rgb(frame, self.name, self._cv2)

    def _release(self) -> None:
        cap, self._cap = self._cap, None
        if cap is not None:
            cap.release()


class ImageFolderSource(FrameSource):
    """The image files of a folder, in sorted name order (a fake camera).

    Each file is decoded by :func:`pynq_bnn.host.preprocess.decode_image`, with the same
    accepted formats, regular-file check and pixel limit (``PIL.Image.MAX_IMAGE_PIXELS``) as
    every other image the package opens, and given at full size.

    Parameters
    ----------
    path : str or os.PathLike
        A folder. Files whose names end in one of :data:`IMAGE_EXTENSIONS` are used.
    loop : bool
        Start again at the first file after the last (never returns ``None``).

    Raises
    ------
    CameraError
        The folder does not exist or holds no image file; :meth:`read` raises it for a file
        that cannot be used (naming the file and the problem: not an accepted format, too
        many pixels, corrupt...).
    """

    def __init__(self, path, loop: bool = False):
        super().__init__()
        self.path = os.fsdecode(os.fspath(path))
        self.name = f"folder {self.path}"
        self.loop = bool(loop)
        if not os.path.isdir(self.path):
            self._mark_unopened()
            raise CameraError(f"{self.name}: no such folder")
        self.files: List[str] = sorted(
            os.path.join(self.path, f) for f in os.listdir(self.path)
            if f.lower().endswith(IMAGE_EXTENSIONS)
            and os.path.isfile(os.path.join(self.path, f)))
        if not self.files:
            self._mark_unopened()
            raise CameraError(f"{self.name}: no image files ({', '.join(IMAGE_EXTENSIONS)})")
        self._next = 0

    def _read(self) -> Optional[np.ndarray]:
        if self._next >= len(self.files):
            if not self.loop:
                return None
            self._next = 0
        path = self.files[self._next]
        self._next += 1
        try:
            return decode_image(path)
        except ImageError as e:
            raise CameraError(str(e)) from None


class ArraySource(FrameSource):
    """Frames from memory: a sequence (or iterable) of ``uint8 H x W x 3`` arrays.

    Parameters
    ----------
    frames : sequence or iterable of numpy.ndarray
        A 4-D array counts as a sequence of frames. An iterable is consumed once (no ``loop``).
    loop : bool
        Cycle through a sequence forever.
    order : str
        ``"RGB"`` (default) or ``"BGR"`` (converted to RGB on read).
    """

    def __init__(self, frames: Union[Sequence[np.ndarray], Iterable[np.ndarray]],
                 loop: bool = False, order: str = "RGB", name: str = "array frames"):
        super().__init__()
        self.name = name
        self.order = _check_order(order)
        self.loop = bool(loop)
        self._frames: Sequence[np.ndarray] = ()
        self._iter: Optional[Iterator[np.ndarray]] = None
        if isinstance(frames, np.ndarray) or hasattr(frames, "__getitem__"):
            self._frames = cast(Sequence[np.ndarray], frames)  # indexable: a 4-D array too
        else:
            if loop:
                raise ValueError("loop=True needs a sequence of frames, not an iterator")
            self._iter = iter(frames)
        self._next = 0

    def _read(self) -> Optional[np.ndarray]:
        if self._iter is not None:
            frame = next(self._iter, None)
        else:
            if self._next >= len(self._frames):
                if not self.loop or len(self._frames) == 0:
                    return None
                self._next = 0
            frame = self._frames[self._next]
            self._next += 1
        if frame is None:
            return None
        frame = np.asarray(frame)
        _check_frame(frame, self.name)
        return _bgr_to_rgb(frame, self.name) if self.order == "BGR" else np.array(frame)


class SyntheticSource(FrameSource):
    """Generated test frames: a bright square moving over a colour gradient (no files, no cv2).

    Parameters
    ----------
    n_frames : int or None
        Frames before the end (``None``: endless).
    width, height : int
        Frame size.
    seed : int
        Varies the colours; the same seed gives the same frames.
    """

    def __init__(self, n_frames: Optional[int] = None, width: int = 160, height: int = 120,
                 seed: int = 0):
        super().__init__()
        if n_frames is not None and n_frames < 0:
            raise ValueError(f"n_frames must be >= 0, got {n_frames}")
        if width < 1 or height < 1:
            raise ValueError(f"frame size {width} x {height} has no pixels")
        self.n_frames, self.width, self.height = n_frames, int(width), int(height)
        self.name = f"synthetic {self.width}x{self.height}"
        rng = np.random.default_rng(seed)
        c0, c1, c2 = rng.integers(0, 256, size=(3, 3)).astype(np.float32)
        v, u = np.mgrid[0:self.height, 0:self.width].astype(np.float32)
        u = (u / max(1, self.width - 1))[..., None]
        v = (v / max(1, self.height - 1))[..., None]
        background = (c0 * (1 - u) + c1 * u) * (1 - v) + c2 * v * 0.5
        self._background = np.clip(background, 0, 255).astype(np.uint8)
        self._square = (255 - c0).astype(np.uint8)
        self._side = max(1, min(self.width, self.height) // 3)
        self._i = 0

    def _read(self) -> Optional[np.ndarray]:
        if self.n_frames is not None and self._i >= self.n_frames:
            return None
        i = self._i
        self._i += 1
        img = self._background.copy()
        side = self._side
        x0 = (7 * i) % max(1, self.width - side + 1)
        y0 = (5 * i) % max(1, self.height - side + 1)
        img[y0:y0 + side, x0:x0 + side] = self._square
        return img


def _check_order(order: str) -> str:
    o = str(order).upper()
    if o not in ("RGB", "BGR"):
        raise ValueError(f"order must be 'RGB' or 'BGR', got {order!r}")
    return o


def _check_frame(frame: np.ndarray, name: str) -> None:
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 \
            or frame.shape[2] != 3 or 0 in frame.shape:
        desc = (f"{frame.dtype} {frame.shape}" if isinstance(frame, np.ndarray)
                else type(frame).__name__)
        raise CameraError(f"{name}: frame {desc} is not a uint8 H x W x 3 image")


# ----------------------------------------------------------------------------- specs

def open_source(spec: Union[str, int, "os.PathLike[str]"], *, loop: bool = False,
                width: int = DEFAULT_WIDTH, height: int = DEFAULT_HEIGHT) -> FrameSource:
    """A frame source from a short description.

    Parameters
    ----------
    spec : str, int or path-like
        ``0`` / ``"0"`` / ``"usb"`` / ``"usb:N"`` / ``"camera:N"`` / ``"/dev/videoN"``: a USB
        camera; ``"video:PATH"``: a video file; ``"folder:PATH"``: an image folder;
        ``"synthetic"`` / ``"synthetic:N"``: generated frames (N of them, else endless). A bare
        path is a folder if it is one, else a video file.
    loop : bool
        Loop a video file or folder (ignored for cameras).
    width, height : int
        Capture size requested from a camera; frame size of a synthetic source is 160 x 120.

    Raises
    ------
    CameraError
        The source cannot be opened (see each class).
    ValueError
        The spec is empty or malformed.
    """
    if isinstance(spec, bool):  # an int to Python, but never meant as a camera index
        raise TypeError(f"frame-source spec must be a str, a path or a camera index, not {spec!r}")
    if isinstance(spec, int):
        return OpenCVCamera(spec, width, height)
    text = spec.strip() if isinstance(spec, str) else os.fsdecode(os.fspath(spec)).strip()
    if not text:
        raise ValueError("empty frame-source spec")
    kind, sep, rest = text.partition(":")
    kind_l = kind.lower()
    if text.isdigit():
        return OpenCVCamera(int(text), width, height)
    if sep and kind_l in ("usb", "camera", "cam", "webcam"):
        rest = rest.strip()
        return OpenCVCamera(int(rest) if rest.isdigit() else rest, width, height)
    if not sep and kind_l in ("usb", "camera", "cam", "webcam"):
        return OpenCVCamera(0, width, height)
    if kind_l == "video" and sep:
        return VideoFileSource(rest, loop=loop)
    if kind_l == "folder" and sep:
        return ImageFolderSource(rest, loop=loop)
    if kind_l == "synthetic":
        rest = rest.strip()
        if rest and not rest.isdigit():
            raise ValueError(f"frame-source spec {spec!r}: 'synthetic:N' needs a frame count")
        return SyntheticSource(int(rest) if rest else None)
    if text.startswith("/dev/video"):
        return OpenCVCamera(text, width, height)
    if os.path.isdir(text):
        return ImageFolderSource(text, loop=loop)
    if os.path.isfile(text):
        return VideoFileSource(text, loop=loop)
    raise ValueError(f"frame-source spec {spec!r}: expected usb:N, video:PATH, folder:PATH, "
                     "synthetic[:N] or an existing folder / video file")


def source_from_env(default: str = "usb:0", *, loop: bool = False,
                    env: str = CAMERA_ENV) -> FrameSource:
    """:func:`open_source` of ``$PYNQ_BNN_CAMERA`` (or ``default`` when it is unset or empty)."""
    return open_source(os.environ.get(env, "").strip() or default, loop=loop)


# ----------------------------------------------------------------------------- preprocessing

def preprocess_frame(frame: np.ndarray, size: int = 32, order: str = "RGB") -> np.ndarray:
    """A camera frame -> the network input ``uint8[size, size, 3]`` RGB.

    The centre square of the frame (side ``min(H, W)``) area-averaged to ``size x size`` by
    :func:`pynq_bnn.host.preprocess.fit_array`, exactly as
    :func:`pynq_bnn.host.preprocess.load_image` fits any image; the frame goes straight into
    the integer resize (no PIL image, no copy of the frame).

    Parameters
    ----------
    frame : numpy.ndarray
        ``uint8 H x W x 3``; ``H x W`` grey is accepted too.
    size : int
        The network's image side (``classifier.image_size``).
    order : str
        ``"RGB"`` (what every :class:`FrameSource` returns) or ``"BGR"`` (a raw OpenCV frame).

    Raises
    ------
    ImageError
        Not a uint8 image.
    """
    order = _check_order(order)
    a = np.asarray(frame)
    if a.dtype != np.uint8 or not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] == 3)) \
            or 0 in a.shape:
        raise ImageError(f"frame: {a.dtype} array of shape {a.shape} is not a uint8 H x W x 3 "
                         "(or H x W grey) image")
    out = fit_array(a, size)
    if out.ndim == 2:
        return np.repeat(out[:, :, None], 3, axis=2)
    # channels are resized independently, so swapping them after the resize is exact (and
    # touches 3 * size * size bytes instead of the whole frame)
    return np.ascontiguousarray(out[:, :, ::-1]) if order == "BGR" else out
