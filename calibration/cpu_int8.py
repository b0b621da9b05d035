"""int8 for ONNX Runtime's CPU provider (`shfan-build --target cpu`).

The TensorRT int8 file (symmetric int8 Q/DQ on convolutions, everything else fp16) runs 2.5x
*slower* than fp32 in ONNX Runtime: its fp16 parts run through casts, and a Q/DQ pair on a
convolution's input alone is not fused into an integer kernel. This file is made the way the
CPU provider's graph optimiser wants it (checked on its optimized graph, `fusion_report`):

- uint8 activations, int8 symmetric per-channel weights, QDQ format: DQ -> Conv -> Q becomes a
  QLinearConv on MLAS's u8s8 kernels (x86 AVX2/AVX-512/VNNI and Arm NEON/dot alike), run
  channels-last (NHWC) by the NHWC transformer;
- uint8 with a zero point lets a ReLU's output range start at 0, so ORT drops the ReLU into
  the Q node (a symmetric int8 range would waste half of its 256 steps);
- every BatchNormalization (pre-activation: BN -> ReLU -> Conv, so it cannot fold into a
  convolution's weights; the exporter already folded the Conv -> BN pairs) becomes a depthwise
  1x1 convolution: its per-channel scale is one weight per channel, which per-channel int8
  represents exactly, so it runs as an integer kernel instead of DQ -> BN -> Q in fp32 and
  takes no Transpose around it;
- 2x2/2 average pools become depthwise convolutions too (ORT's QLinearAveragePool is slow);
- the residual Adds, Concats and Resize are quantized too, so the tensors stay uint8
  and NHWC from the first convolution to the heatmap head (2 Transposes left in the graph
  instead of 195).
The quantizer is ONNX Runtime's own (`onnxruntime.quantization`'s QDQ quantizer); the ranges
it quantizes with are measured here (calibration.ranges, percentile of |x|) and the accuracy
guard (calibration.guard) accepts or refuses the result as for TensorRT."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from shfan.io import atomic_path

# 7-bit weights. On x86 without VNNI (AVX2, AVX-512 without VNNI) MLAS multiplies uint8 x int8
# with VPMADDUBSW, which adds pairs of products into int16 and saturates when both bytes are
# large. Measured on the default model (AFW, everything in int8, 99.9th-percentile ranges):
# full-range weights +1.23 NME points, 7-bit weights +0.042. VNNI and Arm kernels do not
# saturate, but the same file must be right on every CPU it is copied to.
REDUCE_RANGE = True
# Everything that has an integer kernel in ORT's CPU provider, after `prepare`.
OP_TYPES = ("Conv", "Relu", "Add", "Concat", "AveragePool", "Resize")
DEPTHWISE_SUFFIX = "/bn_as_dwconv"


def batchnorm_to_depthwise(model):
    """Each inference BatchNormalization -> a depthwise 1x1 Conv with the same output name
    (weight = gamma / sqrt(var + eps) per channel, bias = beta - mean * weight). Returns a new
    ModelProto; fp32 results agree to rounding (tested)."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    nodes = []
    for node in graph.node:
        if node.op_type != "BatchNormalization" or not all(i in inits for i in node.input[1:5]):
            nodes.append(node)
            continue
        eps = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-5)
        gamma, beta, mean, var = (numpy_helper.to_array(inits[i]).astype(np.float64) for i in node.input[1:5])
        scale = gamma / np.sqrt(var + eps)
        name = (node.name or node.output[0]) + DEPTHWISE_SUFFIX
        graph.initializer.extend([
            numpy_helper.from_array(scale.astype(np.float32).reshape(-1, 1, 1, 1), name + "/weight"),
            numpy_helper.from_array((beta - mean * scale).astype(np.float32), name + "/bias")])
        nodes.append(helper.make_node("Conv", [node.input[0], name + "/weight", name + "/bias"], [node.output[0]],
                                      name=name, group=len(scale), kernel_shape=[1, 1]))
    del graph.node[:]
    graph.node.extend(nodes)
    used = {i for n in graph.node for i in n.input}
    kept = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return model


