"""The backend registry (shfan.runtime.backends): order and choices, lookups that name the
fix, availability from the library, auto's one answer per file (priority, the runtime's scope,
shfan-eval's), a test backend joining auto, the shipped ONNX through the onnxruntime spec,
TensorRT refused cleanly where it is absent, checkpoints through the pytorch spec."""

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from shfan.contracts import ModelInfo
from shfan.errors import BackendError
from shfan.runtime import backends
from shfan.runtime.backends import open_backend
from shfan.weights import DEFAULT_CHECKPOINT, DEFAULT_ONNX

from conftest import heavy_modules_after


def crops(size, n=3, seed=0):
    return np.random.default_rng(seed).random((n, 3, size, size), dtype=np.float32)


# ---------------------------------------------------------------- the registry


def test_registry_lists_the_builtin_backends_in_order():
    import importlib.util

    assert backends.names()[:3] == ("onnxruntime", "tensorrt", "pytorch")
    assert backends.choices() == ("auto", *backends.names())
    assert backends.choices(runtime=True)[:3] == ("auto", "onnxruntime", "tensorrt")  # the pipeline never runs checkpoints
    for name in backends.names():
        spec = backends.get(name)
        assert spec.name == name and spec.summary
        assert spec.module == f"shfan.runtime.backends.{name}.runner" and importlib.util.find_spec(spec.module)
    assert [backends.get(n).priority for n in ("tensorrt", "onnxruntime", "pytorch")] == [30, 20, 10]


def test_available_and_version_come_from_the_library_and_its_distributions():
    import numpy

    here = backends.BackendSpec("here", "numpy-backed", __name__, open=None, accepts=None, library="numpy",
                                dists=("no-such-dist-shfan", "numpy"))
    assert here.available() and here.version() == numpy.__version__  # the first installed distribution
    absent = backends.BackendSpec("absent", "missing", __name__, open=None, accepts=None,
                                  library="no_such_module_shfan", dists=("no-such-dist-shfan",))
    assert not absent.available() and absent.version() is None
    assert backends.get("onnxruntime").version() == __import__("onnxruntime").__version__


def test_unknown_backend_names_the_choices():
    with pytest.raises(BackendError, match="unknown backend 'nope'; choose one of onnxruntime, tensorrt, pytorch"):
        backends.get("nope")
    with pytest.raises(BackendError, match="unknown backend 'nope'; choose one of auto, onnxruntime"):
        open_backend(DEFAULT_ONNX, "nope")


def test_a_name_is_registered_once():
    spec = backends.get("onnxruntime")
    assert backends.register(spec) is spec  # the same spec again (a module reload): fine
    with pytest.raises(ValueError, match="already registered"):
        backends.register(FakeSpec("onnxruntime"))
    with pytest.raises(ValueError, match="auto"):
        backends.register(FakeSpec("auto"))
    assert backends.names()[:3] == ("onnxruntime", "tensorrt", "pytorch")


def test_accepts_says_which_files_each_runs(tmp_path):
    ckpt, onnx, engine = tmp_path / "m.pt", tmp_path / "m.onnx", tmp_path / "m.engine"
    for f in (ckpt, onnx, engine):
        f.write_bytes(b"x")
    ort, trt, torch = (backends.get(n) for n in ("onnxruntime", "tensorrt", "pytorch"))
    assert ort.accepts(onnx) and ort.accepts(tmp_path) and not ort.accepts(engine) and not ort.accepts(ckpt)
    assert trt.accepts(engine) and trt.accepts(tmp_path) and not trt.accepts(onnx)
    assert torch.accepts(ckpt) and not torch.accepts(onnx) and not torch.accepts(tmp_path)


def test_registry_import_stays_light():
    code = ("import shfan.runtime.backends as b; [s.available() for s in map(b.get, b.names())]; "
            "[s.version() for s in map(b.get, b.names())]")
    assert heavy_modules_after(code, ("torch", "tensorrt", "onnxruntime", "pycuda")) == []


