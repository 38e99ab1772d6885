"""pynq_bnn.camera: frame sources, frame preprocessing and the live loop (no OpenCV needed)."""
import os
import signal
import struct
import sys
import threading
import time
import types
import zlib

import numpy as np
import pytest
from PIL import Image

from helpers import SMALL_32 as SMALL
from pynq_bnn import camera
from pynq_bnn.camera import (
    ArraySource,
    FrameSource,
    ImageFolderSource,
    OpenCVCamera,
    SyntheticSource,
    VideoFileSource,
    open_source,
    preprocess_frame,
    run_live,
    source_from_env,
    start_live,
)
from pynq_bnn.errors import BnnError, CameraError, ImageError
from pynq_bnn.host.classifier import Classifier
from pynq_bnn.host.preprocess import load_image
from pynq_bnn.testing import random_params

CLIP = os.path.join(os.path.dirname(__file__), "data", "camera_clip")


@pytest.fixture(scope="module")
def params():
    return random_params(SMALL, seed=3)


@pytest.fixture
def clf(params):
    with Classifier(params, "cpu") as c:
        yield c


def live_threads():
    return [t for t in threading.enumerate() if t.name.startswith("pynq-bnn-live")]


# ----------------------------------------------------------------------------- sources

def test_folder_source_reads_sorted_rgb_frames_then_ends():
    names = sorted(f for f in os.listdir(CLIP) if f.endswith(".png"))
    assert len(names) >= 4
    with ImageFolderSource(CLIP) as src:
        frames = list(src)
        assert src.read() is None
        assert src.frames_read == len(names)
    assert src.closed
    assert len(frames) == len(names)
    for f, name in zip(frames, names):
        assert f.dtype == np.uint8 and f.shape == (120, 160, 3)
        assert np.array_equal(f, np.asarray(Image.open(os.path.join(CLIP, name)).convert("RGB")))


def test_folder_source_loops_and_refuses_reads_when_closed():
    src = ImageFolderSource(CLIP, loop=True)
    n = len(src.files)
    frames = [src.read() for _ in range(n + 2)]
    assert np.array_equal(frames[0], frames[n]) and np.array_equal(frames[1], frames[n + 1])
    src.close()
    src.close()  # idempotent
    with pytest.raises(CameraError, match="closed"):
        src.read()


def test_folder_source_errors_name_the_folder_or_file(tmp_path):
    with pytest.raises(CameraError, match="no such folder"):
        ImageFolderSource(tmp_path / "missing")
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(CameraError, match="no image files") as e:
        ImageFolderSource(tmp_path)
    assert str(tmp_path) in str(e.value)
    Image.new("RGBA", (8, 6), (255, 0, 0, 0)).save(tmp_path / "a.png")
    (tmp_path / "b.png").write_bytes(b"\x89PNG broken")
    with ImageFolderSource(tmp_path) as src:
        first = src.read()
        assert first.shape == (6, 8, 3) and (first == 255).all()  # alpha composited on white
        with pytest.raises(CameraError, match="b.png"):
            src.read()


def _png_header_only(width, height) -> bytes:
    """A ~100-byte PNG that declares ``width x height`` RGB pixels (its data is 64 bytes)."""
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2,
                                                                   0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("side", [11000, 17000])  # Pillow: a warning (< 2x limit), an error
def test_folder_source_applies_the_package_pixel_limit(tmp_path, side):
    """11000^2 would decode 363 MB (1.3 GB at 16 bit); both are refused from the header."""
    (tmp_path / "big.png").write_bytes(_png_header_only(side, side))
    with ImageFolderSource(tmp_path) as src:
        with pytest.raises(CameraError, match=r"big\.png: .*(exceeds the limit|bomb)") as e:
            src.read()
    assert "truncated" not in str(e.value)       # refused before any decoding was tried


