"""Images in, network-sized uint8 RGB arrays out (Pillow decodes, numpy resizes exactly).

Every input becomes ``uint8[size, size, 3]`` RGB (``size`` is the network's image side, 32 for
CIFAR-10). Layer 1 then turns pixels ``p`` into ``2*p - 255`` (docs/FORMAT.md section 6).

Accepted inputs
---------------
* a path (``str`` or ``os.PathLike``) or a binary file object opened for reading;
* ``bytes`` / ``bytearray`` / ``memoryview``: the **encoded content** of an image file (what
  ``open(path, "rb").read()`` or an HTTP upload gives), named ``"bytes #i"``. Bytes are never
  taken as a path: pass ``os.fsdecode(p)`` or a ``pathlib.Path`` for a path held as bytes;
* a :class:`PIL.Image.Image`;
* a numpy ``uint8`` array ``H x W x 3`` (one RGB image of any size);
* a numpy ``uint8`` array ``N x H x W x 3`` (a batch; ``N x size x size x 3`` passes through
  untouched, other sizes are resized image by image);
* a list or tuple of any of these.

Numpy arrays must be ``uint8`` RGB. Float arrays are refused (there is no single convention
for their range: 0..1, 0..255, mean-subtracted...); one holding NaN or infinity is refused
with that reason. Convert with e.g. ``(x * 255).round().astype(np.uint8)`` yourself.

File formats
------------
Files, file objects and bytes are opened only as one of :data:`RASTER_FORMATS` (PNG, JPEG
and its multi-picture variant MPO, GIF, BMP, PPM/PGM/PBM, TIFF, WebP), whatever the file is
called. Anything else Pillow could open is refused as "not an image file of an accepted
format" before any plugin sees the data; in particular EPS/PS/PDF, which Pillow renders by
running Ghostscript on the file's PostScript. A PIL image passed in that is not yet decoded
(``Image.open`` without ``load()``) must also be of one of these formats; a decoded one is just
pixels and is accepted whatever it was read from.

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

Resizing (:func:`fit_array`, defined exactly in docs/FORMAT.md section 10)
--------------------------------------------------------------------------
The centre square of side ``s = min(W, H)`` (offsets ``(W - s) // 2``, ``(H - s) // 2``) is
averaged down (or up) to ``size x size`` by an exact **area** (box) average: every output pixel
is the mean of the source area it covers, with pixels cut by an output edge counted by the
fraction inside, rounded half up. It is computed in integers with numpy (no float, no Pillow or
OpenCV resampling), so it gives the same pixels on every platform and with every library
version. The native engine's C version of the same integers (``bnn_resize.c``, bit-identical)
runs when the library is built; the numpy code is the reference and the fallback
(``PYNQ_BNN_NATIVE=0``). An image whose shorter side is already ``size`` is only cropped; a
``size x size`` image passes through byte for byte. Camera frames (numpy arrays) go straight
into it.

JPEG files are decoded by libjpeg at a reduced DCT scale (Pillow's ``draft``): the largest of
1/1, 1/2, 1/4, 1/8 that keeps both sides at least ``JPEG_DRAFT_FACTOR * size`` (2 x 32 = 64
pixels), so a 640 x 480 photo is decoded at 160 x 120, a fraction of the work of a full
decode. The 1/8 scale (80 x 60, at least ``size``) would be cheaper still but was measured to
cost 1 to 3 points of accuracy (its 4:2:0 chroma keeps fewer samples than the network has
pixels, and each 8 x 8 block becomes one DC value), while 1/4 is as accurate as a full
decode: benchmarks/results/preprocess_accuracy.json, docs/FORMAT.md section 10. The decoded
pixels depend on the JPEG library (libjpeg-turbo versions can differ in the last bit); the crop
and the resize never do.

Failures
--------
Every failure raises :class:`pynq_bnn.errors.ImageError` whose message starts with the input's
name (the path, ``"array #i"``, ``"image #i"``, ``"bytes #i"``, ``"file #i"``) and says what is
wrong: missing path, a NUL character in the path, directory, empty (zero-byte) file, not an
image or not an accepted format (e.g. a text or EPS file named ``.png``), truncated or corrupt
data, more pixels than ``PIL.Image.MAX_IMAGE_PIXELS`` (the decompression-bomb limit; enforced
for files and PIL images, not for numpy arrays, which are already in memory), unsupported mode,
wrong array shape or dtype, NaN/inf. In :func:`load_items` (and so ``Classifier.classify_many``)
a bad item, whatever went wrong with it, costs its own result only. Truncated files fail unless
the program has set Pillow's global ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES = True``, in which
case Pillow (and so pynq-bnn) fills the missing part with grey; pynq-bnn never sets it.

The decompression-bomb warning is turned into an error with ``warnings.catch_warnings``,
which is process-global in Python < 3.14; the explicit pixel-count check before decoding
makes the limit hold even when another thread changes the warning filters.
"""
from __future__ import annotations

