"""Batched training views made on the training device (a GPU, or the CPU in tests).

On an H200 the per-sample NumPy/OpenCV views of `augment.make_view` starved the GPU (FAN-4 at
256 px: 17 s per epoch of 1,900 faces, GPU mostly idle). Here every face is warped once, at
start-up, into a loose uint8 canvas kept on the device; each step then draws the view geometry
for the whole batch (roll, scale, shift, detector-like box errors, flip), warps the canvases with
one `affine_grid`/`grid_sample`, moves the landmarks with the same matrices and applies colour
jitter, grayscale, shaped occluders, blur, low light and noise as tensor ops. The recipe is the
one of `augment.AugmentConfig` (JPEG artefacts are the one degradation left to the CPU path).

Matrices follow DESIGN.md §2: 2x3, continuous pixel coordinates, pixel centres at +0.5.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from shfan import augment, geometry

CANVAS_BOX_SIDES = 3.0  # canvas side / face box side: room for a 60-degree roll of a 1.8x crop


class Canvases:
    """All training faces as uint8 canvases [N, 3, C, C] on `device`, landmarks in canvas px."""

    def __init__(self, images, samples, canvas_px: int, device):
        crops, points, self.box_side = [], [], canvas_px / CANVAS_BOX_SIDES
        for img, s in zip(images, samples):
            x0, y0, x1, y1 = s.box
            m = geometry.similarity(((x0 + x1) / 2, (y0 + y1) / 2), CANVAS_BOX_SIDES * max(x1 - x0, y1 - y0, 1e-3),
                                    canvas_px)
            crops.append(geometry.warp(img, m, canvas_px).transpose(2, 0, 1))
            points.append(geometry.transform_points(s.points, m))
        self.images = torch.from_numpy(np.stack(crops)).to(device)
        self.points = torch.from_numpy(np.stack(points).astype(np.float32)).to(device)
        self.weights = torch.tensor([s.weight for s in samples], dtype=torch.float32, device=device)
        self.size, self.device = canvas_px, device

    def __len__(self):
        return self.images.shape[0]


def _uniform(gen, n, lo, hi, device):
    return lo + (hi - lo) * torch.rand(n, generator=gen, device=device)


def view_matrices(gen: torch.Generator, n: int, canvas: Canvases, out_size: int, cfg: augment.AugmentConfig,
                  landmarks: int):
    """Random canvas->crop matrices [n, 2, 3] (float64) and channel permutations [n, K], drawn
    like `augment.random_view` (same distributions, vectorised)."""
    dev = canvas.device
    err = torch.where(torch.rand(n, generator=gen, device=dev) < cfg.box_error_prob, 2.0, 1.0)
    size = geometry.CROP_EXPAND * canvas.box_side * (1 + (2 * torch.rand(n, generator=gen, device=dev) - 1)
                                                     * cfg.scale_jitter * err)
    c = canvas.size / 2 + (2 * torch.rand(n, 2, generator=gen, device=dev) - 1) * (cfg.shift_jitter * err * size)[:, None]
    roll = torch.where(torch.rand(n, generator=gen, device=dev) < cfg.large_rotation_prob,
                       cfg.large_rotation_deg, cfg.rotation_deg)
    a = torch.deg2rad((2 * torch.rand(n, generator=gen, device=dev) - 1) * roll).double()
    s = out_size / size.double()
    cos, sin = s * torch.cos(a), s * torch.sin(a)
    cx, cy = c[:, 0].double(), c[:, 1].double()
    half = out_size / 2.0
    m = torch.stack([torch.stack([cos, sin, half - cos * cx - sin * cy], -1),
                     torch.stack([-sin, cos, half + sin * cx - cos * cy], -1)], 1)
    perm = torch.arange(landmarks, device=dev).expand(n, -1).clone()
    if cfg.flip and landmarks in augment.FLIP_PERMUTATIONS:
        flip = torch.rand(n, generator=gen, device=dev) < 0.5
        mirrored = m.clone()
        mirrored[:, 0] = -m[:, 0]
        mirrored[:, 0, 2] += out_size
        m = torch.where(flip[:, None, None], mirrored, m)
        table = torch.as_tensor(augment.FLIP_PERMUTATIONS[landmarks], device=dev)
        perm = torch.where(flip[:, None], table.expand(n, -1), perm)
    return m, perm


def warp(images_u8: torch.Tensor, m: torch.Tensor, out_size: int) -> torch.Tensor:
    """Bilinear warp of uint8 [n, 3, C, C] canvases by canvas->crop matrices -> float 0..1
    [n, 3, S, S]; equal to `geometry.warp` (OpenCV) up to interpolation rounding."""
    n, _, h, w = images_u8.shape
    full = torch.zeros(n, 3, 3, dtype=torch.float64, device=m.device)
    full[:, :2], full[:, 2, 2] = m, 1.0
    inv = torch.linalg.inv(full)  # crop px -> canvas px
    # normalised (align_corners=False) <-> continuous px: x_px = (x_n + 1) * W / 2
    to_px = torch.tensor([[out_size / 2, 0, out_size / 2], [0, out_size / 2, out_size / 2], [0, 0, 1]],
                         dtype=torch.float64, device=m.device)
    to_norm = torch.tensor([[2 / w, 0, -1], [0, 2 / h, -1], [0, 0, 1]], dtype=torch.float64, device=m.device)
    theta = (to_norm @ inv @ to_px)[:, :2].float()
    grid = F.affine_grid(theta, [n, 3, out_size, out_size], align_corners=False)
    return F.grid_sample(images_u8.float() / 255.0, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def transform_points(points: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """[n, K, 2] points through [n, 2, 3] matrices."""
    m = m.to(points.dtype)
    return points @ m[:, :, :2].transpose(1, 2) + m[:, :, 2].unsqueeze(1)


def photometric(gen: torch.Generator, x: torch.Tensor, cfg: augment.AugmentConfig) -> torch.Tensor:
    """Colour jitter, grayscale, occluders, blur, low light and noise on float [n, 3, S, S]."""
    n, _, s, _ = x.shape
    dev = x.device

    def chance(p):
        return (torch.rand(n, generator=gen, device=dev) < p)[:, None, None, None]

    def jitter(j):
        return _uniform(gen, n, 1 - j, 1 + j, dev)[:, None, None, None]

    if cfg.blur_prob:
        x = torch.where(chance(cfg.blur_prob), _blur(gen, x), x)
    if cfg.grayscale_prob:
        x = torch.where(chance(cfg.grayscale_prob), x.mean(1, keepdim=True).expand_as(x), x)
    j = cfg.color_jitter
    if j > 0:
        gray = x.mean(1, keepdim=True)
        x = gray + (x - gray) * jitter(j)
        mean = x.mean((1, 2, 3), keepdim=True)
        x = (x - mean) * jitter(j) + mean
        x = x * jitter(j)
    if cfg.occlusion_prob:
        mask = _ellipses(gen, n, s, dev) & (torch.rand(n, generator=gen, device=dev) < cfg.occlusion_prob)[:, None, None]
        fill = torch.rand(n, 3, 1, 1, generator=gen, device=dev).expand_as(x)
        x = torch.where(mask[:, None], fill, x)
    if cfg.low_light_prob:
        strength = _uniform(gen, n, 0.3, 1.0, dev)[:, None, None, None]
        gamma, gain = 1.5 + 2.0 * strength, 1.0 - 0.7 * strength
        dark = gain * x.clamp(0, 1) ** gamma
        dark = dark + torch.randn(x.shape, generator=gen, device=dev) * (0.01 + 0.03 * strength)
        x = torch.where(chance(cfg.low_light_prob), dark, x)
    if cfg.noise_prob:
        sigma = _uniform(gen, n, 0.01, 0.06, dev)[:, None, None, None]
        x = torch.where(chance(cfg.noise_prob), x + torch.randn(x.shape, generator=gen, device=dev) * sigma, x)
    return x.clamp(0, 1)


def _ellipses(gen, n, s, dev):
    """One random rotated ellipse mask [n, S, S] per image (occluders of 8-30 % of the side)."""
    yy, xx = torch.meshgrid(torch.arange(s, device=dev) + 0.5, torch.arange(s, device=dev) + 0.5, indexing="ij")
    c = _uniform(gen, 2 * n, 0.15, 0.85, dev).view(n, 2) * s
    ax = _uniform(gen, 2 * n, 0.08, 0.3, dev).view(n, 2) * s
    t = _uniform(gen, n, 0, math.pi, dev)
    dx, dy = xx - c[:, 0, None, None], yy - c[:, 1, None, None]
    u = dx * torch.cos(t)[:, None, None] + dy * torch.sin(t)[:, None, None]
    v = -dx * torch.sin(t)[:, None, None] + dy * torch.cos(t)[:, None, None]
    return (u / ax[:, 0, None, None]) ** 2 + (v / ax[:, 1, None, None]) ** 2 <= 1


def _blur(gen, x):
    """Per-image motion streak (up to 9 px at 128 px) as a grouped convolution."""
    n, c, s, _ = x.shape
    k = max(3, int(round(9 * s / 128)) | 1)
    r = torch.arange(k, device=x.device, dtype=x.dtype) - k // 2
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    t = _uniform(gen, n, 0, math.pi, x.device)[:, None, None]
    length = _uniform(gen, n, 2, k, x.device)[:, None, None] / 2
    along = xx * torch.cos(t) + yy * torch.sin(t)
    across = -xx * torch.sin(t) + yy * torch.cos(t)
    kern = ((across.abs() <= 0.5) & (along.abs() <= length)).to(x.dtype)
    kern = kern / kern.sum((1, 2), keepdim=True).clamp_min(1)
    weight = kern.repeat_interleave(c, 0).unsqueeze(1)  # [n*c, 1, k, k]
    out = F.conv2d(F.pad(x.reshape(1, n * c, s, s), [k // 2] * 4, mode="reflect"), weight, groups=n * c)
    return out.view(n, c, s, s)


def siamese_batch(gen, canvas: Canvases, index: torch.Tensor, out_size: int, heatmap_size: int,
                  cfg: augment.AugmentConfig) -> dict:
    """The same batch dict as `train.SiameseViews` items collated, made on the device."""
    n, k = index.numel(), canvas.points.shape[1]
    imgs, pts = canvas.images[index], canvas.points[index]
    out, mats = {}, []
    for v in (1, 2):
        m, perm = view_matrices(gen, n, canvas, out_size, cfg, k)
        crop_pts = transform_points(pts.double(), m).float()
        out[f"image{v}"] = photometric(gen, warp(imgs, m, out_size), cfg)
        out[f"points{v}"] = torch.gather(crop_pts, 1, perm[..., None].expand(-1, -1, 2)) * (heatmap_size / out_size)
        out[f"unperm{v}"] = torch.argsort(perm, dim=1)
        mats.append(m)
    full = torch.zeros(2, n, 3, 3, dtype=torch.float64, device=canvas.device)
    full[:, :, :2], full[:, :, 2, 2] = torch.stack(mats), 1.0
    out["view2_to_view1"] = (full[0] @ torch.linalg.inv(full[1]))[:, :2].float()
    out["weight"] = canvas.weights[index]
    return out
