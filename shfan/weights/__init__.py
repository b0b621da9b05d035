"""The default model shipped inside the package (trained by `shfan-train`, see README)."""

from pathlib import Path

DEFAULT_CHECKPOINT = Path(__file__).with_name("shfan_default.pt")


def default_checkpoint() -> Path:
    """Path of the shipped default checkpoint; a clear error when this install lacks it."""
    if not DEFAULT_CHECKPOINT.is_file():
        raise FileNotFoundError(
            f"the default model {DEFAULT_CHECKPOINT} is missing from this install; "
            "reinstall shfan or pass --model PATH")
    return DEFAULT_CHECKPOINT

# The same weights exported to ONNX (fp32, heatmap output), so the runtime needs no torch.
DEFAULT_ONNX = Path(__file__).with_name("shfan_default.onnx")
