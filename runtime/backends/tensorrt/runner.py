"""TensorRT backend: a serialized engine from a shfan-build folder (or a bare .engine/.plan); its
spec is this package's __init__.

The engine is reused only when its manifest matches the running TensorRT version, GPU
architecture (SM) and plugin binary; otherwise the error says exactly what to rebuild.
Inference: pinned host buffers, device buffers sized for the profile's max batch, tensor
addresses + `execute_async_v3` on a stream, one execution context per calling thread
(EngineRunner). Graphs that end in the
SubpixelDecode plugin output landmarks/scores; heatmap graphs are decoded on the host.

The functions above `TensorRTBackend` are pure logic (no tensorrt, no CUDA) and are tested
everywhere; tensorrt and the CUDA host API are imported only in `TensorRTBackend.open`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from shfan.contracts import BuildManifest, ModelInfo
from shfan.errors import BackendError
from shfan.io import Closable
from shfan.runtime.backends import ENGINE_SUFFIXES, decode_heatmaps  # one definition, in the registry

if TYPE_CHECKING:  # annotations only (scripts/tensorrt_check.py reads them); never imported at run time
    import tensorrt as trt


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


def model_info_from_io(ios: list[TensorIO], model_config: dict | None = None) -> ModelInfo:
    """From the build manifest's model_config, else from the tensor shapes."""
    if model_config:
        return ModelInfo.from_config(model_config)
    size = input_tensor(ios).shape[-1]
    roles = output_roles(ios)
    out = next(t for t in ios if t.name == roles.get("heatmaps", roles.get("landmarks")))
    return ModelInfo.from_sizes(size, out.shape[1])


def engine_from_build(folder: Path, precision: str | None = None) -> tuple[Path, BuildManifest, str]:
    """(engine path, manifest, precision) of a build folder; BackendError naming the fix."""
    manifest = BuildManifest.read(folder)
    precision, entry = manifest.entry(precision, folder)
    engine = entry.engine
    if not engine:
        raise BackendError(f"{folder}: the {precision} build has no TensorRT engine (built without TensorRT); "
                           f"build one here: {manifest.rebuild_command(folder, precision)}, "
                           "or use the onnxruntime backend")
    path = Path(folder) / engine
    if not path.is_file():
        raise BackendError(f"{path}: engine listed in the manifest is missing; rebuild: "
                           f"{manifest.rebuild_command(folder, precision)}")
    return path, manifest, precision


# ------------------------------------------------------------------------------ TensorRT glue

_LOGGER = None
_LOGGER_LOCK = threading.Lock()


def trt_logger(trt):
    """The process's one trt.Logger (TensorRT warns when builder and runtime use different
    ones); libnvinfer's own plugins are registered once, with it."""
    global _LOGGER
    with _LOGGER_LOCK:
        if _LOGGER is None:
            _LOGGER = trt.Logger(trt.Logger.WARNING)
            trt.init_libnvinfer_plugins(_LOGGER, "")
        return _LOGGER


def _io_descriptions(trt, engine: trt.ICudaEngine) -> list[TensorIO]:
    ios = []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
        max_shape = tuple(engine.get_tensor_profile_shape(name, 0)[2]) if is_input and engine.num_optimization_profiles else None
        ios.append(TensorIO(name, is_input, np.dtype(trt.nptype(engine.get_tensor_dtype(name))).name,
                            tuple(engine.get_tensor_shape(name)), max_shape))
    return ios


class _Worker:
    """One thread's execution context (DESIGN §6) with its stream and buffers."""

    def __init__(self, context: trt.IExecutionContext, stream, host: dict, device: dict):
        self.context, self.stream, self.host, self.device = context, stream, host, device
        self.shapes: dict[str, tuple] = {}  # last shape given to set_input_shape, per input
        self.lock = threading.Lock()


