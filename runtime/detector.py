"""Face detection with YuNet (cv2.FaceDetectorYN), and the map from a YuNet box to the tight
68-landmark box that the landmark model's crops are built around (geometry.crop_for_box).

The YuNet model file: an explicit path, else $SHFAN_DETECTOR_MODEL, else ~/.cache/shfan/ where it
is downloaded once from OpenCV Zoo and checked against its sha256.
"""

from __future__ import annotations

import hashlib
import math
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shfan import io
from shfan.errors import ShfanError

YUNET_FILE = "face_detection_yunet_2023mar.onnx"
YUNET_URL = ("https://github.com/opencv/opencv_zoo/raw/main/models/face_detection_yunet/" + YUNET_FILE)
YUNET_SHA256 = "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4"
ENV_DETECTOR_MODEL = "SHFAN_DETECTOR_MODEL"
# How to give the detector, for the API and the CLIs alike (library errors must not assume a CLI).
GIVE_PATH = (f"pass its path: Pipeline(detector_model=PATH), --detector-model PATH on the command line, or "
             f"${ENV_DETECTOR_MODEL}; the file is {YUNET_FILE} from OpenCV Zoo")

# YuNet box (x, y, w, h; continuous px) -> tight 68-landmark box. Measured on 1207 real faces
# (../shared/data/faces68: all 337 AFW + 870 Helen-train crops, YuNet 2023mar, score >= 0.6,
# the detection overlapping the GT landmark box most): medians of
#   (gt_cx - cx) / w, (gt_cy - cy) / h, gt_w / w, gt_h / h.
# AFW and Helen agree within 0.007. With these, IoU(mapped box, GT landmark box): mean 0.884,
# median 0.892, 5th percentile 0.789 (raw YuNet box: mean 0.706); crop side (max of w, h)
# within 0.91..1.07 of GT for 90% of faces. YuNet's box includes the forehead, so the landmark
# box is shifted down by 12% of its height and is 25% shorter.
BOX_OFFSET_X = 0.0016
BOX_OFFSET_Y = 0.124
BOX_SCALE_W = 1.024
BOX_SCALE_H = 0.755


@dataclass
class Detection:
    box: np.ndarray  # (x0, y0, x1, y1) continuous px, YuNet's own box (see landmark_box_from_detection)
    score: float
    eyes: np.ndarray | None = None  # [2, 2] eye centres (continuous px)

    @property
    def roll_deg(self) -> float:
        """In-plane roll: angle of the line from the image-left eye to the image-right eye."""
        if self.eyes is None:
            return 0.0
        (x0, y0), (x1, y1) = sorted(map(tuple, self.eyes))
        return math.degrees(math.atan2(y1 - y0, x1 - x0))


class DetectorError(ShfanError, RuntimeError):
    """The face detector model cannot be found, fetched or loaded."""


def landmark_box_from_detection(box) -> np.ndarray:
    """The tight 68-landmark box (x0, y0, x1, y1) equivalent to a YuNet box (x0, y0, x1, y1)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    w, h = x1 - x0, y1 - y0
    cx = (x0 + x1) / 2 + BOX_OFFSET_X * w
    cy = (y0 + y1) / 2 + BOX_OFFSET_Y * h
    hw, hh = BOX_SCALE_W * w / 2, BOX_SCALE_H * h / 2
    return np.array([cx - hw, cy - hh, cx + hw, cy + hh], np.float64)


def cached_yunet() -> Path:
    """Where the downloaded YuNet lives (shfan-run fetches it there; shfan-doctor looks there)."""
    return io.cache_dir() / YUNET_FILE


def _first_line(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or exc
    return (str(reason).splitlines() or [type(exc).__name__])[0][:120]


def download_yunet(dest: Path, url: str = YUNET_URL, timeout: float = 30.0) -> Path:
    """Fetch YuNet once into `dest`, verified by sha256, written atomically. The file is 230 KB,
    so it is checked in memory and only a verified copy ever reaches the disk."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            data = resp.read()
    except Exception as exc:  # no network, proxy, HTTP error
        raise DetectorError(f"cannot download the YuNet face detector ({_first_line(exc)}); {GIVE_PATH}") from None
    got = hashlib.sha256(data).hexdigest()
    if got != YUNET_SHA256:
        raise DetectorError(f"downloaded {url} has sha256 {got[:12]}..., expected {YUNET_SHA256[:12]}...; "
                            f"download it yourself and {GIVE_PATH}")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        io.write_bytes(dest, data)
    except Exception as exc:  # read-only cache, disk full (OSError, or shfan's OutputError)
        raise DetectorError(f"downloaded the YuNet face detector but cannot save it to {dest} ({_first_line(exc)}); "
                            f"set $SHFAN_CACHE_DIR to a writable folder, or {GIVE_PATH}") from None
    return dest


