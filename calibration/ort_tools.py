"""ONNX Runtime (CPU) helpers the builder and the accuracy guard share: sessions, batched
landmark prediction from a heatmap-output graph, and a latency probe."""

from __future__ import annotations

import time

import numpy as np

CPU = ["CPUExecutionProvider"]  # builder numbers are CPU numbers, whatever else is installed


def session(model, threads: int | None = None):
    """A CPU session from a path or serialized ONNX bytes, made as the runtime makes its own
    (shfan.runtime.backends.onnxruntime.runner.create_session), so latencies and kernels match."""
    from shfan.runtime.backends.onnxruntime.runner import create_session

    return create_session(model, threads, providers=CPU)


def predict_landmarks(model, crops: np.ndarray, model_config: dict, batch: int = 16) -> np.ndarray:
    """Landmarks [N, K, 2] in network-input px from a heatmap-output ONNX (path or bytes;
    NumPy subpixel codec with `model_config`'s window and temperature), through the runtime's
    ONNX Runtime backend on the CPU."""
    from shfan.contracts import ModelInfo
    from shfan.runtime.backends.onnxruntime.runner import OnnxRuntimeBackend

    backend = OnnxRuntimeBackend(model, providers=CPU, info=ModelInfo.from_config(model_config))
    try:
        out = [backend.infer(crops[i:i + batch])[0] for i in range(0, len(crops), batch)]
    finally:
        backend.close()
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