def test_folder_source_refuses_non_raster_formats_without_running_anything(tmp_path,
                                                                           monkeypatch):
    import subprocess
    started = []
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: started.append(a) or 1 / 0)
    (tmp_path / "a.png").write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n"
                                     b"0 0 moveto 8 8 lineto stroke showpage\n")
    with ImageFolderSource(tmp_path) as src:
        with pytest.raises(CameraError, match="a.png: not an image file of an accepted format"):
            src.read()
    assert started == []


class BlockingSource(FrameSource):
    """One frame, then a read that blocks until ``unblock`` is set (or, with
    ``release_interrupts_read``, until the source is released, like a socket being closed)."""

    name = "blocking test source"

    def __init__(self, interrupts: bool):
        super().__init__()
        self.release_interrupts_read = interrupts
        self.unblock = threading.Event()
        self.blocked = threading.Event()
        self.released = threading.Event()
        self.release_calls = 0
        self.release_thread = None
        self.in_read = False

    def _read(self):
        if self.frames_read == 0:
            return np.full((40, 48, 3), 100, np.uint8)
        self.in_read = True
        try:
            self.blocked.set()
            self.unblock.wait(30)        # a safety bound: the tests never get near it
        finally:
            self.in_read = False
        return None if self.release_calls else np.zeros((40, 48, 3), np.uint8)

    def _release(self):
        self.release_calls += 1
        self.release_thread = threading.current_thread()
        self.released.set()
        if self.release_interrupts_read:
            self.unblock.set()


def _read_in_thread(src):
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("frame", src.read()), daemon=True)
    t.start()
    assert src.blocked.wait(5)
    return t, out


def test_close_releases_at_its_deadline_a_source_whose_release_unblocks_the_read():
    src = BlockingSource(interrupts=True)
    src.read()
    t, out = _read_in_thread(src)
    t0 = time.monotonic()
    assert src.close(timeout=0.3) is True
    assert 0.25 <= time.monotonic() - t0 < 3
    assert src.released.is_set() and src.release_calls == 1
    t.join(5)
    assert not t.is_alive() and out["frame"] is None
    with pytest.raises(CameraError, match="closed"):
        src.read()
    assert src.close() is True and src.release_calls == 1


def test_close_never_waits_past_its_deadline_and_the_blocked_reader_releases():
    src = BlockingSource(interrupts=False)
    src.read()
    t, out = _read_in_thread(src)
    t0 = time.monotonic()
    assert src.close(timeout=0.3) is False       # unsafe to release under this read
    assert time.monotonic() - t0 < 3 and src.closed and not src.released.is_set()
    src.unblock.set()                            # the read returns (OpenCV: its own timeout)
    assert src.released.wait(5) and src.release_thread is t
    t.join(5)
    assert src.release_calls == 1 and out["frame"] is not None
    with pytest.raises(CameraError, match="closed"):
        src.read()


def test_close_waits_for_a_read_that_returns_in_time_and_releases_once():
    src = BlockingSource(interrupts=False)
    src.read()
    t, _ = _read_in_thread(src)
    threading.Timer(0.2, src.unblock.set).start()
    closers = [threading.Thread(target=src.close, kwargs={"timeout": 5}) for _ in range(4)]
    for c in closers:
        c.start()
    for c in closers:
        c.join(10)
    t.join(5)
    assert src.release_calls == 1 and src.release_thread is not t


@pytest.mark.parametrize("interrupts", [True, False])
def test_live_run_stop_lets_go_of_a_blocked_source(clf, interrupts):
    src = BlockingSource(interrupts)
    live = start_live(clf, src)
    assert src.blocked.wait(30)                  # frame 0 classified, the loop is in a read
    t0 = time.monotonic()
    live.stop()
    assert time.monotonic() - t0 < 1             # stop() returns at once
    if interrupts:
        assert src.released.is_set()
    else:
        assert live.join(0.5) is None and not src.released.is_set()
        src.unblock.set()                        # the read returns: the device is let go
    stats = live.join(10)
    assert stats.stopped_by == "stop" and stats.frames == 1
    assert src.released.is_set() and src.release_calls == 1
    assert not live_threads()


