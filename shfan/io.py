"""Small file and system utilities every layer shares (torch-free, light): the media suffixes,
reading an image, the demo face, sha256 of a file, the cache folder, version parsing, an
installed distribution's version, what OpenCV's build information says about GStreamer,
pid_alive (is a process still running), and the `with` mixins Closable (closes at the end) and
Service (starts, then stops).
Nothing heavy at import (doctor imports it even when numpy is broken).
Atomic writes live in `shfan.atomic` and are re-exported here so callers need one import."""

from __future__ import annotations

import contextlib
import hashlib
import io as io_module
import os
import re
import tempfile
from pathlib import Path

from shfan.atomic import atomic_path, can_create_in, write_bytes, write_text
from shfan.errors import ShfanError

__all__ = ["IMAGE_SUFFIXES", "VIDEO_SUFFIXES", "is_image", "is_video", "read_rgb", "read_rgb_scaled", "library_path", "utf8_name", "shown",
           "ImageTooLarge", "max_image_pixels", "astronaut", "sha256_file",
           "cache_dir", "version_tuple", "dist_version", "opencv_gstreamer", "pid_alive", "Closable", "Service",
           "atomic_path", "can_create_in", "write_bytes", "write_text"]  # the last four from shfan.atomic

# What OpenCV reads as a still image / a video file (frame sources, calibration data, datasets).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".h264", ".h265", ".ts")


def is_image(path) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def is_video(path) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def utf8_name(path) -> bool:
    """Whether `path` is valid UTF-8: OpenCV and ONNX Runtime take paths as UTF-8 C strings and
    crash (SIGSEGV) or raise on the others (Python keeps such bytes as lone surrogates)."""
    try:
        os.fspath(path).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def shown(path) -> str:
    """`path` as printable text: bytes that are not UTF-8 as \\xNN (for labels, tables, JSON)."""
    return os.fsencode(os.fspath(path)).decode("utf-8", "backslashreplace")


@contextlib.contextmanager
def library_path(path):
    """`path` as a name C libraries can open (OpenCV's VideoCapture, FaceDetectorYN, ONNX Runtime):
    itself when it is UTF-8, else an ASCII symlink to it in a temporary folder, removed afterwards."""
    if utf8_name(path):
        yield str(path)
        return
    with tempfile.TemporaryDirectory(prefix="shfan-alias-") as folder:
        alias = Path(folder) / ("file" + "".join(c for c in Path(path).suffix if c.isascii()))
        alias.symlink_to(Path(path).absolute())
        yield str(alias)


# Images far larger than any face crop or detector input need: decoded at 1/2, 1/4 or 1/8 of their
# size (JPEG decodes that way for free; others are shrunk right after decoding), and refused past
# MAX_IMAGE_PIXELS (a 20000 x 20000 PNG would take 1.2 GB as pixels alone).
MAX_IMAGE_PIXELS = 100_000_000  # $SHFAN_MAX_IMAGE_PIXELS overrides
REDUCE_ABOVE_SIDE = 4096  # longest side above which an image is read reduced (reported by the scale)


class ImageTooLarge(ShfanError, ValueError):
    """An image over the pixel limit (read_rgb refuses it before decoding)."""


def max_image_pixels() -> int:
    try:
        return int(os.environ.get("SHFAN_MAX_IMAGE_PIXELS") or MAX_IMAGE_PIXELS)
    except ValueError:
        return MAX_IMAGE_PIXELS


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from an encoded image's header (Pillow reads only the header), None when
    Pillow does not know the format."""
    try:
        from PIL import Image

        Image.MAX_IMAGE_PIXELS = None  # our own limit applies; Pillow's warns
        with Image.open(io_module.BytesIO(data)) as im:
            return im.size
    except Exception:  # noqa: BLE001  (any format Pillow cannot parse: OpenCV decides)
        return None


def read_rgb(path, reduce: bool = False):
    """An image file as RGB uint8 [H, W, 3], or None when it cannot be decoded. The bytes are read
    by Python and decoded in memory, so any file name works. Past max_image_pixels() it raises
    ImageTooLarge. With `reduce`, see read_rgb_scaled."""
    image, _ = read_rgb_scaled(path) if reduce else (_decode(path, 1), 1.0)
    return image


def read_rgb_scaled(path, max_side: int = REDUCE_ABOVE_SIDE):
    """(image, scale): an image whose longest side is at least twice `max_side` decoded at 1/2,
    1/4 or 1/8 of its size, never below `max_side` (scale: reduced px per original px, so
    original coordinates = reduced / scale), else the whole image with scale 1.0. (None, 1.0)
    when it cannot be decoded."""
    data = _read_bytes(path)
    size = image_size(data)
    factor = 1
    if size:
        while factor < 8 and max(size) / (factor * 2) >= max_side:
            factor *= 2
    image = _decode(path, factor, data)
    if image is None:
        return None, 1.0
    if size and factor > 1:
        w, h = size
        return image, image.shape[1] / w
    return image, 1.0


def _read_bytes(path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _decode(path, factor: int, data: bytes | None = None):
    import cv2
    import numpy as np

    if data is None:
        try:
            data = _read_bytes(path)
        except OSError:
            return None
    size = image_size(data)
    if size and size[0] * size[1] > max_image_pixels():
        raise ImageTooLarge(f"{path}: {size[0]} x {size[1]} pixels, over the limit of {max_image_pixels():,} "
                            "(set SHFAN_MAX_IMAGE_PIXELS to raise it)")
    flags = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
             8: cv2.IMREAD_REDUCED_COLOR_8}[factor]
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), flags) if data else None
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
