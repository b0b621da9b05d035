"""Run a landmark predictor over dataset samples and score it (shared by shfan-eval,
shfan-train's validation and the builder's accuracy guard).

A predictor is any callable `infer(crops [N,3,S,S] float32 0..1) -> (points [N,K,2] in
network-input px, scores [N,K])`; this keeps torch, ONNX Runtime and TensorRT interchangeable.
"""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

import numpy as np

from shfan import augment, geometry, metrics
from shfan.datasets import Sample

Infer = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]

HARD_SEED = 7  # the hard validation set: face i is degraded with seed (HARD_SEED, i)


def with_flip(infer: Infer, input_size: int) -> Infer:
    """Test-time flip averaging: run the crops and their mirror images, map the mirrored points
    back (x -> S - x, left/right channels swapped) and average points and scores."""

    def flipped(crops):
        pts, scores = infer(crops)
        k = pts.shape[1]
        if k not in augment.FLIP_PERMUTATIONS:
            raise ValueError(f"no left/right map for {k} landmarks; drop the flip option")
        perm = augment.FLIP_PERMUTATIONS[k]
        mpts, mscores = infer(np.ascontiguousarray(crops[..., ::-1]))
        mpts = mpts[:, perm].copy()
        mpts[..., 0] = input_size - mpts[..., 0]
        return (pts + mpts) / 2, (scores + mscores[:, perm]) / 2

    return flipped


def batched(items: Sequence, size: int) -> Iterable[Sequence]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def crops_for(samples: Sequence[Sample], input_size: int, images=None, hard_seeds=None):
    """Deterministic GT-box crops and their image->crop matrices; with `hard_seeds` (one int per
    sample) the fixed strong degradations of the hard validation set (`augment.hard_view`)."""
    crops, mats = [], []
    for i, s in enumerate(samples):
        img = images[i] if images is not None else s.load_image()
        if hard_seeds is not None:
            c, m = augment.hard_view(hard_seeds[i], img, s.box, input_size)
        else:
            c, m = augment.eval_view(img, s.box, input_size)
        crops.append(c)
        mats.append(m)
    return np.stack(crops), mats


def to_image(points, mats) -> np.ndarray:
    """Crop-pixel points [N, K, 2] -> image pixels through each crop's inverse transform."""
    return np.stack([geometry.transform_points(np.asarray(p, np.float64), geometry.invert(m))
                     for p, m in zip(points, mats)])


def predict(infer: Infer, samples: Sequence[Sample], input_size: int, batch_size: int = 8,
            images=None, progress: bool = False, hard: int | None = None) -> np.ndarray:
    """Landmarks in image coordinates [N, K, 2] for each sample (GT-box crops; with `hard` = a
    seed, the hard validation crops: face i is degraded with seed (hard, i))."""
    out = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(samples), desc="evaluating", unit="face", leave=False)
    for start in range(0, len(samples), batch_size):
        chunk = samples[start:start + batch_size]
        imgs = images[start:start + batch_size] if images is not None else None
        seeds = None if hard is None else [(hard, i) for i in range(start, start + len(chunk))]
        crops, mats = crops_for(chunk, input_size, imgs, seeds)
        pts, _ = infer(crops)
        out.extend(to_image(pts, mats))
        if bar:
            bar.update(len(chunk))
    if bar:
        bar.close()
    return np.stack(out).astype(np.float32)


def score(infer: Infer, samples: Sequence[Sample], input_size: int, **kw) -> tuple[dict, np.ndarray]:
    """metrics.summary plus the per-face inter-ocular NME (for CED plots)."""
    pred = predict(infer, samples, input_size, **kw)
    gt = np.stack([s.points for s in samples])
    return metrics.summary(pred, gt), metrics.nme_per_face(pred, gt, "inter_ocular")
