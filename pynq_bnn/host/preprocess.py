"""Images in, network-sized uint8 RGB arrays out (Pillow on the ARM core or the host).

Every input becomes ``uint8[size, size, 3]`` RGB (``size`` is the network's image side, 32 for
CIFAR-10). Layer 1 then turns pixels ``p`` into ``2*p - 255`` (docs/FORMAT.md section 6).

Accepted inputs
---------------
* a path (``str`` or ``os.PathLike``) or a binary file object opened for reading;
* a :class:`PIL.Image.Image`;
* a numpy ``uint8`` array ``H x W x 3`` (one RGB image of any size);
* a numpy ``uint8`` array ``N x H x W x 3`` (a batch; ``N x size x size x 3`` passes through
  untouched, other sizes are resized image by image);
* a list or tuple of any of these.

Numpy arrays must be ``uint8`` RGB. Float arrays are refused (there is no single convention
for their range: 0..1, 0..255, mean-subtracted...); one holding NaN or infinity is refused
with that reason. Convert with e.g. ``(x * 255).round().astype(np.uint8)`` yourself.

Colour modes (files and PIL images)
-----------------------------------
``RGB``
    used as is.
``1`` (1-bit)
    black 0 / white 255 on all three channels.
``L`` (8-bit grey)
    replicated to R = G = B.
``P`` / ``PA`` (palette)
    looked up in the palette; palette transparency (the ``transparency`` entry, an RGBA
    palette, ``PA``) is composited on white like any alpha channel.
``I;16``, ``I;16L``, ``I;16B``, ``I;16N`` (16-bit grey, e.g. 16-bit PNG or TIFF)
    scaled to 8 bits as ``round(v * 255 / 65535)`` (so 65535 is white), then replicated.
    Pillow's own ``convert`` would clip every value above 255 to white instead.
``I`` (32-bit signed integer)
    treated as 16-bit data, because older Pillow opens 16-bit grey PNGs in this mode:
    clipped to [0, 65535] and scaled as above.
``F`` (32-bit float)
    refused, for the same reason as float arrays.
``RGBA``, ``LA``, ``RGBa``, ``La`` (with alpha)
    **composited on a white background**: ``round((c * a + 255 * (255 - a)) / 255)`` per
    channel. Transparent pixels therefore become white (what a viewer shows on a white page),
    not the arbitrary colour stored under them, which dropping the alpha would expose.
``CMYK``
    Pillow's built-in conversion (no colour management: embedded ICC profiles are ignored,
    so print-oriented CMYK files come out somewhat off in colour).
``YCbCr``, ``HSV``, ``RGBX``, ``LAB`` and the rest
    Pillow's conversion to RGB (``LAB`` through ``PIL.ImageCms`` when it is available).

Animated files (GIF, APNG, WebP, multi-page TIFF) give their **first frame**. A PIL image passed
in directly gives the frame it is positioned at (it is not seeked). An EXIF orientation tag
(photos from phones and cameras) is applied before cropping.

Resizing
--------
Aspect-preserving resize so that the shorter side becomes ``size``, then a centre crop to
``size x size``. It is done in one step: the centre square of side ``min(W, H)`` of the source
is resampled (Lanczos) to ``size x size``, so extreme aspect ratios (1 x 5000) and tiny images
(1 x 1, upsampled) cost no more than ordinary ones. An image already ``size x size`` is not
resampled: its pixels pass through exactly. Large JPEGs are decoded at a reduced DCT scale
(Pillow's ``draft``) that still leaves at least ``2 * size`` pixels on the shorter side.

Failures
--------
Every failure raises :class:`pynq_bnn.errors.ImageError` whose message starts with the input's
name (the path, ``"array #i"``, ``"image #i"``) and says what is wrong: missing path,
directory, empty (zero-byte) file, not an image (e.g. a text file named ``.png``), truncated or
corrupt data, more pixels than ``PIL.Image.MAX_IMAGE_PIXELS`` (the decompression-bomb limit;
enforced for files and PIL images, not for numpy arrays, which are already in memory),
unsupported mode, wrong array shape or dtype, NaN/inf. Truncated files fail unless the program
has set Pillow's global ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES = True``, in which case Pillow
(and so pynq-bnn) fills the missing part with grey; pynq-bnn never sets it.

The decompression-bomb warning is turned into an error with ``warnings.catch_warnings``,
which is process-global in Python < 3.14; the explicit pixel-count check before decoding
makes the limit hold even when another thread changes the warning filters.
"""
from __future__ import annotations

