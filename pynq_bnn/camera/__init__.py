"""Live classification from a camera, a video file or an image folder.

::

    from pynq_bnn import Classifier, camera

    with Classifier() as clf:
        source = camera.open_source("usb:0")          # or "folder:PATH", "video:PATH", ...
        stats = camera.run_live(clf, source, max_frames=100,
                                on_result=lambda r: print(r.class_name, f"{r.fps:.1f} fps"))
        print(stats.fps, stats.mean_ms())

:mod:`.sources` has the frame sources (every one returns RGB ``uint8 H x W x 3``),
:mod:`.live` the live loop (:func:`run_live`, :func:`start_live`).
"""
from .live import LIVE_STAGES, LiveResult, LiveRun, LiveStats, run_live, start_live
from .sources import (
    CAMERA_ENV,
    CLOSE_TIMEOUT,
    IMAGE_EXTENSIONS,
    ArraySource,
    FrameSource,
    ImageFolderSource,
    OpenCVCamera,
    SyntheticSource,
    VideoFileSource,
    cv2_available,
    open_source,
    preprocess_frame,
    source_from_env,
)

__all__ = ["FrameSource", "OpenCVCamera", "VideoFileSource", "ImageFolderSource", "ArraySource",
           "SyntheticSource", "open_source", "source_from_env", "preprocess_frame", "run_live",
           "start_live", "LiveRun", "LiveResult", "LiveStats", "LIVE_STAGES", "CAMERA_ENV",
           "IMAGE_EXTENSIONS", "CLOSE_TIMEOUT", "cv2_available"]
