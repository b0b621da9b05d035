"""ONNX Runtime (CPU) helpers the builder and the accuracy guard share: sessions, batched
landmark prediction from a heatmap-output graph, and a latency probe."""

from __future__ import annotations

import time

import numpy as np


def session(model, threads: int | None = None):
    """A CPU session from a path or serialized ONNX bytes."""
    import onnxruntime as ort

    from shfan.runtime.ort_backend import DISABLED_OPTIMIZERS, session_options

    opts = session_options(ort, threads)  # as the runtime runs it, so latencies and kernels match
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"],
                                disabled_optimizers=DISABLED_OPTIMIZERS)


def predict_landmarks(model, crops: np.ndarray, model_config: dict, batch: int = 16) -> np.ndarray:
    """Landmarks [N, K, 2] in network-input px from a heatmap-output ONNX (path or bytes;
    NumPy codec)."""
    from shfan import codec

    sess = session(model)
    name = sess.get_inputs()[0].name
    scale = model_config["input_size"] / (model_config["input_size"] // 4)
    out = []
    for i in range(0, len(crops), batch):
        hm = sess.run(None, {name: np.ascontiguousarray(crops[i:i + batch], np.float32)})[0]
        pts, _ = codec.decode(hm.astype(np.float32), "subpixel", model_config["window"], model_config["temperature"])
        out.append(pts * scale)
    return np.concatenate(out).astype(np.float32)


def latency_ms(path, input_size: int, runs: int = 10, warmup: int = 2) -> float:
    """Median batch-1 latency on this CPU: a proxy for ranking precisions, not a Jetson number."""
    sess = session(path)
    name = sess.get_inputs()[0].name
    x = np.random.default_rng(0).random((1, 3, input_size, input_size), dtype=np.float32)
    for _ in range(warmup):
        sess.run(None, {name: x})
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(None, {name: x})
        times.append((time.perf_counter() - t0) * 1000)
    return float(np.median(times))
