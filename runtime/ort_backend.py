"""ONNX Runtime backend: CPU by default, CUDA provider when onnxruntime-gpu has a GPU."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from shfan.runtime.backend import META_KEY, BackendError, ModelInfo, decode_heatmaps


def _import_ort():
    try:
        import onnxruntime
    except ImportError:
        raise BackendError("onnxruntime is not installed: pip install onnxruntime "
                           "(or onnxruntime-gpu; not both)") from None
    return onnxruntime


def cuda_device_present() -> bool:
    """An NVIDIA GPU device node exists (desktop driver or Jetson). onnxruntime-gpu lists the CUDA
    provider even on machines without one and then logs a loud failure; skip it there."""
    return any(os.path.exists(p) for p in ("/dev/nvidia0", "/dev/nvgpu/igpu0", "/dev/nvhost-gpu", "/dev/nvidiactl"))


def physical_cores() -> int:
    """Physical cores this process may run on (SMT siblings counted once, CPU affinity and
    cpusets respected): one ONNX Runtime thread per physical core is its fastest setting, and
    os.cpu_count() counts hyper-threads and CPUs a container cannot use."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1
    cores = set()
    for cpu in cpus:
        try:
            base = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
            cores.add(((base / "physical_package_id").read_text().strip(), (base / "core_id").read_text().strip()))
        except OSError:
            cores.add(("cpu", str(cpu)))
    return max(1, len(cores))


def session_options(ort, threads: int | None = None):
    """The CPU settings every shfan session uses (measured on the 2-core VM, fp32 default model):
    intra-op threads = physical cores (at most 8: small convolutions stop scaling); no spinning
    (busy-waiting threads halve throughput when the capture thread or anything else shares
    the cores: 97 -> 59 ms per face); full graph optimisation (NCHWc conv layout for fp32, integer
    QLinearConv in NHWC for the CPU int8 file; 'extended' is ~10 % slower); denormals flushed to
    zero (values below 1e-38 change no landmark and slow fp32 arithmetic several-fold)."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or min(physical_cores(), 8)
    opts.log_severity_level = 3
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.set_denormal_as_zero", "1")
    return opts


def model_info(session) -> ModelInfo:
    """From our metadata, else from the graph's input/output shapes (foreign FAN exports)."""
    meta = session.get_modelmeta().custom_metadata_map
    if META_KEY in meta:
        return ModelInfo.from_config(json.loads(meta[META_KEY])["model_config"])
    shape = session.get_inputs()[0].shape
    out = session.get_outputs()[0].shape
    if not (isinstance(shape[-1], int) and isinstance(out[1], int)):
        raise BackendError("ONNX model has no shfan metadata and dynamic spatial shapes; "
                           "export it with shfan-build")
    return ModelInfo(input_size=shape[-1], landmarks=out[1], heatmap_size=shape[-1] // 4)


class OnnxRuntimeBackend:
    name = "onnxruntime"

    def __init__(self, path, decoder: str = "subpixel", threads: int | None = None, providers=None):
        ort = _import_ort()
        path = Path(path)
        opts = session_options(ort, threads)
        ort.set_default_logger_severity(3)  # onnxruntime-gpu without CUDA libs: fall back quietly
        available = ort.get_available_providers()
        wanted = ("CUDAExecutionProvider", "CPUExecutionProvider") if cuda_device_present() else ("CPUExecutionProvider",)
        providers = providers or [p for p in wanted if p in available]
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=providers)
        except Exception as exc:  # ORT raises its own exception types for bad files
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise BackendError(f"{path}: ONNX Runtime cannot load this model ({first[:200]})") from None
        self.info = model_info(self.session)
        self.decoder = decoder
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.providers = self.session.get_providers()

    def infer(self, crops: np.ndarray):
        outs = dict(zip(self.output_names, self.session.run(None, {self.input_name: np.ascontiguousarray(crops, np.float32)})))
        if "landmarks" in outs:
            return outs["landmarks"], outs["scores"]
        heatmaps = outs.get("heatmaps", next(iter(outs.values())))
        return decode_heatmaps(heatmaps.astype(np.float32), self.info, self.decoder)

    def close(self):
        self.session = None
