"""Bad and awkward images in a batch, through the Classifier and the CLI (issue #8).

tests/test_preprocess.py proves each case one image at a time. Here every case sits in one
batch between good images: each good one (including 1-bit, palette, 16-bit, grey, RGBA,
CMYK, animated, 1x1 and extreme-aspect files) still gets exactly the reference result for its
preprocessed pixels, and each bad one gets its own ImageError / one stderr line naming it,
with exit code 2. Also the cases the per-image tests lack: a real decompression bomb at the
default limit (no monkeypatching), a FIFO (must not block), a symlink loop, a device file.
"""
import json
import os
import re
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from pynq_bnn.errors import ImageError
from pynq_bnn.host import preprocess as pp
from pynq_bnn.host.classifier import Classifier
from pynq_bnn.spec import reference
from pynq_bnn.spec.network import Network
from pynq_bnn.spec.params import save_params
from pynq_bnn.testing import random_images, random_params
from pynq_bnn.tools.cli import main

NET = Network(conv_channels=(64, 64, 64), pool_after=(False, True, True), fc_units=(),
              n_classes=10, image_size=32)
PARAMS = random_params(NET, seed=41, images=random_images(3, 32, seed=42))
LINE = re.compile(r"^(?P<path>.+): (?P<label>\S+) (?P<score>-?\d+\.\d{4})$")


