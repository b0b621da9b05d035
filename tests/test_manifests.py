"""Build manifests are typed records keyed by (precision, target); manifest.json files written by
shfan 0.1.0 (tests/manifests/, before the records were typed) still read, and what is written
now is the same JSON (older readers read it)."""

import json
import shutil
from pathlib import Path

import pytest

from shfan.contracts import Artifact, BuildManifest

OLD = Path(__file__).parent / "manifests"


def test_target_all_manifest_from_0_1_0_reads_as_typed_records():
    folder = OLD / "v0.1.0_target_all"
    m = BuildManifest.read(folder)
    assert list(m.artifacts) == [("fp32", "tensorrt"), ("fp16", "tensorrt"), ("int8", "tensorrt"), ("int8", "cpu")]
    assert all(isinstance(a, Artifact) for a in m.artifacts.values())
    cpu = m.artifacts[("int8", "cpu")]
    assert (cpu.onnx, cpu.onnx_decoded, cpu.size_bytes) == ("model_int8_cpu.onnx", "model_int8_cpu_onnx.onnx", 504241)
    assert m.artifacts[("int8", "tensorrt")].excluded_layers == ()
    assert m.precisions == ["fp32", "fp16", "int8"] and m.selected_precision == "int8"
    assert m.config.input_size == 64 and m.entry()[1].onnx == "model_int8.onnx"
    assert m.onnx_for(folder, "int8") == folder / "model_int8_cpu.onnx"
    assert m.onnx_for(folder, "int8", cpu=False) == folder / "model_int8.onnx"
    assert m.rebuild_command(folder, "int8").startswith(f"shfan-build --onnx {folder / 'model_int8_onnx.onnx'}")


def test_target_cpu_manifest_from_0_1_0_reads_as_typed_records():
    folder = OLD / "v0.1.0_target_cpu"
    m = BuildManifest.read(folder)
    assert list(m.artifacts) == [("fp32", "tensorrt"), ("int8", "cpu")]
    assert m.entry("int8")[1].target == "cpu" and m.artifact("int8", cpu=False).onnx == "model_int8_cpu.onnx"
    assert m.onnx_for(folder, "int8") == m.onnx_for(folder, "int8", cpu=False) == folder / "model_int8_cpu.onnx"


@pytest.mark.parametrize("name", ["v0.1.0_target_all", "v0.1.0_target_cpu"])
def test_manifest_written_now_is_the_0_1_0_json(name, tmp_path):
    """to_json writes what 0.1.0 wrote, key for key and in order: older readers read it."""
    data = json.loads((OLD / name / "manifest.json").read_text())
    written = BuildManifest.from_json(data).to_json()
    assert json.dumps(written) == json.dumps(data)
    shutil.copytree(OLD / name, tmp_path / "b")
    (tmp_path / "b" / "manifest.json").write_text(json.dumps(written))
    assert BuildManifest.read(tmp_path / "b") == BuildManifest.read(OLD / name)


def test_malformed_entries_are_refused_as_before(tmp_path):
    from shfan.errors import BackendError

    for artifacts in ({"fp32": "model.onnx"}, {"fp32": {"onnx": None}}, {"int4": {"onnx": "m.onnx"}}):
        (tmp_path / "manifest.json").write_text(json.dumps({"artifacts": artifacts}))
        with pytest.raises(BackendError, match="no models|unknown precision"):
            BuildManifest.read(tmp_path)
