"""One seam for inference backends: `infer(crops) -> (points, scores)`.

crops: [N, 3, S, S] float32 RGB in [0, 1]; points: [N, K, 2] float32 in network-input pixels
(continuous convention); scores: [N, K] heatmap peak values. Everything above this seam
(pipeline, evaluation, benchmarks) is backend-agnostic.

The backends themselves are registered in `shfan.runtime.backends` (one module each);
`open_backend` picks one for a model path.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

import numpy as np

from shfan.contracts import ModelInfo  # re-exported
from shfan.errors import BackendError  # re-exported
from shfan.runtime import backends
from shfan.runtime.backends import is_checkpoint, is_engine

log = logging.getLogger("shfan.runtime")

__all__ = ["ModelInfo", "BackendError", "Backend", "decode_heatmaps", "open_backend"]


class Backend(Protocol):
    """What every backend provides. Optional, where the graph ends at the heatmaps (ONNX Runtime
    on heatmap graphs, PyTorch): `outputs_heatmaps` (bool), `infer_heatmaps(crops) -> heatmaps
    [N, K, H, W]` (the network alone) and `decode_heatmaps(heatmaps) -> (points, scores)` (the
    host decoder alone), so benchmarks can time the two halves; check `getattr(b,
    "outputs_heatmaps", False)` before calling them."""

    info: ModelInfo
    name: str

    def infer(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...

    def close(self) -> None: ...


def decode_heatmaps(heatmaps: np.ndarray, info: ModelInfo, method: str = "subpixel"):
    """Host-side decoding for graphs that output heatmaps (NumPy reference codec)."""
    from shfan import codec

    pts, scores = codec.decode(heatmaps, method, info.window, info.temperature)
    return pts * (info.input_size / heatmaps.shape[-1]), scores


def open_backend(model, backend: str = "auto", precision: str | None = None,
                 decoder: str = "subpixel", threads: int | None = None) -> Backend:
    """A backend for a build folder, .onnx file or .engine/.plan file (a checkpoint with
    backend pytorch). auto: TensorRT for engines, and for build folders where TensorRT is
    importable (falling back to ONNX Runtime, with a warning, when the engine cannot run);
    ONNX Runtime otherwise."""
    if backend not in backends.choices():
        raise BackendError(f"unknown backend {backend!r}; choose one of {', '.join(backends.choices())}")
    path = Path(model)
    if not path.exists():
        raise BackendError(f"{path}: no such model (give a shfan-build folder, .onnx or .engine file)")
    if is_checkpoint(path) and (backend == "auto" or not backends.get(backend).accepts(path)):
        raise BackendError(f"{path} is a PyTorch checkpoint; export it first: shfan-build --weights {path} "
                           "--precision fp32, then use the build folder; or evaluate the checkpoint itself with the "
                           "pytorch backend (shfan-eval --backend pytorch; needs torch)")
    options = dict(precision=precision, decoder=decoder, threads=threads)
    if backend == "auto":
        tensorrt = backends.get("tensorrt")
        if is_engine(path):
            return tensorrt.open(path, **options)  # says so when TensorRT is not available
        if path.is_dir() and tensorrt.available():
            try:
                return tensorrt.open(path, **options)
            except BackendError as exc:  # its ONNX still runs; say why the engine was not used
                log.warning("TensorRT engine not used: %s; falling back to ONNX Runtime", exc)
        backend = "onnxruntime"
    return backends.get(backend).open(path, **options)
