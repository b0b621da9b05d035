"""Training views: random similarity transforms that imitate detector boxes, plus photometric
noise and occlusion. Pure NumPy/OpenCV so DataLoader workers need no torch math.

`AugmentConfig()` is the mild recipe of the first default model (and of the int8 guard's
jittered views); `HARD` adds what in-the-wild faces need: large head roll, detector-like box
errors, realistic occluders (ellipses, polygons, texture pasted from elsewhere in the image),
motion/defocus blur, low light with sensor noise, JPEG artefacts and grayscale. `hard_view` is
the fixed, seeded, strong version of those degradations that builds the hard validation set."""

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
    # in-the-wild degradations (all off in the mild default; see HARD)
    large_rotation_prob: float = 0.0  # share of views rolled by up to large_rotation_deg instead
    large_rotation_deg: float = 60.0
    box_error_prob: float = 0.0  # share of views with a detector-like box error (scale/shift x2)
    shaped_occlusion: bool = False  # ellipses, polygons and pasted texture instead of rectangles
    blur_prob: float = 0.0  # motion or defocus blur
    low_light_prob: float = 0.0  # gamma darkening + shot/read noise
    noise_prob: float = 0.0  # Gaussian sensor noise
    jpeg_prob: float = 0.0  # JPEG re-encoding at quality 10-60
    grayscale_prob: float = 0.0


def random_view(rng: np.random.Generator, box, out_size: int, cfg: AugmentConfig, landmarks: int):
    """A random image->crop matrix and the channel permutation of the view (identity unless
    flipped)."""
    x0, y0, x1, y1 = box
    box_error = 2.0 if cfg.box_error_prob and rng.random() < cfg.box_error_prob else 1.0
    scale_j, shift_j = cfg.scale_jitter * box_error, cfg.shift_jitter * box_error
    size = geometry.CROP_EXPAND * max(x1 - x0, y1 - y0) * rng.uniform(1 - scale_j, 1 + scale_j)
    centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2]) + rng.uniform(-1, 1, 2) * shift_j * size
    max_roll = cfg.rotation_deg
    if cfg.large_rotation_prob and rng.random() < cfg.large_rotation_prob:
        max_roll = cfg.large_rotation_deg
    m = geometry.similarity(centre, size, out_size, rng.uniform(-max_roll, max_roll))
    perm = np.arange(landmarks)
    if cfg.flip and landmarks in FLIP_PERMUTATIONS and rng.random() < 0.5:
        m = geometry.compose(np.array([[-1.0, 0, out_size], [0, 1.0, 0]]), m)
        perm = FLIP_PERMUTATIONS[landmarks]
    return m, perm


def photometric(rng: np.random.Generator, crop: np.ndarray, cfg: AugmentConfig) -> np.ndarray:
    """Colour jitter, occlusion and in-the-wild degradations of a uint8 HWC crop -> float32 0..1."""
    if cfg.blur_prob and rng.random() < cfg.blur_prob:
        crop = blur(rng, crop, strength=rng.uniform(0.3, 1.0))
    if cfg.jpeg_prob and rng.random() < cfg.jpeg_prob:
        crop = jpeg(crop, int(rng.integers(10, 61)))
    img = crop.astype(np.float32) / 255.0
    if cfg.grayscale_prob and rng.random() < cfg.grayscale_prob:
        img = np.repeat(img.mean(axis=2, keepdims=True), 3, axis=2)
    j = cfg.color_jitter
    if j > 0:
        gray = img.mean(axis=2, keepdims=True)
        img = gray + (img - gray) * rng.uniform(1 - j, 1 + j)  # saturation
        img = (img - img.mean()) * rng.uniform(1 - j, 1 + j) + img.mean()  # contrast
        img = img * rng.uniform(1 - j, 1 + j)  # brightness
    if rng.random() < cfg.occlusion_prob:
        if cfg.shaped_occlusion:
            img = occlude(rng, img)
        else:
            s = img.shape[0]
            w, h = (rng.uniform(0.1, 0.4, 2) * s).astype(int)
            x, y = rng.integers(0, s - w), rng.integers(0, s - h)
            img[y:y + h, x:x + w] = rng.uniform(0, 1, 3)
    if cfg.low_light_prob and rng.random() < cfg.low_light_prob:
        img = low_light(rng, img, strength=rng.uniform(0.3, 1.0))
    elif cfg.noise_prob and rng.random() < cfg.noise_prob:
        img = img + rng.normal(0, rng.uniform(0.01, 0.06), img.shape).astype(np.float32)
    return np.clip(img, 0.0, 1.0)


