"""Small file and system utilities every layer shares (torch-free, light): the media suffixes,
reading an image, the demo face, sha256 of a file, the cache folder, version parsing, an
installed distribution's version, what OpenCV's build information says about GStreamer,
pid_alive (is a process still running), and the `with` mixins Closable (closes at the end) and
Service (starts, then stops).
Nothing heavy at import (doctor imports it even when numpy is broken).
Atomic writes live in `shfan.atomic` and are re-exported here so callers need one import."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

from shfan.atomic import atomic_path, can_create_in, write_bytes, write_text

__all__ = ["IMAGE_SUFFIXES", "VIDEO_SUFFIXES", "is_image", "is_video", "read_rgb", "astronaut", "sha256_file",
           "cache_dir", "version_tuple", "dist_version", "opencv_gstreamer", "pid_alive", "Closable", "Service",
           "atomic_path", "can_create_in", "write_bytes", "write_text"]  # the last four from shfan.atomic

# What OpenCV reads as a still image / a video file (frame sources, calibration data, datasets).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".h264", ".h265", ".ts")


def is_image(path) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def is_video(path) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def read_rgb(path):
    """An image file as RGB uint8 [H, W, 3], or None when OpenCV cannot decode it."""
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def astronaut():
    """skimage's astronaut (RGB uint8, 512 x 512): the built-in demo and fallback face."""
    from skimage import data

    return data.astronaut()


def sha256_file(path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks (models and engines can be hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def cache_dir(sub: str | None = None, create: bool = False) -> Path:
    """$SHFAN_CACHE_DIR, else $XDG_CACHE_HOME (or ~/.cache)/shfan; `sub` appended. With `create`,
    the folder is made, falling back to the temp dir on a read-only home (containers, CI)."""
    root = Path(os.environ["SHFAN_CACHE_DIR"]) if os.environ.get("SHFAN_CACHE_DIR") else \
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "shfan"
    out = root / sub if sub else root
    if create:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError:
            out = Path(tempfile.gettempdir()) / ("shfan-" + (sub or "cache"))
            out.mkdir(parents=True, exist_ok=True)
    return out


def version_tuple(text: str | None) -> tuple[int, ...]:
    """Leading numeric fields of a version string: '10.3.0.30-1+cuda12.5' -> (10, 3, 0, 30)."""
    match = re.match(r"\s*v?(\d+(?:\.\d+)*)", text or "")
    return tuple(int(part) for part in match.group(1).split(".")) if match else ()


def dist_version(dist: str) -> str | None:
    """The installed version of distribution `dist` (pip's name), None when it is not installed."""
    import importlib.metadata

    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


class Closable:
    """`with obj:` closes it at the end of the block (Pipeline, BatchRunner, ShfanClient,
    TensorRTBackend)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Service:
    """`with obj:` starts it and stops it at the end of the block (ServeProcess, ShfanTriton);
    `start()` returns the object."""

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def pid_alive(pid: int) -> bool:
    """Whether process `pid` is running (not gone, not a zombie): for cleaning up after processes
    that died (a video's partial file, a tritonserver left behind)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[-1][:1] != "Z"
    except OSError:  # it exited just now; or no /proc (macOS): then kill() said it runs
        return not Path("/proc").is_dir()


def opencv_gstreamer(build_information: str | None) -> bool | None:
    """Whether cv2.getBuildInformation() says `GStreamer: YES (...)`; None if not listed.
    (The frame sources need it for CSI cameras; shfan-doctor reports it.)"""
    match = re.search(r"^\s*GStreamer:\s*(\S+)", build_information or "", re.MULTILINE)
    return None if not match else match.group(1).upper() == "YES"