# ---------------------------------------------------------------- onnxruntime


def test_onnxruntime_spec_runs_the_shipped_model_as_open_backend_does():
    spec_backend = backends.get("onnxruntime").open(DEFAULT_ONNX, threads=1)
    auto_backend = open_backend(DEFAULT_ONNX, threads=1)
    try:
        assert spec_backend.name == auto_backend.name == "onnxruntime"
        x = crops(spec_backend.info.input_size)
        (p1, s1), (p2, s2) = spec_backend.infer(x), auto_backend.infer(x)
        assert p1.shape == (3, spec_backend.info.landmarks, 2) and p1.dtype == np.float32
        np.testing.assert_array_equal(p1, p2)
        np.testing.assert_array_equal(s1, s2)
        # the two halves bench times separately give exactly infer()
        assert spec_backend.outputs_heatmaps
        hm = spec_backend.infer_heatmaps(x)
        assert hm.shape[-1] == spec_backend.info.heatmap_size
        p3, s3 = spec_backend.decode_heatmaps(hm)
        np.testing.assert_array_equal(p1, p3)
        np.testing.assert_array_equal(s1, s3)
    finally:
        spec_backend.close()
        auto_backend.close()


def test_onnxruntime_backend_from_bytes_with_given_info():
    from shfan.runtime.backends.onnxruntime.runner import OnnxRuntimeBackend

    by_path = OnnxRuntimeBackend(DEFAULT_ONNX, threads=1)
    info = ModelInfo(by_path.info.input_size, by_path.info.landmarks, by_path.info.heatmap_size, 3, 6.0)
    by_bytes = OnnxRuntimeBackend(DEFAULT_ONNX.read_bytes(), threads=1, info=info)
    assert by_bytes.info == info
    x = crops(info.input_size, 2)
    np.testing.assert_array_equal(by_path.infer_heatmaps(x), by_bytes.infer_heatmaps(x))
    with pytest.raises(BackendError, match=r"the ONNX model \(bytes\): ONNX Runtime cannot load"):
        OnnxRuntimeBackend(b"not an onnx file")


def test_onnxruntime_spec_refuses_engines(tmp_path):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"x")
    with pytest.raises(BackendError, match="ONNX Runtime cannot run; use backend tensorrt"):
        backends.get("onnxruntime").open(engine)


# ---------------------------------------------------------------- a backend registered by a test


@dataclass
class FixedPoints:
    """A test double: every crop gets the same points (the input's centre) and scores 0.5."""

    info: ModelInfo
    name: str = "fixed"
    closed: bool = False

    def infer(self, x):
        n, k = len(x), self.info.landmarks
        return np.full((n, k, 2), self.info.input_size / 2, np.float32), np.full((n, k), 0.5, np.float32)

    def close(self):
        self.closed = True


def FakeSpec(name, opened=None, priority=0, available=True, runtime=True, accepts=lambda path: True):
    def open_model(model, *, precision=None, decoder="subpixel", threads=None):
        if opened is not None:
            opened.append((model, precision, decoder, threads))
        return FixedPoints(ModelInfo.from_sizes(64, 68), name)

    return backends.BackendSpec(name=name, summary="test double", module=__name__, available=lambda: available,
                                version=lambda: "0", open=open_model, accepts=accepts, priority=priority,
                                runtime=runtime)


@pytest.fixture
def fixed_backend():
    opened = []
    backends.register(FakeSpec("fixed", opened))
    try:
        yield opened
    finally:
        backends.unregister("fixed")


def test_a_registered_backend_is_reachable_through_open_backend(fixed_backend):
    assert backends.choices()[-1] == "fixed" and "fixed" in backends.available()
    b = open_backend(DEFAULT_ONNX, backend="fixed", precision="fp16", threads=2)
    pts, scores = b.infer(crops(64, 2))
    assert b.name == "fixed" and pts.shape == (2, 68, 2) and np.all(pts == 32) and np.all(scores == 0.5)
    assert fixed_backend == [(DEFAULT_ONNX, "fp16", "subpixel", 2)]


