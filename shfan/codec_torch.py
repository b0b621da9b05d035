"""Subpixel heatmap codec in PyTorch: batched and differentiable (training, the Siamese
consistency term, PyTorch evaluation). Same math as the NumPy reference in shfan.codec,
including its rule for NaN/inf heatmaps."""

from __future__ import annotations

import torch

from shfan.codec import DEFAULT_SIGMA, DEFAULT_TEMPERATURE, DEFAULT_WINDOW, check_decode_args


def encode(points: torch.Tensor, heatmap_size: int, sigma: float = DEFAULT_SIGMA) -> torch.Tensor:
    """points [..., K, 2] (continuous heatmap coords) -> Gaussian heatmaps [..., K, H, W]."""
    cells = torch.arange(heatmap_size, dtype=points.dtype, device=points.device) + 0.5
    dx2 = (cells - points[..., 0:1]) ** 2
    dy2 = (cells - points[..., 1:2]) ** 2
    return torch.exp(-(dy2.unsqueeze(-1) + dx2.unsqueeze(-2)) / (2.0 * sigma * sigma))


def _argmax_cells(flat: torch.Tensor):
    """First index of the largest non-NaN value (torch.argmax would let a NaN win); all NaN -> 0."""
    number = ~torch.isnan(flat)
    top = torch.where(number, flat, float("-inf")).amax(dim=-1, keepdim=True)
    first = (number & (flat == top)).to(torch.uint8)
    idx = torch.argmax(first, dim=-1, keepdim=True)  # first occurrence of the max (1, or 0 when none)
    score = torch.gather(flat, -1, idx)
    return idx, score


def decode(heatmaps: torch.Tensor, method: str = "subpixel", window: int = DEFAULT_WINDOW,
           temperature: float = DEFAULT_TEMPERATURE) -> tuple[torch.Tensor, torch.Tensor]:
    """heatmaps [B, K, H, W] -> points [B, K, 2] float32, scores [B, K] float32.

    Differentiable w.r.t. the heatmap values around the peak (the argmax itself is not).
    """
    check_decode_args(method, window, temperature)
    hm = heatmaps.float()
    b, k, h, w = hm.shape
    flat = hm.reshape(b, k, h * w)
    idx, score = _argmax_cells(flat)
    x0 = torch.remainder(idx, w)
    y0 = torch.div(idx, w, rounding_mode="floor")
    if method == "argmax":
        u, v = x0.float() + 0.5, y0.float() + 0.5
    elif method == "fan":
        u, v = _fan_offsets(flat, x0, y0, h, w)
    else:
        u, v = _subpixel(flat, x0, y0, score, h, w, window, temperature)
    pts = torch.cat([u, v], dim=-1)
    return pts, score.squeeze(-1)


def _window_offsets(window: int, device):
    r = window // 2
    offs = torch.arange(-r, r + 1, device=device)
    dy = offs.repeat_interleave(window)  # row-major over the window
    dx = offs.repeat(window)
    return dx, dy


def _subpixel(flat, x0, y0, centre, h, w, window, temperature):
    dx, dy = _window_offsets(window, flat.device)  # [d*d]
    xx = x0 + dx  # [B, K, d*d]
    yy = y0 + dy
    valid = (xx >= 0) & (xx < w) & (yy >= 0) & (yy < h)
    gidx = yy.clamp(0, h - 1) * w + xx.clamp(0, w - 1)
    vals = torch.gather(flat, -1, gidx)
    e = torch.exp(temperature * (vals - centre))
    # +-inf peaks: inf - inf would be NaN; equal cells weigh 1 (finite ties already do, with their gradient)
    e = torch.where((vals == centre) & torch.isinf(centre), torch.ones_like(e), e)
    e = torch.where(torch.isnan(e), torch.zeros_like(e), e) * valid.to(flat.dtype)  # NaN cells excluded
    total = e.sum(dim=-1, keepdim=True)
    wgt = e / torch.where(total > 0, total, torch.ones_like(total))  # 0 only for an all-NaN map
    u = x0.to(flat.dtype) + 0.5 + (wgt * dx.to(flat.dtype)).sum(dim=-1, keepdim=True)
    v = y0.to(flat.dtype) + 0.5 + (wgt * dy.to(flat.dtype)).sum(dim=-1, keepdim=True)
    return u, v


def _fan_offsets(flat, x0, y0, h, w):
    inner = ((x0 > 0) & (x0 < w - 1) & (y0 > 0) & (y0 < h - 1)).to(flat.dtype)

    def at(dx, dy):
        return torch.gather(flat, -1, (y0 + dy).clamp(0, h - 1) * w + (x0 + dx).clamp(0, w - 1))

    u = x0.to(flat.dtype) + 0.5 + 0.25 * inner * torch.sign(at(1, 0) - at(-1, 0))
    v = y0.to(flat.dtype) + 0.5 + 0.25 * inner * torch.sign(at(0, 1) - at(0, -1))
    return u, v
