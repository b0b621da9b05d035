"""shfan-build end to end on a tiny random model (mechanics, not accuracy): export parity,
precision ONNX contents, decoder graphs, manifest shape, reuse, atomic output, bad inputs."""

import json
import os
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("modelopt.onnx.quantization")

from shfan.cli.build import main  # noqa: E402


ARTIFACT_KEYS = {"onnx", "onnx_decoded", "engine", "nme_inter_ocular", "nme_drift", "excluded_layers", "size_bytes",
                 "ort_cpu_latency_ms"}
MANIFEST_KEYS = {"shfan_version", "model_config", "model_sha256", "decoder", "opset", "selected_precision",
                 "artifacts", "tensorrt", "plugin_sha256", "plugin_lib", "calibration"}


def manifest(folder):
    return json.loads((Path(folder) / "manifest.json").read_text())


def error_of(capsys, argv, code=1):
    """The one-line error of a refused build: exit 1 (the build failed), 2 (usage, #15)."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == code
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: ") and "Traceback" not in err
    return last


def test_manifest_shape(built):
    m = manifest(built)
    assert set(m) == MANIFEST_KEYS
    assert set(m["artifacts"]) == {"fp32", "fp16", "int8"}
    assert m["selected_precision"] in m["artifacts"]
    assert m["decoder"] == "onnx" and m["opset"] == 17 and m["tensorrt"] is None
    assert m["plugin_sha256"] is None and m["plugin_lib"] is None  # an onnx-decoder build never needs the plugin
    assert m["model_config"]["stacks"] == 1 and m["model_config"]["input_size"] == 64
    for p, a in m["artifacts"].items():
        assert set(a) == ARTIFACT_KEYS
        assert a["onnx"] == f"model_{p}.onnx" and a["onnx_decoded"] == f"model_{p}_onnx.onnx"
        assert (built / a["onnx"]).stat().st_size == a["size_bytes"]
        assert isinstance(a["nme_inter_ocular"], float) and isinstance(a["nme_drift"], float)
        assert a["ort_cpu_latency_ms"] > 0
    assert m["artifacts"]["fp32"]["nme_drift"] == 0.0
    expected = {"manifest.json", "calibration.json", "cache.json", "calibration.cache"} | {
        f"model_{p}{suffix}.onnx" for p in ("fp32", "fp16", "int8") for suffix in ("", "_onnx")}
    assert {p.name for p in built.iterdir()} == expected  # no ModelOpt intermediates left behind
    cal = json.loads((built / "calibration.json").read_text())
    assert cal["calibration_faces"] == 40 and cal["heldout_faces"] >= 16 and cal["reference"] == "ground truth"
    assert cal["guard"]["attempts"][0]["excluded_layers"] == []
    scores = {float(p): v for p, v in cal["percentile_scores"].items()}
    assert sorted(scores) == [99.0, 99.5, 99.9, 99.99] and cal["percentile"] == min(scores, key=scores.get)
    # export parity on real face crops, reported in calibration.json
    assert cal["parity"]["max_heatmap_diff"] < 1e-4
    assert cal["parity"]["max_landmark_diff_px"] < 1e-2


def test_metadata_and_runtime_reads_it(built):
    from shfan.contracts import BuildManifest
    from shfan.runtime.backends.onnxruntime.runner import OnnxRuntimeBackend

    model = onnx.load(str(built / "model_int8.onnx"))
    meta = json.loads(next(p.value for p in model.metadata_props if p.key == "shfan"))
    assert meta["precision"] == "int8" and meta["model_config"]["landmarks"] == 68 and "shfan_version" in meta
    backend = OnnxRuntimeBackend(BuildManifest.read(built).onnx_for(built, "int8"))
    pts, scores = backend.infer(np.random.default_rng(0).random((2, 3, 64, 64), dtype=np.float32))
    assert pts.shape == (2, 68, 2) and scores.shape == (2, 68)


def test_fp32_graph_io(built):
    model = onnx.load(str(built / "model_fp32.onnx"))
    (inp,), (out,) = model.graph.input, model.graph.output
    assert inp.name == "image" and out.name == "heatmaps"
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert dims[1:] == [3, 64, 64] and isinstance(dims[0], str)  # dynamic batch
    assert [d.dim_value for d in out.type.tensor_type.shape.dim][1:] == [68, 16, 16]


def test_fp16_has_half_weights_and_float_io(built):
    model = onnx.load(str(built / "model_fp16.onnx"))
    ops = Counter(n.op_type for n in model.graph.node)
    assert ops["Cast"] >= 2
    assert Counter(i.data_type for i in model.graph.initializer)[onnx.TensorProto.FLOAT16] > 10
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT


def test_int8_has_symmetric_qdq(built):
    model = onnx.load(str(built / "model_int8.onnx"))
    ops = Counter(n.op_type for n in model.graph.node)
    assert ops["QuantizeLinear"] > 10 and ops["DequantizeLinear"] >= ops["QuantizeLinear"]
    inits = {i.name: i for i in model.graph.initializer}
    zero_points = [inits[n.input[2]] for n in model.graph.node if n.op_type == "QuantizeLinear" and len(n.input) > 2
                   and n.input[2] in inits]
    assert all(not np.any(onnx.numpy_helper.to_array(z)) for z in zero_points)  # symmetric


def test_int8_scales_come_from_the_measured_cache(built):
    """The percentile ranges written to calibration.cache are the scales in the int8 graph."""
    from conftest import read_cache_as_modelopt_does

    from shfan.calibration.ranges import conv_inputs

    cache = read_cache_as_modelopt_does(built / "calibration.cache")
    fp32 = onnx.load(str(built / "model_fp32.onnx"))
    assert set(cache) == set(conv_inputs(fp32)) and "image" in cache
    model = onnx.load(str(built / "model_int8.onnx"))
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    act_scales = {n.input[0]: float(inits[n.input[1]]) for n in model.graph.node
                  if n.op_type == "QuantizeLinear" and n.input[0] in cache}
    assert len(act_scales) == len(cache) - 1  # the image is cast to fp16 before its Q node
    for name, scale in act_scales.items():
        assert scale * 127 == pytest.approx(cache[name], rel=2e-3)  # fp16 scale in the graph


def test_onnx_decoder_matches_numpy_codec(built):
    from shfan import codec
    from shfan.calibration.ort_tools import session

    x = np.random.default_rng(1).random((3, 3, 64, 64), dtype=np.float32)
    heatmaps = session(built / "model_fp32.onnx").run(None, {"image": x})[0]
    landmarks, scores = session(built / "model_fp32_onnx.onnx").run(None, {"image": x})
    ref_pts, ref_scores = codec.decode(heatmaps, "subpixel", 5, 12.0)
    np.testing.assert_allclose(landmarks, ref_pts * 4, atol=1e-3)
    np.testing.assert_allclose(scores, ref_scores, atol=1e-6)


def test_plugin_node_attributes(built):
    from shfan.builder.decoder_node import add_plugin_decoder

    m = manifest(built)
    for precision in ("fp32", "int8"):
        graph = add_plugin_decoder(onnx.load(str(built / f"model_{precision}.onnx")), m["model_config"]).graph
        node = graph.node[-1]
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert node.op_type == "SubpixelDecode"
        assert attrs == {"plugin_namespace": b"shfan", "plugin_version": b"1", "window": 5,
                         "temperature": pytest.approx(12.0), "scale": pytest.approx(4.0)}
        assert [o.name for o in graph.output] == ["landmarks", "scores"]
        assert [o.type.tensor_type.elem_type for o in graph.output] == [onnx.TensorProto.FLOAT] * 2
        assert node.input[0] in {n.output[0] for n in graph.node}


def test_identical_rebuild_is_reused(built, tiny64_checkpoint, helen_dir, capsys):
    before = {p.name: p.stat().st_mtime_ns for p in built.iterdir()}
    capsys.readouterr()
    main(["--weights", str(tiny64_checkpoint), "--precision", "best", "--calib-data", str(helen_dir),
          "--max-calib", "40", "--max-nme-drift", "1000", "--out", str(built)])
    assert "up to date" in capsys.readouterr().err
    assert before == {p.name: p.stat().st_mtime_ns for p in built.iterdir()}


def test_failed_build_keeps_old_folder_and_leaves_nothing(built, tmp_path, capsys):
    out = tmp_path / "keep"
    shutil.copytree(built, out)
    before = sorted(p.name for p in out.iterdir())
    msg = error_of(capsys, ["--weights", str(tmp_path / "missing.pt"), "--out", str(out)])
    assert "no such checkpoint" in msg
    assert sorted(p.name for p in out.iterdir()) == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep"]  # no staging folder left behind


def test_too_few_faces_refused_and_nothing_written(tiny64_checkpoint, helen_dir, tmp_path, capsys):
    few = tmp_path / "few"
    few.mkdir()
    for pts in sorted(helen_dir.glob("*.pts"))[:10]:
        os.symlink(pts, few / pts.name)
        os.symlink(pts.with_suffix(".jpg"), few / pts.with_suffix(".jpg").name)
    msg = error_of(capsys, ["--weights", str(tiny64_checkpoint), "--precision", "int8", "--calib-data", str(few),
                            "--out", str(tmp_path / "out")])
    assert "int8 needs >= 32" in msg and "calibration faces" in msg
    assert sorted(p.name for p in tmp_path.iterdir()) == ["few"]


def test_unreadable_calib_folder(tiny64_checkpoint, tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "face.jpg").write_bytes(b"not a jpeg")
    msg = error_of(capsys, ["--weights", str(tiny64_checkpoint), "--precision", "int8", "--calib-data", str(bad),
                            "--out", str(tmp_path / "out")])
    assert "could be read" in msg
    msg = error_of(capsys, ["--weights", str(tiny64_checkpoint), "--calib-data", str(tmp_path / "nope"),
                            "--out", str(tmp_path / "out")], code=2)
    assert "--calib-data" in msg and "no such file" in msg


def test_missing_and_wrong_checkpoint(tmp_path, capsys):
    msg = error_of(capsys, ["--weights", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "o")])
    assert "no such checkpoint" in msg and "--weights" in msg
    wrong = tmp_path / "wrong.pt"
    wrong.write_bytes(b"definitely not torch")
    msg = error_of(capsys, ["--weights", str(wrong), "--out", str(tmp_path / "o")])
    assert "checkpoint" in msg
    assert not (tmp_path / "o").exists()


def test_default_checkpoint_missing_is_clear(tmp_path, capsys):
    from shfan.weights import DEFAULT_CHECKPOINT

    if DEFAULT_CHECKPOINT.is_file():
        pytest.skip("this install ships the default checkpoint")
    msg = error_of(capsys, ["--out", str(tmp_path / "o")])
    assert "--weights" in msg


def test_onnx_input_must_be_ours(tmp_path, capsys):
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    foreign = tmp_path / "foreign.onnx"
    onnx.save(helper.make_model(graph), str(foreign))
    msg = error_of(capsys, ["--onnx", str(foreign), "--out", str(tmp_path / "o")])
    assert "not a shfan ONNX" in msg
    (tmp_path / "junk.onnx").write_bytes(b"\x00junk")
    msg = error_of(capsys, ["--onnx", str(tmp_path / "junk.onnx"), "--out", str(tmp_path / "o")])
    assert "ONNX" in msg
    assert not (tmp_path / "o").exists()


def test_onnx_input_builds_without_pytorch_export(built, tmp_path, capsys):
    out = tmp_path / "from_onnx"
    main(["--onnx", str(built / "model_int8.onnx"), "--precision", "int8", "--decoder", "none", "--out", str(out)])
    m = manifest(out)
    assert list(m["artifacts"]) == ["int8"] and m["selected_precision"] == "int8"
    a = m["artifacts"]["int8"]
    assert a["onnx_decoded"] is None and a["nme_inter_ocular"] == manifest(built)["artifacts"]["int8"]["nme_inter_ocular"]
    msg = error_of(capsys, ["--onnx", str(built / "model_int8.onnx"), "--precision", "fp16", "--out", str(tmp_path / "x")])
    assert "already int8" in msg


def test_out_that_is_not_a_build_folder_is_refused(tiny64_checkpoint, tmp_path, capsys):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("x")
    msg = error_of(capsys, ["--weights", str(tiny64_checkpoint), "--out", str(precious)])
    assert "not a shfan-build folder" in msg
    assert (precious / "thesis.tex").is_file()


def test_tight_bound_walks_the_measured_ladder_and_best_skips_int8(tiny64_checkpoint, tmp_path):
    """A bound int8 cannot meet: every conv is ranked, each ladder step is tried, and `best`
    falls back to a float precision instead of shipping a failed int8. No --calib-data: the
    fallback faces have no annotations, so drift is measured against fp32 and cannot be < 0."""
    out = tmp_path / "tight"
    main(["--weights", str(tiny64_checkpoint), "--precision", "best", "--max-calib", "40", "--max-nme-drift", "0.00001", "--decoder", "none", "--out", str(out)])
    cal = json.loads((out / "calibration.json").read_text())
    guard = cal["guard"]
    assert cal["reference"] == "fp32 predictions"
    convs = sum(n.op_type == "Conv" for n in onnx.load(str(out / "model_fp32.onnx")).graph.node)
    assert not guard["within_bound"] and len(guard["sensitivity"]) == convs
    drifts = [s["nme_drift_alone"] for s in guard["sensitivity"]]
    assert drifts == sorted(drifts, reverse=True) and drifts[0] > 0
    kept_out = [len(a["excluded_layers"]) for a in guard["attempts"]]
    assert kept_out == [0] + [k for k in (4, 8, 12, 16, 24, 32, 48, 64) if k < convs]
    assert guard["attempts"][-1]["excluded_layers"] == [s["node"] for s in guard["sensitivity"]][:kept_out[-1]]
    assert all(a["nme_drift_upper95"] >= a["nme_drift"] for a in guard["attempts"])
    assert manifest(out)["selected_precision"] in ("fp32", "fp16")


def test_eval_on_a_build_folder_names_the_precision(built, afw_dir, capsys):
    from shfan.cli.eval import main as eval_main

    capsys.readouterr()
    reports = {}
    for extra in ([], ["--precision", "int8"], ["--precision", "fp32"]):
        eval_main(["--model", str(built), "--data", str(afw_dir), "--limit", "4", "--json", *extra])
        reports[extra[-1] if extra else "selected"] = json.loads(capsys.readouterr().out)
    assert reports["selected"]["precision"] == manifest(built)["selected_precision"]
    assert reports["int8"]["precision"] == "int8" and reports["fp32"]["precision"] == "fp32"
    assert reports["int8"]["backend"] == "onnxruntime" and reports["int8"]["faces"] == 4
