"""The `shfan` metadata_props entry that marks an ONNX file as ours and carries what the
runtime needs to decode it (model config, precision). Needs only `onnx`."""

from __future__ import annotations

import json
from pathlib import Path

from shfan.contracts import META_KEY
from shfan.errors import BuildError  # noqa: F401  (its home was here; callers import it from either)

OPSET = 17


def make_metadata(model_config: dict, precision: str, decoder: str = "none") -> dict:
    from shfan import __version__

    return {"model_config": dict(model_config), "precision": precision, "decoder": decoder,
            "shfan_version": __version__}


def set_metadata(model, meta: dict):
    """Replace (not duplicate) our metadata entry on an onnx.ModelProto; returns the model."""
    keep = [p for p in model.metadata_props if p.key != META_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    entry = model.metadata_props.add()
    entry.key, entry.value = META_KEY, json.dumps(meta, sort_keys=True)
    return model


def get_metadata(model) -> dict | None:
    for p in model.metadata_props:
        if p.key == META_KEY:
            try:
                meta = json.loads(p.value)
            except json.JSONDecodeError:
                return None
            return meta if isinstance(meta, dict) and "model_config" in meta else None
    return None


def read_shfan_onnx(path) -> tuple[object, dict]:
    """Load an ONNX file and its shfan metadata; one-line BuildError if it is not ours."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise BuildError(f"{path}: no such ONNX file")
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf raises DecodeError and friends
        raise BuildError(f"{path}: not a readable ONNX file ({type(exc).__name__}); "
                         "give an ONNX file written by shfan-build") from None
    meta = get_metadata(model)
    if meta is None:
        raise BuildError(f"{path}: not a shfan ONNX (no '{META_KEY}' metadata); "
                         "export it with shfan-build --weights CHECKPOINT")
    outputs = [o.name for o in model.graph.output]
    if outputs[:1] != ["heatmaps"]:
        raise BuildError(f"{path}: has outputs {outputs}, expected the heatmap-output model "
                         "(model_<precision>.onnx of a shfan-build folder)")
    return model, meta