def test_ctrl_c_in_a_blocked_read_releases_the_source(clf):
    src = BlockingSource(interrupts=False)
    main = threading.main_thread().ident

    def interrupt():
        # a signal that lands just before the wait starts is lost (as a real Ctrl-C can be):
        # press again while the read is still blocked
        src.blocked.wait(30)
        while src.in_read:
            signal.pthread_kill(main, signal.SIGINT)
            time.sleep(0.5)

    threading.Thread(target=interrupt, daemon=True).start()
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        run_live(clf, src)
    assert time.monotonic() - t0 < 20
    assert src.released.is_set() and src.release_calls == 1 and src.closed
    assert not live_threads()


def test_synthetic_source_is_deterministic_and_finite():
    a = list(SyntheticSource(5, width=64, height=48, seed=2))
    b = list(SyntheticSource(5, width=64, height=48, seed=2))
    assert len(a) == 5
    assert all(x.shape == (48, 64, 3) and x.dtype == np.uint8 for x in a)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], a[1])  # the square moves
    endless = SyntheticSource()
    assert all(endless.read() is not None for _ in range(50))
    endless.close()
    with pytest.raises(ValueError):
        SyntheticSource(-1)


def test_array_source_converts_bgr_and_checks_frames():
    rgb = np.zeros((4, 6, 3), np.uint8)
    rgb[..., 0] = 200  # red
    with ArraySource([rgb[:, :, ::-1].copy()], order="BGR") as src:
        assert np.array_equal(src.read(), rgb)
        assert src.read() is None
    with ArraySource(iter([np.zeros((4, 4), np.float32)])) as src:
        with pytest.raises(CameraError, match="not a uint8"):
            src.read()
    looped = ArraySource(np.stack([rgb, rgb + 1]), loop=True)
    assert [int(looped.read()[0, 0, 1]) for _ in range(4)] == [0, 1, 0, 1]


def test_open_source_specs(monkeypatch, tmp_path):
    with open_source(f"folder:{CLIP}") as src:
        assert isinstance(src, ImageFolderSource)
    with open_source(CLIP) as src:  # a bare folder path
        assert isinstance(src, ImageFolderSource)
    with open_source("synthetic:3") as src:
        assert isinstance(src, SyntheticSource) and len(list(src)) == 3
    for bad in ("", "synthetic:x", "nonsense-that-does-not-exist"):
        with pytest.raises(ValueError):
            open_source(bad)
    with pytest.raises(CameraError, match="no such file"):
        open_source(f"video:{tmp_path / 'none.mp4'}")
    monkeypatch.setenv(camera.CAMERA_ENV, f"folder:{CLIP}")
    with source_from_env() as src:
        assert isinstance(src, ImageFolderSource) and not src.loop
    monkeypatch.setenv(camera.CAMERA_ENV, "")
    with source_from_env("synthetic:1") as src:
        assert isinstance(src, SyntheticSource)


# ----------------------------------------------------------------------------- OpenCV, faked

class FakeCapture:
    """cv2.VideoCapture stand-in: ``opened`` decides isOpened(); frames are BGR."""

    instances = []

    def __init__(self, device, opened=True, frames=None):
        self.device, self.opened, self.released = device, opened, False
        self.frames = list(frames or [])
        self.props = {}
        FakeCapture.instances.append(self)

    def isOpened(self):
        return self.opened

    def set(self, prop, value):
        self.props[prop] = value
        return True

    def read(self):
        if not self.frames:
            return False, None
        return True, self.frames.pop(0)

    def release(self):
        self.released = True


def fake_cv2(opened=True, frames=None):
    FakeCapture.instances = []
    return types.SimpleNamespace(
        VideoCapture=lambda device: FakeCapture(device, opened, frames),
        CAP_PROP_FRAME_WIDTH=3, CAP_PROP_FRAME_HEIGHT=4, CAP_PROP_POS_FRAMES=1)


