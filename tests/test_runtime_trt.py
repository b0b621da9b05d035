"""TensorRT backend: the pure logic (I/O roles, buffer plan, manifest match) everywhere; a real
engine only where TensorRT and a GPU exist."""

import json

import numpy as np
import pytest

from shfan import platform_facts
from shfan.contracts import BuildManifest
from shfan.errors import BackendError
from shfan.runtime.backends import open_backend
from shfan.runtime.backends.tensorrt import runner as tb
from shfan.runtime.backends.tensorrt.runner import TensorIO

DECODED = [TensorIO("image", True, "float32", (-1, 3, 256, 256), (8, 3, 256, 256)),
           TensorIO("landmarks", False, "float32", (-1, 68, 2)),
           TensorIO("scores", False, "float32", (-1, 68))]
HEATMAPS = [TensorIO("input", True, "float16", (-1, 3, 128, 128), (4, 3, 128, 128)),
            TensorIO("out0", False, "float16", (-1, 68, 32, 32)),
            TensorIO("out1", False, "float16", (-1, 68, 32, 32))]


def test_output_roles():
    assert tb.output_roles(DECODED) == {"landmarks": "landmarks", "scores": "scores"}
    assert tb.output_roles(HEATMAPS) == {"heatmaps": "out1"}  # last stack
    renamed = [DECODED[0], TensorIO("p", False, "float32", (-1, 98, 2)), TensorIO("s", False, "float32", (-1, 98))]
    assert tb.output_roles(renamed) == {"landmarks": "p", "scores": "s"}
    with pytest.raises(BackendError, match="neither landmarks"):
        tb.output_roles([DECODED[0], TensorIO("x", False, "float32", (-1, 10))])


def test_buffer_plan_and_batch():
    assert tb.max_batch(DECODED) == 8
    plan = tb.buffer_plan(DECODED)
    assert plan == {"image": ((8, 3, 256, 256), "float32"), "landmarks": ((8, 68, 2), "float32"),
                    "scores": ((8, 68), "float32")}
    assert tb.buffer_plan(HEATMAPS, 2)["out1"] == ((2, 68, 32, 32), "float16")
    static = [TensorIO("image", True, "float32", (1, 3, 64, 64)), TensorIO("heatmaps", False, "float32", (1, 68, 16, 16))]
    assert tb.max_batch(static) == 1 and tb.buffer_plan(static)["heatmaps"][0] == (1, 68, 16, 16)
    with pytest.raises(BackendError, match="dynamic non-batch"):
        tb.buffer_plan([TensorIO("image", True, "float32", (-1, 3, -1, -1), (4, 3, 256, 256))])
    with pytest.raises(BackendError, match="no optimization profile"):
        tb.max_batch([TensorIO("image", True, "float32", (-1, 3, 64, 64))])
    with pytest.raises(BackendError, match=r"\[N, 3, S, S\]"):
        tb.input_tensor([TensorIO("a", True, "float32", (1, 64, 64))])


def test_model_info_from_io():
    info = tb.model_info_from_io(HEATMAPS)
    assert (info.input_size, info.landmarks, info.heatmap_size) == (128, 68, 32)
    cfg = {"input_size": 256, "landmarks": 68, "window": 7, "temperature": 8.0}
    assert tb.model_info_from_io(DECODED, cfg).window == 7


MANIFEST = {"tensorrt": {"version": "10.3.0", "device": "Orin", "sm": 87}, "plugin_sha256": "ab" * 32,
            "decoder": "plugin", "selected_precision": "fp16",
            "artifacts": {"fp16": {"onnx": "model_fp16.onnx", "onnx_decoded": "model_fp16_plugin.onnx",
                                   "engine": "model_fp16_plugin.engine"}}}


def problems(manifest, *args):
    return BuildManifest.from_json(manifest).engine_problems(*args)


def test_manifest_match():
    assert problems(MANIFEST, "10.3.0", 87, "Orin", "ab" * 32) == []
    p = problems(MANIFEST, "10.7.0", 110, "Thor", "cd" * 32)
    assert len(p) == 3
    assert "TensorRT 10.3.0, this system has 10.7.0" in p[0]
    assert "sm_87 (Orin), this GPU is sm_110 (Thor)" in p[1]
    assert "plugin" in p[2]
    assert "not found" in problems(MANIFEST, "10.3.0", 87, None, None)[0]
    assert problems({**MANIFEST, "plugin_sha256": None}, "10.3.0", 87) == []
    assert "without TensorRT" in problems({"tensorrt": None}, "10.3.0", 87)[0]


def test_rebuild_command_names_the_onnx_and_precision(tmp_path):
    cmd = BuildManifest.from_json(MANIFEST).rebuild_command(tmp_path, "fp16")
    assert cmd == f"shfan-build --onnx {tmp_path / 'model_fp16_plugin.onnx'} --precision fp16 --decoder plugin --out {tmp_path}"


