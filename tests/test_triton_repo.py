"""shfan.builder.triton_repo: the Triton model repository written from a build folder.

config.pbtxt is parsed with Triton's own schema (tritonclient's model_config_pb2; those tests
skip without the `serve` extra) and compared with the ONNX file's inputs and outputs."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="needs onnx (the build or serve extra)")

from shfan.builder import triton_repo  # noqa: E402
from shfan.builder.metadata import BuildError  # noqa: E402
from shfan.io import sha256_file  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ONNX = ROOT / "shfan" / "weights" / "shfan_default.onnx"


def _schema():
    pytest.importorskip("tritonclient.grpc", reason="needs tritonclient (pip install 'shfan[serve]')")
    from tritonclient.grpc import model_config_pb2

    return model_config_pb2


def make_build(parent: Path, decoder: str = "onnx", cpu_file: bool = False) -> Path:
    """parent/build, a shfan-build folder from the shipped model (no PyTorch, no ModelOpt):
    model_fp32.onnx, the standard-ops decoded graph, manifest.json."""
    from shfan.builder import artifacts
    from shfan.builder.decoder_node import add_decoder
    from shfan.builder.metadata import get_metadata
    from shfan.contracts import BuildManifest

    folder = parent / "build"
    folder.mkdir(parents=True)
    shutil.copyfile(DEFAULT_ONNX, folder / "model_fp32.onnx")
    model = onnx.load(str(DEFAULT_ONNX))
    cfg = get_metadata(model)["model_config"]
    decoded = None
    if decoder == "onnx":
        decoded = "model_fp32_onnx.onnx"
        onnx.save(add_decoder(model, cfg, "onnx"), str(folder / decoded))
    entry = artifacts.artifact_entry("model_fp32.onnx", decoded, None, 3.0, 0.0, [], DEFAULT_ONNX.stat().st_size, 40.0)
    if cpu_file:
        shutil.copyfile(DEFAULT_ONNX, folder / "model_int8_cpu.onnx")
        entry["cpu"] = {**artifacts.artifact_entry("model_int8_cpu.onnx", None, None, 3.0, 0.0, [], 1, 20.0),
                        "target": "cpu"}
    manifest = BuildManifest(shfan_version="0.1.0", model_config=cfg, model_sha256="0" * 64, decoder=decoder, opset=17,
                             selected_precision="fp32", artifacts={"fp32": entry})
    artifacts.write_json(folder / "manifest.json", manifest.to_json())
    return folder


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    return make_build(tmp_path_factory.mktemp("b"))


def _by_name(values):
    return {v.name: v for v in values}


def test_onnxruntime_model_is_the_builds_onnx_byte_for_byte(build, tmp_path):
    summary = triton_repo.write_repository(build, tmp_path / "repo")
    copied = tmp_path / "repo" / "onnxruntime" / "shfan_landmarks" / "1" / "model.onnx"
    assert copied.read_bytes() == (build / "model_fp32_onnx.onnx").read_bytes()
    assert summary["onnxruntime"]["onnx"] == "model_fp32_onnx.onnx"
    marker = json.loads((tmp_path / "repo" / triton_repo.MARKER).read_text())
    assert marker["onnxruntime"]["sha256"] == sha256_file(build / "model_fp32_onnx.onnx")
    readme = (tmp_path / "repo" / "README.md").read_text()
    assert "tritonserver --model-repository" in readme and "httpclient" in readme


@pytest.mark.parametrize("backend", ["onnxruntime", "tensorrt"])
def test_config_parses_with_tritons_schema_and_matches_the_onnx_io(build, tmp_path, backend):
    pb = _schema()
    triton_repo.write_repository(build, tmp_path / "repo", max_batch=12, preferred=(4, 8, 16), queue_delay_us=1500)
    text = (tmp_path / "repo" / backend / "shfan_landmarks" / "config.pbtxt").read_text()
    cfg = triton_repo.parse_config(text)
    assert cfg.name == "shfan_landmarks" and cfg.backend == backend
    assert cfg.max_batch_size == 12
    assert list(cfg.dynamic_batching.preferred_batch_size) == [4, 8]  # 16 > max batch: dropped
    assert cfg.dynamic_batching.max_queue_delay_microseconds == 1500
    kind = pb.ModelInstanceGroup.KIND_CPU if backend == "onnxruntime" else pb.ModelInstanceGroup.KIND_GPU
    assert [(g.kind, g.count) for g in cfg.instance_group] == [(kind, 1)]
    # against the ONNX graph itself: names, element types, shapes without the batch dimension
    graph = onnx.load(str(build / "model_fp32_onnx.onnx"), load_external_data=False).graph
    for declared, actual in ((cfg.input, graph.input), (cfg.output, graph.output)):
        declared, actual = _by_name(declared), _by_name(actual)
        assert set(declared) == set(actual) and set(actual) >= ({"image"} if "image" in actual else {"landmarks"})
        for name, v in actual.items():
            dims = [d.dim_value for d in v.type.tensor_type.shape.dim]
            assert v.type.tensor_type.shape.dim[0].dim_param  # batch is symbolic in the file
            assert list(declared[name].dims) == dims[1:], name
            assert pb.DataType.Name(declared[name].data_type) == triton_repo.ONNX_TO_TRITON[v.type.tensor_type.elem_type]
    assert set(_by_name(cfg.output)) == {"landmarks", "scores"}


def test_tensorrt_variant_without_engine_says_how_to_add_it(build, tmp_path):
    summary = triton_repo.write_repository(build, tmp_path / "repo", engine_max_batch=4)
    trt = tmp_path / "repo" / "tensorrt" / "shfan_landmarks"
    assert not (trt / "1" / "model.plan").exists() and summary["tensorrt"]["engine"] is None
    assert "max_batch_size: 4" in (trt / "config.pbtxt").read_text()  # capped by the engine's profile
    assert "model.plan" in (tmp_path / "repo" / "README.md").read_text()


def test_engine_and_plugin_are_copied_and_the_plugin_loading_documented(tmp_path):
    build = make_build(tmp_path)
    (build / "model_fp32_onnx.engine").write_bytes(b"serialized-engine-bytes")
    lib = tmp_path / "libshfan_plugins.so"
    lib.write_bytes(b"\x7fELF-not-really")
    manifest = json.loads((build / "manifest.json").read_text())
    manifest["artifacts"]["fp32"]["engine"] = "model_fp32_onnx.engine"
    manifest["decoder"] = "plugin"
    manifest["tensorrt"] = {"version": "10.3.0", "device": "Orin", "sm": 87}
    (build / "manifest.json").write_text(json.dumps(manifest))
    summary = triton_repo.write_repository(build, tmp_path / "repo", plugin_lib=lib)
    repo = tmp_path / "repo"
    assert (repo / "tensorrt" / "shfan_landmarks" / "1" / "model.plan").read_bytes() == b"serialized-engine-bytes"
    assert (repo / "tensorrt" / "plugins" / lib.name).read_bytes() == lib.read_bytes()
    assert summary["tensorrt"]["plugin"] == f"plugins/{lib.name}" and summary["tensorrt"]["needs_plugin"]
    readme = (repo / "README.md").read_text()
    assert f"LD_PRELOAD=$PWD/tensorrt/plugins/{lib.name}" in readme
    assert f'--backend-config=tensorrt,plugins="$PWD/tensorrt/plugins/{lib.name}"' in readme
    # a plugin graph cannot run in ONNX Runtime: the onnxruntime model is the heatmap graph
    assert (repo / "onnxruntime" / "shfan_landmarks" / "1" / "model.onnx").read_bytes() == (build / "model_fp32.onnx").read_bytes()
    assert "heatmaps" in (repo / "onnxruntime" / "shfan_landmarks" / "config.pbtxt").read_text()


def test_cpu_int8_file_is_used_for_cpu_instances(tmp_path):
    build = make_build(tmp_path, cpu_file=True)
    summary = triton_repo.write_repository(build, tmp_path / "cpu", kind="cpu")
    assert summary["onnxruntime"]["onnx"] == "model_int8_cpu.onnx"
    summary = triton_repo.write_repository(build, tmp_path / "gpu", kind="gpu")
    assert summary["onnxruntime"]["onnx"] == "model_fp32_onnx.onnx"
    assert "KIND_GPU" in (tmp_path / "gpu" / "onnxruntime" / "shfan_landmarks" / "config.pbtxt").read_text()


def test_refuses_to_replace_a_foreign_folder_and_replaces_its_own(build, tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep")
    with pytest.raises(BuildError, match="not a shfan Triton repository"):
        triton_repo.write_repository(build, foreign)
    assert (foreign / "precious.txt").read_text() == "keep"
    triton_repo.write_repository(build, tmp_path / "repo")
    triton_repo.write_repository(build, tmp_path / "repo", max_batch=8)  # its own: replaced whole
    assert "max_batch_size: 8" in (tmp_path / "repo" / "onnxruntime" / "shfan_landmarks" / "config.pbtxt").read_text()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging leftovers


def test_bad_config_is_rejected_by_the_schema():
    _schema()
    with pytest.raises(BuildError, match="ModelConfig"):
        triton_repo.parse_config('name: "x"\nmax_batch_size: "sixteen"\n')
    with pytest.raises(BuildError, match="ModelConfig"):
        triton_repo.parse_config('name: "x"\nno_such_field: 1\n')


def test_not_a_build_folder(tmp_path):
    with pytest.raises(BuildError, match="manifest"):
        triton_repo.write_repository(tmp_path, tmp_path / "repo")
    assert not np.any([p.name == "repo" for p in tmp_path.iterdir()])


@pytest.mark.slow
def test_shfan_build_triton_repo_flag(tmp_path, capsys):
    """shfan-build --onnx ... --triton-repo DIR: the repository of the build it just made."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("skimage", reason="the built-in calibration faces need scikit-image")
    from shfan.cli.build import main

    main(["--onnx", str(DEFAULT_ONNX), "--precision", "fp32", "--out", str(tmp_path / "b"),
          "--triton-repo", str(tmp_path / "r")])
    assert "Triton model repository" in capsys.readouterr().err
    onnx_file = json.loads((tmp_path / "b" / "manifest.json").read_text())["artifacts"]["fp32"]["onnx_decoded"]
    copied = tmp_path / "r" / "onnxruntime" / "shfan_landmarks" / "1" / "model.onnx"
    assert copied.read_bytes() == (tmp_path / "b" / onnx_file).read_bytes()
    assert (tmp_path / "r" / "tensorrt" / "shfan_landmarks" / "config.pbtxt").is_file()


@pytest.mark.slow
def test_build_writes_the_triton_repository_from_python_too(tmp_path):
    """BuildOptions(triton_repo=DIR): what shfan-build --triton-repo does, for library callers."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("skimage", reason="the built-in calibration faces need scikit-image")
    from shfan.builder import BuildOptions, build

    result = build(BuildOptions(onnx=str(DEFAULT_ONNX), precision="fp32", out=tmp_path / "b",
                                triton_repo=str(tmp_path / "r")))
    assert result.out == tmp_path / "b"
    assert (tmp_path / "r" / "onnxruntime" / "shfan_landmarks" / "1" / "model.onnx").is_file()
    assert (tmp_path / "r" / "tensorrt" / "shfan_landmarks" / "config.pbtxt").is_file()
