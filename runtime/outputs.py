"""Where results go: an annotated preview window, an annotated video file, JSON Lines.

Files are never left half-written: the video goes to a temporary name and is renamed when it is
closed normally (removed on abort); each JSON line is written whole and flushed, so a reader
tailing the file (the Jetson service) always sees complete records. JSON Lines files are
appended to, never truncated (a restarted service keeps what it wrote before), and opened only
when the first record is ready, i.e. after the source opened.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import numpy as np

from shfan.errors import ShfanError

log = logging.getLogger("shfan.runtime")


class OutputError(ShfanError, RuntimeError):
    """An output file or window that cannot be created."""


def annotate(image_rgb: np.ndarray, faces, fps: float | None = None) -> np.ndarray:
    """BGR copy of the frame with boxes, landmarks and an FPS label."""
    import cv2

    out = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR)
    shift = 4  # sub-pixel drawing: coordinates in 1/16 px
    for face in faces:
        x0, y0, x1, y1 = face.box
        cv2.rectangle(out, (int(x0), int(y0)), (int(x1), int(y1)), (255, 160, 0), 1, cv2.LINE_AA)
        r = max(1.5, 0.012 * max(x1 - x0, y1 - y0))
        for x, y in face.points:
            # continuous coords -> OpenCV pixel-centre coords: subtract 0.5
            cv2.circle(out, (int((x - 0.5) * 16), int((y - 0.5) * 16)), int(r * 16), (0, 255, 0), -1,
                       cv2.LINE_AA, shift)
        cv2.putText(out, f"{face.score:.2f}", (int(x0), max(12, int(y0) - 4)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.45, (255, 160, 0), 1, cv2.LINE_AA)
    if fps is not None:
        cv2.putText(out, f"{fps:5.1f} FPS", (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(out, f"{fps:5.1f} FPS", (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1, cv2.LINE_AA)
    return out


class VideoSink:
    """Annotated frames -> video file (mp4v for .mp4/.mov/.m4v, MJPG for .avi)."""

    def __init__(self, path, fps: float = 30.0):
        self.path = Path(path)
        if not self.path.parent.is_dir():
            raise OutputError(f"{self.path}: folder {self.path.parent} does not exist; create it or pick another --output")
        suffix = self.path.suffix.lower()
        if suffix not in (".mp4", ".mov", ".m4v", ".avi", ".mkv"):
            raise OutputError(f"{self.path}: unsupported video type {suffix or '(none)'}; use .mp4 or .avi")
        self.fourcc = "MJPG" if suffix == ".avi" else "mp4v"
        self.tmp = self.path.with_name(f".{self.path.stem}.{os.getpid()}.partial{self.path.suffix}")
        self.fps = fps
        self.writer = None
        self.frames = 0

    def write(self, frame_bgr: np.ndarray):
        import cv2

        if self.writer is None:
            h, w = frame_bgr.shape[:2]
            self.writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*self.fourcc), self.fps, (w, h))
            if not self.writer.isOpened():
                self.writer = None
                raise OutputError(f"{self.path}: OpenCV cannot write {self.fourcc} video here; try an .avi name")
        self.writer.write(frame_bgr)
        self.frames += 1

    def close(self, keep: bool = True):
        """Finish the file and move it into place (keep=False: discard it)."""
        if self.writer is not None:
            self.writer.release()
            self.writer = None
        if keep and self.frames and self.tmp.exists():
            os.replace(self.tmp, self.path)
        elif self.tmp.exists():
            self.tmp.unlink()


def face_record(face) -> dict:
    return face.to_dict()


def result_record(result) -> dict:
    """One JSON Lines record per frame (Result.to_dict(): schema, frame, timestamp, faces, ...)."""
    return result.to_dict()


class JsonlSink:
    """One JSON object per processed frame, appended; '-' writes to stdout. The file is checked
    here and opened at the first write, so a source that fails to open leaves it untouched."""

    def __init__(self, path):
        self.path = str(path)
        self.f = None
        if self.path == "-":
            self.f = sys.stdout
            return
        p = Path(self.path)
        if not p.parent.is_dir():
            raise OutputError(f"{p}: folder {p.parent} does not exist; create it or pick another --jsonl")
        if p.is_dir() or (p.exists() and not os.access(p, os.W_OK)) or not os.access(p.parent, os.W_OK):
            raise OutputError(f"{p}: cannot write here; pick another --jsonl")

    def _open(self):
        p = Path(self.path)
        try:
            f = open(p, "a+b")
            # A line cut off by a crash (power loss) would glue onto our first record: end it.
            if f.tell() > 0:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    f.write(b"\n")
            f.close()
            self.f = open(p, "a", encoding="utf-8")
        except OSError as exc:
            raise OutputError(f"{p}: cannot write ({exc.strerror})") from None

    def write(self, result):
        if self.f is None:
            self._open()
        self.f.write(json.dumps(result_record(result), separators=(",", ":")) + "\n")
        self.f.flush()

    def close(self):
        if self.f is not None and self.f is not sys.stdout:
            self.f.close()
        self.f = None


def gui_available() -> tuple[bool, str]:
    """(True, '') when cv2 can open a window here, else (False, why)."""
    import cv2

    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False, "no display ($DISPLAY is not set)"
    try:
        cv2.namedWindow("shfan-run", cv2.WINDOW_NORMAL)
    except cv2.error:
        return False, "this OpenCV has no GUI support (opencv-python-headless)"
    return True, ""


class Window:
    """On-screen preview; q or Esc closes it (and ends the run)."""

    def __init__(self, title: str = "shfan-run"):
        self.title = title
        self.closed = False

    def show(self, frame_bgr: np.ndarray) -> bool:
        """False when the user asked to quit."""
        import cv2

        cv2.imshow(self.title, frame_bgr)
        key = cv2.waitKey(1) & 0xFF
        if key in (ord("q"), 27):
            self.closed = True
        return not self.closed

    def close(self):
        import cv2

        try:
            cv2.destroyWindow(self.title)
        except cv2.error:
            pass