def test_engine_from_build(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps(MANIFEST))
    with pytest.raises(BackendError, match="engine listed in the manifest is missing; rebuild: shfan-build"):
        tb.engine_from_build(tmp_path)
    (tmp_path / "model_fp16_plugin.engine").write_bytes(b"x")
    path, manifest, precision = tb.engine_from_build(tmp_path)
    assert path.name == "model_fp16_plugin.engine" and precision == "fp16"
    assert manifest == BuildManifest.from_json(MANIFEST)
    with pytest.raises(BackendError, match="no int8 model.*--precision int8"):
        tb.engine_from_build(tmp_path, "int8")
    no_engine = {**MANIFEST, "artifacts": {"fp16": {"onnx": "model_fp16.onnx", "engine": None}}}
    (tmp_path / "manifest.json").write_text(json.dumps(no_engine))
    with pytest.raises(BackendError, match="no TensorRT engine.*onnxruntime backend"):
        tb.engine_from_build(tmp_path)


def test_engine_sidecar_manifest_is_read_like_a_build_folder(tmp_path):
    """An engine inside a build folder is checked against its manifest; a damaged one is a
    one-line error naming the fix (it was a JSONDecodeError), before TensorRT is imported."""
    engine = tmp_path / "model_fp16_plugin.engine"
    engine.write_bytes(b"x")
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(BackendError, match="corrupt manifest.*rebuild with shfan-build"):
        tb.TensorRTBackend.open(engine)


def test_manifest_needs_the_plugin_only_for_plugin_engines():
    """No decoder key: the builder's default (plugin); an explicit "decoder": null: no plugin node."""
    assert BuildManifest.from_json(MANIFEST).needs_plugin is True
    assert not BuildManifest.from_json({**MANIFEST, "decoder": "onnx"}).needs_plugin
    assert not BuildManifest.from_json({**MANIFEST, "decoder": None}).needs_plugin
    assert BuildManifest.from_json({k: v for k, v in MANIFEST.items() if k != "decoder"}).needs_plugin
    assert problems({**MANIFEST, "decoder": None}, "10.3.0", 87, "Orin", None) == []


def test_engine_without_tensorrt_names_the_fix(tmp_path):
    if platform_facts.tensorrt_installed():
        pytest.skip("TensorRT is installed here")
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"x")
    with pytest.raises(BackendError, match="onnxruntime backend"):
        open_backend(engine, "auto")
    with pytest.raises(BackendError, match="TensorRT is not available"):
        open_backend(tmp_path, "tensorrt")


def _gpu_tensorrt():
    if not platform_facts.tensorrt_installed():
        pytest.skip("TensorRT not installed")
    from shfan.runtime.cuda_host import available_host_api

    if available_host_api() is None:
        pytest.skip("neither pycuda nor cuda-python installed")
    try:
        from shfan.runtime.cuda_host import open_cuda_host

        open_cuda_host().close()
    except BackendError as exc:
        pytest.skip(f"no usable GPU: {exc}")


@pytest.mark.tensorrt
@pytest.mark.gpu
def test_real_engine_matches_onnxruntime(tmp_path, tiny_onnx):
    """Build a heatmap engine from the tiny ONNX model with TensorRT, run it through the backend
    (pinned buffers, execute_async_v3) and compare with ONNX Runtime."""
    _gpu_tensorrt()
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    assert parser.parse(tiny_onnx.read_bytes())
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    size = network.get_input(0).shape[-1]
    profile.set_shape(network.get_input(0).name, (1, 3, size, size), (2, 3, size, size), (3, 3, size, size))
    config.add_optimization_profile(profile)
    engine = tmp_path / "tiny.engine"
    engine.write_bytes(bytes(builder.build_serialized_network(network, config)))

    crops = np.random.default_rng(0).random((5, 3, size, size), dtype=np.float32)  # 5 > max batch 3
    trt_be = tb.TensorRTBackend.open(engine)
    ort_be = open_backend(tiny_onnx, "onnxruntime")
    try:
        (p1, s1), (p2, s2) = trt_be.infer(crops), ort_be.infer(crops)
    finally:
        trt_be.close()
    assert p1.shape == (5, 68, 2) and np.abs(s1 - s2).max() < 1e-3
    assert np.median(np.abs(p1 - p2)) < 1e-2


def test_cuda_host_without_gpu_or_api_names_the_fix():
    from shfan.runtime import cuda_host

    try:
        cuda_host.open_cuda_host().close()
    except BackendError as exc:
        msg = str(exc)
        assert "\n" not in msg
        if cuda_host.available_host_api() is None:
            assert "pip install pycuda" in msg and "cuda-python" in msg
        else:
            assert "shfan-doctor" in msg
    else:
        pytest.skip("a GPU and a CUDA host API are usable here")