def test_bgr_to_rgb_with_and_without_opencv():
    from pynq_bnn.camera.sources import _bgr_to_rgb
    rng = np.random.default_rng(4)
    bgr = rng.integers(0, 256, (6, 5, 3), np.uint8)
    bgra = rng.integers(0, 256, (6, 5, 4), np.uint8)
    grey = rng.integers(0, 256, (6, 5), np.uint8)
    expected = {3: bgr[:, :, ::-1], 4: bgra[:, :, 2::-1], 1: np.repeat(grey[:, :, None], 3, 2)}
    calls = []

    def cvt(a, code):
        calls.append(code)
        return a[:, :, 2::-1].copy() if a.ndim == 3 else np.repeat(a[:, :, None], 3, 2)

    cv2 = types.SimpleNamespace(cvtColor=cvt, COLOR_BGR2RGB="bgr", COLOR_BGRA2RGB="bgra",
                                COLOR_GRAY2RGB="grey")
    for key, frame in ((3, bgr), (4, bgra), (1, grey)):
        for module in (None, cv2):
            out = _bgr_to_rgb(frame, "f", module)
            assert out.flags.c_contiguous and out.shape == (6, 5, 3)
            np.testing.assert_array_equal(out, expected[key])
    assert calls == ["bgr", "bgra", "grey"]
    with pytest.raises(CameraError, match="dtype"):
        _bgr_to_rgb(np.zeros((2, 2, 3), np.uint16), "f")


def test_no_opencv_gives_a_clear_camera_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)  # "import cv2" raises ImportError
    assert not camera.cv2_available()
    with pytest.raises(CameraError, match="OpenCV") as e:
        OpenCVCamera(0)
    assert isinstance(e.value, BnnError)
    with pytest.raises(CameraError, match="OpenCV"):
        open_source("usb:0")