import logging
import os
import stat
import warnings
from dataclasses import dataclass
from typing import Any, List, Optional, Tuple

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import ImageError

__all__ = ["DEFAULT_SIZE", "LoadedItem", "load_image", "load_images", "load_items", "to_rgb",
           "fit", "ImageError"]

log = logging.getLogger(__name__)

DEFAULT_SIZE = 32
"""The CIFAR-10 network's input side in pixels."""

_RESAMPLE = getattr(Image, "Resampling", Image).LANCZOS  # Pillow >= 9.1 has Image.Resampling
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")
_ALPHA_MODES = ("RGBA", "LA", "RGBa", "La", "PA")
_EXIF_ORIENTATION = 0x0112


@dataclass
class LoadedItem:
    """One input after loading: ``image`` (``uint8[size, size, 3]``) or ``error``, never both.

    ``name`` is the path, ``"array #i"``, ``"image #i"`` or ``"file #i"`` (``i``: position in
    the input list; a 4-D batch gives ``"array #j"``, or ``"array #i[j]"`` inside a list).
    """

    name: str
    image: Optional[np.ndarray] = None
    error: Optional[ImageError] = None

    @property
    def ok(self) -> bool:
        return self.error is None


# ----------------------------------------------------------------------------- PIL images

def _fail(name: str, problem: str) -> ImageError:
    return ImageError(f"{name}: {problem}")


def _check_pixels(img: Image.Image, name: str) -> None:
    """The decompression-bomb limit, checked before any pixel is decoded."""
    limit = Image.MAX_IMAGE_PIXELS
    w, h = img.size
    if w < 1 or h < 1:
        raise _fail(name, f"image has no pixels ({w} x {h})")
    if limit and w * h > limit:
        raise _fail(name, f"{w} x {h} = {w * h} pixels exceeds the limit of {limit} "
                          "(PIL.Image.MAX_IMAGE_PIXELS, possible decompression bomb)")


