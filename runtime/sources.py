"""Frame sources named by jetson-inference-style URIs, captured in a background thread.

    demo                      built-in moving face (skimage astronaut) with known motion
    0, /dev/video0, v4l2:///dev/video0     USB/V4L2 camera (`--camera 0`)
    csi://0                   Jetson CSI camera through GStreamer nvarguscamerasrc
    rtsp://host/path          network stream (GStreamer when OpenCV has it, else FFmpeg)
    file.mp4 | file://...     video file;  folder/ | image.jpg   still images

Live sources (cameras, streams) keep only the newest frame, so a slow consumer never falls
behind, and are reopened with backoff when lost. Files, folders and the demo deliver every
frame in order. Reads time out: a dead source is an error message, never a hang.

Here: the OpenCV device (cameras, CSI, streams, video files), make_device and the capture
thread (FrameSource). The URI's parsing and the Frame/SourceSpec/SourceError types are in
shfan.runtime.source_spec, the still-image, demo and in-memory devices in
shfan.runtime.still_devices; every name is importable from here as before.
"""

from __future__ import annotations

import logging
import os
import queue
import sys
import threading
import time
from pathlib import Path

from shfan import io
from shfan.runtime.source_spec import Frame, SourceError, SourceSpec, parse_source
from shfan.runtime.still_devices import (DEMO_BACKGROUND, DEMO_FACE_CENTRE, DemoDevice, FramesDevice, ImageFolderDevice,
                                         astronaut, demo_motion, is_frames)

__all__ = ["APPSINK", "DEMO_BACKGROUND", "DEMO_FACE_CENTRE", "DemoDevice", "Frame", "FrameSource", "FramesDevice",
           "ImageFolderDevice", "OpenCVDevice", "SourceError", "SourceSpec", "astronaut", "demo_motion",
           "gstreamer_pipeline", "is_frames", "make_device", "open_source", "opencv_has_gstreamer", "parse_source"]

log = logging.getLogger("shfan.runtime")


APPSINK = "videoconvert ! video/x-raw,format=BGR ! appsink drop=true max-buffers=1 sync=false"


def gstreamer_pipeline(spec: SourceSpec, width: int = 1280, height: int = 720, fps: int = 30) -> str | None:
    """The GStreamer pipeline OpenCV opens for a live source (None: not a GStreamer source)."""
    if spec.kind == "csi":
        return (f"nvarguscamerasrc sensor-id={spec.index} ! "
                f"video/x-raw(memory:NVMM),width={width},height={height},framerate={fps}/1,format=NV12 ! "
                f"nvvidconv ! video/x-raw,format=BGRx ! {APPSINK}")
    if spec.kind == "camera":
        return f"v4l2src device={spec.location} ! video/x-raw,width={width},height={height} ! {APPSINK}"
    if spec.kind == "rtsp" and spec.location.startswith(("rtsp://", "rtsps://")):
        return f"rtspsrc location={spec.location} latency=100 ! decodebin ! {APPSINK}"
    return None


def opencv_has_gstreamer() -> bool:
    import cv2

    return bool(io.opencv_gstreamer(cv2.getBuildInformation()))


# ------------------------------------------------------------------------------ devices
# A device opens, reads one RGB frame at a time (None at the end) and closes; the capture
# thread below adds timeouts, reconnects and the newest-frame-only policy.


