"""`shfan-doctor --selftest`: the first thing to run on a real Jetson (or any TensorRT GPU).

It loads the SubpixelDecode plugin, builds one tiny strongly typed network per input precision
(fp32, fp16) holding one plugin layer per case of the shared test vectors
(shfan/vectors/subpixel_decode.npz, package data; NaN/inf case included), runs both engines through every
installed CUDA host API (pycuda, cuda-python) with shfan's own EngineRunner, compares with the
NumPy reference (<= 1e-3 heatmap px, scores exact), repeats from a second thread, checks that a
closed runner refuses work, and checks IPluginRegistry.load_library on the already loaded
library. Each check is one PASS/FAIL line; a FAIL names its fix.

Without TensorRT it says so and does nothing else. tensorrt is imported only in `run()`.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # annotations only (scripts/tensorrt_check.py reads them); imported in run()
    import tensorrt as trt

logger = logging.getLogger("shfan.selftest")

VECTORS = Path(__file__).resolve().parent / "vectors"  # package data: the one copy (tests read it too)
TOL_PX = 1e-3  # heatmap px, DESIGN.md §3
SCALE = 4.0  # the plugin's heatmap -> input scale in the test network
PLUGIN = ("SubpixelDecode", "1", "shfan")


@dataclass
class CheckResult:
    name: str
    ok: bool
    detail: str
    fix: str = ""

    def line(self) -> str:
        text = f"{'PASS' if self.ok else 'FAIL'}  {self.name}: {self.detail}"
        return text if self.ok or not self.fix else f"{text}; fix: {self.fix}"


def log_line(line: str) -> None:
    """The default `log`: PASS lines at INFO, FAIL lines at WARNING (so a FAIL shows even where
    logging is not configured: Python's last-resort handler prints WARNING and above)."""
    (logger.warning if line.startswith("FAIL") else logger.info)(line)


# The one line shfan-doctor --selftest prints when run() finds no TensorRT (None); no_tensorrt_line()
# adds where the test vectors are (package data, so an installed wheel finds them too).
NO_TENSORRT = ("selftest: TensorRT is not installed here (python -c 'import tensorrt' fails), so there is "
               "nothing to test; the CPU path is checked by shfan-doctor")


def no_tensorrt_line(folder: Path = VECTORS) -> str:
    cases = json.loads((folder / "subpixel_decode.json").read_text())["cases"]
    return f"{NO_TENSORRT} (test vectors: {len(cases)} cases in {folder})"


def load_cases(folder: Path = VECTORS) -> list[dict]:
    """[{name, heatmaps, points, scores, window, temperature}] from the shared vectors."""
    meta = json.loads((folder / "subpixel_decode.json").read_text())
    with np.load(folder / "subpixel_decode.npz") as z:
        return [{"name": c["name"], "window": int(c["window"]), "temperature": float(c["temperature"]),
                 "heatmaps": z[f"{c['name']}/heatmaps"], "points": z[f"{c['name']}/points"],
                 "scores": z[f"{c['name']}/scores"]} for c in meta["cases"]]


def compare(case: dict, landmarks: np.ndarray, scores: np.ndarray, fp16: bool) -> str | None:
    """None when the plugin's output matches the reference, else what differs. fp16 inputs are
    compared with the reference on the fp16-rounded heatmaps (what the engine was given)."""
    from shfan import codec

    if fp16:
        rounded = case["heatmaps"].astype(np.float16).astype(np.float32)
        ref_points, ref_scores = codec.decode(rounded, "subpixel", case["window"], case["temperature"])
    else:
        ref_points, ref_scores = case["points"], case["scores"]
    points = np.asarray(landmarks, np.float64) / SCALE
    if points.shape != ref_points.shape or not np.isfinite(points).all():
        return f"{case['name']}: landmarks of shape {points.shape}, finite: {bool(np.isfinite(points).all())}"
    err = float(np.abs(points - ref_points).max())
    if err > TOL_PX:
        return f"{case['name']}: max |diff| {err:.3g} heatmap px > {TOL_PX}"
    if not np.array_equal(np.asarray(scores, np.float32), ref_scores, equal_nan=True):
        return f"{case['name']}: scores differ from H[peak]"
    return None


def build_fix(sm: int | None) -> str:
    from shfan import plugins

    return f"rebuild the plugin for this GPU and TensorRT: {plugins.build_command(sm)}; then read the TensorRT log above"


class SelfTest:
    def __init__(self, trt, log=log_line):
        self.trt, self.log = trt, log
        self.results: list[CheckResult] = []

    def check(self, name: str, ok: bool, detail: str, fix: str = "") -> bool:
        result = CheckResult(name, ok, detail, fix)
        self.results.append(result)
        self.log(result.line())
        return ok

    # ---------------------------------------------------------------- plugin

    def creator(self):
        # get_creator (TensorRT >= 10.0) finds IPluginV3 creators; get_plugin_creator, removed in
        # 11, only ever returned V2 ones, so it was no fallback for this plugin
        return self.trt.get_plugin_registry().get_creator(*PLUGIN)

    def load_plugin(self):
        from shfan import plugins

        try:
            lib = plugins.find_plugin_library()
            if lib is None:
                raise plugins.PluginError(f"not built; build it with: {plugins.BUILD_COMMAND}")
            plugins.load_plugin_library(lib)
        except plugins.PluginError as exc:
            self.check("plugin library", False, str(exc), plugins.BUILD_COMMAND)
            return None
        creator = self.creator()
        ok = self.check("plugin registered (ctypes.CDLL)", creator is not None,
                        f"shfan::SubpixelDecode v1 from {lib}" if creator else "no creator in TensorRT's registry",
                        f"rebuild the plugin against this TensorRT: {plugins.BUILD_COMMAND}")
        return (lib, creator) if ok else None

    def fields(self, window: int, temperature: float, scale: float = SCALE):
        trt = self.trt
        return trt.PluginFieldCollection([
            trt.PluginField("window", np.array([window], np.int32), trt.PluginFieldType.INT32),
            trt.PluginField("temperature", np.array([temperature], np.float32), trt.PluginFieldType.FLOAT32),
            trt.PluginField("scale", np.array([scale], np.float32), trt.PluginFieldType.FLOAT32)])

    def refuses_bad_attributes(self, creator: trt.IPluginCreatorV3One):
        from shfan import plugins

        try:
            plugin = creator.create_plugin("bad", self.fields(5, -200.0), self.trt.TensorRTPhase.BUILD)
        except Exception:  # the bindings may raise instead of returning None
            plugin = None
        self.check("plugin refuses temperature -200", plugin is None,
                   "creator returned no plugin (see its log line above)" if plugin is None else "creator accepted it",
                   f"rebuild the plugin from this shfan's sources: {plugins.BUILD_COMMAND}")

    # ---------------------------------------------------------------- engines

    def build(self, creator: trt.IPluginCreatorV3One, cases: list[dict], fp16: bool, sm: int | None):
        """Serialized engine: one plugin layer per case, static shapes, strongly typed."""
        from shfan.builder import engine_rules
        from shfan.runtime.backends.tensorrt.runner import trt_logger

        trt = self.trt
        label = f"build {'fp16' if fp16 else 'fp32'} network"
        try:
            builder = trt.Builder(trt_logger(trt))
            network: trt.INetworkDefinition = builder.create_network(
                engine_rules.network_flags(trt.__version__, trt.NetworkDefinitionCreationFlag))
            for case in cases:
                name = case["name"]
                inp = network.add_input(f"{name}_heatmaps", trt.float16 if fp16 else trt.float32,
                                        tuple(case["heatmaps"].shape))
                plugin = creator.create_plugin(name, self.fields(case["window"], case["temperature"]),
                                               trt.TensorRTPhase.BUILD)
                if plugin is None:
                    raise RuntimeError(f"the creator refused case {name}")
                layer: trt.IPluginV3Layer = network.add_plugin_v3([inp], [], plugin)
                for i, suffix in enumerate(("landmarks", "scores")):
                    out = layer.get_output(i)
                    out.name = f"{name}_{suffix}"
                    network.mark_output(out)
            config: trt.IBuilderConfig = builder.create_builder_config()
            config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 64 << 20)
            serialized = builder.build_serialized_network(network, config)
            if serialized is None:
                raise RuntimeError("build_serialized_network returned None")
        except Exception as exc:
            self.check(label, False, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                       build_fix(sm))
            return None
        self.check(label, True, f"{len(cases)} SubpixelDecode layers, TensorRT {trt.__version__}")
        return serialized

    # ---------------------------------------------------------------- runs

    def run_engine(self, runner, cases):
        inputs = {f"{c['name']}_heatmaps": c["heatmaps"] for c in cases}
        names = [f"{c['name']}_{s}" for c in cases for s in ("landmarks", "scores")]
        return runner.run(inputs, names)

    def verify(self, label: str, out: dict, cases, fp16: bool, sm: int | None) -> bool:
        problems = [p for c in cases
                    if (p := compare(c, out[f"{c['name']}_landmarks"], out[f"{c['name']}_scores"], fp16))]
        return self.check(label, not problems,
                          problems[0] if problems else f"{len(cases)} cases within {TOL_PX} heatmap px of NumPy",
                          "report this line with the output of shfan-doctor --json; meanwhile build with "
                          "--decoder onnx")

    def host_api(self, api: str, engines: dict, cases):
        from shfan.errors import BackendError
        from shfan.runtime.cuda_host import INSTALL_HINT, open_cuda_host
        from shfan.runtime.backends.tensorrt.runner import EngineRunner, trt_logger

        try:
            host = open_cuda_host(api)
        except BackendError as exc:
            self.check(f"CUDA via {api}", False, str(exc), INSTALL_HINT)
            return
        try:
            with host.activate():
                name, sm = host.device_name_and_sm()
                runtime = self.trt.Runtime(trt_logger(self.trt))
            self.check(f"CUDA via {api}", True, f"{name}, sm_{sm}")
            for dtype, serialized in engines.items():
                with host.activate():
                    engine = runtime.deserialize_cuda_engine(serialized)
                if engine is None:
                    self.check(f"deserialize {dtype} ({api})", False, "TensorRT returned None", build_fix(sm))
                    continue
                runner = EngineRunner(engine, host, self.static_plan(engine), f"selftest {dtype}")
                try:
                    self.runs(runner, api, dtype, cases, sm)
                finally:
                    runner.close()
                    with host.activate():
                        del engine
        finally:
            host.close()

    def static_plan(self, engine: trt.ICudaEngine) -> dict:
        """{tensor: (shape, dtype)}: every shape in this network is static."""
        trt, names = self.trt, [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        return {n: (tuple(engine.get_tensor_shape(n)), np.dtype(trt.nptype(engine.get_tensor_dtype(n))).name)
                for n in names}

    def runs(self, runner, api: str, dtype: str, cases, sm):
        from shfan.errors import BackendError

        fp16 = dtype == "fp16"
        try:
            out = self.run_engine(runner, cases)
        except BackendError as exc:
            self.check(f"run {dtype} ({api})", False, str(exc), build_fix(sm))
            return
        if not self.verify(f"run {dtype} ({api})", out, cases, fp16, sm):
            return
        second: dict = {}

        def other_thread():
            try:
                second["out"] = self.run_engine(runner, cases)
            except Exception as exc:  # reported below
                second["error"] = f"{type(exc).__name__}: {exc}"

        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
        if "error" in second:
            self.check(f"second thread {dtype} ({api})", False, second["error"].splitlines()[0],
                       "report this line; meanwhile call the backend from one thread only")
        else:
            self.verify(f"second thread {dtype} ({api})", second["out"], cases, fp16, sm)
        runner.close()
        try:
            self.run_engine(runner, cases)
            self.check(f"use after close ({api})", False, "a closed runner still ran", "update shfan")
        except BackendError:
            self.check(f"use after close ({api})", True, "refused with a clear error")

    # ---------------------------------------------------------------- load_library

    def load_library(self, lib: Path):
        registry: trt.IPluginRegistry = self.trt.get_plugin_registry()
        try:
            handle = registry.load_library(str(lib))
        except Exception as exc:
            handle, error = None, f"{type(exc).__name__}: {exc}"
        else:
            error = "returned no handle"
        if not self.check("IPluginRegistry.load_library after ctypes.CDLL", handle is not None,
                          "accepted (no duplicate registration)" if handle is not None else error,
                          "load the plugin with ctypes.CDLL (shfan does) or trtexec --staticPlugins; "
                          "report the TensorRT version"):
            return
        registry.deregister_library(handle)
        self.check("creator after deregister_library", self.creator() is not None,
                   "still registered and valid (library kept loaded)", "rebuild the plugin (-z nodelete)")


def run(log=log_line) -> list[CheckResult] | None:
    """Every check (None when TensorRT is absent: no_tensorrt_line() says so; the shipped test
    vectors are read first, on any machine). Each result line goes to `log` as it is found
    (shfan-doctor passes a printer)."""
    from shfan import platform_facts

    try:  # first: a wheel without its vectors is a broken install on any machine
        cases = load_cases()
    except (OSError, ValueError, KeyError) as exc:
        result = CheckResult("test vectors", False, f"{VECTORS} unreadable ({type(exc).__name__}: {exc})",
                        "reinstall shfan (its wheel ships shfan/vectors/)")
        log(result.line())
        return [result]
    if not platform_facts.tensorrt_installed():
        return None
    import tensorrt as trt

    from shfan.runtime.cuda_host import INSTALL_HINT, available_host_apis

    test = SelfTest(trt, log)
    if not test.check("TensorRT version", platform_facts.tensorrt_supported(trt.__version__), trt.__version__,
                      platform_facts.TENSORRT_UPGRADE):
        return test.results
    loaded = test.load_plugin()
    if loaded is None:
        return test.results
    lib, creator = loaded
    test.refuses_bad_attributes(creator)
    apis = available_host_apis()
    if not test.check("CUDA host APIs", bool(apis), ", ".join(apis) or "none installed", INSTALL_HINT):
        return test.results
    _, sm = platform_facts.gpu_device()
    engines = {}
    for dtype in ("fp32", "fp16"):
        serialized = test.build(creator, cases, dtype == "fp16", sm)
        if serialized is not None:
            engines[dtype] = serialized
    if engines:
        for api in apis:
            test.host_api(api, engines, cases)
    test.load_library(lib)
    return test.results

