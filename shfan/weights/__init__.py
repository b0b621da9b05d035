"""The models shipped inside the package, by name (trained by `shfan-train`, see README).

- `compact` (the default): FAN 2 stacks x 128 channels, 128 px, trained on a 2-core CPU.
- `accurate`: FAN at 256 px for Jetson GPUs. It needs a GPU to train and is not shipped until
  one trained it properly; `model_path("accurate")` says how to make it and where it goes.
"""

import os
from pathlib import Path

DEFAULT_CHECKPOINT = Path(__file__).with_name("shfan_default.pt")

# The same weights exported to ONNX (fp32, heatmap output), so the runtime needs no torch.
DEFAULT_ONNX = Path(__file__).with_name("shfan_default.onnx")

MODEL_NAMES = ("compact", "accurate")
FILES = {"compact": "shfan_default", "accurate": "shfan_accurate"}  # name -> file stem (.onnx, .pt)

# The recipe for the accurate model (one lent H200: ~8 min of training inside a 15-minute slot).
ACCURATE_RECIPE = ("shfan-train --data 300w/helen_train --data 300w/lfpw_train --extra-data 300w/afw "
                   "--stacks 4 --width 256 --input-size 256 --batch-size 32 --lr 1e-3 --loss awing --consistency 2.3 "
                   "--time-budget 8 --out runs/accurate")


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
    if name == "compact":
        raise BackendError(f"the default model {Path(__file__).parent / (FILES[name] + suffix)} is missing from this "
                           f"install; reinstall shfan or give a model path")
    raise BackendError("the 'accurate' model is not shipped (it needs a GPU to train); make it with "
                       f"`{ACCURATE_RECIPE}`, then `python scripts/ship_default_model.py runs/accurate/best.pt "
                       "--name accurate --to DIR` and set SHFAN_MODELS=DIR (or give the path itself)")


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
