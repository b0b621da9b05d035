"""The int8 file for ONNX Runtime's CPU provider (`shfan-build --target cpu|all`): no fp16
anywhere, every convolution fused by ONNX Runtime into an integer kernel (checked on the graph
the CPU provider really runs), BatchNorm rewritten exactly, the runtime choosing the file, and
the TensorRT-style int8 file failing the same checks (so they can fail)."""

import json
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime.quantization")

from shfan.calibration import cpu_int8  # noqa: E402
from conftest import randomize_batchnorm  # noqa: E402

TINY = dict(stacks=1, width=64, input_size=64)


@pytest.fixture(scope="module")
def tiny_fp32(tmp_path_factory):
    import torch

    from shfan.builder.export import export_onnx
    from shfan.model import FAN, ModelConfig

    torch.manual_seed(0)
    model = FAN(ModelConfig(**TINY)).eval()
    randomize_batchnorm(model, affine=True)  # so the BatchNorm rewrite is tested
    d = tmp_path_factory.mktemp("cpu_int8")
    onnx.save(export_onnx(model), str(d / "fp32.onnx"))
    return d / "fp32.onnx", model.config.to_dict()


def run(path, x):
    from shfan.calibration.ort_tools import session

    sess = session(str(path))
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def test_batchnorm_and_pools_become_exact_depthwise_convs(tiny_fp32, helen_dir, tmp_path):
    from shfan.calibration import face_sets

    path, _ = tiny_fp32
    model = onnx.load(str(path))
    bns = sum(n.op_type == "BatchNormalization" for n in model.graph.node)
    pools = sum(n.op_type == "AveragePool" for n in model.graph.node)
    assert bns > 20 and pools > 3
    prepared = cpu_int8.prepare(model)
    ops = [n.op_type for n in prepared.graph.node]
    assert "BatchNormalization" not in ops and "AveragePool" not in ops
    assert ops.count("Conv") == sum(n.op_type == "Conv" for n in model.graph.node) + bns + pools
    assert [n.op_type for n in cpu_int8.batchnorm_to_depthwise(model).graph.node].count("AveragePool") == pools
    onnx.checker.check_model(prepared)
    onnx.save(prepared, str(tmp_path / "prepared.onnx"))
    x = face_sets.load_faces(helen_dir, 64, 4).crops
    ref, got = run(path, x), run(tmp_path / "prepared.onnx", x)
    assert np.abs(ref - got).max() < 1e-4 * max(1.0, np.abs(ref).max())


@pytest.fixture(scope="module")
def tiny_cpu_int8(tiny_fp32, helen_dir, tmp_path_factory):
    """The tiny model through the builder's own CPU path: measured ranges -> ORT's quantizer."""
    from shfan.builder.precision import to_int8_cpu
    from shfan.calibration import face_sets, ranges

    path, cfg = tiny_fp32
    d = tmp_path_factory.mktemp("cpu_int8_q")
    prepared = cpu_int8.prepare(onnx.load(str(path)))
    onnx.save(prepared, str(d / "prepared.onnx"))
    faces = face_sets.load_faces(helen_dir, 64, 24)
    sample = ranges.sample_tensors(prepared, cpu_int8.tensors_to_quantize(prepared), faces.crops)
    to_int8_cpu(d / "prepared.onnx", d / "int8_cpu.onnx", cpu_int8.asymmetric_ranges(sample, 99.9))
    return d / "int8_cpu.onnx", prepared, sample, faces


def test_uint8_ranges_start_at_zero_after_relu(tiny_cpu_int8):
    _, prepared, sample, _ = tiny_cpu_int8
    relu_out = {n.output[0] for n in prepared.graph.node if n.op_type == "Relu"}
    r = cpu_int8.asymmetric_ranges(sample, 99.9)
    assert relu_out and all(r[t][0] == 0.0 and r[t][1] > 0 for t in relu_out if t in r)
    signed = [t for t in r if sample.lo[t] < 0]
    assert signed and all(r[t][0] < 0 < r[t][1] for t in signed)
    top = cpu_int8.asymmetric_ranges(sample, None)
    assert all(top[t][1] >= r[t][1] and top[t][0] <= r[t][0] for t in r)  # the percentile clips


