"""The default model shipped inside the package (trained by `shfan-train`, see README)."""

from pathlib import Path

DEFAULT_CHECKPOINT = Path(__file__).with_name("shfan_default.pt")

# The same weights exported to ONNX (fp32, heatmap output), so the runtime needs no torch.
DEFAULT_ONNX = Path(__file__).with_name("shfan_default.onnx")