class OpenCVDevice:
    """cv2.VideoCapture for cameras, CSI, streams and video files."""

    def __init__(self, spec: SourceSpec, open_timeout_s: float = 10.0, read_timeout_s: float = 5.0):
        self.spec, self.live = spec, spec.live
        self.open_timeout_s, self.read_timeout_s = open_timeout_s, read_timeout_s
        self.cap = None
        self.frame_count = 0
        self.delivered = 0

    def open(self):
        # FFmpeg prints its own multi-line complaints about broken files; our error says it once.
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
        import cv2

        spec = self.spec
        ms = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(self.open_timeout_s * 1000),
              cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(self.read_timeout_s * 1000)]
        if spec.kind == "csi":
            if not opencv_has_gstreamer():
                raise SourceError(f"{spec.location} needs OpenCV built with GStreamer (this one is not: "
                                  "cv2.getBuildInformation() says GStreamer: NO); on Jetson use JetPack's "
                                  "python3-opencv in a venv with --system-site-packages")
            cap = cv2.VideoCapture(gstreamer_pipeline(spec), cv2.CAP_GSTREAMER)
        elif spec.kind == "camera":
            if sys.platform.startswith("linux") and not os.path.exists(spec.location):
                found = sorted(str(p) for p in Path("/dev").glob("video*"))
                raise SourceError(f"camera {spec.location} does not exist (found: {', '.join(found) or 'no cameras'}); "
                                  "pick another with --camera N")
            api = cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY
            cap = cv2.VideoCapture(spec.index, api, ms)
        elif spec.kind == "rtsp":
            if opencv_has_gstreamer() and gstreamer_pipeline(spec):
                cap = cv2.VideoCapture(gstreamer_pipeline(spec), cv2.CAP_GSTREAMER)
            else:
                cap = cv2.VideoCapture(spec.location, cv2.CAP_FFMPEG, ms)
        else:
            with io.library_path(spec.location) as name:  # opened before the alias goes
                cap = cv2.VideoCapture(name, cv2.CAP_ANY)
        if not cap.isOpened():
            cap.release()
            what = "video file (unsupported format, or truncated/corrupt)" if spec.kind == "file" else "source"
            raise SourceError(f"{spec.location}: cannot open this {what}")
        self.cap = cap
        self.frame_count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if spec.kind == "file" else 0

    def read(self):
        import cv2

        ok, bgr = self.cap.read()
        if not ok or bgr is None:
            if self.live:
                raise SourceError(f"{self.spec.location}: no frame (camera or stream lost)")
            # A file that stops well short of its declared length is truncated or corrupt.
            if self.frame_count > 1 and self.delivered < 0.95 * self.frame_count - 1:
                raise SourceError(f"{self.spec.location}: video ends at frame {self.delivered} of "
                                  f"{self.frame_count} (file truncated or corrupt)")
            if self.delivered == 0:
                raise SourceError(f"{self.spec.location}: no decodable frames (file truncated or corrupt)")
            return None
        self.delivered += 1
        ts = self.cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0 if not self.live else time.monotonic()
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), ts, None

    def close(self):
        if self.cap is not None:
            self.cap.release()
            self.cap = None


def make_device(spec: SourceSpec, open_timeout_s: float = 10.0, read_timeout_s: float = 5.0):
    if spec.kind == "demo":
        return DemoDevice()
    if spec.kind in ("folder", "image"):
        return ImageFolderDevice(spec)
    return OpenCVDevice(spec, open_timeout_s, read_timeout_s)


# ------------------------------------------------------------------------------ capture thread


