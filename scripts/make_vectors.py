"""Regenerate the shared SubpixelDecode test vectors from the NumPy reference.

Every decoder implementation (NumPy, PyTorch, ONNX ops, the CUDA plugin and its host build)
is tested against `subpixel_decode.npz`; the cases are listed in `subpixel_decode.json`.
They ship inside the package (shfan/vectors/: `shfan doctor --selftest` reads them on an installed
wheel). Run from the repository root: python scripts/make_vectors.py
"""

import json

import numpy as np

from shfan import codec
from shfan.selftest import VECTORS as HERE  # shfan/vectors/


def gaussian_maps(rng, b, k, h, w, sigma=2.0, margin=0.0):
    pts = np.stack([rng.uniform(margin, w - margin, (b, k)), rng.uniform(margin, h - margin, (b, k))], -1)
    xs, ys = np.arange(w) + 0.5, np.arange(h) + 0.5
    g = np.exp(-((xs - pts[..., 0:1])[..., None, :] ** 2 + (ys - pts[..., 1:2])[..., :, None] ** 2) / (2 * sigma**2))
    return g.astype(np.float32)


def cases():
    rng = np.random.default_rng(2021)
    out = {}
    out["random_gaussians"] = (gaussian_maps(rng, 2, 68, 64, 64) + rng.normal(0, 0.02, (2, 68, 64, 64))).astype(np.float32), 5, 12.0
    # peaks on borders and corners: the window is clipped, cells outside get weight 0
    border = np.zeros((1, 8, 16, 16), np.float32)
    for c, (y, x) in enumerate([(0, 0), (0, 15), (15, 0), (15, 15), (0, 7), (7, 0), (15, 9), (9, 15)]):
        yy, xx = np.mgrid[:16, :16]
        border[0, c] = np.exp(-((xx - x - 0.3) ** 2 + (yy - y + 0.2) ** 2) / 4.0)
        border[0, c, y, x] = 1.5
    out["borders_corners"] = border, 5, 12.0
    # ties: two equal maxima; the lowest row-major index must win
    ties = np.zeros((1, 3, 8, 8), np.float32)
    ties[0, 0, 2, 5] = ties[0, 0, 6, 1] = 1.0
    ties[0, 1, 4, 4] = ties[0, 1, 4, 6] = 0.7
    ties[0, 1, 4, 5] = 0.3
    ties[0, 2, 7, 7] = ties[0, 2, 0, 0] = 2.0
    out["ties"] = ties, 3, 12.0
    # flat maps: argmax is cell 0, the clipped window averages uniformly
    out["flat"] = np.stack([np.zeros((4, 12, 10), np.float32), np.full((4, 12, 10), 0.5, np.float32)]), 5, 12.0
    # fp16-rounded inputs (what an fp16 engine hands the decoder)
    out["fp16_rounded"] = (gaussian_maps(rng, 4, 17, 32, 32, sigma=1.5) * 0.9).astype(np.float16).astype(np.float32), 5, 9.0
    # negative values and a non-square map, other window/temperature
    out["negative_nonsquare"] = (gaussian_maps(rng, 1, 5, 24, 40) - 0.5).astype(np.float32), 7, 6.0
    out["window3"] = gaussian_maps(rng, 1, 98, 32, 32, sigma=1.0), 3, 5.0
    out["window1"] = gaussian_maps(rng, 1, 4, 16, 16), 1, 12.0
    out["nonfinite"] = nonfinite_maps(), 5, 12.0
    return out


def nonfinite_maps():
    """NaN / +-inf heatmaps (the rule in plugins/include/shfan/subpixel_decode.h): landmarks stay
    finite, the score is H[peak] as it is. Every value is exact in fp16 too."""
    yy, xx = np.mgrid[:8, :8]
    g = np.exp(-((xx - 5.2) ** 2 + (yy - 2.7) ** 2) / 4.0)
    g = g.astype(np.float16).astype(np.float32)  # fp16-exact, so the fp16 check uses the same reference
    maps = np.repeat(g[None], 10, 0)
    maps[0, 0, 0] = np.nan  # NaN at index 0 must not win (it did in the CPU firstArgmax)
    maps[1] = -np.inf  # all -inf: peak 0, uniform weights over the clipped window
    maps[2, 3, 5] = np.inf  # one +inf peak: weight 1 there, 0 elsewhere
    maps[3, 3, 3] = maps[3, 3, 4] = np.inf  # two +inf cells in one window: both weigh 1
    maps[4] = np.nan  # all NaN: peak 0, its centre, score NaN
    maps[5, 2:4, 4:6] = np.nan  # NaN cells next to the peak: excluded
    maps[5, 3, 6] = 2.0
    maps[6] = -np.inf  # NaN at 0 and -inf elsewhere: the first -inf (index 1) is the peak
    maps[6, 0, 0] = np.nan
    maps[7, 1:5, 3:8] = -np.inf  # -inf cells inside a finite peak's window weigh 0
    maps[7, 2, 5] = 1.0
    maps[8, 0, 7] = np.inf  # +inf in the corner with NaN neighbours
    maps[8, 0, 6] = maps[8, 1, 7] = np.nan
    maps[9, 4, 4] = 6.0e4  # huge finite peak (near fp16 max): exponents underflow to weight 0
    return maps[None].astype(np.float32)


def main():
    arrays, meta = {}, []
    for name, (hm, window, tau) in cases().items():
        pts, scores = codec.decode(hm, "subpixel", window, tau)
        arrays[f"{name}/heatmaps"] = hm
        arrays[f"{name}/points"] = pts
        arrays[f"{name}/scores"] = scores
        meta.append({"name": name, "window": window, "temperature": tau, "shape": list(hm.shape)})
    np.savez_compressed(HERE / "subpixel_decode.npz", **arrays)
    (HERE / "subpixel_decode.json").write_text(json.dumps({"units": "continuous heatmap px (cell centre = index + 0.5)", "cases": meta}, indent=1) + "\n")
    print(f"wrote {len(meta)} cases to {HERE}")


if __name__ == "__main__":
    main()
