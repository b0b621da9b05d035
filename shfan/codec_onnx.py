"""The subpixel decoder as standard ONNX ops (ArgMax, Gather, Exp, ReduceSum, ...), exported
from the PyTorch implementation. Runs in ONNX Runtime and in TensorRT without the plugin, and
can be appended to a backbone graph with `onnx.compose`."""

from __future__ import annotations

import io

from shfan.codec import DEFAULT_TEMPERATURE, DEFAULT_WINDOW

OPSET = 17
INPUT = "heatmaps"
OUTPUTS = ("landmarks", "scores")


def decoder_model(method: str = "subpixel", window: int = DEFAULT_WINDOW,
                  temperature: float = DEFAULT_TEMPERATURE, scale: float = 1.0,
                  landmarks: int = 68, heatmap_size: int = 64, opset: int = OPSET):
    """onnx.ModelProto: heatmaps [B, K, H, W] float32 -> landmarks [B, K, 2] (network-input px,
    i.e. heatmap coords * scale), scores [B, K]. Batch is dynamic; K, H, W are fixed."""
    import onnx
    import torch

    from shfan.codec_torch import HeatmapDecoder

    dec = HeatmapDecoder(method, window, temperature, scale).eval()
    example = torch.rand(1, landmarks, heatmap_size, heatmap_size)
    buf = io.BytesIO()
    torch.onnx.export(dec, (example,), buf, input_names=[INPUT], output_names=list(OUTPUTS),
                      dynamic_axes={INPUT: {0: "batch"}, OUTPUTS[0]: {0: "batch"}, OUTPUTS[1]: {0: "batch"}},
                      opset_version=opset, dynamo=False)
    model = onnx.load_from_string(buf.getvalue())
    onnx.checker.check_model(model)
    return model
