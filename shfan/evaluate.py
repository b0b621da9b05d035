"""Run a landmark predictor over dataset samples and score it (shared by shfan-eval,
shfan-train's validation and the builder's accuracy guard).

A predictor is any callable `infer(crops [N,3,S,S] float32 0..1) -> (points [N,K,2] in
network-input px, scores [N,K])`; this keeps torch, ONNX Runtime and TensorRT interchangeable.

`evaluate(load_samples(...), model=...)` is shfan-eval callable from Python: it picks the model
file and the backend the way the CLI does and returns the report it prints.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from shfan import augment, geometry, metrics
from shfan.datasets import Sample
from shfan.errors import DatasetError, ShfanError

Infer = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]

HARD_SEED = 7  # the hard validation set: face i is degraded with seed (HARD_SEED, i)
VIEWS = ("clean", "hard")  # the annotation-box crops; the same faces under the fixed HARD_SEED degradations


class EvalError(ShfanError, ValueError):
    """A model and dataset that cannot be scored together (or scores that are not numbers)."""


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


# ---------------------------------------------------------------- shfan-eval as a function


def model_kind(backend: str | None) -> str:
    """Which file of a shipped model to score: its checkpoint where PyTorch is installed (the
    pytorch backend, or no backend asked for), else its ONNX."""
    from shfan.runtime import backends

    return "checkpoint" if backend in (None, "pytorch") and backends.get("pytorch").available() else "onnx"


def default_model_file(backend: str | None, name: str = "compact") -> Path:
    """A shipped model's file for `backend` (model_kind)."""
    from shfan import weights

    return weights.model_path(name, model_kind(backend))



def open_model(model: Path, backend: str | None, precision: str | None, decoder: str):
    """A backend for a model file or build folder; `backend` None: the registry's auto over every
    backend, checkpoints included (the runtime's auto leaves PyTorch out)."""
    from shfan.runtime.backends import open_backend

    return open_backend(model, backend or "auto", precision=precision, decoder=decoder, runtime=False)


def load_samples(data, fmt: str = "300w", limit: int | None = None, **reader_options) -> list[Sample]:
    """The first `limit` faces of a dataset (shfan.datasets.read_dataset's formats and options)."""
    from shfan.datasets import read_dataset

    samples = read_dataset(data, fmt, **reader_options)
    samples = samples[:limit] if limit else samples
    if not samples:
        raise DatasetError(f"{data}: no faces in this dataset")
    return samples


def as_samples(samples) -> list[Sample]:
    """evaluate()'s faces: a dataset path (a 300-W folder) is read with load_samples; a sequence
    must hold Samples and not be empty."""
    import os

    if isinstance(samples, (str, os.PathLike)):
        return load_samples(samples)
    if isinstance(samples, Sample):
        samples = [samples]
    try:
        samples = list(samples)
    except TypeError:
        raise EvalError(f"samples must be a dataset path or a list of Samples (load_samples), got "
                        f"{type(samples).__name__}") from None
    if not samples:
        raise EvalError("no faces to evaluate (an empty list of samples)")
    bad = next((s for s in samples if not isinstance(s, Sample)), None)
    if bad is not None:
        raise EvalError(f"samples must be Samples (shfan.evaluate.load_samples), got a {type(bad).__name__}")
    return samples


def evaluate(samples: Sequence[Sample], model=None, backend: str | None = None, precision: str | None = None,
             method: str = "subpixel", views: str = "clean", flip: bool = False, batch_size: int = 8,
             progress: bool = False, data_name: str = "the dataset", decoder: str | None = None
             ) -> tuple[dict, np.ndarray]:
    """shfan-eval: score a model on faces (`samples`: from load_samples, or a 300-W folder path).
    `model`: compact (default) | accurate | fast | a checkpoint, .onnx, .engine or build folder;
    `backend`: None lets the backend registry pick (open_model); `method`: how heatmaps become
    points (codec.METHODS; `decoder=` is its old name, kept for one release: in shfan-build a
    decoder is the graph's node, plugin | onnx | none). Returns (metrics.summary with the model,
    backend, method, views, flip and precision used; per-face inter-ocular NME). The backend is
    closed on every path (a TensorRT backend left open aborts the interpreter at exit)."""
    from shfan import weights

    if decoder is not None:
        import warnings

        warnings.warn("evaluate(decoder=...) is now evaluate(method=...)", DeprecationWarning, stacklevel=2)
        method = decoder
    samples = as_samples(samples)
    if views not in VIEWS:
        raise EvalError(f"unknown views {views!r}; choose one of {', '.join(VIEWS)}")
    path = weights.resolve("compact" if model is None else model, model_kind(backend))
    net = None
    try:
        net = open_model(path, backend, precision, method)
        if net.info.landmarks != samples[0].points.shape[0]:
            raise EvalError(f"model predicts {net.info.landmarks} landmarks but {data_name} has "
                            f"{samples[0].points.shape[0]}")
        infer = with_flip(net.infer, net.info.input_size) if flip else net.infer
        summary, per_face = score(infer, samples, net.info.input_size, batch_size=batch_size, progress=progress,
                                  hard=HARD_SEED if views == "hard" else None)
        backend_name = net.name
    finally:
        if net is not None:
            net.close()
    if path.is_dir() and precision is None:  # a build folder: say which precision was scored
        import json

        from shfan.contracts import MANIFEST, BuildManifest

        # read and checked (warnings included) when the backend opened it; here only the field
        precision = BuildManifest.from_json(json.loads((path / MANIFEST).read_text())).precision_or_default()
    bad = [k for k, v in summary.items() if isinstance(v, float) and not math.isfinite(v)]
    if bad:
        raise EvalError(f"the scores are not finite ({', '.join(bad)}): the model returned NaN/inf landmarks for "
                        "some faces")
    report = {**summary, "method": method, "views": views, "flip": flip, "backend": backend_name,
              "model": str(path), "precision": precision,
              "decoder": method}  # the old name of "method", kept for one release

    return report, per_face
