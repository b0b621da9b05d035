"""The training losses: heatmap loss summed over the stacks (mse or adaptive wing) and the
Siamese consistency term (two views of one face agree once mapped to a common frame)."""

from __future__ import annotations

from shfan.train.config import LOSSES


def heatmap_loss(outputs, target, kind: str = "mse", weight=None):
    """Sum over the pixels of each heatmap, averaged over faces and landmarks, summed over the
    stacks: squared error (mse) or adaptive wing (awing). `weight` [B]: each face's share
    (--extra-weight), the mean still over B faces, so 0.5 halves a face's pull."""
    per_pixel = HEATMAP_LOSSES[kind]
    if weight is None:
        return sum(per_pixel(o, target).sum(dim=(-1, -2)).mean() for o in outputs)
    return sum((per_pixel(o, target).sum(dim=(-1, -2)).mean(-1) * weight).mean() for o in outputs)


def squared_error(pred, target):
    return (pred - target) ** 2


def adaptive_wing(pred, target, omega=14.0, theta=0.5, epsilon=1.0, alpha=2.1):
    """Adaptive wing loss per pixel (Wang et al., ICCV 2019, eq. 6, their constants): log-like
    near the target where the target is bright (foreground errors weigh more than MSE gives
    them), linear beyond theta; the exponent alpha - y flattens it on the background."""
    import torch

    diff = (pred - target).abs()
    power = alpha - target
    ratio = theta / epsilon
    a = omega / (1 + ratio ** power) * power * ratio ** (power - 1) / epsilon
    c = theta * a - omega * torch.log1p(ratio ** power)
    return torch.where(diff < theta, omega * torch.log1p((diff / epsilon) ** power), a * diff - c)


HEATMAP_LOSSES = dict(zip(LOSSES, (squared_error, adaptive_wing)))


def consistency_loss(h1, h2, batch, model_cfg, scale):
    """L1 distance (heatmap px) between view-1 predictions and view-2 predictions mapped into
    view 1, through the differentiable subpixel decoder."""
    import torch

    from shfan import codec_torch

    p1, _ = codec_torch.decode(h1, "subpixel", model_cfg.window, model_cfg.temperature)
    p2, _ = codec_torch.decode(h2, "subpixel", model_cfg.window, model_cfg.temperature)
    p1 = torch.gather(p1, 1, batch["unperm1"].unsqueeze(-1).expand(-1, -1, 2))
    p2 = torch.gather(p2, 1, batch["unperm2"].unsqueeze(-1).expand(-1, -1, 2))
    t = batch["view2_to_view1"]
    p2_in_1 = (p2 / scale) @ t[:, :, :2].transpose(1, 2) + t[:, :, 2].unsqueeze(1)
    return (p1 - p2_in_1 * scale).abs().sum(-1).mean()
