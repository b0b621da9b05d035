"""Where results go: an annotated preview window, an annotated video file, JSON Lines.

Files are never left half-written: the video goes to a temporary name and is renamed when it is
closed normally (removed on abort); each JSON line is written whole and flushed, so a reader
tailing the file (the Jetson service) always sees complete records. JSON Lines files are
appended to, never truncated (a restarted service keeps what it wrote before), and opened only
when the first record is ready, i.e. after the source opened.
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from shfan import atomic, io
from shfan.errors import OutputError  # noqa: F401  (re-exported)

log = logging.getLogger("shfan.runtime")


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
    """Annotated frames -> video file (mp4v for .mp4/.mov/.m4v, MJPG for .avi).

    OpenCV's writer reports no write errors (a full disk gave exit 0 and an unplayable file), so
    close() reads the finished file back and refuses to move it into place unless it decodes.
    Frames go to `.NAME.<pid>.partial.EXT`; partial files of processes that no longer run
    (kill -9, power loss) are removed when the next sink for the same name opens.

    Not shfan.atomic.atomic_path: the file is renamed in close(), not at the end of one block,
    only after it is read back, and its name must carry the writer's pid so that a later run can
    tell a dead writer's leftovers from a live one's."""

    def __init__(self, path, fps: float = 30.0):
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in (".mp4", ".mov", ".m4v", ".avi", ".mkv"):
            raise OutputError(f"{self.path}: unsupported video type {suffix or '(none)'}; use .mp4 or .avi")
        problem = atomic.output_problem(self.path)  # folders, special files, long names, read-only places
        if problem:
            raise OutputError(problem)
        self.fourcc = "MJPG" if suffix == ".avi" else "mp4v"
        remove_stale_partials(self.path)
        # An ASCII name (OpenCV's writer crashes on names that are not UTF-8): the real one is
        # only ever touched by Python, in close(); a device or FIFO target gets it in the temp folder.
        where = Path(tempfile.gettempdir()) if atomic.target_kind(self.path) == "stream" else self.path.parent
        self.tmp = where / partial_name(self.path, os.getpid())
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
                self._discard()
                raise OutputError(f"{self.path}: OpenCV cannot encode {self.fourcc} video; try an .avi name")
        self.writer.write(frame_bgr)
        self.frames += 1

    def close(self, keep: bool = True):
        """Finish the file and move it into place (keep=False: discard it). OutputError when the
        finished file does not decode (disk full, I/O error); nothing is left behind then."""
        if self.writer is not None:
            self.writer.release()
            self.writer = None
        if not (keep and self.frames and self.tmp.exists()):
            self._discard()
            return
        readable = decodable_frames(self.tmp)
        if readable < 1:
            self._discard()
            raise OutputError(f"{self.path}: the video could not be written completely (disk full or I/O "
                              f"error: {self.frames} frames written, none decodes); nothing was kept")
        atomic.deliver(self.tmp, self.path)  # renamed onto a file, copied into a device or FIFO

    def _discard(self):
        with contextlib.suppress(OSError):
            self.tmp.unlink()


def decodable_frames(path, limit: int = 2) -> int:
    """How many of the first `limit` frames OpenCV can decode from a finished video file, and
    0 when its container is unreadable (an mp4 cut short has no index)."""
    import cv2

    with io.library_path(path) as name:
        cap = cv2.VideoCapture(name)
    try:
        n = 0
        while n < limit and cap.isOpened():
            ok, _ = cap.read()
            if not ok:
                break
            n += 1
        return n
    finally:
        cap.release()


def partial_name(path: Path, pid: int) -> str:
    """`.STEM.<pid>.partial.EXT` with an ASCII stem (atomic.safe_stem) for a video being written."""
    return f".{atomic.safe_stem(path.stem)}.{pid}.partial{path.suffix.lower()}"


def remove_stale_partials(path: Path) -> list[Path]:
    """Remove partial files beside `path` (partial_name) left by processes that are gone."""
    removed = []
    stem, suffix = atomic.safe_stem(path.stem), path.suffix.lower()
    for p in path.parent.glob(f".{glob.escape(stem)}.*.partial{suffix}"):
        pid = p.name[len(stem) + 2:-len(f".partial{suffix}")]
        if pid.isdigit() and int(pid) != os.getpid() and not io.pid_alive(int(pid)):
            try:
                p.unlink()
                removed.append(p)
            except OSError:
                pass
    return removed


def face_record(face) -> dict:
    return face.to_dict()


def result_record(result) -> dict:
    """One JSON Lines record per frame (Result.to_dict(): schema, frame, timestamp, faces, ...)."""
    return result.to_dict()


class JsonlSink:
    """One JSON object per processed frame, appended; '-' writes to stdout. The file is checked
    here and opened at the first write, so a source that fails to open leaves it untouched.
    Each record goes out in one write(2); a write that fails part-way (disk full) is cut back
    off the file, so readers only ever see whole lines."""

    def __init__(self, path):
        self.path = str(path)
        self.fd = None
        self.stdout = self.path == "-"
        if self.stdout:
            return
        problem = atomic.output_problem(self.path)  # folders, special files, long names, read-only places
        if problem:
            raise OutputError(problem)

    def _open(self):
        p = Path(self.path)
        stream = atomic.target_kind(p) == "stream"  # a device or FIFO: written into, nothing to read back
        try:
            fd = os.open(p, (os.O_WRONLY if stream else os.O_RDWR | os.O_CREAT) | os.O_APPEND, 0o666)
        except OSError as exc:
            raise OutputError(f"{p}: cannot write ({exc.strerror})") from None
        self.fd = fd
        if stream:
            return
        # A line cut off by a crash (power loss) would glue onto our first record: end it.
        try:
            size = os.fstat(fd).st_size
            cut = size > 0 and os.pread(fd, 1, size - 1) != b"\n"
        except OSError as exc:
            raise OutputError(f"{p}: cannot read its end ({exc.strerror})") from None
        if cut:
            self._append(b"\n")

    def _append(self, data: bytes):
        start = os.fstat(self.fd).st_size  # 0 for a device or FIFO (ftruncate then fails, harmlessly)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self.fd, view):]
        except OSError as exc:
            try:
                os.ftruncate(self.fd, start)  # no half line for a reader tailing the file
            except OSError:
                pass
            raise OutputError(f"{self.path}: cannot write ({exc.strerror}); the lines before this frame are kept") \
                from None

    def write(self, result):
        line = json.dumps(result_record(result), separators=(",", ":"), ) + "\n"
        if self.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            return
        if self.fd is None:
            self._open()
        self._append(line.encode("utf-8"))

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
        self.fd = None


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
