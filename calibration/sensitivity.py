"""Which convolutions int8 hurts most, measured end to end rather than guessed.

From the fully quantized model, each variant keeps exactly one convolution in int8 (the others
read their un-quantized inputs and weights, as excluded layers do) and its landmarks are compared
with fp32's on calibration faces. On the default model, keeping the 20 worst of 101 convolutions
out of int8 took held-out drift from +1.07 to +0.05 NME points; the head (`l1`) and the last
stack's `conv_last` lead, but stem convolutions rank high too, which no fixed rule foresaw."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def _dequantized_source(tensor):
    """The float tensor behind `DequantizeLinear(QuantizeLinear(x))`, else None."""
    if len(tensor.inputs) != 1 or tensor.inputs[0].op != "DequantizeLinear":
        return None
    q = tensor.inputs[0].inputs[0]
    if len(q.inputs) != 1 or q.inputs[0].op != "QuantizeLinear":
        return None
    return q.inputs[0].inputs[0]


def quantized_convs(model) -> list[str]:
    """Names of the Conv nodes whose activation input goes through Q/DQ, in graph order."""
    import onnx_graphsurgeon as gs

    graph = gs.import_onnx(model)
    return [n.name for n in graph.nodes if n.op == "Conv" and _dequantized_source(n.inputs[0]) is not None]


def keep_only_quantized(model, keep: set[str]) -> bytes:
    """Serialized copy of the int8 `model` in which only the Conv nodes named in `keep` still
    read quantized inputs and weights; the orphaned Q/DQ pairs are removed."""
    import onnx_graphsurgeon as gs

    graph = gs.import_onnx(model)
    for node in graph.nodes:
        if node.op != "Conv" or node.name in keep:
            continue
        for i in (0, 1):
            source = _dequantized_source(node.inputs[i])
            if source is not None:
                node.inputs[i] = source
    graph.cleanup()
    return gs.export_onnx(graph).SerializeToString()


def rank_convs(int8_onnx, crops: np.ndarray, fp32_points: np.ndarray, model_config: dict,
               progress: Callable | None = None) -> list[tuple[str, float]]:
    """(conv name, landmark drift in inter-ocular NME points vs fp32 with only that conv in
    int8), most sensitive first. `progress(iterable)` may wrap the loop (a tqdm bar)."""
    import onnx

    from shfan.calibration.guard import mean_nme
    from shfan.calibration.ort_tools import predict_landmarks

    model = onnx.load(str(int8_onnx))
    names = quantized_convs(model)
    scores = {}
    for name in (progress or (lambda it: it))(names):
        pts = predict_landmarks(keep_only_quantized(model, {name}), crops, model_config)
        scores[name] = mean_nme(pts, fp32_points)
    return sorted(scores.items(), key=lambda kv: kv[1], reverse=True)
