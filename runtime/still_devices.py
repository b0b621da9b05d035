"""The frame devices that need no capture hardware or video decoder: still images
(ImageFolderDevice), the moving-astronaut demo (DemoDevice, with its known motion), and in-memory
frames (FramesDevice). A device opens, reads one RGB frame at a time (None at the end) and
closes; shfan.runtime.sources.FrameSource runs it in a capture thread. Re-exported there."""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import numpy as np

from shfan import geometry, io
from shfan.io import IMAGE_SUFFIXES
from shfan.runtime.source_spec import SourceError, SourceSpec

log = logging.getLogger("shfan.runtime")


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
