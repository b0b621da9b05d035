"""Put the subpixel decoder into the graph, after quantization (a custom op would push
ModelOpt onto the TensorRT provider). Two forms:
- `plugin`: one `SubpixelDecode` node (DESIGN.md §4), resolved by TensorRT from the shfan plugin;
- `onnx`: the same math in standard ops (shfan.codec_onnx), runs everywhere, ORT included."""

from __future__ import annotations

from shfan.builder.metadata import get_metadata, set_metadata
from shfan.errors import BuildError
from shfan.contracts import ModelInfo

DECODERS = ("plugin", "onnx", "none")
OP_TYPE, PLUGIN_NAMESPACE, PLUGIN_VERSION = "SubpixelDecode", "shfan", "1"


def _opset(model) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def add_plugin_decoder(model, model_config: dict):
    """Heatmaps -> SubpixelDecode -> landmarks [B,K,2], scores [B,K] (float32 outputs)."""
    import numpy as np
    import onnx_graphsurgeon as gs

    meta = get_metadata(model)
    graph = gs.import_onnx(model)
    heatmaps = next((t for t in graph.outputs if t.name == "heatmaps"), None)
    if heatmaps is None:
        raise BuildError("graph has no 'heatmaps' output; give the heatmap-output model")
    k = model_config["landmarks"]
    landmarks = gs.Variable("landmarks", dtype=np.float32, shape=["batch", k, 2])
    scores = gs.Variable("scores", dtype=np.float32, shape=["batch", k])
    scale = ModelInfo.from_config(model_config).heatmap_scale
    graph.layer(op=OP_TYPE, name="subpixel_decode", inputs=[heatmaps], outputs=[landmarks, scores],
                attrs={"plugin_namespace": PLUGIN_NAMESPACE, "plugin_version": PLUGIN_VERSION,
                       "window": int(model_config["window"]), "temperature": float(model_config["temperature"]),
                       "scale": float(scale)})
    heatmaps.name = "heatmaps"  # stays an intermediate tensor
    graph.outputs = [landmarks, scores]
    graph.cleanup().toposort()
    out = gs.export_onnx(graph)
    out.ir_version = model.ir_version
    del out.opset_import[:]
    out.opset_import.extend(model.opset_import)
    set_metadata(out, {**(meta or {}), "decoder": "plugin"})
    # No onnx.checker here: it rejects ops it does not know; TensorRT's parser resolves this one
    # from the plugin registry by op_type + plugin_version + plugin_namespace.
    return out


def add_onnx_decoder(model, model_config: dict):
    """Append shfan.codec_onnx.decoder_model with onnx.compose (same opset as the backbone)."""
    import onnx

    from shfan.codec_onnx import decoder_model

    meta = get_metadata(model)
    info = ModelInfo.from_config(model_config)
    decoder = decoder_model("subpixel", int(model_config["window"]), float(model_config["temperature"]),
                            scale=info.heatmap_scale, landmarks=model_config["landmarks"],
                            heatmap_size=info.heatmap_size, opset=_opset(model))
    decoder.ir_version = model.ir_version
    decoder = onnx.compose.add_prefix(decoder, "decoder/", rename_inputs=False, rename_outputs=False)
    merged = onnx.compose.merge_models(model, decoder, io_map=[("heatmaps", "heatmaps")])
    _one_opset_per_domain(merged)
    set_metadata(merged, {**(meta or {}), "decoder": "onnx"})
    onnx.checker.check_model(merged)
    return merged


def _one_opset_per_domain(model) -> None:
    """merge_models lists the shared default domain once per input graph; a parser keeps one
    version per domain (TensorRT: the last), so write each domain once, refusing a conflict."""
    versions: dict[str, int] = {}
    for o in model.opset_import:
        domain = "" if o.domain in ("", "ai.onnx") else o.domain
        if versions.setdefault(domain, o.version) != o.version:
            raise BuildError(f"the decoder and the model import opset {domain or 'ai.onnx'} at versions "
                             f"{versions[domain]} and {o.version}; export both at one opset")
    del model.opset_import[:]
    for domain, version in versions.items():
        entry = model.opset_import.add()
        entry.domain, entry.version = domain, version


def add_decoder(model, model_config: dict, decoder: str):
    if decoder == "plugin":
        return add_plugin_decoder(model, model_config)
    if decoder == "onnx":
        return add_onnx_decoder(model, model_config)
    raise BuildError(f"unknown decoder {decoder!r}; choose one of {', '.join(DECODERS)}")