def resolve_detector_model(model_path=None, download: bool = True) -> Path:
    """Explicit path, else $SHFAN_DETECTOR_MODEL, else the cached (downloaded once) file."""
    for origin, candidate in (("detector_model", model_path), (f"${ENV_DETECTOR_MODEL}", os.environ.get(ENV_DETECTOR_MODEL))):
        if candidate:
            path = Path(candidate).expanduser()
            if not path.is_file():
                raise DetectorError(f"face detector model {path} (from {origin}) does not exist; {GIVE_PATH}")
            return path
    cached = cached_yunet()
    if cached.is_file():
        return cached
    if not download:
        raise DetectorError(f"no face detector model; {GIVE_PATH}")
    return download_yunet(cached)


def _cv_reason(exc) -> str:
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    import textwrap

    return textwrap.shorten(lines[-1], 120, placeholder=" ...") if lines else type(exc).__name__


def quiet_opencv_log():
    """OpenCV 5's DNN engine warns on every model load that targets are unsupported; errors only."""
    import cv2

    try:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    except AttributeError:
        pass


class YuNetDetector:
    """cv2.FaceDetectorYN wrapper: RGB image in, [(box (x0, y0, x1, y1), score)] out, boxes in
    continuous pixel coordinates, best first."""

    def __init__(self, model_path=None, score_threshold: float = 0.6, nms_threshold: float = 0.3,
                 max_side: int = 640):
        import cv2

        self.path = resolve_detector_model(model_path)
        self.max_side = max_side
        quiet_opencv_log()
        try:
            with io.library_path(self.path) as name:
                self._net = cv2.FaceDetectorYN.create(name, "", (320, 320), float(score_threshold),
                                                      float(nms_threshold), 5000)
        except cv2.error as exc:
            raise DetectorError(f"{self.path}: OpenCV cannot load it as a YuNet model "
                                f"({_cv_reason(exc)}); {GIVE_PATH}") from None
        self._size = None
        try:  # a readable ONNX of another kind loads fine and fails only at detect(): find out now
            self.detect_faces(np.zeros((64, 64, 3), np.uint8))
        except cv2.error as exc:
            raise DetectorError(f"{self.path} is not a YuNet face detector ({_cv_reason(exc)}); expected "
                                f"{YUNET_FILE} (OpenCV Zoo); {GIVE_PATH}") from None

    def detect(self, image_rgb: np.ndarray) -> list[tuple[np.ndarray, float]]:
        """[(box (x0, y0, x1, y1), score)], best first."""
        return [(d.box, d.score) for d in self.detect_faces(image_rgb)]

    def detect_faces(self, image_rgb: np.ndarray, max_side: int | None = None) -> list["Detection"]:
        """Detections with YuNet's eye centres (for the face's roll), best first. Frames larger
        than max_side (default: the detector's) are detected on a downscaled copy."""
        import cv2

        h, w = image_rgb.shape[:2]
        scale = min(1.0, (max_side or self.max_side) / max(h, w))
        bgr = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR)
        if scale < 1.0:
            bgr = cv2.resize(bgr, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
        size = (bgr.shape[1], bgr.shape[0])
        if size != self._size:
            self._net.setInputSize(size)
            self._size = size
        _, faces = self._net.detect(bgr)
        out = []
        for f in (faces if faces is not None else []):
            x, y, fw, fh = (float(v) for v in f[:4])
            # OpenCV puts pixel centres at integers; ours are at +0.5 (DESIGN.md §2).
            sx, sy = w / size[0], h / size[1]
            x0, y0 = (x + 0.5) * sx, (y + 0.5) * sy
            eyes = (np.asarray(f[4:8], np.float64).reshape(2, 2) + 0.5) * (sx, sy)
            out.append(Detection(np.array([x0, y0, x0 + fw * sx, y0 + fh * sy]), float(f[-1]), eyes))
        out.sort(key=lambda d: -d.score)
        return out