def test_cpu_int8_types_are_uint8_activations_and_7bit_int8_weights(tiny_cpu_int8):
    from onnx import numpy_helper

    path, _, _, _ = tiny_cpu_int8
    model = onnx.load(str(path))
    inits = {i.name: i for i in model.graph.initializer}
    q_types = {inits[n.input[2]].data_type for n in model.graph.node if n.op_type == "QuantizeLinear"}
    assert q_types == {onnx.TensorProto.UINT8}
    weights = [numpy_helper.to_array(inits[n.input[0]]) for n in model.graph.node
               if n.op_type == "DequantizeLinear" and n.input[0] in inits and inits[n.input[0]].data_type == onnx.TensorProto.INT8]
    assert weights and all(np.abs(w.astype(np.int32)).max() <= 64 for w in weights)  # reduce_range: no AVX2 saturation
    meta = json.loads(next(p.value for p in model.metadata_props if p.key == "shfan"))
    assert meta["precision"] == "int8" and meta["target"] == "cpu"


def test_cpu_int8_has_no_fp16_and_every_conv_runs_as_an_integer_kernel(tiny_cpu_int8):
    path, prepared, _, _ = tiny_cpu_int8
    assert cpu_int8.fp16_tensors(onnx.load(str(path))) == []
    report = cpu_int8.fusion_report(path)
    convs = sum(n.op_type == "Conv" for n in prepared.graph.node)
    assert report["integer_convs"] == convs and report["float_convs"] == 0
    assert report["transposes"] <= 2  # NHWC from the first conv to the last: one in, one out
    assert not {"BatchNormalization", "AveragePool", "QLinearAveragePool"} & set(report["ops"])


def test_convs_kept_out_of_int8_run_in_fp32(tiny_cpu_int8, tmp_path):
    """The guard's exclusions must hold in the graph ORT runs (its WeightBiasQuantization pass
    would otherwise quantize their float weights per tensor and fuse them anyway)."""
    from shfan.builder.precision import to_int8_cpu

    _, prepared, sample, _ = tiny_cpu_int8
    onnx.save(prepared, str(tmp_path / "prepared.onnx"))
    convs = [n.name for n in prepared.graph.node if n.op_type == "Conv"]
    kept = [convs[10], convs[11], convs[-1]]  # a conv, a BatchNorm-as-depthwise conv, the heatmap head
    to_int8_cpu(tmp_path / "prepared.onnx", tmp_path / "q.onnx", cpu_int8.asymmetric_ranges(sample, 99.9), kept)
    report = cpu_int8.fusion_report(tmp_path / "q.onnx")
    assert report["float_convs"] == len(kept) and report["integer_convs"] == len(convs) - len(kept)
    model = onnx.load(str(tmp_path / "q.onnx"))
    inits = {i.name: i.data_type for i in model.graph.initializer}
    for node in model.graph.node:
        if node.name in kept:
            assert inits.get(node.input[1]) == onnx.TensorProto.FLOAT  # float weights in the file


def test_cpu_int8_stays_close_to_fp32(tiny_fp32, tiny_cpu_int8):
    path, _, _, faces = tiny_cpu_int8
    ref, got = run(tiny_fp32[0], faces.crops[:8]), run(path, faces.crops[:8])
    rel = np.abs(ref - got).mean() / np.abs(ref).mean()
    assert 0 < rel < 0.1


