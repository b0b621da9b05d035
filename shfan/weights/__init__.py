"""The models shipped inside the package, by name (trained by `shfan-train`, see README).

- `compact` (the default): FAN 2 stacks x 128 channels, 128 px, trained on a 2-core CPU.
- `accurate`: the compact network at 192 px (2.25x the compute) for Jetson GPUs, trained from the
  compact weights by a CPU campaign that spans sessions (campaign/accurate.json, its 6,900-step
  schedule ended in session 12); `shfan_accurate.json` holds its provenance and validation numbers.
- `fast`: a conv-BN-ReLU hourglass, 2 x 64 at 128 px, for CPUs (3.4x faster than `compact` in ONNX
  Runtime fp32; every BatchNorm folds, so its CPU int8 file runs 64 of its 68 convs in integer), trained from
  scratch on labelled faces plus faces the compact model labelled (campaign/fast.json, its schedule
  ended in session 12); `shfan_fast.json` holds its provenance and validation numbers.
"""

import os
from pathlib import Path

DEFAULT_CHECKPOINT = Path(__file__).with_name("shfan_default.pt")

# The same weights exported to ONNX (fp32, heatmap output), so the runtime needs no torch.
DEFAULT_ONNX = Path(__file__).with_name("shfan_default.onnx")

MODEL_NAMES = ("compact", "accurate", "fast")
FILES = {"compact": "shfan_default", "accurate": "shfan_accurate", "fast": "shfan_fast"}  # name -> stem (.onnx, .pt)

def _folders():
    """Where named models are looked up: $SHFAN_MODELS (if set), then the package."""
    extra = os.environ.get("SHFAN_MODELS")
    return ([Path(extra)] if extra else []) + [Path(__file__).parent]


def model_path(name: str, kind: str = "onnx") -> Path:
    """The file of a named model: kind 'onnx' (torch-free runtime) or 'checkpoint' (.pt);
    BackendError (a model that cannot be used) naming the fix otherwise."""
    from shfan.errors import BackendError

    if name not in MODEL_NAMES:
        raise BackendError(f"unknown model name {name!r}; choose {' or '.join(MODEL_NAMES)}, or give a path")
    suffix = ".onnx" if kind == "onnx" else ".pt"
    for folder in _folders():
        path = folder / (FILES[name] + suffix)
        if path.is_file():
            return path
    which = "default model" if name == "compact" else f"{name!r} model"
    raise BackendError(f"the {which} {Path(__file__).parent / (FILES[name] + suffix)} is missing from this install; "
                       "reinstall shfan or give a model path")


def resolve(model, kind: str = "onnx"):
    """A model argument as given (None, a name or a path) -> a path (None stays None)."""
    if model is not None and not isinstance(model, (str, os.PathLike)):
        from shfan.errors import BackendError

        raise BackendError(f"model must be None, a name ({', '.join(MODEL_NAMES)}) or a path, got {type(model).__name__}")
    if model is not None and str(model) in MODEL_NAMES:
        return model_path(str(model), kind)
    if model is not None and not os.fspath(model).strip():
        from shfan.errors import BackendError

        raise BackendError(f"model is an empty path; give None (the shipped model), {' or '.join(MODEL_NAMES)}, "
                           "or a model path")
    return None if model is None else Path(model)
