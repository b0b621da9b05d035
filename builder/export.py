"""PyTorch checkpoint -> simplified fp32 ONNX with shfan metadata, plus a parity check that the
ONNX file computes what PyTorch computes (on real face crops, not noise)."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shfan.builder.metadata import OPSET, make_metadata, set_metadata
from shfan.errors import BuildError

INPUT, OUTPUT = "image", "heatmaps"


def resolve_weights(weights) -> Path:
    """The checkpoint to export: --weights (a path or a model name), else the shipped default
    (found where every tool finds it: $SHFAN_MODELS first)."""
    from shfan import weights as shipped
    from shfan.errors import BackendError

    if weights in shipped.MODEL_NAMES:
        return shipped.model_path(weights, "checkpoint")  # BackendError naming the fix when it is missing
    if weights:
        path = Path(weights)
        if not path.is_file():
            raise BuildError(f"{path}: no such checkpoint; pass --weights PATH to a .pt file (or --onnx FILE)")
        if path.suffix.lower() == ".onnx":
            raise BuildError(f"{path} is an ONNX file, not a checkpoint; pass it with --onnx {path}")
        return path
    try:
        return shipped.model_path("compact", "checkpoint")
    except BackendError as exc:
        raise BuildError(f"{exc} (--weights PATH, e.g. runs/default/best.pt, or --onnx FILE)") from None


def load_model(path):
    """FAN in eval mode; CheckpointError (a ShfanError) for files that are not FAN checkpoints."""
    from shfan.model import load_checkpoint

    return load_checkpoint(path).float().eval()


def export_onnx(model, simplify: bool = True):
    """onnx.ModelProto: image [B,3,S,S] float32 -> heatmaps [B,K,S/4,S/4], dynamic batch,
    opset 17 (TorchScript exporter: stable node names such as /l0/Conv for exclusion rules)."""
    import onnx
    import torch

    size = model.config.input_size
    buf = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(model, (torch.zeros(1, 3, size, size),), buf, input_names=[INPUT],
                          output_names=[OUTPUT], opset_version=OPSET, dynamo=False,
                          dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}})
    proto = onnx.load_from_string(buf.getvalue())
    if simplify:
        import onnxsim

        simplified, ok = onnxsim.simplify(proto)
        if ok:
            proto = simplified
    set_metadata(proto, make_metadata(model.config.to_dict(), "fp32"))
    onnx.checker.check_model(proto)
    return proto


@dataclass
class Parity:
    faces: int
    max_heatmap_diff: float
    max_landmark_diff_px: float  # network-input pixels

    def to_dict(self) -> dict:
        return {"faces": self.faces, "max_heatmap_diff": self.max_heatmap_diff,
                "max_landmark_diff_px": self.max_landmark_diff_px}


def parity_check(model, onnx_path, crops: np.ndarray) -> Parity:
    """Max |heatmap| and max landmark difference between PyTorch and ONNX Runtime (CPU)."""
    import torch

    from shfan import codec
    from shfan.calibration.ort_tools import session

    cfg = model.config
    crops = np.ascontiguousarray(crops, np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(crops)).numpy()
    got = session(onnx_path).run(None, {INPUT: crops})[0].astype(np.float32)
    scale = cfg.heatmap_scale
    p_ref, _ = codec.decode(ref, "subpixel", cfg.window, cfg.temperature)
    p_got, _ = codec.decode(got, "subpixel", cfg.window, cfg.temperature)
    return Parity(len(crops), float(np.abs(ref - got).max()), float(np.abs(p_ref - p_got).max() * scale))
