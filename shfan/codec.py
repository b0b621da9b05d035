"""Subpixel heatmap codec, NumPy reference (DESIGN.md §3).

This is the reference every other implementation (PyTorch, ONNX ops, the CUDA plugin) is
tested against. Coordinates are continuous heatmap coordinates: cell (i, j) has its centre at
(j + 0.5, i + 0.5).
"""

from __future__ import annotations

import numpy as np

METHODS = ("subpixel", "fan", "argmax")

# Chosen by the round-trip sweep in benchmarks/codec_roundtrip.py (see BENCHMARKS.md).
DEFAULT_SIGMA = 2.0
DEFAULT_WINDOW = 5
DEFAULT_TEMPERATURE = 12.0


def encode(points, heatmap_size: int | tuple[int, int], sigma: float = DEFAULT_SIGMA) -> np.ndarray:
    """Gaussian targets at the exact (un-rounded) points.

    points: [..., K, 2] continuous heatmap coordinates (x, y).
    Returns [..., K, H, W] float32, peak 1 at the point itself.
    """
    pts = np.asarray(points, dtype=np.float64)
    h, w = (heatmap_size, heatmap_size) if np.isscalar(heatmap_size) else heatmap_size
    xs = np.arange(w, dtype=np.float64) + 0.5
    ys = np.arange(h, dtype=np.float64) + 0.5
    dx2 = (xs - pts[..., 0:1]) ** 2  # [..., K, W]
    dy2 = (ys - pts[..., 1:2]) ** 2  # [..., K, H]
    g = np.exp(-(dy2[..., :, None] + dx2[..., None, :]) / (2.0 * sigma * sigma))
    return g.astype(np.float32)


def _argmax_cells(hm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """First argmax (row-major, lowest index on ties) per channel -> (x0, y0, score)."""
    n, h, w = hm.shape
    flat = hm.reshape(n, h * w)
    idx = np.argmax(flat, axis=1)  # numpy returns the first occurrence
    return idx % w, idx // w, flat[np.arange(n), idx]


def _decode_subpixel(hm, x0, y0, window, temperature):
    n, h, w = hm.shape
    r = window // 2
    offs = np.arange(-r, r + 1)
    dy, dx = np.meshgrid(offs, offs, indexing="ij")  # [d, d]
    yy = y0[:, None, None] + dy
    xx = x0[:, None, None] + dx
    valid = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
    vals = hm[np.arange(n)[:, None, None], np.clip(yy, 0, h - 1), np.clip(xx, 0, w - 1)]
    centre = hm[np.arange(n), y0, x0]
    # softmax(tau * H) over the valid cells; the centre is the window max, so subtracting it is
    # the usual max shift and the exponent is always <= 0.
    e = np.exp(temperature * (vals - centre[:, None, None])) * valid
    wgt = e / e.sum(axis=(1, 2), keepdims=True)
    u = x0 + 0.5 + (wgt * dx).sum(axis=(1, 2))
    v = y0 + 0.5 + (wgt * dy).sum(axis=(1, 2))
    return u, v


def _decode_fan(hm, x0, y0):
    """Classic FAN refinement: move 0.25 cell toward the larger neighbour (interior peaks only)."""
    n, h, w = hm.shape
    u = x0 + 0.5
    v = y0 + 0.5
    inner = (x0 > 0) & (x0 < w - 1) & (y0 > 0) & (y0 < h - 1)
    i = np.nonzero(inner)[0]
    xi, yi = x0[i], y0[i]
    u[i] += 0.25 * np.sign(hm[i, yi, xi + 1] - hm[i, yi, xi - 1])
    v[i] += 0.25 * np.sign(hm[i, yi + 1, xi] - hm[i, yi - 1, xi])
    return u, v


def decode(
    heatmaps,
    method: str = "subpixel",
    window: int = DEFAULT_WINDOW,
    temperature: float = DEFAULT_TEMPERATURE,
) -> tuple[np.ndarray, np.ndarray]:
    """Heatmaps [B, K, H, W] -> points [B, K, 2] (continuous heatmap coords), scores [B, K]."""
    if method not in METHODS:
        raise ValueError(f"unknown decoder method {method!r}; choose one of {', '.join(METHODS)}")
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window must be a positive odd number, got {window}")
    hm = np.asarray(heatmaps, dtype=np.float32)
    if hm.ndim != 4:
        raise ValueError(f"heatmaps must be [B, K, H, W], got shape {hm.shape}")
    b, k, h, w = hm.shape
    flat = hm.reshape(b * k, h, w).astype(np.float64)
    x0, y0, score = _argmax_cells(flat)
    if method == "subpixel":
        u, v = _decode_subpixel(flat, x0, y0, window, temperature)
    elif method == "fan":
        u, v = _decode_fan(flat, x0, y0)
    else:
        u, v = x0 + 0.5, y0 + 0.5
    pts = np.stack([u, v], axis=-1).reshape(b, k, 2).astype(np.float32)
    return pts, score.reshape(b, k).astype(np.float32)
