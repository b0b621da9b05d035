"""What the Pipeline does to a frame before the network: the detector's input size, scene-cut
thumbnails, the check on boxes from an upstream detector, and an input image's checks and
colour order."""

from __future__ import annotations

import math

import numpy as np

# YuNet finds faces whose landmark box is >= 24 px wide in its input (AFW faces pasted at each
# width: 10 px 14 %, 16 px 50 %, 20 px 88 %, 24 px 90 %, 32 px 98 %); the detector's input is
# scaled so that a face of `min_face` frame pixels has at least this size.
DETECTOR_MIN_FACE = 24
# While nothing is tracked, frames between full scans are searched at most this size (big faces
# are found on the next frame; small ones at the next full scan, <= redetect_every frames later).
# YuNet on a 16:9 frame, 2-core x86: 320 px 17 ms, 640 px 30 ms, 960 px 61 ms, 1920 px 294 ms.
QUICK_SCAN_SIDE = 640


# The detector never sees more than this many pixels on its longest side: YuNet's memory grows
# with its input (an 8000 x 8000 photo at full size took 5.7 GB and 21 s, and found a false face);
# in frames this large the smallest findable face grows accordingly (8000 px: 100 px faces).
MAX_DETECTOR_SIDE = 1920


def detector_side(frame_shape, min_face: float) -> int:
    """Longest side of the image the detector sees: the whole frame scaled so that a face
    min_face px wide is DETECTOR_MIN_FACE px there (never upscaled), at most MAX_DETECTOR_SIDE."""
    longest = max(frame_shape[0], frame_shape[1])
    scale = min(1.0, DETECTOR_MIN_FACE / max(float(min_face), 1e-6))
    return max(1, min(MAX_DETECTOR_SIDE, math.ceil(longest * scale)))


def thumbnail(image: np.ndarray) -> np.ndarray:
    """32x18 grey thumbnail for scene-cut detection."""
    import cv2

    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    return cv2.resize(grey, (32, 18), interpolation=cv2.INTER_AREA).astype(np.float32)


def scene_change(a: np.ndarray | None, b: np.ndarray) -> float:
    """Mean absolute difference of two thumbnails, 0..1."""
    return 0.0 if a is None else float(np.abs(a - b).mean() / 255.0)


def checked_boxes(boxes) -> np.ndarray:
    """[N, 4] float64 (x0, y0, x1, y1) boxes; ValueError naming the first that is not finite, empty
    or inverted (a NaN or inf box would give a face of NaN points)."""
    try:
        arr = np.asarray(boxes, np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"boxes must be numbers [[x0, y0, x1, y1], ...], got {boxes!r:.80}") from None
    if arr.size % 4 or (arr.ndim > 1 and arr.shape[-1] != 4):
        raise ValueError(f"boxes must be [[x0, y0, x1, y1], ...], got shape {arr.shape}")
    arr = arr.reshape(-1, 4)
    for i, b in enumerate(arr):
        if not np.isfinite(b).all():
            raise ValueError(f"box {i} {b.tolist()} is not finite")
        if not (b[2] > b[0] and b[3] > b[1]):
            raise ValueError(f"box {i} {b.tolist()} is empty or inverted: need (x0, y0, x1, y1) with x1 > x0, y1 > y0")
    return arr


def as_rgb(image, color: str) -> np.ndarray:
    """An H x W x 3 uint8 image in `color` order ("rgb" or "bgr") as RGB; ValueError otherwise."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"expected an H x W x 3 uint8 {color.upper()} image (a NumPy array), "
                         f"got {type(image).__name__}")
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or 0 in image.shape:
        raise ValueError(f"expected an H x W x 3 uint8 {color.upper()} image (H, W >= 1), "
                         f"got {image.dtype} {image.shape}")
    if color == "bgr":
        import cv2

        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return image
