"""TensorRT backend: a serialized engine from a shfan-build folder (or a bare .engine/.plan).

The engine is reused only when its manifest matches the running TensorRT version, GPU
architecture (SM) and plugin binary; otherwise the error says exactly what to rebuild.
Inference: pinned host buffers, device buffers sized for the profile's max batch, tensor
addresses + `execute_async_v3` on the backend's own stream. Graphs that end in the
SubpixelDecode plugin output landmarks/scores; heatmap graphs are decoded on the host.

The functions above `TensorRTBackend` are pure logic (no tensorrt, no CUDA) and are tested
everywhere; tensorrt and the CUDA host API are imported only in `TensorRTBackend.open`.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shfan.runtime.backend import BackendError, ModelInfo, decode_heatmaps, read_manifest

ENGINE_SUFFIXES = (".engine", ".plan")


def tensorrt_available() -> bool:
    """TensorRT's Python module is importable (checked without importing it)."""
    try:
        return importlib.util.find_spec("tensorrt") is not None
    except (ImportError, ValueError):
        return False


# ------------------------------------------------------------------------------ pure logic


@dataclass(frozen=True)
class TensorIO:
    """One engine I/O tensor as TensorRT describes it (-1 marks a dynamic dimension)."""

    name: str
    is_input: bool
    dtype: str  # numpy dtype name: float32, float16, int32, ...
    shape: tuple[int, ...]
    max_shape: tuple[int, ...] | None = None  # inputs: optimization profile 0's max


def max_batch(ios: list[TensorIO]) -> int:
    """Largest batch the engine accepts (its input's profile max, or its static batch)."""
    inp = input_tensor(ios)
    if inp.shape[0] != -1:
        return inp.shape[0]
    if not inp.max_shape:
        raise BackendError(f"engine input {inp.name!r} has a dynamic batch but no optimization profile; "
                           "rebuild it with shfan-build")
    return int(inp.max_shape[0])


def input_tensor(ios: list[TensorIO]) -> TensorIO:
    inputs = [t for t in ios if t.is_input]
    if len(inputs) != 1 or len(inputs[0].shape) != 4 or inputs[0].shape[1] != 3:
        desc = ", ".join(f"{t.name}{list(t.shape)}" for t in inputs) or "none"
        raise BackendError(f"engine inputs ({desc}) are not one [N, 3, S, S] image; build it with shfan-build")
    return inputs[0]


def output_roles(ios: list[TensorIO]) -> dict[str, str]:
    """Which outputs mean what: {'landmarks': name, 'scores': name} when the decoder is in the
    engine, else {'heatmaps': name}. Names win; otherwise shapes ([N,K,2] + [N,K]; [N,K,H,W])."""
    outs = [t for t in ios if not t.is_input]
    by_name = {t.name: t for t in outs}
    if "landmarks" in by_name and "scores" in by_name:
        return {"landmarks": "landmarks", "scores": "scores"}
    pts = [t for t in outs if len(t.shape) == 3 and t.shape[2] == 2]
    scores = [t for t in outs if len(t.shape) == 2]
    if len(pts) == 1 and len(scores) == 1:
        return {"landmarks": pts[0].name, "scores": scores[0].name}
    if "heatmaps" in by_name:
        return {"heatmaps": "heatmaps"}
    maps = [t for t in outs if len(t.shape) == 4]
    if maps:
        return {"heatmaps": maps[-1].name}  # several stacks exported: the last is the prediction
    desc = ", ".join(f"{t.name}{list(t.shape)}" for t in outs) or "none"
    raise BackendError(f"engine outputs ({desc}) are neither landmarks+scores nor heatmaps; build it with shfan-build")


def buffer_plan(ios: list[TensorIO], batch: int | None = None) -> dict[str, tuple[tuple[int, ...], str]]:
    """Host/device buffer shape and dtype per I/O tensor, sized for `batch` (default: max)."""
    n = batch or max_batch(ios)
    plan = {}
    for t in ios:
        shape = (n, *t.shape[1:]) if t.shape and t.shape[0] == -1 else tuple(t.shape)
        if any(d < 0 for d in shape):
            raise BackendError(f"engine tensor {t.name!r} has dynamic non-batch dimensions {list(t.shape)}; "
                               "rebuild with a fixed input size (shfan-build does)")
        plan[t.name] = (shape, t.dtype)
    return plan


