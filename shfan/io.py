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

__all__ = ["IMAGE_SUFFIXES", "VIDEO_SUFFIXES", "is_image", "is_video", "read_rgb", "library_path", "utf8_name", "shown",
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


# Past this many pixels an image is refused before it is decoded: an 8000 x 8000 PNG is 192 MB of
# pixels alone, and a decompression bomb can claim far more than the file's size.
MAX_IMAGE_PIXELS = 100_000_000  # $SHFAN_MAX_IMAGE_PIXELS (or --max-image-pixels) overrides


class ImageTooLarge(ShfanError, ValueError):
    """An image over the pixel limit (read_rgb refuses it before decoding)."""


def max_image_pixels() -> int:
    try:
        return int(os.environ.get("SHFAN_MAX_IMAGE_PIXELS") or MAX_IMAGE_PIXELS)
    except ValueError:
        return MAX_IMAGE_PIXELS


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from an encoded image's header without decoding it: PNG and JPEG read
    here, other formats through Pillow where it is installed; None when unknown (then the
    limit is checked after decoding)."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:2] == b"\xff\xd8":
        return _jpeg_size(data)
    try:
        import warnings

        from PIL import Image

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # our limit applies, not Pillow's
            try:
                with Image.open(io_module.BytesIO(data)) as im:
                    return im.size
            finally:
                Image.MAX_IMAGE_PIXELS = saved
    except Exception:  # noqa: BLE001  (no Pillow, or a format it cannot parse: OpenCV decides)
        return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG's first SOFn segment."""
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length field
            i += 2
            continue
        length = int.from_bytes(data[i + 2:i + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return int.from_bytes(data[i + 7:i + 9], "big"), int.from_bytes(data[i + 5:i + 7], "big")
        i += 2 + length
    return None


def read_rgb(path):
    """An image file as RGB uint8 [H, W, 3], or None when it cannot be read or decoded. The bytes
    are read by Python and decoded in memory, so any file name works (OpenCV's imread crashed on
    names that are not UTF-8). Past max_image_pixels() it raises ImageTooLarge, before decoding."""
    try:
        data = _read_bytes(path)
    except OSError:
        return None
    return _decode(path, data)


def _read_bytes(path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _decode(path, data: bytes):
    import cv2
    import numpy as np

    size = image_size(data)
    if size:
        check_pixels(path, *size)
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if bgr is None:
        return None
    if not size:
        check_pixels(path, bgr.shape[1], bgr.shape[0])
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB, dst=bgr)  # in place: no second copy of a large image


def check_pixels(path, width: int, height: int) -> None:
    if width * height > max_image_pixels():
        raise ImageTooLarge(f"{path}: {width} x {height} pixels, over the limit of {max_image_pixels():,} "
                            "(raise it with --max-image-pixels or $SHFAN_MAX_IMAGE_PIXELS)")


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