def test_no_camera_attached_names_the_device(monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", fake_cv2(opened=False))
    with pytest.raises(CameraError, match="camera 0") as e:
        OpenCVCamera(0)
    if sys.platform.startswith("linux"):
        assert "/dev/video0" in str(e.value)
    assert "no camera attached" in str(e.value)
    assert FakeCapture.instances[-1].released
    with pytest.raises(CameraError, match="camera 2"):
        open_source("usb:2")


def test_opencv_camera_reads_rgb_at_640x480_and_releases(monkeypatch):
    bgr = np.zeros((480, 640, 3), np.uint8)
    bgr[..., 0] = 255  # blue in BGR
    monkeypatch.setitem(sys.modules, "cv2", fake_cv2(frames=[bgr, bgr]))
    with open_source("usb:0") as cam:
        cap = FakeCapture.instances[-1]
        assert cap.props == {3: 640, 4: 480}
        frame = cam.read()
        assert frame.shape == (480, 640, 3) and (frame[..., 2] == 255).all() \
            and (frame[..., :2] == 0).all()
        cam.read()
        with pytest.raises(CameraError, match="no frame"):
            cam.read()  # the camera stopped delivering
    assert cap.released


def test_video_file_source_ends_or_loops(monkeypatch, tmp_path):
    video = tmp_path / "clip.avi"
    video.write_bytes(b"fake")
    frame = np.full((10, 12, 3), 7, np.uint8)
    monkeypatch.setitem(sys.modules, "cv2", fake_cv2(frames=[frame]))
    with VideoFileSource(video) as src:
        assert src.read().shape == (10, 12, 3)
        assert src.read() is None
    assert FakeCapture.instances[-1].released
    monkeypatch.setitem(sys.modules, "cv2", fake_cv2(opened=False))
    with pytest.raises(CameraError, match="cannot open"):
        VideoFileSource(video)


# ----------------------------------------------------------------------------- preprocessing

def test_preprocess_frame_bgr_centre_crop_and_resize():
    frame_rgb = np.zeros((120, 160, 3), np.uint8)
    frame_rgb[:, 20:140] = (200, 30, 10)        # the centre 120 x 120 square
    frame_rgb[:, :20] = frame_rgb[:, 140:] = (0, 255, 0)
    out = preprocess_frame(frame_rgb, 32)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    # the border is cropped away (Lanczos lets it bleed into the outermost output columns only)
    assert (np.abs(out[:, 2:-2].astype(int) - (200, 30, 10)) <= 1).all()
    bgr = np.ascontiguousarray(frame_rgb[:, :, ::-1])
    assert np.array_equal(preprocess_frame(bgr, 32, order="BGR"), out)
    # the same resampling as image files (preprocess.load_image); away from the crop's edges it
    # is the resized centre square
    real = np.asarray(Image.open(sorted(os.path.join(CLIP, f) for f in os.listdir(CLIP)
                                        if f.endswith(".png"))[0]).convert("RGB"))
    assert np.array_equal(preprocess_frame(real), load_image(real, 32))
    centre = load_image(real[:, 20:140].copy(), 32).astype(int)
    assert np.abs(preprocess_frame(real)[:, 2:-2].astype(int) - centre[:, 2:-2]).max() <= 3
    grey = preprocess_frame(np.full((40, 30), 9, np.uint8), 32)
    assert (grey == 9).all()
    with pytest.raises(ImageError):
        preprocess_frame(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError):
        preprocess_frame(frame_rgb, order="GBR")


# ----------------------------------------------------------------------------- live loop

@pytest.mark.parametrize("overlap", [False, True])
def test_run_live_matches_the_classifier(clf, overlap):
    frames = list(SyntheticSource(7, 96, 72, seed=1))
    expected = clf.classify(np.stack([preprocess_frame(f) for f in frames]))
    seen = []
    src = ArraySource(frames)
    stats = run_live(clf, src, max_frames=5, on_result=seen.append, overlap=overlap)
    assert src.closed
    assert stats.frames == 5 and stats.stopped_by == "max_frames" and stats.overlap == overlap
    assert stats.class_indices == expected.indices[:5].tolist()
    assert [r.index for r in seen] == list(range(5))
    for r, i in zip(seen, range(5)):
        assert np.array_equal(r.int_scores, expected.scores[i])
        assert np.allclose(r.scores, expected.affine_scores[i])
        assert r.class_name == expected.names[i]
        assert np.array_equal(r.frame, frames[i]) and r.image.shape == (32, 32, 3)
        assert set(camera.LIVE_STAGES) <= set(r.timings) and r.timings["latency"] > 0
        assert r.fps > 0
        top = r.top(3)
        assert len(top) == 3 and top[0][0] == r.class_name
        assert abs(r.probabilities().sum() - 1) < 1e-9
    assert stats.fps > 0 and set(stats.mean_ms()) == set(camera.LIVE_STAGES)
    assert "5 frames" in stats.summary()
    assert not live_threads()


def test_run_live_overlap_on_and_off_agree_on_the_clip(clf):
    runs = [run_live(clf, ImageFolderSource(CLIP), overlap=o) for o in (False, True)]
    assert runs[0].class_indices == runs[1].class_indices
    assert runs[0].frames == len([f for f in os.listdir(CLIP) if f.endswith(".png")])
    assert runs[0].stopped_by == runs[1].stopped_by == "end of source"
    direct = clf.classify(np.stack([preprocess_frame(f) for f in ImageFolderSource(CLIP)]))
    assert runs[0].class_indices == direct.indices.tolist()


def test_run_live_on_the_mock_backend(params):
    with Classifier(params, "mock", kernel="reference") as c:
        frames = list(SyntheticSource(3, 64, 48))
        stats = run_live(c, ArraySource(frames), overlap=True)
        expected = c.classify(np.stack([preprocess_frame(f) for f in frames]))
        assert stats.class_indices == expected.indices.tolist()


def test_stop_controls(clf):
    src = SyntheticSource()  # endless
    assert run_live(clf, src, max_frames=0).frames == 0 and src.closed
    stop = threading.Event()
    stop.set()
    assert run_live(clf, SyntheticSource(), stop=stop).stopped_by == "stop"
    calls = []
    stats = run_live(clf, SyntheticSource(), on_result=lambda r: calls.append(r) or len(calls) < 3)
    assert stats.frames == 3 and stats.stopped_by == "on_result"
    stop = threading.Event()
    seen = []
    stats = run_live(clf, SyntheticSource(), on_result=lambda r: seen.append(r) or stop.set(),
                     stop=stop)
    assert stats.frames == len(seen) == 1 and stats.stopped_by == "stop"
    with pytest.raises(ValueError):
        run_live(clf, SyntheticSource(1), max_frames=-1)


def test_start_live_runs_in_the_background_and_stops(clf):
    got = threading.Event()
    live = start_live(clf, SyntheticSource(), on_result=lambda r: got.set())
    assert got.wait(30)
    live.stop()
    stats = live.join(30)
    assert stats is not None and stats.stopped_by == "stop" and stats.frames >= 1
    assert not live.running
    with pytest.raises(TypeError):
        start_live(clf, SyntheticSource(1), stop=threading.Event())


class FailingSource(FrameSource):
    """Frames until ``fail_at``, then ``read`` raises ``exc``; records close()."""

    name = "failing test source"

    def __init__(self, fail_at, exc):
        super().__init__()
        self.fail_at, self.exc, self.released = fail_at, exc, 0
        self._inner = SyntheticSource(None, 48, 40)

    def _read(self):
        if self.frames_read >= self.fail_at:
            raise self.exc
        return self._inner.read()

    def _release(self):
        self.released += 1


@pytest.mark.parametrize("overlap", [False, True])
@pytest.mark.parametrize("exc", [CameraError("camera unplugged"), KeyboardInterrupt()],
                         ids=["error", "keyboard-interrupt"])
def test_source_released_when_read_raises(clf, overlap, exc):
    src = FailingSource(3, exc)
    seen = []
    with pytest.raises(type(exc)):
        run_live(clf, src, on_result=seen.append, overlap=overlap)
    assert src.closed and src.released == 1
    assert len(seen) == 3
    assert not live_threads()


@pytest.mark.parametrize("overlap", [False, True])
def test_source_released_when_the_callback_or_backend_fails(clf, params, overlap):
    src = SyntheticSource()

    def boom(r):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_live(clf, src, on_result=boom, overlap=overlap)
    assert src.closed
    broken = Classifier(params, "no-such-backend")
    src = SyntheticSource()
    with pytest.raises(BnnError):
        run_live(broken, src, overlap=overlap)
    assert src.closed
    assert not live_threads()


def test_live_run_join_reraises(clf):
    src = FailingSource(1, CameraError("gone"))
    live = start_live(clf, src)
    with pytest.raises(CameraError, match="gone"):
        live.join(30)
    assert src.closed


def test_the_shipped_model_recognises_the_clip():
    from pynq_bnn.host.classifier import default_model_path

    if not os.path.exists(default_model_path()):
        pytest.skip("the trained model is not there yet")
    with Classifier(None, "cpu") as c:
        stats = run_live(c, ImageFolderSource(CLIP))
        names = [os.path.splitext(f)[0].split("_", 2)[2]
                 for f in sorted(os.listdir(CLIP)) if f.endswith(".png")]
        got = [c.class_names[k] for k in stats.class_indices]
    # CIFAR-10 test images the model did not train on: most, not necessarily all, are right
    assert sum(g == n for g, n in zip(got, names)) >= len(names) - 2, list(zip(names, got))