def _scale16(values: np.ndarray) -> np.ndarray:
    """16-bit values (any integer dtype, already in [0, 65535]) -> uint8, rounded."""
    v = values.astype(np.uint32)
    return ((v * 255 + 32767) // 65535).astype(np.uint8)


def _grey_to_rgb(grey: np.ndarray) -> Image.Image:
    return Image.fromarray(np.repeat(grey[:, :, None], 3, axis=2), "RGB")


def _composite_on_white(rgba: Image.Image) -> Image.Image:
    a = np.asarray(rgba, dtype=np.uint8).astype(np.uint32)
    alpha = a[:, :, 3:4]
    rgb = (a[:, :, :3] * alpha + 255 * (255 - alpha) + 127) // 255
    return Image.fromarray(rgb.astype(np.uint8), "RGB")


def _lab_to_rgb(img: Image.Image, name: str) -> Image.Image:
    try:
        from PIL import ImageCms
        transform = ImageCms.buildTransform(ImageCms.createProfile("LAB"),
                                            ImageCms.createProfile("sRGB"), "LAB", "RGB")
        return ImageCms.applyTransform(img, transform)
    except Exception as e:  # ImageCms missing (no littlecms) or the transform failed
        raise _fail(name, f"cannot convert a LAB image to RGB ({type(e).__name__}: {e})") from None


def to_rgb(img: Image.Image, name: str = "image") -> Image.Image:
    """Convert a loaded PIL image of any mode to RGB, as the module docstring describes.

    Raises
    ------
    ImageError
        The mode is ``F`` (float) or cannot be converted.
    """
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in _SIXTEEN_BIT:
        return _grey_to_rgb(_scale16(np.asarray(img)))
    if mode == "I":
        return _grey_to_rgb(_scale16(np.clip(np.asarray(img), 0, 65535)))
    if mode == "F":
        raise _fail(name, "32-bit float image (mode F) is not supported: its value range is "
                          "undefined; convert it to 8-bit first")
    if mode == "P":
        # An RGBA palette or a transparency entry means alpha; compositing an opaque image
        # on white changes nothing, so always go through RGBA.
        return _composite_on_white(img.convert("RGBA"))
    if mode in _ALPHA_MODES:
        return _composite_on_white(img if mode == "RGBA" else img.convert("RGBA"))
    if mode == "LAB":
        return _lab_to_rgb(img, name)
    try:
        return img.convert("RGB")
    except (ValueError, OSError) as e:
        raise _fail(name, f"cannot convert mode {mode!r} to RGB ({e})") from None


def fit(img: Image.Image, size: int = DEFAULT_SIZE) -> Image.Image:
    """Aspect-preserving resize (shorter side -> ``size``) and centre crop, in one resample.

    ``img`` must be RGB. An image that is already ``size x size`` is returned unchanged.
    """
    w, h = img.size
    if (w, h) == (size, size):
        return img
    side = min(w, h)
    left = (w - side) / 2.0
    top = (h - side) / 2.0
    return img.resize((size, size), _RESAMPLE, box=(left, top, left + side, top + side))


def _orient(img: Image.Image) -> Image.Image:
    """Apply an EXIF orientation tag, if there is one that is not 'normal'."""
    try:
        orientation = img.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:  # malformed EXIF: ignore it rather than refuse the picture
        return img
    if orientation in (None, 1):
        return img
    return ImageOps.exif_transpose(img)


def _from_pil(img: Image.Image, name: str, size: int) -> np.ndarray:
    """Decode (if lazy), orient, convert and fit a PIL image; wraps every failure."""
    _check_pixels(img, name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img.load()
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise _fail(name, f"decompression bomb refused ({e})") from None
    except MemoryError:
        raise _fail(name, "out of memory while decoding") from None
    except Exception as e:  # Pillow decoders raise OSError, SyntaxError, ValueError, ...
        raise _fail(name, f"truncated or corrupt image data ({_describe(e)})") from None
    try:
        rgb = to_rgb(_orient(img), name)
        out = np.asarray(fit(rgb, size), dtype=np.uint8)
    except ImageError:
        raise
    except MemoryError:
        raise _fail(name, "out of memory while converting") from None
    except Exception as e:
        raise _fail(name, f"cannot convert or resize ({_describe(e)})") from None
    return np.ascontiguousarray(out.reshape(size, size, 3))


def _describe(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


# ----------------------------------------------------------------------------- files

def _decode_file(fp, name: str, size: int) -> np.ndarray:
    """Open, check, decode (first frame), convert and fit an image file object."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(fp)
    except UnidentifiedImageError:
        raise _fail(name, "not an image file (Pillow cannot identify the format)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise _fail(name, f"decompression bomb refused ({e})") from None
    except MemoryError:
        raise _fail(name, "out of memory while opening") from None
    except Exception as e:  # OSError, SyntaxError, struct.error, ... from a corrupt header
        raise _fail(name, f"corrupt image header ({_describe(e)})") from None
    with img:
        _check_pixels(img, name)
        try:
            if getattr(img, "is_animated", False):
                img.seek(0)  # documented: animated files give their first frame
            if img.format == "JPEG":
                img.draft(img.mode, (2 * size, 2 * size))
        except Exception as e:
            raise _fail(name, f"truncated or corrupt image data ({_describe(e)})") from None
        return _from_pil(img, name, size)


def _load_path(path, size: int) -> np.ndarray:
    name = os.fspath(path)
    if isinstance(name, bytes):
        name = os.fsdecode(name)
    try:
        st = os.stat(name)
    except FileNotFoundError:
        raise _fail(name, "no such file") from None
    except OSError as e:
        raise _fail(name, f"cannot access ({e.strerror or e})") from None
    if stat.S_ISDIR(st.st_mode):
        raise _fail(name, "is a directory, not an image file")
    if not stat.S_ISREG(st.st_mode):
        raise _fail(name, "not a regular file")
    if st.st_size == 0:
        raise _fail(name, "empty file (0 bytes)")
    try:
        f = open(name, "rb")
    except OSError as e:
        raise _fail(name, f"cannot open ({e.strerror or e})") from None
    with f:
        return _decode_file(f, name, size)


def _is_path(x) -> bool:
    return isinstance(x, (str, bytes, os.PathLike))


def _is_file(x) -> bool:
    return hasattr(x, "read") and not isinstance(x, (np.ndarray, Image.Image))


def _file_name(f, index: int) -> str:
    n = getattr(f, "name", None)
    return n if isinstance(n, str) and n else f"file #{index}"


# ----------------------------------------------------------------------------- arrays

_SHAPE_HELP = "expected uint8 H x W x 3 (one RGB image) or N x H x W x 3 (a batch)"


def _check_array(a: np.ndarray, name: str, batch_ok: bool = True) -> None:
    """Shape, dtype and finiteness checks; ``name`` names the array in messages."""
    if a.dtype == object:
        raise _fail(name, f"object array is not an image ({_SHAPE_HELP})")
    if not ((a.ndim == 3 and a.shape[2] == 3) or (batch_ok and a.ndim == 4 and a.shape[3] == 3)):
        raise _fail(name, f"shape {a.shape} is not an RGB image ({_SHAPE_HELP})")
    if 0 in a.shape:
        raise _fail(name, f"shape {a.shape} has no pixels")
    if a.dtype.kind in "fc":
        if not np.all(np.isfinite(a)):
            raise _fail(name, f"{a.dtype} array contains NaN or infinite values")
        raise _fail(name, f"dtype {a.dtype} is not accepted: pass uint8 pixels 0..255 "
                          "(float arrays have no single value range; convert them yourself)")
    if a.dtype != np.uint8:
        raise _fail(name, f"dtype {a.dtype} is not accepted (expected uint8 pixels 0..255)")


def _fit_array(a: np.ndarray, name: str, size: int) -> np.ndarray:
    """One checked uint8 H x W x 3 array -> uint8[size, size, 3]."""
    if a.shape[:2] == (size, size):
        return np.ascontiguousarray(a)
    try:
        img = Image.fromarray(np.ascontiguousarray(a), "RGB")
        return np.ascontiguousarray(np.asarray(fit(img, size), dtype=np.uint8))
    except MemoryError:
        raise _fail(name, "out of memory while resizing") from None


# ----------------------------------------------------------------------------- public API

def _split(x, start: int = 0) -> List[Tuple[str, str, Any]]:
    """Flatten an input into ``(name, kind, object)`` items; kind: path, file, pil, array, batch."""
    if isinstance(x, (list, tuple)):
        out = []
        for i, item in enumerate(x):
            if isinstance(item, (list, tuple)):
                out.append((f"item #{start + i}", "bad", "a nested list is not an image"))
            else:
                out.extend(_split_one(item, start + i))
        return out
    return _split_one(x, start)


def _split_one(x, i: int) -> List[Tuple[str, str, Any]]:
    if _is_path(x):
        name = os.fsdecode(os.fspath(x))
        return [(name, "path", x)]
    if isinstance(x, Image.Image):
        return [(f"image #{i}", "pil", x)]
    if isinstance(x, np.ndarray):
        if x.ndim == 4:
            return [(f"array #{i}", "batch", x)]
        return [(f"array #{i}", "array", x)]
    if _is_file(x):
        return [(_file_name(x, i), "file", x)]
    return [(f"item #{i}", "bad", f"unsupported input type {type(x).__name__} "
                                  "(expected a path, PIL image or uint8 numpy array)")]


def _load(name: str, kind: str, obj, size: int) -> np.ndarray:
    if kind == "path":
        return _load_path(obj, size)
    if kind == "file":
        return _decode_file(obj, name, size)
    if kind == "pil":
        return _from_pil(obj, name, size)
    if kind == "array":
        _check_array(obj, name, batch_ok=False)
        return _fit_array(obj, name, size)
    raise _fail(name, obj)


def load_image(source, size: int = DEFAULT_SIZE, name: Optional[str] = None) -> np.ndarray:
    """Load one image (path, file object, PIL image or ``H x W x 3`` uint8 array).

    Parameters
    ----------
    source : str, os.PathLike, binary file object, PIL.Image.Image or numpy.ndarray
        The image.
    size : int
        Output side in pixels (the network's ``image_size``).
    name : str, optional
        What to call the input in error messages (default: the path, ``"image #0"``,
        ``"array #0"``).

    Returns
    -------
    numpy.ndarray
        ``uint8[size, size, 3]`` RGB.

    Raises
    ------
    ImageError
        The input cannot be used; the message names it and the problem.
    """
    items = _split_one(source, 0)
    n, kind, obj = items[0]
    if kind == "batch":
        raise _fail(name or n, f"shape {obj.shape} is a batch; load_image takes one image")
    return _load(name or n, kind, obj, size)


def _batch_names(a: np.ndarray, list_pos: Optional[int]) -> List[str]:
    count = a.shape[0] if a.ndim == 4 and a.shape[0] > 0 else 1
    if list_pos is None:
        return [f"array #{j}" for j in range(count)]
    return [f"array #{list_pos}[{j}]" for j in range(count)]


def _batch_items(a: np.ndarray, size: int, list_pos: Optional[int]) -> List[LoadedItem]:
    """A 4-D array -> one item per image; a bad batch gives the same error for each."""
    names = _batch_names(a, list_pos)
    try:
        _check_array(a, "array batch" if list_pos is None else f"array #{list_pos}")
    except ImageError as e:
        return [LoadedItem(n, error=e) for n in names]
    if a.shape[1:3] == (size, size):
        a = np.ascontiguousarray(a)
        return [LoadedItem(n, a[j]) for j, n in enumerate(names)]
    out = []
    for j, n in enumerate(names):
        try:
            out.append(LoadedItem(n, _fit_array(a[j], n, size)))
        except ImageError as e:
            out.append(LoadedItem(n, error=e))
    return out


def load_items(x, size: int = DEFAULT_SIZE) -> List[LoadedItem]:
    """Load every image of ``x``, keeping a per-item error instead of raising.

    ``x`` is anything the module docstring lists. A 4-D batch gives one item per image,
    named ``"array #j"`` (its index in the batch; inside a list, ``"array #k[j]"`` where ``k``
    is the list position). A bad batch (wrong dtype, NaN...) gives the error on every image.
    """
    out: List[LoadedItem] = []
    in_list = isinstance(x, (list, tuple))
    for pos, (name, kind, obj) in enumerate(_split(x)):
        if kind == "batch":
            out.extend(_batch_items(obj, size, pos if in_list else None))
            continue
        try:
            out.append(LoadedItem(name, _load(name, kind, obj, size)))
        except ImageError as e:
            out.append(LoadedItem(name, error=e))
    return out


def load_images(x, size: int = DEFAULT_SIZE) -> Tuple[List[str], np.ndarray]:
    """Load every image of ``x`` into one batch; the first bad item raises.

    Returns
    -------
    names : list of str
        One name per image (path, ``"array #i"``, ``"image #i"``).
    images : numpy.ndarray
        ``uint8[N, size, size, 3]``. A uint8 ``N x size x size x 3`` array is returned as is
        (made contiguous), without copying image by image.

    Raises
    ------
    ImageError
        The first input that cannot be used.
    """
    if isinstance(x, np.ndarray) and x.ndim == 4:
        _check_array(x, "array batch")
        if x.shape[1:3] == (size, size):
            return [f"array #{j}" for j in range(x.shape[0])], np.ascontiguousarray(x)
    items = load_items(x, size)
    for it in items:
        if it.error is not None:
            raise it.error
    if not items:
        return [], np.zeros((0, size, size, 3), np.uint8)
    return [it.name for it in items], np.stack([it.image for it in items])