def avgpool_to_depthwise(model):
    """Each AveragePool whose window equals its stride and has no padding (FAN's 2x2/2 pools)
    -> a depthwise Conv with weights 1/(k*k): the same numbers, but ORT's QLinearAveragePool
    took 1.65 ms for the 64x64x128 stem pool alone (5 % of the int8 network) where a depthwise
    QLinearConv takes a fraction of it; equal weights are exact in per-channel int8."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.ModelProto.FromString(model.SerializeToString())
    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in (*inferred.graph.value_info, *inferred.graph.input)}
    nodes = []
    for node in model.graph.node:
        if node.op_type != "AveragePool":
            nodes.append(node)
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        kernel, channels = list(attrs.get("kernel_shape", [])), (shapes.get(node.input[0]) or [0, 0])[1]
        if (list(attrs.get("strides", [])) != kernel or any(attrs.get("pads", []))
                or attrs.get("ceil_mode", 0) or not channels or len(kernel) != 2):
            nodes.append(node)
            continue
        name = (node.name or node.output[0]) + "/as_dwconv"
        weight = np.full((channels, 1, *kernel), 1.0 / (kernel[0] * kernel[1]), np.float32)
        model.graph.initializer.append(numpy_helper.from_array(weight, name + "/weight"))
        nodes.append(helper.make_node("Conv", [node.input[0], name + "/weight"], [node.output[0]], name=name,
                                      group=channels, kernel_shape=kernel, strides=kernel))
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model


def prepare(model):
    """The fp32 graph the CPU int8 file is quantized from: BatchNorms and pools as depthwise
    convolutions (fp32 outputs agree with the original to rounding; tested)."""
    return avgpool_to_depthwise(batchnorm_to_depthwise(model))


def tensors_to_quantize(model, op_types=OP_TYPES) -> list[str]:
    """Float activations read or written by the ops ORT's quantizer will quantize: the tensors
    that need a range (as onnxruntime's own calibrator selects them), in graph order."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    infos = {v.name: v for v in (*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output)}
    inits = {i.name for i in model.graph.initializer}
    names = []
    for node in model.graph.node:
        if node.op_type in op_types:
            for t in (*node.input, *node.output):
                vi = infos.get(t)
                if t and t not in inits and vi is not None and vi.type.tensor_type.elem_type == onnx.TensorProto.FLOAT:
                    names.append(t)
    return list(dict.fromkeys(names))


def asymmetric_ranges(sample, percentile: float | None) -> dict[str, tuple[float, float]]:
    """uint8 ranges from an ActivationSample: the percentile of |x| (None: the maximum)
    clipped to the observed [min, max], so a ReLU output gets [0, a] (all 256 steps) and a
    signed tensor [-a, a]. Zero is always inside, as ORT's quantizer needs."""
    amax = sample.ranges("max") if percentile is None else sample.ranges("percentile", percentile)
    return {n: uint8_range(a, sample.lo[n], sample.hi[n]) for n, a in amax.items()}


def uint8_range(amax: float, lo: float, hi: float) -> tuple[float, float]:
    """One tensor's uint8 range: [-amax, amax] clipped to the observed [lo, hi], zero inside
    (shfan.train.qat rounds with the same ranges while training)."""
    return min(0.0, max(lo, -amax)), max(0.0, min(hi, amax))


def quantize(prepared_onnx, dst, ranges: dict[str, tuple[float, float]], nodes_to_exclude=(),
             op_types=OP_TYPES, reduce_range: bool = False) -> Path:
    """ONNX Runtime's QDQ quantizer with the given ranges: uint8 activations, int8 symmetric
    per-channel weights, int32 biases. `prepared_onnx`: a model after `prepare`. The quantizer
    logs a note per tensor; the caller (builder.precision.to_int8_cpu) wraps this in precision.quiet."""
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization.calibrate import CalibrationMethod, TensorData, TensorsData
    from onnxruntime.quantization.qdq_quantizer import QDQQuantizer
    from onnxruntime.quantization.quant_utils import load_model_with_shape_infer

    model = load_model_with_shape_infer(Path(prepared_onnx))
    data = {name: TensorData(lowest=np.float32(lo), highest=np.float32(hi)) for name, (lo, hi) in ranges.items()}
    quantizer = QDQQuantizer(model, True, reduce_range, QuantType.QInt8, QuantType.QUInt8,
                             TensorsData(CalibrationMethod.MinMax, data), [], list(nodes_to_exclude), list(op_types),
                             {"ActivationSymmetric": False, "WeightSymmetric": True})
    quantizer.quantize_model()  # logs a note per tensor through the root logger: builder.precision.quiet
    with atomic_path(dst, suffix=".onnx") as tmp:
        quantizer.model.save_model_to_file(str(tmp))
    return Path(dst)


def optimized_graph(model_path, level: str = "all"):
    """The graph ONNX Runtime's CPU provider actually runs (SessionOptions.optimized_model_filepath)."""
    import tempfile

    import onnx
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.graph_optimization_level = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
                                     "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED}[level]
    with tempfile.TemporaryDirectory(prefix="shfan-ortopt-") as d:
        opts.optimized_model_filepath = str(Path(d) / "optimized.onnx")
        from shfan.runtime.backends.onnxruntime.runner import DISABLED_OPTIMIZERS

        ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"],
                             disabled_optimizers=DISABLED_OPTIMIZERS)
        return onnx.load(opts.optimized_model_filepath)


def fusion_report(model_path) -> dict:
    """What the CPU provider made of a model: float vs integer convolutions and what is left
    around them. `float_convs` must be only the layers the guard kept out of int8."""
    from collections import Counter

    ops = Counter(n.op_type for n in optimized_graph(model_path).graph.node)
    float_convs = sum(ops[k] for k in ("Conv", "FusedConv", "NhwcFusedConv"))
    return {"integer_convs": ops["QLinearConv"], "float_convs": float_convs, "transposes": ops["Transpose"],
            "quantize": ops["QuantizeLinear"], "dequantize": ops["DequantizeLinear"], "ops": dict(ops)}


def fp16_tensors(model) -> list[str]:
    """Names of fp16 initializers, graph inputs/outputs, Cast-to-fp16 nodes and value infos
    (there must be none in a CPU int8 file: fp16 runs through casts on most CPUs)."""
    import onnx

    f16 = onnx.TensorProto.FLOAT16
    bad = [i.name for i in model.graph.initializer if i.data_type == f16]
    bad += [v.name for v in (*model.graph.input, *model.graph.output, *model.graph.value_info)
            if v.type.tensor_type.elem_type == f16]
    bad += [n.name or n.output[0] for n in model.graph.node
            if n.op_type == "Cast" and any(a.name == "to" and a.i == f16 for a in n.attribute)]
    bad += [n.name or n.output[0] for n in model.graph.node if n.op_type == "Constant"
            and any(a.name == "value" and a.t.data_type == f16 for a in n.attribute)]
    return bad
