"""ONNX Runtime backend: CPU by default, CUDA provider when onnxruntime-gpu has a GPU (its spec
is this package's __init__). `create_session` makes the runtime's,
the builder's and the accuracy guard's sessions with `session_options`; the CPU int8 calibration
(calibration/cpu_int8.py) builds its own, with `DISABLED_OPTIMIZERS` from here."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from shfan.contracts import META_KEY, ModelInfo
from shfan.errors import BackendError
from shfan.runtime.backends import decode_heatmaps
from shfan.platform_facts import module_available


def _import_ort():
    try:
        import onnxruntime
    except ImportError as exc:
        if module_available("onnxruntime"):  # there, but broken (or half-imported)
            raise BackendError(f"onnxruntime is installed but does not import ({short(str(exc))}); reinstall it: "
                               "pip install --force-reinstall onnxruntime (or onnxruntime-gpu; not both)") from None
        raise BackendError("onnxruntime is not installed: pip install onnxruntime "
                           "(or onnxruntime-gpu; not both)") from None
    return onnxruntime


def short(text: str, limit: int = 200) -> str:
    """The first line of a library message, cut at a word boundary (ONNX Runtime's run long)."""
    import textwrap

    first = next((ln.strip() for ln in str(text).splitlines() if ln.strip()), "")
    return textwrap.shorten(first, limit, placeholder=" ...") if first else ""


def cuda_device_present() -> bool:
    """An NVIDIA GPU device node exists (desktop driver or Jetson). onnxruntime-gpu lists the CUDA
    provider even on machines without one and then logs a loud failure; skip it there."""
    return any(os.path.exists(p) for p in ("/dev/nvidia0", "/dev/nvgpu/igpu0", "/dev/nvhost-gpu", "/dev/nvidiactl"))


def default_threads() -> int:
    """ONNX Runtime intra-op threads when none are asked for: one per physical core, at most 8
    (small convolutions stop scaling)."""
    return min(physical_cores(), 8)


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


# ORT's WeightBiasQuantization pass gives a Conv whose input is dequantized but whose weights
# are float (a layer the int8 accuracy guard kept out of int8) per-tensor 8-bit weights, so it
# becomes an integer conv after all, with weights that saturate on AVX2. Every shfan session
# turns it off; it changes nothing else (quantized convs already carry int8 weights and biases).
DISABLED_OPTIMIZERS = ["WeightBiasQuantization"]


def session_options(ort, threads: int | None = None):
    """The CPU settings every shfan session uses (measured on the 2-core VM, fp32 default model):
    intra-op threads = physical cores (at most 8: small convolutions stop scaling); no spinning
    (busy-waiting threads halve throughput when the capture thread or anything else shares
    the cores: 97 -> 59 ms per face); full graph optimisation (NCHWc conv layout for fp32, integer
    QLinearConv in NHWC for the CPU int8 file; 'extended' was 4-10 % slower); denormals flushed
    to zero (values below 1e-38 change no landmark; it measured 0-5 % faster, within noise)."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or default_threads()
    opts.log_severity_level = 3
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.set_denormal_as_zero", "1")
    return opts


def create_session(model, threads: int | None = None, providers=None):
    """An InferenceSession with `session_options` from a path or serialized ONNX bytes; providers
    default to CUDA (where a GPU device exists and onnxruntime-gpu has it) then CPU."""
    ort = _import_ort()
    opts = session_options(ort, threads)
    if not providers:
        available = ort.get_available_providers()
        wanted = ("CUDAExecutionProvider", "CPUExecutionProvider") if cuda_device_present() else ("CPUExecutionProvider",)
        providers = [p for p in wanted if p in available]
    if "CUDAExecutionProvider" in providers:
        # onnxruntime-gpu without the CUDA libraries falls back to the CPU, but the provider
        # library's load error goes to ORT's process-wide logger (the session's log level does
        # not reach it): quiet it only where that can happen.
        ort.set_default_logger_severity(3)
    if isinstance(model, bytes):
        return ort.InferenceSession(model, opts, providers=providers, disabled_optimizers=DISABLED_OPTIMIZERS)
    from shfan import io

    with io.library_path(model) as name:  # ORT takes UTF-8 names only
        return ort.InferenceSession(name, opts, providers=providers, disabled_optimizers=DISABLED_OPTIMIZERS)


NOT_LANDMARKS = ("is not a shfan landmark model (expected one image input [N, 3, S, S] and heatmaps "
                 "[N, K, S/4, S/4] or landmarks [N, K, 2] + scores out); give a shfan-build folder or its .onnx")


def model_info(session, path="the model") -> ModelInfo:
    """From our metadata, else from the graph's input/output shapes (foreign FAN exports); a
    graph of another shape (a face detector, a classifier) is refused here, not at infer()."""
    meta = session.get_modelmeta().custom_metadata_map
    inputs, outputs = session.get_inputs(), session.get_outputs()
    shape = inputs[0].shape
    out = outputs[0].shape
    if len(inputs) != 1 or len(shape) != 4 or shape[1] != 3:
        raise BackendError(f"{path} {NOT_LANDMARKS}")
    names = {o.name for o in outputs}
    if META_KEY in meta:
        try:
            return ModelInfo.from_config(json.loads(meta[META_KEY])["model_config"])
        except (ValueError, KeyError, TypeError):
            raise BackendError(f"{path}: its shfan metadata is damaged; rebuild it with shfan-build") from None
    heatmaps = len(out) == 4
    if not (heatmaps or {"landmarks", "scores"} <= names):
        raise BackendError(f"{path} {NOT_LANDMARKS}")
    if not (isinstance(shape[-1], int) and isinstance(out[1], int)):
        raise BackendError(f"{path}: ONNX model has no shfan metadata and dynamic spatial shapes; "
                           "export it with shfan-build")
    return ModelInfo.from_sizes(shape[-1], out[1])


class OnnxRuntimeBackend:
    name = "onnxruntime"

    def __init__(self, path, decoder: str = "subpixel", threads: int | None = None, providers=None,
                 info: ModelInfo | None = None):
        """`path`: an .onnx file or its serialized bytes. `info` overrides what the graph says
        (the builder decodes intermediate graphs with the config it is building)."""
        _import_ort()  # a missing or broken onnxruntime is named as such, not as "cannot load this model"
        label = "the ONNX model (bytes)" if isinstance(path, bytes) else Path(path)
        try:
            self.session = create_session(path, threads, providers)
        except Exception as exc:  # ORT raises its own exception types for bad files
            raise BackendError(f"{label}: ONNX Runtime cannot load this model "
                               f"({short(str(exc)) or type(exc).__name__}); give a shfan-build folder or .onnx") \
                from None
        self.info = info or model_info(self.session, label)
        self.decoder = decoder
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.providers = self.session.get_providers()
        # whether the graph ends at the heatmaps (decoded on the host) rather than the points
        self.outputs_heatmaps = "landmarks" not in self.output_names
        self._heatmaps_index = self.output_names.index("heatmaps") if "heatmaps" in self.output_names else 0

    def infer_heatmaps(self, crops: np.ndarray) -> np.ndarray:
        """The network alone: heatmaps [N, K, H, W] float32 (graphs that output heatmaps)."""
        if not self.outputs_heatmaps:
            raise BackendError("this graph decodes inside (landmarks output); it has no heatmaps to return")
        return self._heatmaps(crops)

    def _heatmaps(self, crops: np.ndarray) -> np.ndarray:
        outs = self.session.run(None, {self.input_name: np.ascontiguousarray(crops, np.float32)})
        return outs[self._heatmaps_index].astype(np.float32)

    def decode_heatmaps(self, heatmaps: np.ndarray):
        """The host decoder alone: (points [N, K, 2] in input px, scores [N, K])."""
        return decode_heatmaps(heatmaps, self.info, self.decoder)

    def infer(self, crops: np.ndarray):
        if self.outputs_heatmaps:
            return self.decode_heatmaps(self._heatmaps(crops))
        outs = dict(zip(self.output_names, self.session.run(None, {self.input_name: np.ascontiguousarray(crops, np.float32)})))
        return outs["landmarks"], outs["scores"]

    def close(self):
        self.session = None
