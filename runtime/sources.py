"""Frame sources named by jetson-inference-style URIs, captured in a background thread.

    demo                      built-in moving face (skimage astronaut) with known motion
    0, /dev/video0, v4l2:///dev/video0     USB/V4L2 camera (`--camera 0`)
    csi://0                   Jetson CSI camera through GStreamer nvarguscamerasrc
    rtsp://host/path          network stream (GStreamer when OpenCV has it, else FFmpeg)
    file.mp4 | file://...     video file;  folder/ | image.jpg   still images

Live sources (cameras, streams) keep only the newest frame, so a slow consumer never falls
behind, and are reopened with backoff when lost. Files, folders and the demo deliver every
frame in order. Reads time out: a dead source is an error message, never a hang.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from shfan import geometry, io
from shfan.errors import ShfanError
from shfan.io import IMAGE_SUFFIXES

log = logging.getLogger("shfan.runtime")


class SourceError(ShfanError, RuntimeError):
    """A frame source that cannot be opened or failed while reading."""


@dataclass
class Frame:
    index: int  # position in the source (live sources may skip indices: frames dropped)
    timestamp: float  # seconds: media time for files/demo, monotonic capture time for live
    image: np.ndarray = field(repr=False)  # H x W x 3 uint8 RGB
    motion: np.ndarray | None = None  # demo only: 2x3 map astronaut px -> frame px
    name: str | None = None  # image sources: the file's name (a skipped unreadable file shifts no record)


# ------------------------------------------------------------------------------ URI parsing


@dataclass(frozen=True)
class SourceSpec:
    kind: str  # demo | camera | csi | rtsp | file | folder | image
    location: str  # device path, URL or file path
    index: int | None = None  # camera/sensor number

    @property
    def live(self) -> bool:
        return self.kind in ("camera", "csi", "rtsp")


def parse_source(uri) -> SourceSpec:
    """A SourceSpec for a URI, camera number or path; SourceError naming the accepted forms."""
    text = str(uri).strip()
    if text in ("demo", "demo://", "demo://0"):
        return SourceSpec("demo", "demo")
    if re.fullmatch(r"\d+", text):
        return SourceSpec("camera", f"/dev/video{int(text)}", int(text))
    m = re.fullmatch(r"(?:v4l2://)?(/dev/video(\d+))", text)
    if m:
        return SourceSpec("camera", m.group(1), int(m.group(2)))
    if text.startswith("v4l2://"):
        raise SourceError(f"{text}: expected v4l2:///dev/videoN")
    m = re.fullmatch(r"csi://(\d+)", text)
    if m:
        return SourceSpec("csi", text, int(m.group(1)))
    if text.startswith("csi://"):
        raise SourceError(f"{text}: expected csi://N (N = sensor id, e.g. csi://0)")
    if text.startswith(("rtsp://", "rtsps://", "http://", "https://", "rtmp://")):
        return SourceSpec("rtsp", text)
    if text.startswith("file://"):
        text = urlparse(text).path
    elif "://" in text:
        raise SourceError(f"{text}: unknown source scheme; use demo, N, /dev/videoN, v4l2:///dev/videoN, "
                          "csi://N, rtsp://..., a video file or an image folder")
    path = Path(text).expanduser()
    if path.is_dir():
        return SourceSpec("folder", str(path))
    if not path.exists():
        raise SourceError(f"{path}: no such file or folder (sources: demo, --camera N, csi://N, rtsp://..., "
                          "a video file or an image folder)")
    if io.is_image(path):
        return SourceSpec("image", str(path))
    return SourceSpec("file", str(path))


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


class ImageFolderDevice:
    """Still images in name order (a folder, or a single image file). `still`: consecutive
    images are unrelated, so the pipeline detects every one afresh instead of tracking."""

    live = False
    still = True

    def __init__(self, spec: SourceSpec, fps: float = 30.0):
        self.spec, self.fps = spec, fps
        path = Path(spec.location)
        self.paths = ([path] if spec.kind == "image" else
                      sorted(p for p in path.iterdir() if io.is_image(p)))
        self.i = 0

    def open(self):
        if not self.paths:
            raise SourceError(f"{self.spec.location}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")

    def read(self):
        while self.i < len(self.paths):
            path = self.paths[self.i]
            self.i += 1
            try:
                image = io.read_rgb(path)
            except io.ImageTooLarge as exc:
                if self.spec.kind == "image":  # the only image: its own error, not "no frame"
                    raise SourceError(str(exc)) from None
                log.warning("%s; skipped", exc)
                continue
            if image is None:
                log.warning("%s: cannot read image; skipped", path)
                continue
            return image, (self.i - 1) / self.fps, None, io.shown(path.name)
        return None

    def close(self):
        pass


DEMO_FACE_CENTRE = (223.0, 130.0)  # astronaut's face (YuNet box centre, shifted to the landmarks)


def demo_motion(index: int, fps: float = 30.0, size=(640, 480)) -> np.ndarray:
    """The known similarity (2x3, astronaut px -> demo frame px) of demo frame `index`: smooth
    pan, zoom (0.85..1.25) and roll (+-15 deg) with incommensurate periods."""
    t = index / fps
    angle = math.radians(15.0 * math.sin(2 * math.pi * t / 7.0))
    scale = 1.05 + 0.2 * math.sin(2 * math.pi * t / 5.0 + 1.0)
    tx = size[0] / 2 + 110.0 * math.sin(2 * math.pi * t / 6.0)
    ty = size[1] / 2 + 50.0 * math.sin(2 * math.pi * t / 4.3 + 0.5)
    c, s = scale * math.cos(angle), scale * math.sin(angle)
    fx, fy = DEMO_FACE_CENTRE
    return np.array([[c, -s, tx - c * fx + s * fy], [s, c, ty - s * fx - c * fy]], np.float64)


DEMO_BACKGROUND = (40, 40, 40)  # grey around the warped astronaut


def astronaut() -> np.ndarray:
    """skimage's astronaut (RGB uint8, 512 x 512): the demo's face."""
    try:
        return io.astronaut()
    except ImportError:
        raise SourceError("the demo source needs scikit-image: pip install 'shfan[demo]'") from None


class DemoDevice:
    """The astronaut moving smoothly; frame.motion is the exact transform from the still image."""

    live = False

    def __init__(self, frames: int | None = None, fps: float = 30.0, size=(640, 480)):
        self.frames, self.fps, self.size = frames, fps, size
        self.i = 0
        self.reference = None

    def open(self):
        self.reference = astronaut()

    def read(self):
        if self.frames is not None and self.i >= self.frames:
            return None
        m = demo_motion(self.i, self.fps, self.size)
        image = geometry.warp(self.reference, m, self.size, DEMO_BACKGROUND)
        self.i += 1
        return image, (self.i - 1) / self.fps, m

    def close(self):
        pass


def is_frames(source) -> bool:
    """Whether `source` is in-memory frames (one H x W x 3 array, or an iterable of them) rather
    than a URI, camera number, path, SourceSpec or device."""
    if isinstance(source, np.ndarray):
        return True
    if isinstance(source, (str, bytes, os.PathLike, int, SourceSpec)) or hasattr(source, "read"):
        return False
    return hasattr(source, "__iter__")


class FramesDevice:
    """In-memory frames (a list, generator or one array) as a source, in order; `convert` checks
    each one and turns it into RGB (Pipeline._as_rgb). Timestamps: index / fps."""

    live = False
    name = "frames"

    def __init__(self, frames, convert=lambda image: image, fps: float = 30.0):
        self.frames = iter([frames] if isinstance(frames, np.ndarray) else frames)
        self.convert, self.fps, self.i = convert, fps, 0

    def open(self):
        pass

    def read(self):
        image = next(self.frames, None)
        if image is None:
            return None
        try:
            rgb = self.convert(image)
        except ValueError as exc:
            raise SourceError(f"frame {self.i}: {exc}") from None
        self.i += 1
        return rgb, (self.i - 1) / self.fps, None

    def close(self):
        pass


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
