"""Subpixel heatmap codec, NumPy reference (DESIGN.md §3).

This is the reference every other implementation (PyTorch, ONNX ops, the CUDA plugin) is
tested against. Coordinates are continuous heatmap coordinates: cell (i, j) has its centre at
(j + 0.5, i + 0.5).

Non-finite heatmaps follow one rule in all four implementations (see
plugins/include/shfan/subpixel_decode.h): the peak is the first index of the largest non-NaN
value (all-NaN map: cell 0); a window cell weighs 1 when it equals the peak value, else
exp(tau (H - Hpeak)), and 0 when that is NaN; no weight at all leaves the peak cell's centre;
the score is H[peak] as it is. Landmarks are always finite; a non-finite score flags the map.
"""

from __future__ import annotations

import numpy as np

# The defaults (sigma 2.0, window 5, temperature 12.0) were chosen by the round-trip sweep in
# benchmarks/codec_roundtrip.py (see BENCHMARKS.md); they live in the numpy-free shfan.contracts.
from shfan.contracts import DEFAULT_SIGMA, DEFAULT_TEMPERATURE, DEFAULT_WINDOW  # noqa: F401  (re-exported)

METHODS = ("subpixel", "fan", "argmax")


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
    """First argmax (row-major, lowest index on ties) per channel -> (x0, y0, score), over the
    non-NaN values (np.argmax would let a NaN win); an all-NaN map gives cell 0."""
    n, h, w = hm.shape
    flat = hm.reshape(n, h * w)
    number = ~np.isnan(flat)
    top = np.where(number, flat, -np.inf).max(axis=1, keepdims=True)
    idx = np.argmax(number & (flat == top), axis=1)  # first True; all False (all NaN) -> 0
    return idx % w, idx // w, flat[np.arange(n), idx]


def window_weights(vals: np.ndarray, centre: np.ndarray, temperature: float) -> np.ndarray:
    """exp(tau (H - Hpeak)) with the non-finite rule: 1 where H equals the peak value (also
    +-inf), 0 where the result is NaN."""
    with np.errstate(invalid="ignore", over="ignore"):
        e = np.exp(temperature * (vals - centre))
    e = np.where(vals == centre, 1.0, e)
    return np.where(np.isnan(e), 0.0, e)


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
    e = window_weights(vals, centre[:, None, None], temperature) * valid
    total = e.sum(axis=(1, 2), keepdims=True)
    wgt = e / np.where(total > 0, total, 1.0)  # 0 only for an all-NaN map: offset 0
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


def check_decode_args(method: str, window: int, temperature: float) -> None:
    """What every decode() implementation accepts: a known method and, for subpixel (the only
    method that reads them), valid window and temperature."""
    if method not in METHODS:
        raise ValueError(f"unknown decoder method {method!r}; choose one of {', '.join(METHODS)}")
    if method == "subpixel":
        check_params(window, temperature)


def check_params(window: int, temperature: float) -> None:
    """The decoder parameters every implementation accepts (the plugin creator refuses the rest)."""
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window must be a positive odd number, got {window}")
    if not (np.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature}")


def decode(heatmaps, method: str = "subpixel", window: int = DEFAULT_WINDOW,
           temperature: float = DEFAULT_TEMPERATURE) -> tuple[np.ndarray, np.ndarray]:
    """Heatmaps [B, K, H, W] -> points [B, K, 2] (continuous heatmap coords), scores [B, K]."""
    check_decode_args(method, window, temperature)
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