import functools
import importlib
import io
import logging
import os
import stat
import warnings
from dataclasses import dataclass
from typing import Any, List, Optional, Tuple

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import ImageError
from ..files import open_regular

__all__ = ["DEFAULT_SIZE", "RASTER_FORMATS", "JPEG_DRAFT_FACTOR", "LoadedItem", "load_image",
           "load_images", "load_items", "decode_image", "to_rgb", "fit", "fit_array", "ImageError"]

log = logging.getLogger(__name__)

DEFAULT_SIZE = 32
"""The CIFAR-10 network's input side in pixels."""

RASTER_FORMATS = ("PNG", "JPEG", "MPO", "GIF", "BMP", "PPM", "TIFF", "WEBP")
"""Pillow format names that files are opened as (PPM covers PGM and PBM); nothing else."""

# the Pillow plugin module of each, imported only when a file is not one of the formats that
# Pillow registers at start-up (PNG, JPEG, GIF, BMP, PPM)
_PLUGINS = {"PNG": "PngImagePlugin", "JPEG": "JpegImagePlugin", "MPO": "MpoImagePlugin",
            "GIF": "GifImagePlugin", "BMP": "BmpImagePlugin", "PPM": "PpmImagePlugin",
            "TIFF": "TiffImagePlugin", "WEBP": "WebPImagePlugin"}
_JPEG = ("JPEG", "MPO")

JPEG_DRAFT_FACTOR = 2
"""JPEGs are decoded at the largest DCT scale keeping both sides >= this factor x ``size``."""
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")
_ALPHA_MODES = ("RGBA", "LA", "RGBa", "La", "PA")
_EXIF_ORIENTATION = 0x0112


@dataclass
class LoadedItem:
    """One input after loading: ``image`` (``uint8[size, size, 3]``) or ``error``, never both.

    ``name`` is the path, ``"array #i"``, ``"image #i"``, ``"bytes #i"``, ``"file #i"`` or
    ``"item #i"`` (``i``: position in the input list; a 4-D batch gives ``"array #j"``, or
    ``"array #i[j]"`` inside a list).
    """

    name: str
    image: Optional[np.ndarray] = None
    error: Optional[ImageError] = None

    @property
    def ok(self) -> bool:
        return self.error is None


def _fail(name: str, problem: str) -> ImageError:
    return ImageError(f"{name}: {problem}")