def test_the_checks_fail_on_a_tensorrt_style_file(tiny_fp32, tmp_path):
    """fp16 parts and Q/DQ on conv inputs only: exactly what the CPU checks must reject."""
    pytest.importorskip("modelopt.onnx.quantization")
    from shfan.builder.precision import to_fp16

    path, _ = tiny_fp32
    to_fp16(path, tmp_path / "fp16.onnx")
    assert cpu_int8.fp16_tensors(onnx.load(str(tmp_path / "fp16.onnx")))
    report = cpu_int8.fusion_report(path)  # plain fp32: float convs only
    assert report["integer_convs"] == 0 and report["float_convs"] > 0


@pytest.fixture(scope="module")
def built_all(tmp_path_factory, helen_dir):
    """One real `shfan-build --target all` of a tiny checkpoint (both int8 files)."""
    pytest.importorskip("modelopt.onnx.quantization")
    import torch

    from shfan.cli.build import main
    from shfan.model import FAN, ModelConfig, save_checkpoint

    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("built_all")
    save_checkpoint(FAN(ModelConfig(**TINY)), d / "tiny.pt")
    out = d / "build"
    main(["--weights", str(d / "tiny.pt"), "--precision", "int8", "--target", "all", "--calib-data", str(helen_dir),
          "--max-calib", "40", "--max-nme-drift", "1000", "--out", str(out)])
    return out


def test_build_folder_holds_both_int8_files_and_checks_them(built_all):
    m = json.loads((built_all / "manifest.json").read_text())
    int8 = m["artifacts"]["int8"]
    assert int8["onnx"] == "model_int8.onnx" and int8["cpu"]["onnx"] == "model_int8_cpu.onnx"
    assert int8["cpu"]["onnx_decoded"] == "model_int8_cpu_onnx.onnx" and int8["cpu"]["target"] == "cpu"
    assert (built_all / "model_int8_cpu.onnx").stat().st_size == int8["cpu"]["size_bytes"]
    cal = json.loads((built_all / "calibration.json").read_text())
    assert cal["cpu"]["fusion"]["float_convs"] == 0 and cal["cpu"]["fusion"]["integer_convs"] > 0
    assert sorted(float(p) for p in cal["cpu"]["percentile_scores"]) == [99.0, 99.5, 99.9, 99.99]
    assert cal["cpu"]["guard"]["attempts"][0]["excluded_layers"] == []
    # the shipped checks, on the shipped file: the CPU file passes, the TensorRT file does not
    assert cpu_int8.fp16_tensors(onnx.load(str(built_all / "model_int8_cpu.onnx"))) == []
    assert cpu_int8.fusion_report(built_all / "model_int8_cpu.onnx")["float_convs"] == 0
    assert cpu_int8.fp16_tensors(onnx.load(str(built_all / "model_int8.onnx")))
    assert cpu_int8.fusion_report(built_all / "model_int8.onnx")["integer_convs"] == 0


def test_onnx_runtime_picks_the_cpu_file_of_a_build_folder(built_all):
    from shfan.contracts import BuildManifest
    from shfan.runtime.backends import open_backend

    manifest = BuildManifest.read(built_all)
    assert manifest.onnx_for(built_all, "int8") == built_all / "model_int8_cpu.onnx"
    assert manifest.onnx_for(built_all, "int8", cpu=False) == built_all / "model_int8.onnx"
    assert manifest.onnx_for(built_all, "fp32") == built_all / "model_fp32.onnx"
    backend = open_backend(built_all, "onnxruntime", "int8")
    pts, scores = backend.infer(np.random.default_rng(0).random((2, 3, 64, 64), dtype=np.float32))
    assert pts.shape == (2, 68, 2) and scores.shape == (2, 68)
    assert Path(backend.session._model_path).name == "model_int8_cpu.onnx"


def test_session_options_use_physical_cores_without_spinning():
    import os

    import onnxruntime as ort

    from shfan.runtime.backends.onnxruntime.runner import physical_cores, session_options

    assert 1 <= physical_cores() <= (os.cpu_count() or 1)
    opts = session_options(ort)
    assert opts.intra_op_num_threads == min(physical_cores(), 8)
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert opts.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert session_options(ort, 3).intra_op_num_threads == 3