def test_unregister_removes_it(fixed_backend):
    backends.unregister("fixed")
    assert "fixed" not in backends.choices()
    with pytest.raises(BackendError, match="unknown backend 'fixed'"):
        open_backend(DEFAULT_ONNX, backend="fixed")


# ---------------------------------------------------------------- auto: one answer per file


@pytest.fixture
def files(tmp_path):
    """One model file of each kind (contents do not matter to resolve) and a build folder."""
    made = {"onnx": tmp_path / "m.onnx", "engine": tmp_path / "m.engine", "ckpt": tmp_path / "m.pt",
            "other": tmp_path / "m.bin", "folder": tmp_path / "build"}
    for kind, path in made.items():
        path.mkdir() if kind == "folder" else path.write_bytes(b"x")
    return made


def resolved(path, backend="auto", runtime=True):
    return [s.name for s in backends.resolve(path, backend, runtime)]


def test_auto_picks_by_file_kind_and_priority(files, monkeypatch):
    from shfan import platform_facts

    monkeypatch.setattr(platform_facts, "module_available", lambda module: module != "tensorrt")
    assert resolved(files["onnx"]) == resolved(files["other"]) == ["onnxruntime"]  # ORT's loader names a bad file
    assert resolved(files["folder"]) == ["onnxruntime"]
    assert resolved(files["engine"]) == ["tensorrt"]  # not available: its open says what to install
    assert resolved(files["ckpt"], runtime=False) == ["pytorch"]
    monkeypatch.setattr(platform_facts, "module_available", lambda module: True)
    assert resolved(files["folder"]) == ["tensorrt", "onnxruntime"]  # the engine first, ONNX Runtime behind it
    assert resolved(files["folder"], runtime=False) == ["tensorrt", "onnxruntime"]  # shfan-eval asks the same
    assert resolved(files["onnx"], "tensorrt") == ["tensorrt"]  # a named backend is itself (its open refuses)


def test_the_runtime_refuses_checkpoints_and_pytorch_takes_them(files):
    for backend in ("auto", "onnxruntime", "tensorrt"):
        with pytest.raises(BackendError, match=r"m\.pt is a PyTorch checkpoint; export it first"):
            backends.resolve(files["ckpt"], backend)
    assert resolved(files["ckpt"], "pytorch") == ["pytorch"]  # named: any scope


def test_a_registered_backend_joins_auto_by_its_priority(fixed_backend, files):
    from shfan import evaluate

    assert resolved(files["onnx"]) == ["onnxruntime", "fixed"]  # priority 0: behind the built-ins
    backends.unregister("fixed")
    backends.register(FakeSpec("fixed", fixed_backend, priority=100))
    assert resolved(files["onnx"]) == ["fixed", "onnxruntime"]
    assert open_backend(DEFAULT_ONNX).name == "fixed"
    assert evaluate.open_model(DEFAULT_ONNX, None, None, "subpixel").name == "fixed"  # shfan-eval: the same auto
    assert evaluate.open_model(DEFAULT_ONNX, "onnxruntime", None, "subpixel").name == "onnxruntime"


def test_auto_skips_what_is_not_available_and_what_the_runtime_does_not_use(files):
    try:
        backends.register(FakeSpec("absent", priority=100, available=False))
        backends.register(FakeSpec("eval_only", priority=99, runtime=False))
        assert resolved(files["onnx"]) == ["onnxruntime"]
        assert resolved(files["onnx"], runtime=False) == ["eval_only", "onnxruntime"]
        assert "eval_only" not in backends.choices(runtime=True) and "absent" in backends.choices(runtime=True)
    finally:
        backends.unregister("absent")
        backends.unregister("eval_only")