def blur(rng: np.random.Generator, crop: np.ndarray, strength: float) -> np.ndarray:
    """Motion blur (a line kernel at a random angle) or defocus (a disc), uint8 in and out.
    strength 1 = a 9 px streak or a 3.5 px-radius disc on a 128 px crop."""
    import cv2

    side = crop.shape[0]
    if rng.random() < 0.5:
        length = max(2, int(round(strength * 9 * side / 128)))
        k = np.zeros((length, length), np.float32)
        k[length // 2, :] = 1.0
        rot = cv2.getRotationMatrix2D(((length - 1) / 2, (length - 1) / 2), rng.uniform(0, 180), 1.0)
        k = cv2.warpAffine(k, rot, (length, length))
    else:
        r = max(1.0, strength * 3.5 * side / 128)
        n = int(np.ceil(r)) * 2 + 1
        yy, xx = np.mgrid[:n, :n] - n // 2
        k = (xx ** 2 + yy ** 2 <= r * r).astype(np.float32)
    return cv2.filter2D(crop, -1, k / max(k.sum(), 1e-6), borderType=cv2.BORDER_REFLECT)


def jpeg(crop: np.ndarray, quality: int) -> np.ndarray:
    import cv2

    ok, buf = cv2.imencode(".jpg", crop[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1] if ok else crop


def low_light(rng: np.random.Generator, img: np.ndarray, strength: float) -> np.ndarray:
    """Underexposure (gamma 1.5-3.5, gain 0.3-0.8) plus signal-dependent and read noise, float 0..1."""
    gamma, gain = 1.5 + 2.0 * strength, 1.0 - 0.7 * strength * rng.uniform(0.7, 1.0)
    dark = gain * np.power(np.clip(img, 0.0, 1.0), gamma)
    shot = rng.normal(0, 1, img.shape).astype(np.float32) * np.sqrt(dark * 0.004 * strength)
    read = rng.normal(0, 0.01 + 0.03 * strength, img.shape).astype(np.float32)
    return dark + shot + read


def occlude(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """One occluder of a realistic shape: an ellipse (hand, microphone, hair), a polygon (object,
    glasses frame) or a patch of this image's own texture pasted elsewhere; flat colour or noise."""
    import cv2

    side = img.shape[0]
    mask = np.zeros((side, side), np.uint8)
    kind = rng.integers(3)
    if kind == 0:
        centre = tuple(int(v) for v in rng.uniform(0.15, 0.85, 2) * side)
        axes = tuple(int(v) for v in rng.uniform(0.08, 0.3, 2) * side)
        cv2.ellipse(mask, centre, axes, rng.uniform(0, 180), 0, 360, 1, -1)
    else:
        centre = rng.uniform(0.15, 0.85, 2) * side
        n = int(rng.integers(3, 8))
        angles = np.sort(rng.uniform(0, 2 * np.pi, n))
        radii = rng.uniform(0.06, 0.3, n) * side
        poly = centre + np.stack([np.cos(angles), np.sin(angles)], 1) * radii[:, None]
        cv2.fillPoly(mask, [poly.astype(np.int32)], 1)
    sel = mask.astype(bool)
    if kind == 2:  # texture from another place of the same crop (hair, background, clothes)
        dx, dy = (rng.uniform(-0.5, 0.5, 2) * side).astype(int)
        fill = np.roll(img, (dy, dx), axis=(0, 1))
    elif rng.random() < 0.5:
        fill = np.broadcast_to(rng.uniform(0, 1, 3).astype(np.float32), img.shape)
    else:
        fill = np.clip(rng.uniform(0, 1, 3) + rng.normal(0, 0.15, img.shape), 0, 1).astype(np.float32)
    out = img.copy()
    out[sel] = fill[sel]
    return out


def make_view(rng, image, points, box, out_size, cfg: AugmentConfig):
    """One augmented crop: (image CHW float32, points in crop px [K,2] in channel order,
    image->crop matrix, permutation)."""
    m, perm = random_view(rng, box, out_size, cfg, len(points))
    crop = geometry.warp(image, m, out_size)
    pts = geometry.transform_points(points, m)[perm]
    return photometric(rng, crop, cfg).transpose(2, 0, 1).copy(), pts.astype(np.float32), m, perm


# The in-the-wild recipe shfan-train uses by default (issue #12): ~1 in 4 views rolled up to
# 60 degrees, 1 in 3 with a doubled box error, shaped occluders on 40 %, blur 25 %, low light
# 15 %, noise 20 %, JPEG 20 %, grayscale 10 %.
HARD = AugmentConfig(rotation_deg=30.0, scale_jitter=0.15, shift_jitter=0.08, occlusion_prob=0.4,
                     large_rotation_prob=0.25, large_rotation_deg=60.0, box_error_prob=0.3,
                     shaped_occlusion=True, blur_prob=0.25, low_light_prob=0.15, noise_prob=0.2,
                     jpeg_prob=0.2, grayscale_prob=0.1)
PRESETS = {"mild": AugmentConfig(), "hard": HARD}


def hard_view(seed, image, box, out_size):
    """The hard validation crop of one face: a fixed, seeded set of strong degradations (roll
    30-50 degrees, a detector-like box error of up to 20 % scale / 12 % shift, one occluder, blur,
    low light or noise, JPEG at quality 15-40, grayscale on 1 in 4).
    Returns (CHW float32 0..1, image->crop matrix) like eval_view."""
    rng = np.random.default_rng(seed)
    x0, y0, x1, y1 = box
    size = geometry.CROP_EXPAND * max(x1 - x0, y1 - y0) * rng.uniform(0.8, 1.2)
    centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2]) + rng.uniform(-1, 1, 2) * 0.12 * size
    m = geometry.similarity(centre, size, out_size, rng.choice([-1, 1]) * rng.uniform(30, 50))
    crop = geometry.warp(image, m, out_size)
    crop = blur(rng, crop, strength=rng.uniform(0.4, 1.0))
    crop = jpeg(crop, int(rng.integers(15, 41)))
    img = crop.astype(np.float32) / 255.0
    if rng.random() < 0.25:
        img = np.repeat(img.mean(axis=2, keepdims=True), 3, axis=2)
    img = occlude(rng, img)
    if rng.random() < 0.5:
        img = low_light(rng, img, strength=rng.uniform(0.5, 1.0))
    else:
        img = img + rng.normal(0, rng.uniform(0.03, 0.06), img.shape).astype(np.float32)
    return np.clip(img, 0, 1).astype(np.float32).transpose(2, 0, 1).copy(), m


def eval_view(image, box, out_size):
    """The deterministic crop used at test time: (CHW float32 0..1, image->crop matrix)."""
    m = geometry.crop_for_box(box, out_size)
    crop = geometry.warp(image, m, out_size)
    return (crop.astype(np.float32) / 255.0).transpose(2, 0, 1).copy(), m