def _describe(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


# ----------------------------------------------------------------------------- resizing

def _sum_dtype(bound: int):
    """The unsigned dtype that holds integers up to ``bound``."""
    return np.uint16 if bound <= 0xFFFF else np.uint32 if bound <= 0xFFFFFFFF else np.uint64


@functools.lru_cache(maxsize=64)
def _plan(s: int, n: int) -> tuple:
    """Row indices and weights of the area average ``s -> n`` (``s > n``, ``n`` not dividing
    ``s``), once per size pair: a camera or a photo folder repeats the same few.

    On a line of ``n * s`` units source pixel ``i`` spans ``[i*n, (i+1)*n)`` and output ``j``
    spans ``[j*s, (j+1)*s)``. Output ``j`` starts inside pixel ``r[j] = j*s // n`` at offset
    ``f[j] = j*s % n``; its run ``r[j] .. r[j+1]-1`` holds ``k`` or ``k + 1`` whole pixels.
    """
    k = s // n
    r, f = np.divmod(np.arange(n + 1) * s, n)
    first = (r[:n, None] + np.arange(k)).ravel()       # the first k pixels of every run
    long_runs = np.flatnonzero(r[1:] - r[:n] > k)      # runs of k + 1
    cut = np.flatnonzero(f[1:n]) + 1                   # boundaries inside a pixel
    plan = (first, long_runs, r[long_runs] + k, cut, r[cut], f[cut][:, None])
    for a in plan:
        a.flags.writeable = False
    return plan


def _row_sums(a: np.ndarray, n: int, vmax: int) -> Tuple[np.ndarray, int]:
    """Area-weighted sums over the rows of ``a`` (``[s, m]``, values <= ``vmax``, ``s > n``).

    The weight of source row ``i`` in output row ``j`` is the length of the overlap of their
    spans (see :func:`_plan`), an integer in ``[0, n]``. Returns ``(T, w)``: the exact sums
    ``T[j] = sum_i weight * a[i]``, divided by ``w``, the common factor of all weights (``n``
    when ``n`` divides ``s``, as for a 480-pixel frame side: then every weight is 0 or ``n``
    and ``T`` is a plain box sum); the weights of one output sum to ``s / w``.
    """
    s, m = a.shape
    k, rem = divmod(s, n)
    run_dtype = _sum_dtype((k + 1) * vmax)
    if rem == 0:
        # every output covers exactly k whole rows: a strided view, no gather
        return a.reshape(n, k, m).sum(axis=1, dtype=run_dtype), n
    first, long_runs, long_rows, cut, cut_rows, cut_weights = _plan(s, n)
    seg = a[first].reshape(n, k, m).sum(axis=1, dtype=run_dtype)
    if long_runs.size:
        seg[long_runs] += a[long_rows]
    dtype = _sum_dtype((s + 2 * n) * vmax)  # the largest intermediate below
    t = seg.astype(dtype)
    t *= dtype(n)
    if cut.size:
        # the row cut by boundary j gives f[j] units to output j-1 and n - f[j] to output j
        part = a[cut_rows].astype(dtype) * cut_weights.astype(dtype)
        t[cut - 1] += part
        t[cut] -= part  # never below 0: output j counted n * a[r[j]] in full
    return t, 1


def _round_div(total: np.ndarray, d: int) -> np.ndarray:
    """``floor(total / d + 1/2)`` (round half up), exactly, as uint8; ``total <= 255 * d``."""
    if np.iinfo(total.dtype).max < 256 * d:
        total = total.astype(_sum_dtype(256 * d))
    q = total.dtype.type
    total += q(d // 2)
    total //= q(d)
    return total.astype(np.uint8)


def _area_down(q: np.ndarray, n: int) -> np.ndarray:
    """``uint8[s, s, C]`` with ``s > n`` -> ``uint8[n, n, C]``, exact area average."""
    s, _, c = q.shape
    # rows: a view of the crop when each of its rows is contiguous (a centre crop is)
    t1, w1 = _row_sums(q.reshape(s, s * c), n, 255)                     # [n, s * c]
    v1 = s // w1                                                         # weight per output
    # columns: source column first, so that the second pass is the same row reduction over
    # long contiguous rows (numpy's reductions crawl over a last axis of 3 channels)
    cols = np.ascontiguousarray(t1.reshape(n, s, c).transpose(1, 2, 0)).reshape(s, c * n)
    t2, w2 = _row_sums(cols, n, 255 * v1)                                # [n, c * n]
    out = _round_div(t2, v1 * (s // w2))
    return np.ascontiguousarray(out.reshape(n, c, n).transpose(2, 0, 1))


def _area_up(q: np.ndarray, n: int) -> np.ndarray:
    """``uint8[s, s, C]`` with ``s < n`` (tiny images) -> ``uint8[n, n, C]``, same definition.

    Each output covers at most two source pixels; the dense ``n x s`` weight matrix is small.
    """
    s = q.shape[0]
    i = np.arange(s)
    j = np.arange(n)[:, None]
    weights = np.clip(np.minimum((i + 1) * n, (j + 1) * s) - np.maximum(i * n, j * s), 0, None)
    t = np.einsum("ji,ilc->jlc", weights, q.astype(np.int64))
    u = np.einsum("jlc,kl->jkc", t, weights)
    return _round_div(u.astype(np.uint64), s * s)


#: False forces the numpy resize, the reference (the tests compare the two paths).
_use_native = True


def _native_area(q: np.ndarray, n: int) -> Optional[np.ndarray]:
    """:func:`_area_down` in C (``pynq_bnn.backends.cpu.engine.fit_area``, bit-identical;
    docs/CPU_ENGINE.md), or None without the native library or with ``PYNQ_BNN_NATIVE=0``:
    then the numpy code above, the reference, runs."""
    if not _use_native:
        return None
    from ..backends.cpu.engine import fit_area  # lazy: the ctypes loader, on first use only
    return fit_area(q, n)


def fit_array(a: np.ndarray, size: int = DEFAULT_SIZE) -> np.ndarray:
    """Centre square, then the exact integer area resize to ``size x size`` (docs/FORMAT.md 10).

    Parameters
    ----------
    a : numpy.ndarray
        ``uint8`` ``H x W x C`` (any channel count; channels are independent) or ``H x W``.
    size : int
        Output side.

    Returns
    -------
    numpy.ndarray
        ``uint8[size, size, C]`` (or ``[size, size]``), a new contiguous array, except that an
        image that is already ``size x size`` and contiguous is returned as is.

    Raises
    ------
    ImageError
        ``a`` is not a uint8 2-D or 3-D array with pixels.
    ValueError
        ``size < 1``.
    """
    a = np.asarray(a)
    if a.dtype != np.uint8 or a.ndim not in (2, 3) or 0 in a.shape:
        raise _fail("array", f"{a.dtype} array of shape {a.shape} is not a uint8 H x W [x C] "
                             "image with pixels")
    if int(size) != size or size < 1:
        raise ValueError(f"size must be an integer >= 1, got {size!r}")
    size = int(size)
    h, w = a.shape[:2]
    if h == w == size:
        return np.ascontiguousarray(a)
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    q = a[top:top + s, left:left + s]
    if s == size:
        return np.ascontiguousarray(q)
    q3 = q if q.ndim == 3 else q[:, :, None]
    out = _native_area(q3, size) if s > size else None
    if out is None:
        out = _area_down(q3, size) if s > size else _area_up(q3, size)
    return out if q.ndim == 3 else out[:, :, 0]


def fit(img: Image.Image, size: int = DEFAULT_SIZE) -> Image.Image:
    """:func:`fit_array` for a PIL RGB image (returned unchanged when already ``size x size``)."""
    if img.size == (size, size):
        return img
    return Image.fromarray(fit_array(np.asarray(img), size), img.mode)


# ----------------------------------------------------------------------------- PIL images

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


def _grey3(grey: np.ndarray) -> np.ndarray:
    return np.repeat(grey[:, :, None], 3, axis=2)


def _composite_on_white(rgba: Image.Image) -> np.ndarray:
    a = np.asarray(rgba, dtype=np.uint8).astype(np.uint32)
    alpha = a[:, :, 3:4]
    rgb = (a[:, :, :3] * alpha + 255 * (255 - alpha) + 127) // 255
    return rgb.astype(np.uint8)


def _lab_to_rgb(img: Image.Image, name: str) -> Image.Image:
    try:
        from PIL import ImageCms
        transform = ImageCms.buildTransform(ImageCms.createProfile("LAB"),
                                            ImageCms.createProfile("sRGB"), "LAB", "RGB")
        # Pillow's stub says Optional: None is returned only with inPlace=True
        return ImageCms.applyTransform(img, transform)  # type: ignore[return-value]
    except Exception as e:  # ImageCms missing (no littlecms) or the transform failed
        raise _fail(name, f"cannot convert a LAB image to RGB ({type(e).__name__}: {e})") from None


def _rgb_array(img: Image.Image, name: str) -> np.ndarray:
    """A loaded PIL image of any mode -> ``uint8[H, W, 3]`` RGB (possibly read-only)."""
    mode = img.mode
    if mode == "RGB":
        return np.asarray(img)
    if mode in _SIXTEEN_BIT:
        return _grey3(_scale16(np.asarray(img)))
    if mode == "I":
        return _grey3(_scale16(np.clip(np.asarray(img), 0, 65535)))
    if mode == "F":
        raise _fail(name, "32-bit float image (mode F) is not supported: its value range is "
                          "undefined; convert it to 8-bit first")
    if mode in ("L", "1"):
        return _grey3(np.asarray(img.convert("L") if mode == "1" else img))
    if mode == "P":
        # An RGBA palette or a transparency entry means alpha; compositing an opaque image
        # on white changes nothing, so always go through RGBA.
        return _composite_on_white(img.convert("RGBA"))
    if mode in _ALPHA_MODES:
        if mode == "La":   # Pillow converts premultiplied La only to LA
            img = img.convert("LA")
        return _composite_on_white(img if mode == "RGBA" else img.convert("RGBA"))
    if mode == "LAB":
        return np.asarray(_lab_to_rgb(img, name))
    try:
        return np.asarray(img.convert("RGB"))
    except (ValueError, OSError) as e:
        raise _fail(name, f"cannot convert mode {mode!r} to RGB ({e})") from None


def to_rgb(img: Image.Image, name: str = "image") -> Image.Image:
    """Convert a loaded PIL image of any mode to RGB, as the module docstring describes.

    Raises
    ------
    ImageError
        The mode is ``F`` (float) or cannot be converted.
    """
    if img.mode == "RGB":
        return img
    return Image.fromarray(np.ascontiguousarray(_rgb_array(img, name)), "RGB")


def _orient(img: Image.Image) -> Image.Image:
    """Apply an EXIF orientation tag, if there is one that is not 'normal'."""
    try:
        orientation = img.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:  # malformed EXIF: ignore it rather than refuse the picture
        return img
    if orientation in (None, 1):
        return img
    return ImageOps.exif_transpose(img)


def _undecoded_foreign(img: Image.Image) -> Optional[str]:
    """The format of a PIL image whose pixels a non-raster plugin has yet to produce."""
    fmt = getattr(img, "format", None)
    if fmt and fmt.upper() not in RASTER_FORMATS and getattr(img, "tile", None):
        return fmt
    return None


def _decode_pil(img: Image.Image, name: str) -> np.ndarray:
    """Decode (if lazy), orient and convert a PIL image: ``uint8[H, W, 3]``; wraps failures."""
    foreign = _undecoded_foreign(img)
    if foreign:
        raise _fail(name, f"a not yet decoded {foreign} image is not accepted (decoding it may "
                          f"run an external program); accepted: {', '.join(RASTER_FORMATS)}, "
                          "or any image already load()-ed")
    _check_pixels(img, name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise _fail(name, f"decompression bomb refused ({e})") from None
    except MemoryError:
        raise _fail(name, "out of memory while decoding") from None
    except Exception as e:  # Pillow decoders raise OSError, SyntaxError, ValueError, ...
        raise _fail(name, f"truncated or corrupt image data ({_describe(e)})") from None
    try:
        return _rgb_array(_orient(img), name)
    except ImageError:
        raise
    except MemoryError:
        raise _fail(name, "out of memory while converting") from None
    except Exception as e:
        raise _fail(name, f"cannot convert ({_describe(e)})") from None


def _from_pil(img: Image.Image, name: str, size: int) -> np.ndarray:
    return _fit_checked(_decode_pil(img, name), name, size)


# ----------------------------------------------------------------------------- files

_more_plugins_tried = False


def _allowed_formats() -> List[str]:
    """The accepted formats Pillow has registered now (never makes it import more plugins)."""
    Image.preinit()
    return [f for f in RASTER_FORMATS if f in Image.OPEN]


def _register_more_plugins() -> bool:
    """Import the accepted formats' plugins not registered yet (once); True if any is new."""
    global _more_plugins_tried
    if _more_plugins_tried:
        return False
    _more_plugins_tried = True
    before = set(Image.OPEN)
    for fmt, module in _PLUGINS.items():
        if fmt not in Image.OPEN:
            try:
                importlib.import_module("PIL." + module)
            except Exception as e:  # e.g. WebP without libwebp: that format stays unavailable
                log.debug("Pillow plugin %s unavailable: %s", module, e)
    return bool(set(Image.OPEN) - before)


def _open_raster(fp, name: str) -> Image.Image:
    """``Image.open`` restricted to :data:`RASTER_FORMATS`; every failure an ImageError.

    Only formats already registered are passed, so Pillow never imports every plugin (and
    never tries a format outside the list); the rest of the list is imported once, the first
    time a file is none of the start-up formats.
    """
    for retry in (False, True):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                return Image.open(fp, formats=_allowed_formats())
        except UnidentifiedImageError:
            if not retry and _register_more_plugins():
                continue
            raise _fail(name, "not an image file of an accepted format ("
                              + ", ".join(RASTER_FORMATS) + ")") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise _fail(name, f"decompression bomb refused ({e})") from None
        except MemoryError:
            raise _fail(name, "out of memory while opening") from None
        except Exception as e:  # OSError, SyntaxError, struct.error, ... from a corrupt header
            raise _fail(name, f"corrupt image header ({_describe(e)})") from None
    raise AssertionError("unreachable")


def _seekable(fp) -> bool:
    try:
        return bool(fp.seekable())
    except Exception:
        return False


def _decode_file(fp, name: str, size: Optional[int]) -> np.ndarray:
    """Open, check and decode (first frame) an image file object: ``uint8[H, W, 3]`` RGB.

    ``size`` (the output side the caller will fit to) lets JPEGs decode at a reduced DCT
    scale that keeps both sides >= ``JPEG_DRAFT_FACTOR * size``; ``None`` decodes at full
    resolution.
    """
    if not _seekable(fp):  # _open_raster may need to read it twice
        try:
            fp = io.BytesIO(fp.read())
        except Exception as e:
            raise _fail(name, f"cannot read ({_describe(e)})") from None
    img = _open_raster(fp, name)
    with img:
        _check_pixels(img, name)
        try:
            if getattr(img, "is_animated", False):
                img.seek(0)  # documented: animated files give their first frame
            if size is not None and img.format in _JPEG:
                side = JPEG_DRAFT_FACTOR * size
                img.draft(img.mode, (side, side))
        except Exception as e:
            raise _fail(name, f"truncated or corrupt image data ({_describe(e)})") from None
        return _decode_pil(img, name)


def _load_path(path, size: Optional[int]) -> np.ndarray:
    name = os.fspath(path)
    if isinstance(name, bytes):
        name = os.fsdecode(name)
    if "\0" in name:
        raise _fail(name, "the path contains a NUL character")
    try:
        st = os.stat(name)
    except FileNotFoundError:
        raise _fail(name, "no such file") from None
    except (OSError, ValueError) as e:
        raise _fail(name, f"cannot access ({getattr(e, 'strerror', None) or e})") from None
    if stat.S_ISDIR(st.st_mode):
        raise _fail(name, "is a directory, not an image file")
    if not stat.S_ISREG(st.st_mode):
        raise _fail(name, "not a regular file")
    if st.st_size == 0:
        raise _fail(name, "empty file (0 bytes)")
    # opened non-blocking and checked again on the descriptor: a FIFO swapped in after the
    # stat above cannot block the open either
    with open_regular(name, what="image", error=ImageError) as f:
        return _decode_file(f, name, size)


def _decode_data(data, name: str, size: Optional[int]) -> np.ndarray:
    data = bytes(data)
    if not data:
        raise _fail(name, "empty (0 bytes)")
    return _decode_file(io.BytesIO(data), name, size)


_DATA = (bytes, bytearray, memoryview)


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


def _fit_checked(a: np.ndarray, name: str, size: int) -> np.ndarray:
    """One checked uint8 H x W x 3 array -> uint8[size, size, 3]."""
    try:
        return fit_array(a, size)
    except MemoryError:
        raise _fail(name, "out of memory while resizing") from None


# ----------------------------------------------------------------------------- public API

def _split(x, start: int = 0) -> List[Tuple[str, str, Any]]:
    """Flatten an input into ``(name, kind, object)`` items; kind: path, file, data, pil,
    array, batch or bad."""
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
    if isinstance(x, (str, os.PathLike)):
        try:
            p = os.fspath(x)
        except Exception as e:  # a PathLike whose __fspath__ fails
            return [(f"item #{i}", "bad", f"not a usable path ({_describe(e)})")]
        return [(os.fsdecode(p), "path", p)]
    if isinstance(x, _DATA):
        return [(f"bytes #{i}", "data", x)]
    if isinstance(x, Image.Image):
        return [(f"image #{i}", "pil", x)]
    if isinstance(x, np.ndarray):
        if x.ndim == 4:
            return [(f"array #{i}", "batch", x)]
        return [(f"array #{i}", "array", x)]
    if _is_file(x):
        return [(_file_name(x, i), "file", x)]
    return [(f"item #{i}", "bad", f"unsupported input type {type(x).__name__} (expected a path, "
                                  "bytes, a file object, a PIL image or a uint8 numpy array)")]


def _load(name: str, kind: str, obj, size: Optional[int]) -> np.ndarray:
    """One item -> ``uint8[size, size, 3]`` (``size=None``: full-size RGB, for decode_image).

    Raises only ImageError: whatever else goes wrong with this item is wrapped, so that in a
    list it costs this item's result and no other.
    """
    try:
        if kind == "array":
            _check_array(obj, name, batch_ok=False)
            return obj if size is None else _fit_checked(obj, name, size)
        if kind == "path":
            a = _load_path(obj, size)
        elif kind == "file":
            a = _decode_file(obj, name, size)
        elif kind == "data":
            a = _decode_data(obj, name, size)
        elif kind == "pil":
            a = _decode_pil(obj, name)
        else:
            raise _fail(name, obj)
        return a if size is None else _fit_checked(a, name, size)
    except ImageError:
        raise
    except MemoryError:
        raise _fail(name, "out of memory") from None
    except Exception as e:
        raise _fail(name, f"cannot be loaded ({_describe(e)})") from None


def load_image(source, size: int = DEFAULT_SIZE, name: Optional[str] = None) -> np.ndarray:
    """Load one image (path, file object, bytes, PIL image or ``H x W x 3`` uint8 array).

    Parameters
    ----------
    source : str, os.PathLike, binary file object, bytes, PIL.Image.Image or numpy.ndarray
        The image (bytes: the encoded file content, never a path).
    size : int
        Output side in pixels (the network's ``image_size``).
    name : str, optional
        What to call the input in error messages (default: the path, ``"image #0"``,
        ``"array #0"``, ``"bytes #0"``).

    Returns
    -------
    numpy.ndarray
        ``uint8[size, size, 3]`` RGB.

    Raises
    ------
    ImageError
        The input cannot be used; the message names it and the problem.
    """
    n, kind, obj = _split_one(source, 0)[0]
    if kind == "batch":
        raise _fail(name or n, f"shape {obj.shape} is a batch; load_image takes one image")
    return _load(name or n, kind, obj, size)


def decode_image(source, name: Optional[str] = None) -> np.ndarray:
    """Decode one image at full size: ``uint8[H, W, 3]`` RGB, a new writable array.

    The same checks and conversions as :func:`load_image` (accepted formats, regular files,
    pixel limit, colour modes, EXIF orientation, first frame), without the crop and resize:
    for showing a picture, or as a camera frame (:class:`pynq_bnn.camera.ImageFolderSource`).
    Use it instead of ``PIL.Image.open`` on files you did not make yourself.

    Raises
    ------
    ImageError
        As :func:`load_image`.
    """
    n, kind, obj = _split_one(source, 0)[0]
    if kind == "batch":
        raise _fail(name or n, f"shape {obj.shape} is a batch; decode_image takes one image")
    a = _load(name or n, kind, obj, None)
    return a.copy() if not a.flags.writeable or a is obj else np.ascontiguousarray(a)


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
            out.append(LoadedItem(n, _fit_checked(a[j], n, size)))
        except ImageError as e:
            out.append(LoadedItem(n, error=e))
    return out


def load_items(x, size: int = DEFAULT_SIZE) -> List[LoadedItem]:
    """Load every image of ``x``, keeping a per-item error instead of raising.

    ``x`` is anything the module docstring lists. A 4-D batch gives one item per image,
    named ``"array #j"`` (its index in the batch; inside a list, ``"array #k[j]"`` where ``k``
    is the list position). A bad batch (wrong dtype, NaN...) gives the error on every image.
    Any failure of one item (a bad path, bytes that are no image, a file object whose ``read``
    raises...) is that item's error only; no input makes this function raise.
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
        One name per image (path, ``"array #i"``, ``"image #i"``, ``"bytes #i"``).
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
    # (every item has its image: the errors were raised above)
    return [it.name for it in items], np.stack([it.image for it in items if it.image is not None])