def test_a_file_no_backend_in_scope_runs_names_the_fix(files):
    kinds = {n: backends.get(n) for n in backends.names()}
    try:
        for name in kinds:
            backends.unregister(name)
        backends.register(FakeSpec("only_onnx", accepts=lambda path: Path(path).suffix == ".onnx"))
        with pytest.raises(BackendError, match=r"m\.bin: no backend runs this file"):
            backends.resolve(files["other"])
    finally:
        backends.unregister("only_onnx")
        for spec in kinds.values():
            backends.register(spec)
    assert backends.names()[:3] == ("onnxruntime", "tensorrt", "pytorch")


# ---------------------------------------------------------------- tensorrt


def test_tensorrt_spec_without_tensorrt_names_the_fix(tmp_path):
    from shfan import platform_facts

    spec = backends.get("tensorrt")
    if platform_facts.tensorrt_installed():
        pytest.skip("TensorRT is installed here")
    assert not spec.available()
    assert spec.version() is None and "tensorrt" not in backends.available()
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"x")
    for model in (engine, tmp_path):
        with pytest.raises(BackendError, match="TensorRT is not available here.*onnxruntime backend.*shfan-doctor"):
            spec.open(model)
    with pytest.raises(BackendError, match="backend tensorrt runs a shfan-build folder or .engine, not"):
        spec.open(DEFAULT_ONNX)


# ---------------------------------------------------------------- pytorch


def test_checkpoints_need_the_pytorch_backend(tmp_path):
    ckpt = tmp_path / "m.pt"
    ckpt.write_bytes(b"x")
    for backend in ("auto", "onnxruntime", "tensorrt"):
        with pytest.raises(BackendError, match="PyTorch checkpoint; export it first: shfan-build --weights"):
            open_backend(ckpt, backend)
    with pytest.raises(BackendError, match="the pytorch backend needs a checkpoint"):
        open_backend(DEFAULT_ONNX, "pytorch")


def test_pytorch_spec_opens_a_checkpoint_and_splits_like_onnxruntime():
    torch = pytest.importorskip("torch")
    if not DEFAULT_CHECKPOINT.is_file():
        pytest.skip("no shipped checkpoint")
    b = open_backend(DEFAULT_CHECKPOINT, "pytorch", threads=1)
    try:
        assert b.name == "pytorch" and b.outputs_heatmaps
        x = crops(b.info.input_size, 2)
        pts, scores = b.infer(x)
        assert pts.shape == (2, b.info.landmarks, 2) and pts.dtype == np.float32
        hm = b.infer_heatmaps(x)  # NumPy, like ONNX Runtime's (a timing of it includes the copy)
        assert isinstance(hm, np.ndarray) and hm.dtype == np.float32 and hm.shape[-1] == b.info.heatmap_size
        p2, s2 = b.decode_heatmaps(hm)
        np.testing.assert_array_equal(pts, p2)
        np.testing.assert_array_equal(scores, s2)
        p3, _ = b.decode_heatmaps(torch.from_numpy(hm))  # tensors too
        np.testing.assert_array_equal(pts, p3)
    finally:
        b.close()


def test_torch_backend_on_a_live_model_matches_the_training_decode():
    """What training validation computed (shfan.train.torch_infer before it used this backend):
    the model's heatmaps, codec_torch at the config's window/temperature, times input/heatmap."""
    torch = pytest.importorskip("torch")
    from shfan import codec_torch
    from shfan.model import FAN, ModelConfig
    from shfan.runtime.backends.pytorch.runner import TorchBackend

    torch.manual_seed(0)
    model = FAN(ModelConfig(stacks=1, width=16, landmarks=68, input_size=64)).eval()
    cfg = model.config
    x = crops(64, 3)
    with torch.no_grad():
        pts, scores = codec_torch.decode(model(torch.from_numpy(x)), "subpixel", cfg.window, cfg.temperature)
    b = TorchBackend(model, "cpu")
    p1, s1 = b.infer(x)
    np.testing.assert_array_equal(p1, (pts * (cfg.input_size / cfg.heatmap_size)).numpy())
    np.testing.assert_array_equal(s1, scores.numpy())
    assert b.info == ModelInfo.from_config(cfg.to_dict())
    model.train()
    TorchBackend(model).close()
    assert model.training  # the live model's mode is left alone


