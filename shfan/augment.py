"""Training views: random similarity transforms that imitate detector boxes, plus photometric
noise and occlusion. Pure NumPy/OpenCV so DataLoader workers need no torch math."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shfan import geometry

# 300-W 68-point left/right mirror map: channel k of a flipped view is landmark FLIP_68[k].
FLIP_68 = np.array(
    list(range(16, -1, -1)) + list(range(26, 16, -1)) + [27, 28, 29, 30] + [35, 34, 33, 32, 31]
    + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55] + [64, 63, 62, 61, 60, 67, 66, 65])
FLIP_PERMUTATIONS = {68: FLIP_68}


@dataclass(frozen=True)
class AugmentConfig:
    rotation_deg: float = 25.0
    scale_jitter: float = 0.15  # crop size * U(1 - s, 1 + s)
    shift_jitter: float = 0.08  # centre shift as a fraction of the crop size
    flip: bool = True
    color_jitter: float = 0.3
    occlusion_prob: float = 0.3


def random_view(rng: np.random.Generator, box, out_size: int, cfg: AugmentConfig, landmarks: int):
    """A random image->crop matrix and the channel permutation of the view (identity unless
    flipped)."""
    x0, y0, x1, y1 = box
    size = geometry.CROP_EXPAND * max(x1 - x0, y1 - y0) * rng.uniform(1 - cfg.scale_jitter, 1 + cfg.scale_jitter)
    centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2]) + rng.uniform(-1, 1, 2) * cfg.shift_jitter * size
    m = geometry.similarity(centre, size, out_size, rng.uniform(-cfg.rotation_deg, cfg.rotation_deg))
    perm = np.arange(landmarks)
    if cfg.flip and landmarks in FLIP_PERMUTATIONS and rng.random() < 0.5:
        m = geometry.compose(np.array([[-1.0, 0, out_size], [0, 1.0, 0]]), m)
        perm = FLIP_PERMUTATIONS[landmarks]
    return m, perm


def photometric(rng: np.random.Generator, crop: np.ndarray, cfg: AugmentConfig) -> np.ndarray:
    """Brightness/contrast/saturation jitter and an optional occluding rectangle (float32 0..1)."""
    img = crop.astype(np.float32) / 255.0
    j = cfg.color_jitter
    if j > 0:
        gray = img.mean(axis=2, keepdims=True)
        img = gray + (img - gray) * rng.uniform(1 - j, 1 + j)  # saturation
        img = (img - img.mean()) * rng.uniform(1 - j, 1 + j) + img.mean()  # contrast
        img = img * rng.uniform(1 - j, 1 + j)  # brightness
    if rng.random() < cfg.occlusion_prob:
        s = img.shape[0]
        w, h = (rng.uniform(0.1, 0.4, 2) * s).astype(int)
        x, y = rng.integers(0, s - w), rng.integers(0, s - h)
        img[y:y + h, x:x + w] = rng.uniform(0, 1, 3)
    return np.clip(img, 0.0, 1.0)


def make_view(rng, image, points, box, out_size, cfg: AugmentConfig):
    """One augmented crop: (image CHW float32, points in crop px [K,2] in channel order,
    image->crop matrix, permutation)."""
    m, perm = random_view(rng, box, out_size, cfg, len(points))
    crop = geometry.warp(image, m, out_size)
    pts = geometry.transform_points(points, m)[perm]
    return photometric(rng, crop, cfg).transpose(2, 0, 1).copy(), pts.astype(np.float32), m, perm


def eval_view(image, box, out_size):
    """The deterministic crop used at test time: (CHW float32 0..1, image->crop matrix)."""
    m = geometry.crop_for_box(box, out_size)
    crop = geometry.warp(image, m, out_size)
    return (crop.astype(np.float32) / 255.0).transpose(2, 0, 1).copy(), m