class FrameSource:
    """Runs a device in a capture thread. Iterate it for Frames; `with` or close() stops it.

    Live devices: only the newest frame is kept (older ones are dropped and counted); a lost
    device is reopened with exponential backoff for up to `reconnect_s`. Other devices: every
    frame, in order, through a short queue. Waiting longer than `read_timeout_s` for a frame is
    a SourceError.
    """

    def __init__(self, source, open_timeout_s: float = 10.0, read_timeout_s: float = 10.0,
                 reconnect_s: float = 30.0, max_backoff_s: float = 4.0):
        if isinstance(source, SourceSpec):
            self.spec, self.device = source, make_device(source, open_timeout_s, min(read_timeout_s, 5.0))
        elif hasattr(source, "read") and hasattr(source, "open"):
            self.spec, self.device = SourceSpec("custom", getattr(source, "name", "custom")), source
        else:
            self.spec = parse_source(source)
            self.device = make_device(self.spec, open_timeout_s, min(read_timeout_s, 5.0))
        self.live = bool(getattr(self.device, "live", False))
        self.still = bool(getattr(self.device, "still", False))  # unrelated images: no tracking
        self.open_timeout_s, self.read_timeout_s = open_timeout_s, read_timeout_s
        self.reconnect_s, self.max_backoff_s = reconnect_s, max_backoff_s
        self.dropped = 0
        self.reconnects = 0
        self._cond = threading.Condition()
        self._latest: Frame | None = None
        self._queue: queue.Queue = queue.Queue(maxsize=4)
        self._error: str | None = None
        self._ended = False
        self._opened = False
        self._reconnecting = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def name(self) -> str:
        return self.spec.location

    # -- lifecycle
    def start(self) -> "FrameSource":
        if self._thread is not None:
            return self
        self._thread = threading.Thread(target=self._run, name=f"capture:{self.name}", daemon=True)
        self._thread.start()
        with self._cond:
            self._cond.wait_for(lambda: self._opened or self._error is not None, timeout=self.open_timeout_s + 1.0)
            if self._error is not None:
                raise SourceError(self._error)
            if not self._opened:
                self._stop.set()
                raise SourceError(f"{self.name}: timed out opening the source after {self.open_timeout_s:.0f} s")
        return self

    def close(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)  # a device stuck in a driver call is a daemon thread
        self._thread = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    # -- capture thread
    def _fail(self, message: str):
        with self._cond:
            self._error = message
            self._cond.notify_all()

    def _run(self):
        try:
            self.device.open()
        except SourceError as exc:
            return self._fail(str(exc))
        except Exception as exc:  # driver errors of any type
            return self._fail(f"{self.name}: cannot open ({type(exc).__name__}: {str(exc)[:120]})")
        with self._cond:
            self._opened = True
            self._cond.notify_all()
        index = 0
        try:
            while not self._stop.is_set():
                try:
                    got = self.device.read()
                except SourceError as exc:
                    if not self.live:
                        return self._fail(str(exc))
                    if not self._reopen(str(exc)):
                        return
                    continue
                if got is None:
                    with self._cond:
                        self._ended = True
                        self._cond.notify_all()
                    return
                image, ts, motion, *name = got  # still images also say which file they are
                frame = Frame(index, ts, image, motion, name[0] if name else None)
                index += 1
                if self.live:
                    with self._cond:
                        if self._latest is not None:
                            self.dropped += 1
                        self._latest = frame
                        self._cond.notify_all()
                else:
                    while not self._stop.is_set():
                        try:
                            self._queue.put(frame, timeout=0.1)
                            break
                        except queue.Full:
                            continue
                    with self._cond:
                        self._cond.notify_all()
        except Exception as exc:
            self._fail(f"{self.name}: capture failed ({type(exc).__name__}: {str(exc)[:120]})")
        finally:
            self.device.close()

    def _reopen(self, reason: str) -> bool:
        """Reconnect a lost live device with backoff; False when it stays lost (error recorded)."""
        start, delay = time.monotonic(), 0.25
        with self._cond:
            self._reconnecting = True
        try:
            while not self._stop.is_set():
                log.warning("%s; reopening in %.2g s", reason, delay)
                self.device.close()
                if self._stop.wait(delay):
                    return False
                try:
                    self.device.open()
                    self.reconnects += 1
                    log.warning("%s: reopened", self.name)
                    return True
                except Exception as exc:
                    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                if time.monotonic() - start > self.reconnect_s:
                    self._fail(f"{self.name}: lost and not back after {self.reconnect_s:.0f} s ({reason})")
                    return False
                delay = min(delay * 2, self.max_backoff_s)
            return False
        finally:
            with self._cond:
                self._reconnecting = False

    # -- consumer side
    def read(self) -> Frame | None:
        """The next frame (None at the end of a file/folder/demo); SourceError on failure or
        when no frame arrives within read_timeout_s."""
        if self._thread is None:
            self.start()
        deadline = time.monotonic() + self.read_timeout_s
        while True:
            if not self.live:
                try:
                    return self._queue.get_nowait()
                except queue.Empty:
                    pass
            with self._cond:
                if self.live and self._latest is not None:
                    frame, self._latest = self._latest, None
                    return frame
                if self._error is not None:
                    raise SourceError(self._error)
                if self._ended and self._queue.empty():
                    return None
                if self._reconnecting:
                    deadline = time.monotonic() + self.read_timeout_s
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise SourceError(f"{self.name}: no frame for {self.read_timeout_s:.0f} s (source stalled)")
                self._cond.wait(timeout=min(remaining, 0.1))

    def __iter__(self):
        while True:
            frame = self.read()
            if frame is None:
                return
            yield frame


def open_source(uri, **kwargs) -> FrameSource:
    """A started FrameSource for a URI (see the module docstring)."""
    return FrameSource(uri, **kwargs).start()
