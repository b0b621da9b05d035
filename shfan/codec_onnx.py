"""The subpixel decoder as standard ONNX ops (ArgMax, GatherElements, Exp, ReduceSum, ...).

Built directly with onnx.helper — no torch — so `shfan-build --onnx FILE --decoder onnx` works on
a Jetson. Runs in ONNX Runtime and in TensorRT without the plugin, and is appended to a backbone
with `onnx.compose`. Same math as shfan.codec (NumPy reference), including its NaN/inf rule,
tested on the shared vectors. NaN tests are `Equal(x, x)` (false only for NaN), so the graph
needs no IsNaN.
"""

from __future__ import annotations

import numpy as np

from shfan.codec import DEFAULT_TEMPERATURE, DEFAULT_WINDOW, check_params

OPSET = 17
INPUT = "heatmaps"
OUTPUTS = ("landmarks", "scores")


def decoder_model(method: str = "subpixel", window: int = DEFAULT_WINDOW,
                  temperature: float = DEFAULT_TEMPERATURE, scale: float = 1.0,
                  landmarks: int = 68, heatmap_size: int | tuple[int, int] = 64, opset: int = OPSET):
    """onnx.ModelProto: heatmaps [B, K, H, W] float32 -> landmarks [B, K, 2] float32 in
    network-input px (heatmap coords * scale), scores [B, K]. Batch is dynamic."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if method != "subpixel":
        raise ValueError(f"the ONNX decoder implements 'subpixel' only, not {method!r}")
    check_params(window, temperature)
    h, w = (heatmap_size, heatmap_size) if np.isscalar(heatmap_size) else heatmap_size
    r = window // 2
    offs = np.arange(-r, r + 1, dtype=np.int64)
    consts = {
        "flat_shape": np.array([0, 0, -1], np.int64),
        "W": np.array(w, np.int64), "zero": np.array(0, np.int64),
        "W_max": np.array(w - 1, np.int64), "H": np.array(h, np.int64), "H_max": np.array(h - 1, np.int64),
        "dx": np.tile(offs, window), "dy": np.repeat(offs, window),  # row-major window
        "dx_f": np.tile(offs, window).astype(np.float32), "dy_f": np.repeat(offs, window).astype(np.float32),
        "tau": np.array(temperature, np.float32), "half": np.array(0.5, np.float32),
        "scale": np.array(scale, np.float32), "last_axis": np.array([2], np.int64),
        "neg_inf": np.array(-np.inf, np.float32), "one": np.array(1.0, np.float32),
        "zero_f": np.array(0.0, np.float32),
    }
    n = helper.make_node
    reduce_max = (n("ReduceMax", ["key", "last_axis"], ["top"], keepdims=1) if opset >= 18
                  else n("ReduceMax", ["key"], ["top"], axes=[2], keepdims=1))
    nodes = [
        n("Reshape", [INPUT, "flat_shape"], ["flat"]),
        # peak: first index of the largest non-NaN value (ArgMax alone may let a NaN win)
        n("Equal", ["flat", "flat"], ["is_number"]),
        n("Where", ["is_number", "flat", "neg_inf"], ["key"]),
        reduce_max,
        n("Equal", ["flat", "top"], ["is_top"]), n("Cast", ["is_top"], ["is_top_f"], to=TensorProto.FLOAT),
        n("ArgMax", ["is_top_f"], ["peak"], axis=2, keepdims=1, select_last_index=0),  # first max wins; none -> 0
        n("GatherElements", ["flat", "peak"], ["peak_value"], axis=2),
        n("Mod", ["peak", "W"], ["x0"]),
        n("Div", ["peak", "W"], ["y0"]),
        n("Add", ["x0", "dx"], ["xx"]),
        n("Add", ["y0", "dy"], ["yy"]),
        # cells outside the map get weight 0 (excluded, not zero-padded)
        n("GreaterOrEqual", ["xx", "zero"], ["x_ge0"]), n("Less", ["xx", "W"], ["x_ltW"]),
        n("GreaterOrEqual", ["yy", "zero"], ["y_ge0"]), n("Less", ["yy", "H"], ["y_ltH"]),
        n("And", ["x_ge0", "x_ltW"], ["x_ok"]), n("And", ["y_ge0", "y_ltH"], ["y_ok"]),
        n("And", ["x_ok", "y_ok"], ["valid"]), n("Cast", ["valid"], ["valid_f"], to=TensorProto.FLOAT),
        n("Max", ["xx", "zero"], ["xx_lo"]), n("Min", ["xx_lo", "W_max"], ["xx_c"]),
        n("Max", ["yy", "zero"], ["yy_lo"]), n("Min", ["yy_lo", "H_max"], ["yy_c"]),
        n("Mul", ["yy_c", "W"], ["row"]), n("Add", ["row", "xx_c"], ["cell"]),
        n("GatherElements", ["flat", "cell"], ["window_values"], axis=2),
        # softmax(tau * H) over the window; the peak is the window max, so exponents are <= 0
        n("Sub", ["window_values", "peak_value"], ["rel"]), n("Mul", ["rel", "tau"], ["logits"]),
        n("Exp", ["logits"], ["e_raw"]),
        # non-finite rule: cells equal to the peak value weigh 1 (+-inf peaks), NaN weights are 0
        n("Equal", ["window_values", "peak_value"], ["at_peak"]), n("Where", ["at_peak", "one", "e_raw"], ["e_peak"]),
        n("Equal", ["e_peak", "e_peak"], ["e_number"]), n("Where", ["e_number", "e_peak", "zero_f"], ["e"]),
        n("Mul", ["e", "valid_f"], ["weights"]),
        n("ReduceSum", ["weights", "last_axis"], ["weight_total"], keepdims=1),
        # no weight at all (an all-NaN map): divide by 1, offset 0
        n("Greater", ["weight_total", "zero_f"], ["has_weight"]),
        n("Where", ["has_weight", "weight_total", "one"], ["weight_sum"]),
        n("Mul", ["weights", "dx_f"], ["wdx"]), n("ReduceSum", ["wdx", "last_axis"], ["sum_dx"], keepdims=1),
        n("Mul", ["weights", "dy_f"], ["wdy"]), n("ReduceSum", ["wdy", "last_axis"], ["sum_dy"], keepdims=1),
        n("Div", ["sum_dx", "weight_sum"], ["off_x"]), n("Div", ["sum_dy", "weight_sum"], ["off_y"]),
        n("Cast", ["x0"], ["x0_f"], to=TensorProto.FLOAT), n("Cast", ["y0"], ["y0_f"], to=TensorProto.FLOAT),
        n("Add", ["x0_f", "half"], ["cx"]), n("Add", ["cx", "off_x"], ["u"]),
        n("Add", ["y0_f", "half"], ["cy"]), n("Add", ["cy", "off_y"], ["v"]),
        n("Concat", ["u", "v"], ["uv"], axis=2), n("Mul", ["uv", "scale"], [OUTPUTS[0]]),
        n("Squeeze", ["peak_value", "last_axis"], [OUTPUTS[1]]),
    ]
    graph = helper.make_graph(
        nodes, "shfan_subpixel_decode",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["batch", landmarks, h, w])],
        [helper.make_tensor_value_info(OUTPUTS[0], TensorProto.FLOAT, ["batch", landmarks, 2]),
         helper.make_tensor_value_info(OUTPUTS[1], TensorProto.FLOAT, ["batch", landmarks])],
        initializer=[numpy_helper.from_array(v, k) for k, v in consts.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="shfan")
    model.ir_version = min(model.ir_version, 8)  # readable by ONNX Runtime / TensorRT of JetPack 6
    onnx.checker.check_model(model)
    return model