def _rgb(h, w, seed):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(width, height) -> bytes:
    """A 100-byte PNG that declares ``width x height`` RGB pixels (a decompression bomb)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat)
            + _png_chunk(b"IEND", b""))


def _save(img, path, **kw):
    img.save(str(path), **kw)
    return str(path)


def good_files(d):
    """Valid but awkward files: name -> path."""
    files = {}
    files["rgb"] = _save(Image.fromarray(_rgb(32, 32, 1)), d / "rgb.png")
    files["bilevel"] = _save(Image.fromarray(_rgb(40, 40, 2)[:, :, 0] > 127), d / "bilevel.png")
    pal = Image.fromarray(_rgb(30, 36, 3)).convert("P", palette=Image.ADAPTIVE, colors=16)
    pal.info["transparency"] = 0
    files["palette"] = _save(pal, d / "palette.png", transparency=0)
    sixteen = np.random.default_rng(4).integers(0, 65536, (33, 33), dtype=np.uint16)
    files["grey16"] = _save(Image.fromarray(sixteen), d / "grey16.png")
    files["grey"] = _save(Image.fromarray(_rgb(32, 48, 5)[:, :, 1]), d / "grey.png")
    rgba = np.dstack([_rgb(32, 32, 6), np.random.default_rng(7).integers(0, 256, (32, 32),
                                                                            dtype=np.uint8)])
    files["rgba"] = _save(Image.fromarray(rgba, "RGBA"), d / "rgba.png")
    cmyk = Image.fromarray(np.random.default_rng(8).integers(0, 256, (40, 40, 4), dtype=np.uint8),
                           "CMYK")
    files["cmyk"] = _save(cmyk, d / "cmyk.jpg", quality=95)
    frames = [Image.fromarray(_rgb(32, 32, s)) for s in (9, 10, 11)]
    files["gif"] = _save(frames[0].convert("P"), d / "anim.gif", save_all=True,
                         append_images=[f.convert("P") for f in frames[1:]], duration=50)
    files["apng"] = _save(frames[0], d / "anim.png", save_all=True, append_images=frames[1:],
                          duration=50)
    files["tiny"] = _save(Image.fromarray(_rgb(1, 1, 12)), d / "one_pixel.png")
    files["aspect"] = _save(Image.fromarray(_rgb(2, 3000, 13)), d / "wide.png")
    files["jpeg"] = _save(Image.fromarray(_rgb(300, 200, 14)), d / "photo.jpg", quality=90)
    return files


def bad_files(d):
    """Unusable inputs: name -> (path, regex the error must match after 'path: ')."""
    full_png = (d / "full.png")
    Image.fromarray(_rgb(64, 64, 20)).save(str(full_png))
    full_jpg = (d / "full.jpg")
    Image.fromarray(_rgb(64, 64, 21)).save(str(full_jpg), quality=90)
    bad = {}

    def write(name, data):
        (d / name).write_bytes(data)
        return str(d / name)
    bad["empty"] = (write("empty.png", b""), "empty file")
    bad["cut_png"] = (write("cut.png", full_png.read_bytes()[:300]), "truncated|corrupt")
    bad["cut_jpg"] = (write("cut.jpg", full_jpg.read_bytes()[:400]), "truncated|corrupt")
    bad["text"] = (write("notes.png", b"this is not a picture\n"), "not an image")
    (d / "folder.png").mkdir()
    bad["dir"] = (str(d / "folder.png"), "directory")
    bad["missing"] = (str(d / "missing.png"), "no such file")
    bad["bomb"] = (write("bomb.png", bomb_png(100_000, 100_000)), "bomb|exceeds the limit")
    bad["bomb_warn"] = (write("bomb2.png", bomb_png(10_000, 10_000)), "bomb|exceeds the limit")
    if hasattr(os, "mkfifo"):
        os.mkfifo(str(d / "pipe.png"))      # opening it for reading would block forever
        bad["fifo"] = (str(d / "pipe.png"), "not a regular file")
    os.symlink("loop.png", str(d / "loop.png"))
    bad["loop"] = (str(d / "loop.png"), "cannot access")
    if os.path.exists("/dev/zero"):
        bad["device"] = ("/dev/zero", "not a regular file")
    return bad


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("images")
    good, bad = good_files(d), bad_files(d)
    # the order of a user's list: good and bad interleaved
    order = []
    g, b = list(good), list(bad)
    while g or b:
        if g:
            order.append(("good", g.pop(0)))
        if b:
            order.append(("bad", b.pop(0)))
    paths = [good[k] if kind == "good" else bad[k][0] for kind, k in order]
    return good, bad, order, paths


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("model") / "m.npz")
    save_params(PARAMS, path)
    return path


def reference_of(paths):
    """int scores of each good path, from its preprocessed pixels (the documented pipeline)."""
    pixels = np.stack([pp.load_image(p, 32) for p in paths])
    return reference.scores(PARAMS, pixels)


def test_every_good_file_is_a_valid_image_and_every_bad_one_is_refused(corpus):
    """The corpus itself (else the batch tests below prove less than they claim)."""
    good, bad, _, _ = corpus
    for path in good.values():
        assert pp.load_image(path, 32).shape == (32, 32, 3)
    for path, problem in bad.values():
        with pytest.raises(ImageError, match=re.escape(path) + ": .*(" + problem + ")"):
            pp.load_image(path, 32)


@pytest.mark.parametrize("backend", ["mock", "cpu"])
def test_classifier_batch_keeps_the_good_ones_exact(corpus, backend):
    good, bad, order, paths = corpus
    arrays = [_rgb(32, 32, 30), np.zeros((32, 32), np.uint8), _rgb(20, 20, 31).astype(np.int16),
              np.full((32, 32, 3), np.nan, np.float32), np.full((32, 32, 3), np.inf, np.float64),
              _rgb(48, 40, 32)]
    array_ok = [True, False, False, False, False, True]
    items = paths + arrays
    with Classifier(PARAMS, backend=backend, kernel="reference") as c:
        r = c.classify_many(items)
        assert len(r) == len(items) and r.sources[:len(paths)] == paths
        good_rows = [i for i, (kind, _) in enumerate(order) if kind == "good"]
        good_rows += [len(paths) + j for j, ok in enumerate(array_ok) if ok]
        assert list(np.flatnonzero(r.ok)) == good_rows
        expected = reference_of([items[i] for i in good_rows])
        np.testing.assert_array_equal(r.scores[good_rows], expected)
        np.testing.assert_array_equal(r.indices[good_rows], reference.predict(PARAMS, expected))
        # each good one equals classifying it alone: no cross-talk from its neighbours
        for row in good_rows[:3]:
            np.testing.assert_array_equal(c.classify(items[row]).scores[0], r.scores[row])
        for i, (kind, key) in enumerate(order):
            if kind == "bad":
                path, problem = bad[key]
                err = r.errors[i]
                assert isinstance(err, ImageError) and r.indices[i] == -1
                assert re.match(re.escape(path) + ": .*(" + problem + ")", str(err)), str(err)
        for j, ok in enumerate(array_ok):
            err = r.errors[len(paths) + j]
            assert (err is None) == ok
            if not ok:
                assert str(err).startswith(f"array #{len(paths) + j}:")
        # classify() (not _many) stops at the first bad item and names it
        first_bad = bad[order[1][1]][0]
        with pytest.raises(ImageError, match=re.escape(first_bad)):
            c.classify(items)


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_classifies_the_good_ones_and_names_each_bad_one(corpus, model, capsys):
    good, bad, order, paths = corpus
    code, out, err = _run(capsys, "classify", "--backend", "mock", "--model", model, *paths)
    assert code == 2
    good_paths = [good[k] for kind, k in order if kind == "good"]
    expected = reference_of(good_paths)
    labels = reference.predict(PARAMS, expected)
    affine = reference.affine_scores(PARAMS, expected)
    lines = out.splitlines()
    assert [LINE.match(x)["path"] for x in lines] == good_paths
    for line, k, a in zip(lines, labels, affine):
        m = LINE.match(line)
        assert m["label"] == PARAMS.class_names[k]
        assert float(m["score"]) == pytest.approx(a[k], abs=1e-4)
    assert "Traceback" not in err
    errs = err.splitlines()
    bad_in_order = [bad[k] for kind, k in order if kind == "bad"]
    assert len(errs) == len(bad_in_order), err
    for line, (path, problem) in zip(errs, bad_in_order):
        assert line.startswith(f"pynq-bnn: {path}: "), line
        assert re.search(problem, line), line


def test_cli_json_has_only_the_good_ones_with_reference_scores(corpus, model, capsys):
    good, bad, order, paths = corpus
    code, out, err = _run(capsys, "classify", "--backend", "cpu", "--model", model, "--json",
                          *paths)
    assert code == 2
    records = json.loads(out)["results"]
    assert [r["path"] for r in records] == paths          # every item, failed ones included
    good_paths = [good[k] for kind, k in order if kind == "good"]
    expected = reference_of(good_paths)
    assert [r["int_scores"] for r in records if r["ok"]] == expected.tolist()
    assert all(p in r["error"] for r, p in zip(records, paths) if not r["ok"])
    assert len(err.splitlines()) == len(bad)


def test_cli_all_bad_is_exit_2_with_nothing_on_stdout(corpus, model, capsys):
    _, bad, _, _ = corpus
    paths = [p for p, _ in bad.values()]
    code, out, err = _run(capsys, "classify", "--backend", "cpu", "--model", model, *paths)
    assert code == 2 and out == ""
    assert len(err.splitlines()) == len(paths) and "Traceback" not in err