# ---------------------------------------------------------------- auto's choice for build folders


@pytest.fixture
def build_folder(tmp_path):
    """A build folder whose fp32 file is the shipped ONNX (enough for ONNX Runtime)."""
    import json
    import shutil

    shutil.copy(DEFAULT_ONNX, tmp_path / "model_fp32.onnx")
    (tmp_path / "manifest.json").write_text(json.dumps(
        {"selected_precision": "fp32", "decoder": "subpixel", "artifacts": {"fp32": {"onnx": "model_fp32.onnx"}}}))
    return tmp_path


@contextmanager
def replaced(name, spec):
    """`spec` in place of the registered `name`, keeping the registration order; restored after."""
    saved = [backends.get(n) for n in backends.names()]
    for s in saved:
        backends.unregister(s.name)
    for s in saved:
        backends.register(spec if s.name == name else s)
    try:
        yield
    finally:
        for n in backends.names():
            backends.unregister(n)
        for s in saved:
            backends.register(s)


def failing_tensorrt():
    def open_model(model, **options):
        raise BackendError("built with TensorRT 10.3.0, this system has 10.7.0")

    real = backends.get("tensorrt")
    return backends.BackendSpec(name="tensorrt", summary="test double: an engine that cannot run", module=__name__,
                                available=lambda: True, version=lambda: "10.7.0", open=open_model,
                                accepts=real.accepts, priority=real.priority, title=real.title)


def test_onnxruntime_spec_opens_a_build_folder(build_folder):
    b = backends.get("onnxruntime").open(build_folder, precision="fp32", threads=1)
    try:
        assert b.name == "onnxruntime" and b.info.landmarks == 68
    finally:
        b.close()
    with pytest.raises(BackendError, match="no int8 model in this build.*--precision int8"):
        backends.get("onnxruntime").open(build_folder, precision="int8")


def test_auto_falls_back_to_onnxruntime_when_the_engine_cannot_run(build_folder, caplog, tmp_path_factory):
    original = backends.names()
    with replaced("tensorrt", failing_tensorrt()):
        assert backends.names() == original
        with caplog.at_level("WARNING", logger="shfan.runtime"):
            b = open_backend(build_folder, "auto", threads=1)
        assert b.name == "onnxruntime"
        b.close()
        assert "TensorRT engine not used: built with TensorRT 10.3.0" in caplog.text
        assert "falling back to ONNX Runtime" in caplog.text
        with pytest.raises(BackendError, match="this system has 10.7.0"):  # asked for TensorRT: no fallback
            open_backend(build_folder, "tensorrt")
        engine = tmp_path_factory.mktemp("engine") / "m.engine"
        engine.write_bytes(b"x")
        with pytest.raises(BackendError, match="this system has 10.7.0"):  # a bare engine: nothing to fall back to
            open_backend(engine, "auto")
    assert backends.names() == original and backends.get("tensorrt").module == "shfan.runtime.backends.tensorrt.runner"


def test_auto_falls_back_when_the_first_backend_cannot_open(caplog):
    """An engine whose plugin is not built here (PluginError) or that another TensorRT made
    (BackendError): auto warns and opens the next backend; a named backend raises."""
    from shfan.errors import PluginError

    for error in (PluginError("the engine needs the SubpixelDecode plugin"), BackendError("built for SM 8.7")):
        spec = FakeSpec("broken", priority=100)

        def refuse(model, **options):
            raise error

        spec.open = refuse
        backends.register(spec)
        try:
            assert open_backend(DEFAULT_ONNX).name == "onnxruntime"
            assert f"broken not used: {error}; falling back to ONNX Runtime" in caplog.text
            with pytest.raises(type(error)):
                open_backend(DEFAULT_ONNX, backend="broken")
        finally:
            backends.unregister("broken")
