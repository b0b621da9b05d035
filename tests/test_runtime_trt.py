"""TensorRT backend: the pure logic (I/O roles, buffer plan, manifest match) everywhere; a real
engine only where TensorRT and a GPU exist."""

import json

import numpy as np
import pytest

from shfan.runtime import trt_backend as tb
from shfan.runtime.backend import BackendError, open_backend
from shfan.runtime.trt_backend import TensorIO
from test_runtime_helpers import tiny_onnx  # noqa: F401  (fixture)

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
    assert tb.model_info_from_io(DECODED, {"model_config": cfg}).window == 7


MANIFEST = {"tensorrt": {"version": "10.3.0", "device": "Orin", "sm": 87}, "plugin_sha256": "ab" * 32,
            "decoder": "plugin", "selected_precision": "fp16",
            "artifacts": {"fp16": {"onnx": "model_fp16.onnx", "onnx_decoded": "model_fp16_plugin.onnx",
                                   "engine": "model_fp16_plugin.engine"}}}


def test_manifest_match():
    assert tb.manifest_problems(MANIFEST, "10.3.0", 87, "Orin", "ab" * 32) == []
    p = tb.manifest_problems(MANIFEST, "10.7.0", 110, "Thor", "cd" * 32)
    assert len(p) == 3
    assert "TensorRT 10.3.0, this system has 10.7.0" in p[0]
    assert "sm_87 (Orin), this GPU is sm_110 (Thor)" in p[1]
    assert "plugin" in p[2]
    assert "not found" in tb.manifest_problems(MANIFEST, "10.3.0", 87, None, None)[0]
    assert tb.manifest_problems({**MANIFEST, "plugin_sha256": None}, "10.3.0", 87) == []
    assert "without TensorRT" in tb.manifest_problems({"tensorrt": None}, "10.3.0", 87)[0]


def test_rebuild_command_names_the_onnx_and_precision(tmp_path):
    cmd = tb.rebuild_command(tmp_path, MANIFEST, "fp16")
    assert cmd == f"shfan-build --onnx {tmp_path / 'model_fp16_plugin.onnx'} --precision fp16 --decoder plugin --out {tmp_path}"


def test_engine_from_build(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps(MANIFEST))
    with pytest.raises(BackendError, match="engine listed in the manifest is missing; rebuild: shfan-build"):
        tb.engine_from_build(tmp_path)
    (tmp_path / "model_fp16_plugin.engine").write_bytes(b"x")
    path, manifest, precision = tb.engine_from_build(tmp_path)
    assert path.name == "model_fp16_plugin.engine" and precision == "fp16"
    with pytest.raises(BackendError, match="no int8 model.*--precision int8"):
        tb.engine_from_build(tmp_path, "int8")
    no_engine = {**MANIFEST, "artifacts": {"fp16": {"onnx": "model_fp16.onnx", "engine": None}}}
    (tmp_path / "manifest.json").write_text(json.dumps(no_engine))
    with pytest.raises(BackendError, match="no TensorRT engine.*--backend onnxruntime"):
        tb.engine_from_build(tmp_path)


def test_engine_without_tensorrt_names_the_fix(tmp_path):
    if tb.tensorrt_available():
        pytest.skip("TensorRT is installed here")
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"x")
    with pytest.raises(BackendError, match="--backend onnxruntime"):
        open_backend(engine, "auto")
    with pytest.raises(BackendError, match="TensorRT is not available"):
        open_backend(tmp_path, "tensorrt")


def _gpu_tensorrt():
    if not tb.tensorrt_available():
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
