"""Face box -> square crop similarity transform -> warp, and the exact inverse (DESIGN.md §2).

All points are continuous pixel coordinates (pixel (i, j) covers [j, j+1) x [i, i+1)).
Transforms are 2x3 float64 matrices mapping image -> crop; never rounded to integers.
"""

from __future__ import annotations

import math

import numpy as np

# Crop side = CROP_EXPAND * max side of the tight landmark box; the same convention is used by
# training, evaluation (GT boxes) and the tracker (boxes from the previous frame's landmarks).
CROP_EXPAND = 1.4


def similarity(center, size: float, out_size: int, angle_deg: float = 0.0) -> np.ndarray:
    """2x3 matrix mapping a square of side `size` centred at `center` (rotated by angle_deg,
    counter-clockwise in the image) onto an out_size x out_size crop."""
    s = out_size / float(size)
    a = math.radians(angle_deg)
    cos, sin = s * math.cos(a), s * math.sin(a)
    cx, cy = float(center[0]), float(center[1])
    half = out_size / 2.0
    return np.array([[cos, sin, half - cos * cx - sin * cy],
                     [-sin, cos, half + sin * cx - cos * cy]], dtype=np.float64)


def invert(m: np.ndarray) -> np.ndarray:
    """Inverse of a 2x3 affine matrix (crop -> image)."""
    full = np.vstack([np.asarray(m, np.float64), [0.0, 0.0, 1.0]])
    return np.linalg.inv(full)[:2]


def compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """outer ∘ inner for 2x3 affine matrices."""
    a = np.vstack([outer, [0, 0, 1]])
    b = np.vstack([inner, [0, 0, 1]])
    return (a @ b)[:2]


def transform_points(points, m: np.ndarray) -> np.ndarray:
    """Apply a 2x3 matrix to [..., 2] points (float64 math, float32 out unless given float64)."""
    p = np.asarray(points, dtype=np.float64)
    out = p @ np.asarray(m, np.float64)[:, :2].T + np.asarray(m, np.float64)[:, 2]
    return out if np.asarray(points).dtype == np.float64 else out.astype(np.float32)


def warp(image: np.ndarray, m: np.ndarray, out_size, border_value=0) -> np.ndarray:
    """Warp `image` with the continuous-coordinate matrix `m` into an out_size square crop
    (or, given (w, h), a w x h frame: the demo source renders whole frames this way).

    OpenCV addresses pixel centres at integers, our convention at +0.5; shift accordingly.
    """
    import cv2

    m = np.asarray(m, np.float64)
    m_cv = m.copy()
    m_cv[:, 2] = m[:, :2] @ [0.5, 0.5] + m[:, 2] - 0.5
    size = tuple(int(v) for v in out_size) if isinstance(out_size, (tuple, list, np.ndarray)) else (int(out_size),) * 2
    return cv2.warpAffine(image, m_cv, size, flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=border_value)


def iou(a, b) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes (0 when either is empty)."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def box_from_points(points) -> np.ndarray:
    """Tight box (x0, y0, x1, y1) around [K, 2] points."""
    p = np.asarray(points, np.float64)
    return np.concatenate([p.min(axis=0), p.max(axis=0)])


def crop_for_box(box, out_size: int, expand: float = CROP_EXPAND, angle_deg: float = 0.0) -> np.ndarray:
    """Square crop around a tight landmark box: side = expand * max(w, h), same centre."""
    x0, y0, x1, y1 = (float(v) for v in box)
    size = expand * max(x1 - x0, y1 - y0, 1e-3)
    return similarity(((x0 + x1) / 2, (y0 + y1) / 2), size, out_size, angle_deg)
