"""One seam for inference backends: `infer(crops) -> (points, scores)`.

crops: [N, 3, S, S] float32 RGB in [0, 1]; points: [N, K, 2] float32 in network-input pixels
(continuous convention); scores: [N, K] heatmap peak values. Everything above this seam
(pipeline, evaluation, benchmarks) is backend-agnostic.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

META_KEY = "shfan"  # ONNX metadata_props key holding {"model_config": {...}, ...}
BACKENDS = ("auto", "tensorrt", "onnxruntime")
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".tar", ".zip")
PRECISIONS = ("fp32", "fp16", "int8")  # of a build folder (shfan.builder.precision.PRECISIONS)


from shfan.errors import BackendError  # noqa: E402  (re-exported)


@dataclass(frozen=True)
class ModelInfo:
    input_size: int
    landmarks: int
    heatmap_size: int
    window: int = 5
    temperature: float = 12.0

    @classmethod
    def from_config(cls, cfg: dict) -> "ModelInfo":
        return cls(int(cfg["input_size"]), int(cfg["landmarks"]), int(cfg["input_size"]) // 4,
                   int(cfg.get("window", 5)), float(cfg.get("temperature", 12.0)))


class Backend(Protocol):
    info: ModelInfo
    name: str

    def infer(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...

    def close(self) -> None: ...


def decode_heatmaps(heatmaps: np.ndarray, info: ModelInfo, method: str = "subpixel"):
    """Host-side decoding for graphs that output heatmaps (NumPy reference codec)."""
    from shfan import codec

    pts, scores = codec.decode(heatmaps, method, info.window, info.temperature)
    return pts * (info.input_size / heatmaps.shape[-1]), scores


def read_manifest(folder: Path) -> dict:
    path = Path(folder) / "manifest.json"
    if not path.is_file():
        raise BackendError(f"{folder}: no manifest.json; is this a shfan-build output folder?")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BackendError(f"{path}: corrupt manifest ({getattr(exc, 'msg', exc)}); rebuild with shfan-build") \
            from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("artifacts", {}), dict):
        raise BackendError(f"{path}: not a shfan-build manifest (expected a JSON object with 'artifacts'); "
                           "rebuild with shfan-build")
    return manifest


def onnx_from_build(folder: Path, precision: str | None = None, cpu: bool = True) -> Path:
    """The ONNX Runtime-runnable file (heatmap output) of a build folder for a precision
    (default: the precision the build selected). With `cpu`, the file built for ONNX Runtime's
    CPU provider (`shfan-build --target cpu|all`, artifacts[p]["cpu"]) when the build has one."""
    manifest = read_manifest(folder)
    artifacts = manifest.get("artifacts", {})
    precision = precision or manifest.get("selected_precision") or next(iter(artifacts), None)
    if precision not in artifacts:
        raise BackendError(f"{folder}: no {precision} model in this build (has: {', '.join(artifacts) or 'none'}); "
                           f"run shfan-build --precision {precision}")
    entry = artifacts[precision]
    if cpu and entry.get("cpu"):
        return Path(folder) / entry["cpu"]["onnx"]
    return Path(folder) / entry["onnx"]


def open_backend(model, backend: str = "auto", precision: str | None = None,
                 decoder: str = "subpixel", threads: int | None = None) -> Backend:
    """A backend for a build folder, .onnx file or .engine/.plan file."""
    if backend not in BACKENDS:
        raise BackendError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    path = Path(model)
    if not path.exists():
        raise BackendError(f"{path}: no such model (give a shfan-build folder, .onnx or .engine file)")
    if path.is_file() and path.suffix in CHECKPOINT_SUFFIXES:
        raise BackendError(f"{path} is a PyTorch checkpoint; export it first: shfan-build --weights {path} "
                           "--precision fp32, then use the build folder")
    engine = path.suffix in (".engine", ".plan")
    if backend == "onnxruntime" and engine:
        raise BackendError(f"{path} is a TensorRT engine, which ONNX Runtime cannot run; use backend tensorrt "
                           "(on the machine it was built for), or the shfan-build folder / .onnx it came from")
    if backend == "tensorrt" and not (engine or path.is_dir()):
        raise BackendError(f"backend tensorrt runs a shfan-build folder or .engine, not {path.name}; build one "
                           "with shfan-build (on the Jetson), or use backend onnxruntime or auto")
    if backend in ("auto", "tensorrt") and (path.suffix in (".engine", ".plan") or path.is_dir()):
        try:
            from shfan.runtime.trt_backend import TensorRTBackend, tensorrt_available
        except ImportError:
            tensorrt_available = lambda: False  # noqa: E731
        if tensorrt_available():
            try:
                return TensorRTBackend.open(path, precision=precision, decoder=decoder)
            except BackendError as exc:
                if backend == "tensorrt" or not path.is_dir():
                    raise
                # auto + build folder: its ONNX still runs; say why the engine was not used
                import logging

                logging.getLogger("shfan.runtime").warning("TensorRT engine not used: %s; falling back to "
                                                           "ONNX Runtime", exc)
        if backend == "tensorrt" or path.suffix in (".engine", ".plan"):
            raise BackendError("TensorRT is not available here (python -c 'import tensorrt' fails); "
                               "use the onnxruntime backend, or run shfan-doctor for the fix")
    from shfan.runtime.ort_backend import OnnxRuntimeBackend, cuda_device_present

    # the CPU int8 file where ONNX Runtime runs on the CPU; with a GPU its CUDA provider takes
    # the TensorRT-style file (it has no integer convolution kernels)
    onnx_path = onnx_from_build(path, precision, cpu=not cuda_device_present()) if path.is_dir() else path
    return OnnxRuntimeBackend(onnx_path, decoder=decoder, threads=threads)
