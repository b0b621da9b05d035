"""Shared fixtures for the runtime tests (imported by the test_runtime_* modules)."""

import json

import pytest


def export_onnx(checkpoint_or_model, path):
    """Export a FAN (or a checkpoint path) to ONNX with heatmap output and shfan metadata."""
    import onnx
    import torch

    from shfan import model as fan_model

    model = (fan_model.load_checkpoint(checkpoint_or_model) if not isinstance(checkpoint_or_model, torch.nn.Module)
             else checkpoint_or_model.eval())
    s = model.config.input_size
    torch.onnx.export(model, torch.rand(1, 3, s, s), str(path), input_names=["image"], output_names=["heatmaps"],
                      dynamic_axes={"image": {0: "b"}, "heatmaps": {0: "b"}}, opset_version=17, dynamo=False)
    proto = onnx.load(str(path))
    entry = proto.metadata_props.add()
    entry.key, entry.value = "shfan", json.dumps({"model_config": model.config.to_dict()})
    onnx.save(proto, str(path))
    return path


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory):
    """A random-weight 1-stack FAN at 64 px as ONNX: exercises every code path, knows no faces."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from shfan.model import FAN, ModelConfig

    torch.manual_seed(0)
    model = FAN(ModelConfig(stacks=1, width=16, landmarks=68, input_size=64))
    return export_onnx(model, tmp_path_factory.mktemp("tiny") / "tiny.onnx")