# ---------------------------------------------------------------- host buffers and the runner, with stand-ins
# (CPU memory behind the CUDA host API's methods, an engine/context that doubles its input: no
# tensorrt module, no GPU; they drive EngineRunner's real code)

import ctypes  # noqa: E402
import threading  # noqa: E402
from contextlib import contextmanager  # noqa: E402

from shfan.runtime import cuda_host  # noqa: E402


class StandInAllocator:
    """alloc(nbytes) -> address of ctypes memory (what cudaMallocHost hands back)."""

    def __init__(self):
        self.blocks = []

    def __call__(self, nbytes):
        block = ctypes.create_string_buffer(nbytes)
        self.blocks.append(block)
        return ctypes.addressof(block)


@pytest.mark.parametrize("dtype", ["float16", "float32", "int32", "int8"])
def test_pinned_array_any_dtype_on_raw_bytes(dtype):
    alloc = StandInAllocator()
    array, ptr = cuda_host.pinned_array(alloc, (2, 3, 4), dtype)
    assert array.dtype == np.dtype(dtype) and array.shape == (2, 3, 4)
    assert ptr == ctypes.addressof(alloc.blocks[0]) and array.ctypes.data == ptr
    array[...] = np.arange(24).reshape(2, 3, 4)
    written = np.frombuffer(alloc.blocks[0].raw, dtype)  # the allocator's memory holds the values
    np.testing.assert_array_equal(written, np.arange(24).astype(dtype))


def test_pinned_array_fp16_is_what_as_ctypes_type_cannot_do():
    with pytest.raises(NotImplementedError):  # the old code path, on this NumPy
        np.ctypeslib.as_ctypes_type(np.float16)
    array, _ = cuda_host.pinned_array(StandInAllocator(), (0, 68), np.float16)
    assert array.shape == (0, 68) and array.dtype == np.float16


class StandInHost:
    """The CUDA host API's methods on CPU memory; records which thread made what current."""

    name = "stand-in"

    def __init__(self):
        self.alloc = StandInAllocator()
        self.device_mem = {}  # ptr -> bytearray
        self.depth = {}  # thread id -> activation depth
        self.activations = set()
        self.freed = []
        self.closed = False

    @contextmanager
    def activate(self):
        if self.closed:
            raise BackendError("closed host")
        tid = threading.get_ident()
        self.depth[tid] = self.depth.get(tid, 0) + 1
        self.activations.add(tid)
        try:
            yield
        finally:
            self.depth[tid] -= 1

    def _active(self):
        assert self.depth.get(threading.get_ident(), 0) > 0, "CUDA call without an active device"

    def pinned(self, shape, dtype):
        self._active()
        return cuda_host.pinned_array(self.alloc, shape, dtype)[0]

    def device_alloc(self, nbytes):
        self._active()
        mem = np.zeros(max(1, nbytes), np.uint8)
        self.device_mem[mem.ctypes.data] = mem
        return cuda_host.DeviceBuffer(mem.ctypes.data, nbytes, mem)

    def stream(self):
        return object()

    stream_handle = staticmethod(id)

    def h2d(self, dst, src, stream):
        self._active()
        raw = np.ascontiguousarray(src).view(np.uint8).reshape(-1)
        self.device_mem[dst.ptr][: raw.size] = raw

    def d2h(self, dst, src, stream):
        self._active()
        dst.reshape(-1).view(np.uint8)[...] = self.device_mem[src.ptr][: dst.nbytes]

    def sync(self, stream):
        self._active()

    def free(self, buffers, stream=None):
        self._active()
        self.freed.extend(buffers)

    def close(self):
        self.closed = True


class StandInContext:
    """execution context of an engine `y = 2 * x` ([N, 4] fp16 in, [N, 4] fp32 out, N <= 3)."""

    def __init__(self, host):
        self.host, self.addr, self.shape, self.shape_calls, self.thread = host, {}, None, 0, threading.get_ident()

    def set_tensor_address(self, name, ptr):
        self.addr[name] = ptr

    def set_input_shape(self, name, shape):
        self.shape_calls += 1
        if not (1 <= shape[0] <= 3 and tuple(shape[1:]) == (4,)):
            return False
        self.shape = tuple(shape)
        return True

    def get_tensor_shape(self, name):
        return self.shape

    def execute_async_v3(self, stream):
        assert threading.get_ident() == self.thread, "a context used from another thread"
        n = int(np.prod(self.shape))
        x = self.host.device_mem[self.addr["x"]][: 2 * n].view(np.float16).astype(np.float32)
        self.host.device_mem[self.addr["y"]][: 4 * n] = (2 * x).view(np.uint8)
        return True