def model_info_from_io(ios: list[TensorIO], manifest: dict | None = None) -> ModelInfo:
    """From the build manifest's model_config, else from the tensor shapes."""
    cfg = (manifest or {}).get("model_config")
    if cfg:
        return ModelInfo.from_config(cfg)
    size = input_tensor(ios).shape[-1]
    roles = output_roles(ios)
    out = next(t for t in ios if t.name == roles.get("heatmaps", roles.get("landmarks")))
    return ModelInfo(input_size=size, landmarks=out.shape[1], heatmap_size=size // 4)


def manifest_problems(manifest: dict, tensorrt_version: str, sm: int | None, device_name: str | None = None,
                      plugin_sha256: str | None = None) -> list[str]:
    """Why an engine recorded in a manifest cannot run here (empty: it can)."""
    built = manifest.get("tensorrt") or {}
    problems = []
    if not built:
        return ["the build has no TensorRT engine (it was made without TensorRT)"]
    if str(built.get("version")) != str(tensorrt_version):
        problems.append(f"built with TensorRT {built.get('version')}, this system has {tensorrt_version}")
    if built.get("sm") is not None and sm is not None and int(built["sm"]) != int(sm):
        problems.append(f"built for sm_{built['sm']} ({built.get('device') or 'unknown GPU'}), this GPU is "
                        f"sm_{sm} ({device_name or 'unknown'})")
    want = manifest.get("plugin_sha256")
    if want and plugin_sha256 != want:
        problems.append("the SubpixelDecode plugin library differs from the one the engine was built with"
                        if plugin_sha256 else "the engine needs the SubpixelDecode plugin library, which is not found")
    return problems


def rebuild_command(folder: Path, manifest: dict, precision: str) -> str:
    art = (manifest.get("artifacts") or {}).get(precision) or {}
    onnx = art.get("onnx_decoded") or art.get("onnx") or f"model_{precision}.onnx"
    decoder = manifest.get("decoder") or "plugin"
    return f"shfan-build --onnx {Path(folder) / onnx} --precision {precision} --decoder {decoder} --out {folder}"


def engine_from_build(folder: Path, precision: str | None = None) -> tuple[Path, dict, str]:
    """(engine path, manifest, precision) of a build folder; BackendError naming the fix."""
    manifest = read_manifest(folder)
    artifacts = manifest.get("artifacts") or {}
    precision = precision or manifest.get("selected_precision") or next(iter(artifacts), None)
    if precision not in artifacts:
        raise BackendError(f"{folder}: no {precision} model in this build (has: {', '.join(artifacts) or 'none'}); "
                           f"run shfan-build --precision {precision}")
    engine = artifacts[precision].get("engine")
    if not engine:
        raise BackendError(f"{folder}: the {precision} build has no TensorRT engine (built without TensorRT); "
                           f"build one here: {rebuild_command(folder, manifest, precision)}, "
                           "or use --backend onnxruntime")
    path = Path(folder) / engine
    if not path.is_file():
        raise BackendError(f"{path}: engine listed in the manifest is missing; rebuild: "
                           f"{rebuild_command(folder, manifest, precision)}")
    return path, manifest, precision


# ------------------------------------------------------------------------------ the backend


def _io_descriptions(trt, engine) -> list[TensorIO]:
    ios = []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
        max_shape = tuple(engine.get_tensor_profile_shape(name, 0)[2]) if is_input and engine.num_optimization_profiles else None
        ios.append(TensorIO(name, is_input, np.dtype(trt.nptype(engine.get_tensor_dtype(name))).name,
                            tuple(engine.get_tensor_shape(name)), max_shape))
    return ios


class TensorRTBackend:
    name = "tensorrt"

    @classmethod
    def open(cls, path, precision: str | None = None, decoder: str = "subpixel", device: int = 0,
             host_api: str | None = None) -> "TensorRTBackend":
        """Open an engine from a shfan-build folder or a .engine/.plan file."""
        path = Path(path)
        manifest, chosen = None, precision
        if path.is_dir():
            engine_path, manifest, chosen = engine_from_build(path, precision)
        elif path.suffix in ENGINE_SUFFIXES and path.is_file():
            engine_path = path
            sidecar = path.parent / "manifest.json"  # an engine inside a build folder
            if sidecar.is_file():
                manifest = json.loads(sidecar.read_text())
        else:
            raise BackendError(f"{path}: not a TensorRT engine (.engine/.plan) or shfan-build folder")
        try:
            import tensorrt as trt
        except ImportError as exc:
            raise BackendError(f"TensorRT is not importable ({exc}); on Jetson use JetPack's python3-libnvinfer "
                               "in a venv with --system-site-packages (shfan-doctor shows the fix)") from None
        plugin_hash = cls._load_plugin(manifest)
        from shfan.runtime.cuda_host import open_cuda_host

        cuda = open_cuda_host(host_api, device)
        device_name, sm = cuda.device_name_and_sm()
        if manifest is not None and (manifest.get("tensorrt") or {}):
            problems = manifest_problems(manifest, trt.__version__, sm, device_name, plugin_hash)
            if problems:
                cuda.close()
                fix = (rebuild_command(engine_path.parent, manifest, chosen or manifest.get("selected_precision", "fp16"))
                       if chosen or manifest.get("selected_precision") else "shfan-build on this device")
                raise BackendError(f"{engine_path}: {'; '.join(problems)}; rebuild the engine here: {fix}")
        try:
            return cls(trt, cuda, engine_path, manifest, decoder)
        except BaseException:
            cuda.close()
            raise

    @staticmethod
    def _load_plugin(manifest: dict | None) -> str | None:
        """Load the SubpixelDecode plugin before deserializing; its sha256 (None: not loaded)."""
        from shfan import plugins

        needed = bool(manifest and manifest.get("plugin_sha256"))
        try:
            lib = plugins.find_plugin_library()
            if lib is None:
                if needed:
                    raise plugins.PluginError(f"the engine needs the SubpixelDecode plugin; build it with: "
                                              f"{plugins.BUILD_COMMAND}")
                return None
            plugins.load_plugin_library(lib)
            return plugins.plugin_sha256(lib)
        except plugins.PluginError as exc:
            raise BackendError(str(exc)) from None

    def __init__(self, trt, cuda, engine_path: Path, manifest: dict | None, decoder: str = "subpixel"):
        self.trt, self.cuda, self.decoder = trt, cuda, decoder
        self.logger = trt.Logger(trt.Logger.WARNING)
        trt.init_libnvinfer_plugins(self.logger, "")
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self.engine is None:
            raise BackendError(f"{engine_path}: TensorRT {trt.__version__} cannot deserialize this engine (built by "
                               "another TensorRT version or GPU, or its plugin is not loaded); rebuild it here with "
                               "shfan-build")
        self.ios = _io_descriptions(trt, self.engine)
        self.roles = output_roles(self.ios)
        self.info = model_info_from_io(self.ios, manifest)
        self.input_name = input_tensor(self.ios).name
        self.max_batch = max_batch(self.ios)
        self.context = self.engine.create_execution_context()
        self.stream = cuda.stream()
        self.host, self.device = {}, {}
        for name, (shape, dtype) in buffer_plan(self.ios, self.max_batch).items():
            self.host[name] = cuda.pinned(shape, dtype)
            self.device[name] = cuda.device_alloc(self.host[name].nbytes)
            self.context.set_tensor_address(name, self.device[name].ptr)

    def _run(self, crops: np.ndarray) -> dict[str, np.ndarray]:
        n = crops.shape[0]
        inp = self.host[self.input_name]
        inp[:n] = crops.astype(inp.dtype, copy=False)
        self.context.set_input_shape(self.input_name, tuple(crops.shape))
        self.cuda.h2d(self.device[self.input_name], inp[:n], self.stream)
        if not self.context.execute_async_v3(self.cuda.stream_handle(self.stream)):
            raise BackendError("TensorRT execution failed (see the TensorRT log above); run shfan-doctor")
        outs = {}
        for role, name in self.roles.items():
            shape = tuple(self.context.get_tensor_shape(name))
            view = self.host[name].reshape(-1)[: int(np.prod(shape))].reshape(shape)
            self.cuda.d2h(view, self.device[name], self.stream)
            outs[role] = view
        self.cuda.sync(self.stream)
        return {k: v.astype(np.float32) for k, v in outs.items()}  # copies out of the pinned buffers

    def infer(self, crops: np.ndarray):
        crops = np.asarray(crops, np.float32)
        pts, scores = [], []
        for start in range(0, crops.shape[0], self.max_batch):
            out = self._run(crops[start:start + self.max_batch])
            if "landmarks" in out:
                p, s = out["landmarks"], out["scores"]
            else:
                p, s = decode_heatmaps(out["heatmaps"], self.info, self.decoder)
            pts.append(p)
            scores.append(s)
        if not pts:
            k = self.info.landmarks
            return np.zeros((0, k, 2), np.float32), np.zeros((0, k), np.float32)
        return np.concatenate(pts).astype(np.float32), np.concatenate(scores).astype(np.float32)

    def close(self):
        if getattr(self, "cuda", None) is None:
            return
        self.cuda.sync(self.stream)
        self.context = self.engine = None
        self.cuda.free([*self.device.values(), *self.host.values()], self.stream)
        self.cuda.close()
        self.cuda = None
