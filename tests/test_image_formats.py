"""Which files are opened as images (issue 17.6) and what one bad item costs (issue 17.5).

* Only raster formats (preprocess.RASTER_FORMATS) are opened, whatever the file is called and
  however it is given (path, file object, bytes, camera folder); an EPS file named .png is
  refused before Pillow could hand it to Ghostscript: no process is ever started.
* In Classifier.classify_many, bytes (encoded image data, never a path), a path holding a NUL,
  a file object that fails, each cost their own result and nothing else.
"""
import io
import os
import subprocess
import sys

import numpy as np
import PIL
import pytest
from PIL import Image, features

from helpers import SMALL_32
from pynq_bnn.errors import ImageError
from pynq_bnn.host import preprocess as pp
from pynq_bnn.host.classifier import Classifier
from pynq_bnn.testing import random_params

EPS = (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 32 32\n"
       b"newpath 0 0 moveto 32 32 lineto stroke showpage\n%%EOF\n")


def rgb(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture
def no_subprocess(monkeypatch):
    """Every way Pillow could start Ghostscript goes through subprocess.Popen: record it."""
    started = []

    def popen(*args, **kwargs):
        started.append(args)
        raise OSError("subprocess blocked by the test")

    monkeypatch.setattr(subprocess, "Popen", popen)
    return started


# ----------------------------------------------------------------------------- accepted

def _accepted_files(d):
    a = rgb(40, 36, 1)
    grey = a[:, :, 0]
    out = {}
    for fmt, ext, img, kw in [("PNG", "png", Image.fromarray(a), {}),
                              ("JPEG", "jpg", Image.fromarray(a), {"quality": 95}),
                              ("GIF", "gif", Image.fromarray(a).convert("P"), {}),
                              ("BMP", "bmp", Image.fromarray(a), {}),
                              ("PPM", "ppm", Image.fromarray(a), {}),
                              ("PPM", "pgm", Image.fromarray(grey, "L"), {}),
                              ("PPM", "pbm", Image.fromarray(grey, "L").convert("1"), {}),
                              ("TIFF", "tif", Image.fromarray(a), {}),
                              ("WEBP", "webp", Image.fromarray(a), {"lossless": True})]:
        if fmt == "WEBP" and not features.check("webp"):
            continue
        path = str(d / f"a.{ext}")
        img.save(path, format=fmt, **kw)
        out[ext] = (fmt, path, img)
    return out


def test_every_accepted_format_decodes_from_path_file_and_bytes(tmp_path):
    for ext, (fmt, path, img) in _accepted_files(tmp_path).items():
        with Image.open(path) as check:
            assert check.format == fmt
        expected = pp.load_image(Image.open(path))
        np.testing.assert_array_equal(pp.load_image(path), expected, err_msg=ext)
        with open(path, "rb") as f:
            np.testing.assert_array_equal(pp.load_image(f), expected, err_msg=ext)
        np.testing.assert_array_equal(pp.load_image(open(path, "rb").read()), expected)


def test_formats_registered_late_are_found_in_a_fresh_process(tmp_path):
    """TIFF and WebP are not among the plugins Pillow loads at start-up."""
    path = str(tmp_path / "a.tif")
    Image.fromarray(rgb(32, 32, 2)).save(path)
    eps = tmp_path / "b.png"
    eps.write_bytes(EPS)
    code = ("import sys\nfrom pynq_bnn.host import preprocess as pp\n"
            f"print(pp.load_image({path!r}).shape)\n"
            f"try:\n    pp.load_image({str(eps)!r})\nexcept pp.ImageError as e:\n    print(e)\n"
            "print('PIL.EpsImagePlugin' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out[0] == "(32, 32, 3)"
    assert "not an image file of an accepted format" in out[1]
    if tuple(int(v) for v in PIL.__version__.split(".")[:2]) >= (9, 5):
        # Pillow >= 9.5 tries exactly the formats given; older ones import every plugin
        # after a failure (but still only try the listed formats)
        assert out[2] == "False"


# ----------------------------------------------------------------------------- refused

def test_eps_named_png_is_refused_before_ghostscript_could_run(tmp_path, no_subprocess):
    path = tmp_path / "photo.png"
    path.write_bytes(EPS)
    # the control: Pillow by itself opens it as EPS, and loading it starts a process
    with Image.open(str(path)) as img:
        assert img.format == "EPS"
        with pytest.raises(OSError):
            img.load()
    assert no_subprocess, "Pillow did not try to run Ghostscript: the control is void"
    no_subprocess.clear()
    for source in (str(path), open(str(path), "rb"), EPS, io.BytesIO(EPS)):
        with pytest.raises(ImageError, match="not an image file of an accepted format"):
            pp.load_image(source)
    with pytest.raises(ImageError, match="EPS"):
        pp.load_image(Image.open(str(path)))     # opened by the caller, not yet decoded
    with pytest.raises(ImageError):
        pp.decode_image(str(path))
    assert no_subprocess == []


@pytest.mark.parametrize("fmt,ext", [("ICO", "ico"), ("TGA", "tga"), ("PCX", "pcx"),
                                     ("SGI", "sgi"), ("XBM", "xbm"), ("DDS", "dds")])
def test_other_formats_pillow_knows_are_refused(tmp_path, fmt, ext, no_subprocess):
    img = {"DDS": Image.new("RGBA", (16, 16)), "XBM": Image.new("1", (16, 16), 1)}.get(
        fmt, Image.fromarray(rgb(16, 16, 3)))
    path = str(tmp_path / f"x.{ext}")
    try:
        img.save(path, format=fmt)
    except (KeyError, OSError, ValueError) as e:
        pytest.skip(f"this Pillow cannot write {fmt}: {e}")
    renamed = str(tmp_path / "x.png")
    os.rename(path, renamed)
    with Image.open(renamed) as check:      # Pillow itself would open it
        assert check.format == fmt
    with pytest.raises(ImageError, match="accepted format"):
        pp.load_image(renamed)
    # a decoded image is only pixels: accepted whatever it was read from
    with Image.open(renamed) as loaded:
        loaded.load()
        assert pp.load_image(loaded).shape == (32, 32, 3)
    assert no_subprocess == []


# ----------------------------------------------------------------------------- one bad item

@pytest.fixture(scope="module")
def clf():
    with Classifier(random_params(SMALL_32, seed=5), "cpu") as c:
        yield c


class BrokenFile(io.RawIOBase):
    name = "broken-file"

    def readable(self):
        return True

    def readinto(self, b):
        raise OSError("the disk went away")


class BadPath:
    def __fspath__(self):
        raise RuntimeError("no path today")


def test_classify_many_bad_items_cost_only_their_own_result(clf, tmp_path):
    a, b = rgb(32, 32, 7), rgb(48, 64, 8)
    png = str(tmp_path / "b.png")
    Image.fromarray(b).save(png)
    encoded = open(png, "rb").read()
    items = [a, b"...bytes...", b, "dir/with\0nul.png", png, encoded, bytearray(b""),
             BrokenFile(), BadPath(), EPS, a]
    r = clf.classify_many(items)
    assert len(r) == len(items)
    ok = [e is None for e in r.errors]
    assert ok == [True, False, True, False, True, True, False, False, False, False, True]
    messages = {i: str(r.errors[i]) for i in range(len(items)) if not ok[i]}
    assert messages[1].startswith("bytes #1: not an image file")
    assert messages[3].startswith("dir/with\0nul.png: ") and "NUL" in messages[3]
    assert messages[6].startswith("bytes #6: empty")
    assert messages[7].startswith("broken-file: ") and "disk went away" in messages[7]
    assert messages[8].startswith("item #8: ") and "no path today" in messages[8]
    assert messages[9].startswith("bytes #9: not an image file of an accepted format")
    alone = clf.classify(np.stack([a, pp.load_image(b), pp.load_image(png)]))
    np.testing.assert_array_equal(r.scores[[0, 2, 4, 5, 10]], alone.scores[[0, 1, 2, 2, 0]])
    assert all(r.indices[i] == -1 for i in range(len(items)) if not ok[i])


def test_load_items_never_raises_and_load_image_raises_only_image_error(tmp_path):
    items = pp.load_items([b"x", "a\0b", BadPath(), BrokenFile(), object()])
    assert [it.ok for it in items] == [False] * 5
    assert all(isinstance(it.error, ImageError) for it in items)
    for bad in (b"x", "a\0b", BadPath(), BrokenFile()):
        with pytest.raises(ImageError):
            pp.load_image(bad)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_swapped_in_after_the_check_does_not_block(tmp_path, monkeypatch):
    import threading
    real = tmp_path / "real.png"
    Image.fromarray(rgb(32, 32, 9)).save(str(real))
    fifo = str(tmp_path / "fifo.png")
    os.mkfifo(fifo)
    real_stat = os.stat

    def stat(path, *args, **kwargs):  # what the check saw: the regular file, before the swap
        return real_stat(str(real) if os.fspath(path) == fifo else path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", stat)
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("items", pp.load_items([fifo])),
                         daemon=True)
    t.start()
    t.join(10)
    monkeypatch.undo()
    if t.is_alive():
        with open(fifo, "wb"):  # unblock the reader before failing
            pass
        pytest.fail("opening a FIFO blocked")
    assert "not a regular file" in str(result["items"][0].error)
