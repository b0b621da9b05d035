"""What a frame source is named by and what it delivers: SourceSpec (parsed from a URI, camera
number or path by parse_source), Frame, and SourceError. Re-exported by shfan.runtime.sources."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from shfan import io
from shfan.errors import ShfanError


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
