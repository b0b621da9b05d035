"""A real TensorRT engine build (skips where TensorRT is not installed; no fake modules)."""

import json

import pytest

pytest.importorskip("tensorrt")
pytestmark = pytest.mark.tensorrt


def test_engine_built_and_reused(tmp_path, capsys):
    import torch

    from shfan.cli.build import main
    from shfan.model import FAN, ModelConfig, save_checkpoint

    torch.manual_seed(0)
    ckpt = tmp_path / "tiny.pt"
    save_checkpoint(FAN(ModelConfig(stacks=1, width=64, input_size=64)), ckpt)
    out = tmp_path / "build"
    args = ["--weights", str(ckpt), "--precision", "fp16", "--decoder", "onnx", "--max-batch", "2",
            "--max-nme-drift", "1000", "--out", str(out)]
    main(args)
    m = json.loads((out / "manifest.json").read_text())
    engine = m["artifacts"]["fp16"]["engine"]
    assert engine == "model_fp16_onnx.engine" and (out / engine).stat().st_size > 0
    assert (out / "timing.cache").is_file()
    assert m["tensorrt"]["version"] and m["tensorrt"]["sm"]
    main(args)
    assert "up to date" in capsys.readouterr().err
