"""pynq_bnn.host.preprocess: every accepted input gives the documented pixels, every bad one an
ImageError that names the input."""
import io
import os
import re

import numpy as np
import pytest
from PIL import Image

from helpers import CIFAR_DIR
from pynq_bnn.errors import ImageError
from pynq_bnn.host import preprocess as pp
from pynq_bnn.resources import SAMPLES_DIR

SAMPLES = SAMPLES_DIR
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def rgb(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def save(img, path, **kw):
    img.save(str(path), **kw)
    return str(path)


def raises_named(name, problem=""):
    """pytest.raises(ImageError) whose message starts with ``name:`` and mentions ``problem``."""
    return pytest.raises(ImageError, match=re.escape(str(name)) + ": .*" + problem)


# ----------------------------------------------------------------------------- good inputs

def test_32x32_png_passes_through_exactly(tmp_path):
    a = rgb(32, 32)
    path = save(Image.fromarray(a), tmp_path / "a.png")
    np.testing.assert_array_equal(pp.load_image(path), a)
    np.testing.assert_array_equal(pp.load_image(Image.fromarray(a)), a)
    np.testing.assert_array_equal(pp.load_image(a), a)
    with open(path, "rb") as f:
        np.testing.assert_array_equal(pp.load_image(f), a)
    np.testing.assert_array_equal(pp.load_image(io.BytesIO(open(path, "rb").read())), a)


def test_pathlike_paths_and_bytes_as_file_content(tmp_path):
    a = rgb(32, 32, 1)
    path = save(Image.fromarray(a), tmp_path / "a.png")
    np.testing.assert_array_equal(pp.load_image(tmp_path / "a.png"), a)
    # bytes are the encoded file, never a path (a bytes path goes through os.fsdecode)
    data = open(path, "rb").read()
    for blob in (data, bytearray(data), memoryview(data)):
        np.testing.assert_array_equal(pp.load_image(blob), a)
    np.testing.assert_array_equal(pp.load_image(os.fsdecode(os.fsencode(path))), a)
    with raises_named("bytes #0", "not an image"):
        pp.load_image(os.fsencode(path))
    with raises_named("bytes #0", "empty"):
        pp.load_image(b"")


@pytest.mark.parametrize("shape,centre", [((32, 96), (slice(None), slice(32, 64))),
                                          ((96, 32), (slice(32, 64), slice(None)))])
def test_centre_crop_without_resampling_when_the_short_side_fits(shape, centre):
    a = rgb(*shape, seed=2)
    np.testing.assert_array_equal(pp.load_image(a), a[centre])


def test_resize_is_aspect_preserving_centre_crop():
    a = rgb(60, 100, seed=3)
    # the centre 60 x 60 square (columns 20..79), area-averaged (tests/test_resize.py proves
    # the average exact)
    np.testing.assert_array_equal(pp.load_image(a), pp.fit_array(a[:, 20:80], 32))
    np.testing.assert_array_equal(pp.load_image(a.transpose(1, 0, 2)),
                                  pp.fit_array(a.transpose(1, 0, 2)[20:80], 32))
    # constant images stay constant at every scale
    for h, w in ((64, 64), (300, 17), (7, 9), (2000, 1500)):
        out = pp.load_image(np.full((h, w, 3), (10, 200, 99), np.uint8))
        assert out.shape == (32, 32, 3)
        assert (out == (10, 200, 99)).all()


def test_large_jpeg_is_decoded_at_reduced_scale_without_visible_loss(tmp_path):
    y, x = np.mgrid[0:1200, 0:1600]
    a = np.stack([x * 255 // 1600, y * 255 // 1200,
                  128 + 100 * np.sin(x / 50.0) * np.cos(y / 70.0)], -1).astype(np.uint8)
    path = save(Image.fromarray(a), tmp_path / "big.jpg", quality=95)
    out = pp.load_image(path)
    with Image.open(path) as full:
        full.load()  # no draft: the full-resolution decode
        ref = pp.fit_array(np.asarray(full), 32)
    diff = np.abs(out.astype(int) - ref)
    assert diff.mean() < 1 and diff.max() < 8


@pytest.mark.parametrize("w,h,scale", [(640, 480, 4), (1280, 960, 8), (250, 250, 2),
                                       (512, 600, 8), (100, 63, 1), (130, 2000, 2),
                                       (32, 32, 1)])
def test_jpeg_draft_scale_keeps_both_sides_at_least_twice_the_size(tmp_path, w, h, scale):
    """The documented rule: the largest s in 1, 2, 4, 8 with s * 2 * size <= min(W, H)."""
    assert pp.JPEG_DRAFT_FACTOR == 2
    assert scale == max(c for c in (1, 2, 4, 8) if c * 2 * 32 <= min(w, h) or c == 1)
    path = save(Image.fromarray(rgb(h, w, seed=w)), tmp_path / "a.jpg", quality=90)
    with Image.open(path) as img:
        img.draft("RGB", (64, 64))
        assert img.size == (-(-w // scale), -(-h // scale))
        expected = pp.fit_array(np.asarray(img.convert("RGB")), 32)
    np.testing.assert_array_equal(pp.load_image(path), expected)


def test_size_parameter():
    assert pp.load_image(rgb(50, 40), size=8).shape == (8, 8, 3)


def test_1x1_image_is_upsampled(tmp_path):
    path = save(Image.new("RGB", (1, 1), (12, 34, 56)), tmp_path / "one.png")
    out = pp.load_image(path)
    assert out.shape == (32, 32, 3) and (out == (12, 34, 56)).all()


@pytest.mark.parametrize("w,h", [(1, 5000), (5000, 1), (3, 4000)])
def test_extreme_aspect_ratio_uses_the_centre(tmp_path, w, h):
    a = np.zeros((h, w, 3), np.uint8)
    a[...] = (0, 0, 255)
    if h > w:
        a[h // 2 - 20:h // 2 + 20] = (255, 0, 0)
    else:
        a[:, w // 2 - 20:w // 2 + 20] = (255, 0, 0)
    path = save(Image.fromarray(a), tmp_path / "thin.png")
    for src in (path, a):
        out = pp.load_image(src)
        assert out.shape == (32, 32, 3)
        assert (out == (255, 0, 0)).all()


def test_mode_1_bilevel(tmp_path):
    bits = np.random.default_rng(4).random((32, 32)) < 0.5
    img = Image.fromarray(bits.astype(np.uint8) * 255, "L").convert("1")
    path = save(img, tmp_path / "bw.png")
    assert Image.open(path).mode == "1"
    expected = np.repeat((bits * 255).astype(np.uint8)[:, :, None], 3, axis=2)
    np.testing.assert_array_equal(pp.load_image(path), expected)


def test_mode_L_grey(tmp_path):
    g = np.random.default_rng(5).integers(0, 256, (32, 32), dtype=np.uint8)
    path = save(Image.fromarray(g, "L"), tmp_path / "grey.png")
    np.testing.assert_array_equal(pp.load_image(path), np.repeat(g[:, :, None], 3, axis=2))


def _palette_image(transparency=None):
    idx = np.random.default_rng(6).integers(0, 4, (32, 32), dtype=np.uint8)
    colours = np.array([(10, 20, 30), (200, 0, 0), (0, 200, 0), (0, 0, 200)], np.uint8)
    img = Image.fromarray(idx, "P")
    img.putpalette(colours.ravel().tolist() + [0] * (768 - 12))
    return img, idx, colours


def test_mode_P_palette(tmp_path):
    img, idx, colours = _palette_image()
    path = save(img, tmp_path / "pal.png")
    assert Image.open(path).mode == "P"
    np.testing.assert_array_equal(pp.load_image(path), colours[idx])


def test_mode_P_transparency_is_composited_on_white(tmp_path):
    img, idx, colours = _palette_image()
    path = save(img, tmp_path / "palt.png", transparency=0)
    assert "transparency" in Image.open(path).info
    expected = colours[idx].copy()
    expected[idx == 0] = 255
    np.testing.assert_array_equal(pp.load_image(path), expected)


def test_mode_I16_is_scaled_not_clipped(tmp_path):
    v = np.random.default_rng(7).integers(0, 65536, (32, 32)).astype(np.uint16)
    v[0, :6] = (0, 128, 129, 257, 65535, 32768)
    path = save(Image.fromarray(v), tmp_path / "deep.png")
    assert Image.open(path).mode.startswith("I")
    out = pp.load_image(path)
    expected8 = np.round(v.astype(np.float64) * 255 / 65535).astype(np.uint8)
    np.testing.assert_array_equal(out, np.repeat(expected8[:, :, None], 3, axis=2))
    assert list(out[0, :6, 0]) == [0, 0, 1, 1, 255, 128]


def test_mode_I_32bit_is_clipped_to_16_bit_then_scaled():
    v = np.zeros((32, 32), np.int32)
    v[0, :4] = (-5, 100000, 65535, 257)
    img = Image.fromarray(v)
    assert img.mode == "I"
    out = pp.load_image(img)
    assert list(out[0, :4, 1]) == [0, 255, 255, 1]


def test_mode_F_is_refused():
    with raises_named("image #0", "float"):
        pp.load_image(Image.fromarray(np.zeros((32, 32), np.float32)))


def _composite(c, a):
    c = c.astype(np.float64)
    a = a.astype(np.float64)[..., None]
    return np.round((c * a + 255 * (255 - a)) / 255).astype(np.uint8)


def test_mode_RGBA_is_composited_on_white(tmp_path):
    rng = np.random.default_rng(8)
    c = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    a = rng.choice(np.array([0, 1, 128, 254, 255], np.uint8), (32, 32))
    path = save(Image.fromarray(np.dstack([c, a]), "RGBA"), tmp_path / "alpha.png")
    out = pp.load_image(path)
    np.testing.assert_array_equal(out, _composite(c, a))
    assert (out[a == 0] == 255).all()
    np.testing.assert_array_equal(out[a == 255], c[a == 255])


def test_mode_LA_is_composited_on_white(tmp_path):
    rng = np.random.default_rng(9)
    g = rng.integers(0, 256, (32, 32), dtype=np.uint8)
    a = rng.integers(0, 256, (32, 32), dtype=np.uint8)
    path = save(Image.fromarray(np.dstack([g, a]), "LA"), tmp_path / "la.png")
    assert Image.open(path).mode == "LA"
    expected = _composite(np.repeat(g[:, :, None], 3, axis=2), a)
    np.testing.assert_array_equal(pp.load_image(path), expected)


def test_mode_CMYK(tmp_path):
    rng = np.random.default_rng(10)
    cmyk = Image.fromarray(rng.integers(0, 256, (32, 32, 4), dtype=np.uint8), "CMYK")
    path = save(cmyk, tmp_path / "print.tif")
    assert Image.open(path).mode == "CMYK"
    np.testing.assert_array_equal(pp.load_image(path), np.asarray(cmyk.convert("RGB")))
    white = pp.load_image(Image.new("CMYK", (32, 32), (0, 0, 0, 0)))
    black = pp.load_image(Image.new("CMYK", (32, 32), (0, 0, 0, 255)))
    assert (white == 255).all() and (black == 0).all()


def test_animated_gif_gives_its_first_frame(tmp_path):
    frames = [Image.new("RGB", (32, 32), c) for c in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    path = save(frames[0], tmp_path / "anim.gif", save_all=True, append_images=frames[1:],
                duration=100, loop=0)
    with Image.open(path) as im:
        assert im.n_frames == 3
    out = pp.load_image(path)
    assert (out == (255, 0, 0)).all()


def test_exif_orientation_is_applied(tmp_path):
    a = np.zeros((32, 32, 3), np.uint8)
    a[:16] = (255, 0, 0)   # top red
    a[16:] = (0, 0, 255)   # bottom blue
    img = Image.fromarray(a)
    exif = img.getexif()
    exif[0x0112] = 3       # rotate 180
    path = save(img, tmp_path / "rot.png", exif=exif.tobytes())
    out = pp.load_image(path)
    assert (out[:16] == (0, 0, 255)).all() and (out[16:] == (255, 0, 0)).all()


def test_batches_and_lists():
    batch = np.stack([rgb(32, 32, s) for s in range(3)])
    names, imgs = pp.load_images(batch)
    assert names == ["array #0", "array #1", "array #2"]
    np.testing.assert_array_equal(imgs, batch)
    big = np.stack([rgb(40, 50, s) for s in range(2)])
    names, imgs = pp.load_images(big)
    assert imgs.shape == (2, 32, 32, 3)
    np.testing.assert_array_equal(imgs[1], pp.load_image(big[1]))
    names, imgs = pp.load_images([batch[0], Image.fromarray(batch[1]), batch[1:]])
    assert names == ["array #0", "image #1", "array #2[0]", "array #2[1]"]
    np.testing.assert_array_equal(imgs, batch[[0, 1, 1, 2]])
    names, imgs = pp.load_images([])
    assert names == [] and imgs.shape == (0, 32, 32, 3)


def test_load_items_keeps_going_past_bad_items(tmp_path):
    good = save(Image.fromarray(rgb(32, 32)), tmp_path / "good.png")
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    items = pp.load_items([good, str(bad), np.zeros((32, 32), np.uint8), rgb(32, 32), 42, [1]])
    assert [it.ok for it in items] == [True, False, False, True, False, False]
    assert str(bad) in str(items[1].error)
    assert str(items[2].error).startswith("array #2:")
    assert str(items[4].error).startswith("item #4:") and "int" in str(items[4].error)
    assert str(items[5].error).startswith("item #5:")
    with raises_named(bad, "not an image"):
        pp.load_images([good, str(bad)])


def test_samples_are_the_first_test_image_of_each_class():
    files = sorted(f for f in os.listdir(SAMPLES) if f.endswith(".png"))
    assert files == sorted(c + ".png" for c in CLASSES)
    imgs = {c: pp.load_image(os.path.join(SAMPLES, c + ".png")) for c in CLASSES}
    path = os.path.join(CIFAR_DIR, "test.npz")
    if not os.path.exists(path):
        pytest.skip("CIFAR-10 test set not available")
    with np.load(path) as d:
        x, y = d["x"], d["y"]
    for label, c in enumerate(CLASSES):
        np.testing.assert_array_equal(imgs[c], x[np.flatnonzero(y == label)[0]])


# ----------------------------------------------------------------------------- bad files

def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with raises_named(path, "empty file"):
        pp.load_image(str(path))


@pytest.mark.parametrize("fmt,ext", [("PNG", "png"), ("JPEG", "jpg")])
@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_truncated_file(tmp_path, fmt, ext, keep):
    full = tmp_path / f"full.{ext}"
    Image.fromarray(rgb(64, 64, 11)).save(str(full), format=fmt)
    data = full.read_bytes()
    path = tmp_path / f"cut.{ext}"
    path.write_bytes(data[:int(len(data) * keep)])
    with raises_named(path, "truncated|corrupt"):
        pp.load_image(str(path))


def test_garbage_after_a_valid_header(tmp_path):
    full = tmp_path / "full.png"
    Image.fromarray(rgb(64, 64, 12)).save(str(full))
    data = bytearray(full.read_bytes())
    data[60:] = bytes(len(data) - 60)  # zeros over the compressed data and CRCs
    path = tmp_path / "corrupt.png"
    path.write_bytes(bytes(data))
    with raises_named(path, "corrupt"):
        pp.load_image(str(path))


def test_text_file_named_png(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("this is not a picture\n")
    with raises_named(path, "not an image"):
        pp.load_image(str(path))


def test_directory(tmp_path):
    with raises_named(tmp_path, "directory"):
        pp.load_image(str(tmp_path))


def test_missing_path(tmp_path):
    path = tmp_path / "nope.png"
    with raises_named(path, "no such file"):
        pp.load_image(str(path))


@pytest.mark.parametrize("side", [12, 40])  # 144 px: Pillow warns; 1600 px (> 2x): Pillow raises
def test_decompression_bomb(tmp_path, monkeypatch, side):
    path = save(Image.fromarray(rgb(side, side)), tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with raises_named(path, "bomb"):
        pp.load_image(path)
    with raises_named("image #0", "bomb"):
        pp.load_image(Image.fromarray(rgb(side, side)))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    assert pp.load_image(path).shape == (32, 32, 3)


def test_decompression_bomb_warning_filter_is_not_leaked(tmp_path, monkeypatch):
    import warnings
    path = save(Image.fromarray(rgb(12, 12)), tmp_path / "b.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(ImageError):
        pp.load_image(path)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        Image.open(path).close()  # outside our loader: still only a warning
    assert any(issubclass(x.category, Image.DecompressionBombWarning) for x in w)


# ----------------------------------------------------------------------------- bad arrays

@pytest.mark.parametrize("shape", [(32, 32), (32, 32, 4), (32, 32, 1), (3, 32, 32), (2, 32, 32),
                                   (1, 2, 32, 32, 3), (32,), ()])
def test_array_wrong_shape(shape):
    with raises_named("array #0", "shape"):
        pp.load_image(np.zeros(shape, np.uint8))


@pytest.mark.parametrize("shape", [(0, 32, 3), (32, 0, 3), (0, 32, 32, 3)])
def test_array_without_pixels(shape):
    with pytest.raises(ImageError, match="no pixels"):
        pp.load_images(np.zeros(shape, np.uint8))


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.int8, np.uint16, bool,
                                   object])
def test_array_wrong_dtype(dtype):
    with raises_named("array #0", "dtype|object"):
        pp.load_image(np.zeros((32, 32, 3), dtype))
    with raises_named("array batch", "dtype|object"):
        pp.load_images(np.zeros((2, 32, 32, 3), dtype))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_array_nan_inf(bad):
    a = np.zeros((32, 32, 3), np.float32)
    a[3, 4, 1] = bad
    with raises_named("array #0", "NaN or infinite"):
        pp.load_image(a)
    with raises_named("array #1", "NaN or infinite"):
        pp.load_images([np.zeros((32, 32, 3), np.uint8), a])


def test_array_names_follow_list_positions():
    with raises_named("array #2", "dtype"):
        pp.load_images([rgb(32, 32), rgb(32, 32), np.zeros((32, 32, 3), np.float32)])
    items = pp.load_items(np.zeros((3, 32, 32, 3), np.float32))
    assert [it.name for it in items] == ["array #0", "array #1", "array #2"]
    assert all(not it.ok for it in items)


def test_unsupported_types():
    with raises_named("item #0", "unsupported input type"):
        pp.load_image(3.5)
    with raises_named("item #0", "unsupported input type"):
        pp.load_image(None)


def test_batch_given_to_load_image():
    with raises_named("array #0", "batch"):
        pp.load_image(np.zeros((2, 32, 32, 3), np.uint8))