class EngineRunner:
    """Runs one deserialized engine through one CUDA host API, from any thread.

    Each calling thread gets its own execution context, stream and pinned/device buffers (sized
    by `plan`), created on its first call; the device is made current around every call (see
    cuda_host). After `close()` every call is an error, never a write into freed memory.
    Needs only the engine object and a host API, so it runs any engine (the backend's, the
    self-test's) and its logic is exercised with stand-ins where there is no GPU.
    """

    def __init__(self, engine: trt.ICudaEngine, cuda, plan: dict[str, tuple[tuple[int, ...], str]], label: str = "engine"):
        self.engine, self.cuda, self.plan, self.label = engine, cuda, plan, label
        self._local = threading.local()
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()
        self.closed = False

    def _check_open(self):
        if self.closed:
            raise BackendError(f"{self.label}: the TensorRT backend is closed; open a new one")

    def worker(self) -> _Worker:
        worker = getattr(self._local, "worker", None)
        if worker is not None:
            return worker
        with self._lock:
            self._check_open()
            with self.cuda.activate():
                context: trt.IExecutionContext = self.engine.create_execution_context()
                if context is None:
                    raise BackendError(f"{self.label}: TensorRT could not create an execution context (most often "
                                       "out of GPU memory); close other GPU programs, or rebuild with a smaller "
                                       "--max-batch / --workspace-mb")
                stream = self.cuda.stream()
                host, device = {}, {}
                try:
                    for name, (shape, dtype) in self.plan.items():
                        host[name] = self.cuda.pinned(shape, dtype)
                        device[name] = self.cuda.device_alloc(host[name].nbytes)
                        context.set_tensor_address(name, device[name].ptr)
                except BaseException:
                    self.cuda.free([*device.values(), *host.values()], stream)
                    raise
            worker = _Worker(context, stream, host, device)
            self._workers.append(worker)
        self._local.worker = worker
        return worker

    def run(self, inputs: dict[str, np.ndarray], outputs) -> dict[str, np.ndarray]:
        """Copy `inputs` in, execute, return copies of `outputs` (names) at their run shapes."""
        self._check_open()
        worker = self.worker()
        with worker.lock:
            self._check_open()
            with self.cuda.activate():
                return self._run(worker, inputs, outputs)

    def _run(self, w: _Worker, inputs, outputs):
        ctx = w.context
        for name, array in inputs.items():
            buf = w.host[name]
            if array.size > buf.size:
                raise BackendError(f"{self.label}: input {name!r} of shape {list(array.shape)} is larger than the "
                                   f"engine's buffer {list(buf.shape)}; send at most {buf.shape[0]} at a time")
            view = buf.reshape(-1)[: array.size].reshape(array.shape)
            view[...] = array  # casts to the engine's input dtype (fp16 engines take fp16)
            shape = tuple(int(d) for d in array.shape)
            if w.shapes.get(name) != shape:  # each call re-runs the plugins' onShapeChange
                if not ctx.set_input_shape(name, shape):
                    w.shapes.pop(name, None)
                    raise BackendError(f"{self.label}: input {name!r} shape {list(shape)} is outside the engine's "
                                       f"optimization profile (max {list(buf.shape)}); rebuild with shfan-build "
                                       "--max-batch N for larger batches")
                w.shapes[name] = shape
            self.cuda.h2d(w.device[name], view, w.stream)
        if not ctx.execute_async_v3(self.cuda.stream_handle(w.stream)):
            raise BackendError(f"{self.label}: TensorRT execution failed (see the TensorRT log above); "
                               "run shfan-doctor --selftest")
        views = {}
        for name in outputs:
            shape = tuple(int(d) for d in ctx.get_tensor_shape(name))
            view = w.host[name].reshape(-1)[: int(np.prod(shape, dtype=np.int64))].reshape(shape)
            self.cuda.d2h(view, w.device[name], w.stream)
            views[name] = view
        self.cuda.sync(w.stream)
        return {name: np.array(view) for name, view in views.items()}  # copies out of the pinned buffers

    def close(self):
        """Free every thread's buffers (waiting for a call in flight); later calls raise."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
            workers, self._workers = self._workers, []
        for w in workers:
            with w.lock, self.cuda.activate():
                self.cuda.sync(w.stream)
                w.context = None
                self.cuda.free([*w.device.values(), *w.host.values()], w.stream)
                w.host, w.device = {}, {}


class TensorRTBackend(Closable):
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
            if (path.parent / "manifest.json").is_file():  # an engine inside a build folder
                manifest = BuildManifest.read(path.parent)
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
        try:
            with cuda.activate():
                device_name, sm = cuda.device_name_and_sm()
            if manifest is not None and manifest.tensorrt:
                problems = manifest.engine_problems(trt.__version__, sm, device_name, plugin_hash)
                if problems:
                    fix = (manifest.rebuild_command(engine_path.parent, chosen or manifest.selected_precision)
                           if chosen or manifest.selected_precision else "shfan-build on this device")
                    raise BackendError(f"{engine_path}: {'; '.join(problems)}; rebuild the engine here: {fix}")
            return cls(trt, cuda, engine_path, manifest, decoder)
        except BaseException:
            cuda.close()
            raise

    @staticmethod
    def _load_plugin(manifest: BuildManifest | None) -> str | None:
        """Load the SubpixelDecode plugin before deserializing; its sha256 (None: not loaded).
        Looks at $SHFAN_PLUGIN_LIB, then the library the engine was built with (manifest
        `plugin_lib`), then plugins/build."""
        from shfan import plugins

        needed = manifest is not None and manifest.needs_plugin
        lib = plugins.find_plugin_library(recorded=manifest.plugin_lib if needed else None)  # PluginError: one line
        if lib is None:
            if needed:
                raise plugins.PluginError(f"the engine needs the SubpixelDecode plugin; build it with: "
                                          f"{plugins.BUILD_COMMAND}")
            return None
        plugins.load_plugin_library(lib)
        return plugins.plugin_sha256(lib)

    def __init__(self, trt, cuda, engine_path: Path, manifest: BuildManifest | None, decoder: str = "subpixel"):
        self.trt, self.cuda, self.decoder = trt, cuda, decoder
        self.logger = trt_logger(trt)
        with cuda.activate():
            self.runtime = trt.Runtime(self.logger)
            self.engine = self.runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self.engine is None:
            raise BackendError(f"{engine_path}: TensorRT {trt.__version__} cannot deserialize this engine (built by "
                               "another TensorRT version or GPU, or its plugin is not loaded); rebuild it here with "
                               "shfan-build")
        self.ios = _io_descriptions(trt, self.engine)
        self.roles = output_roles(self.ios)
        self.info = model_info_from_io(self.ios, manifest.model_config if manifest else None)
        inp = input_tensor(self.ios)
        self.input_name, self.input_shape = inp.name, tuple(inp.shape[1:])
        self.max_batch = max_batch(self.ios)
        self.runner = EngineRunner(self.engine, cuda, buffer_plan(self.ios, self.max_batch), Path(engine_path).name)
        self.runner.worker()  # the opening thread's context now: out-of-memory shows at open, not mid-stream

    def infer(self, crops: np.ndarray):
        if self.cuda is None:
            raise BackendError("the TensorRT backend is closed; open a new one")
        crops = np.asarray(crops, np.float32)
        if crops.ndim != 4 or tuple(crops.shape[1:]) != self.input_shape:
            raise BackendError(f"crops of shape {list(crops.shape)} do not fit the engine input "
                               f"[N, {', '.join(map(str, self.input_shape))}]")
        pts, scores = [], []
        for start in range(0, crops.shape[0], self.max_batch):
            chunk = crops[start:start + self.max_batch]
            out = self.runner.run({self.input_name: chunk}, list(self.roles.values()))
            out = {role: out[name].astype(np.float32) for role, name in self.roles.items()}
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
        cuda = getattr(self, "cuda", None)
        if cuda is None:
            return
        try:
            if getattr(self, "runner", None) is not None:
                self.runner.close()
            with cuda.activate():
                self.engine = self.runtime = None
        finally:
            cuda.close()
            self.cuda = None