class StandInEngine:
    def __init__(self, host, fail=False):
        self.host, self.fail, self.contexts = host, fail, []

    def create_execution_context(self):
        if self.fail:
            return None
        self.contexts.append(StandInContext(self.host))
        return self.contexts[-1]


PLAN = {"x": ((3, 4), "float16"), "y": ((3, 4), "float32")}


def _runner(fail=False):
    host = StandInHost()
    return tb.EngineRunner(StandInEngine(host, fail), host, PLAN, "m.engine"), host


def test_runner_runs_fp16_input_and_leaves_nothing_current():
    runner, host = _runner()
    x = np.array([[0.5, 1.0, -2.0, 3.25], [1e-3, 7.0, 0.0, 1.5]], np.float32)
    out = runner.run({"x": x}, ["y"])
    np.testing.assert_array_equal(out["y"], 2 * x.astype(np.float16).astype(np.float32))
    assert out["y"].base is None or not np.shares_memory(out["y"], runner._workers[0].host["y"])
    assert all(d == 0 for d in host.depth.values())  # popped after every call (pycuda's exit abort)


def test_runner_sets_the_input_shape_only_when_it_changes():
    runner, _ = _runner()
    x = np.ones((2, 4), np.float32)
    for _ in range(3):
        runner.run({"x": x}, ["y"])
    ctx = runner._workers[0].context
    assert ctx.shape_calls == 1
    runner.run({"x": x[:1]}, ["y"])
    assert ctx.shape_calls == 2


def test_runner_shape_outside_the_profile_is_one_line():
    runner, _ = _runner()
    with pytest.raises(BackendError, match=r"larger than the engine's buffer \[3, 4\]"):
        runner.run({"x": np.ones((4, 4), np.float32)}, ["y"])
    with pytest.raises(BackendError, match="outside the engine's optimization profile") as exc:
        runner.run({"x": np.ones((1, 2), np.float32)}, ["y"])
    assert "\n" not in str(exc.value)


def test_runner_without_an_execution_context_names_the_cause():
    runner, _ = _runner(fail=True)
    with pytest.raises(BackendError, match="could not create an execution context.*out of GPU memory"):
        runner.run({"x": np.ones((1, 4), np.float32)}, ["y"])


def test_runner_one_context_per_thread():
    runner, host = _runner()
    x = np.ones((1, 4), np.float32)
    runner.run({"x": x}, ["y"])
    results = []
    thread = threading.Thread(target=lambda: results.append(runner.run({"x": 3 * x}, ["y"])["y"]))
    thread.start()
    thread.join()
    np.testing.assert_array_equal(results[0], 6 * x)
    assert len(runner._workers) == 2 and len(host.activations) == 2  # the device made current on each thread
    runner.run({"x": x}, ["y"])
    assert len(runner._workers) == 2


def test_runner_use_after_close_is_an_error():
    runner, host = _runner()
    runner.run({"x": np.ones((1, 4), np.float32)}, ["y"])
    runner.close()
    assert len(host.freed) == 4  # x and y, pinned and device, of the one worker
    with pytest.raises(BackendError, match="closed"):
        runner.run({"x": np.ones((1, 4), np.float32)}, ["y"])
    runner.close()  # twice is fine


def test_manifest_plugin_only_for_plugin_engines():
    onnx_engine = {**MANIFEST, "decoder": "onnx"}  # an old build that recorded the hash anyway
    assert problems(onnx_engine, "10.3.0", 87, "Orin", None) == []
    assert problems(onnx_engine, "10.3.0", 87, "Orin", "cd" * 32) == []
    assert not BuildManifest.from_json(onnx_engine).needs_plugin and BuildManifest.from_json(MANIFEST).needs_plugin


def test_one_trt_logger_per_process(monkeypatch):
    """Builder, runtime and self-test share one logger (TensorRT warns when they differ); the
    stand-in only records what trt_logger asks of the module it is given."""
    made, inits = [], []

    class Logger:
        WARNING = 2

        def __init__(self, severity):
            made.append(severity)

    stand_in = type("StandIn", (), {"Logger": Logger, "init_libnvinfer_plugins": staticmethod(
        lambda logger, namespace: inits.append(namespace))})
    monkeypatch.setattr(tb, "_LOGGER", None)
    first = tb.trt_logger(stand_in)
    assert tb.trt_logger(stand_in) is first and made == [Logger.WARNING] and inits == [""]
    results = []
    thread = threading.Thread(target=lambda: results.append(tb.trt_logger(stand_in)))
    thread.start()
    thread.join()
    assert results == [first] and len(made) == 1
