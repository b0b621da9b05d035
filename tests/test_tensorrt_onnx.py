"""Every graph shfan-build writes for TensorRT parses in every supported release's ONNX parser,
checked without TensorRT against the committed operator tables (tests/tensorrt_releases/), TensorRT's
explicit-quantization rules and the SubpixelDecode creator's fields; each rule is shown to fail."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnx_graphsurgeon")

from onnx import helper, numpy_helper  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def load_script(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


check = load_script("tensorrt_onnx_check")
TABLES = check.load_tables()
PRECISIONS = ("fp32", "fp16", "int8")


@pytest.fixture(scope="module")
def graphs(built, tmp_path_factory):
    """{label: ModelProto} of every graph a build hands TensorRT: per precision the heatmap graph
    (--decoder none), the standard-ops decoder graph (onnx) and the plugin graph (plugin), and the
    graph the Triton tensorrt repository is built from."""
    from shfan.builder import triton_repo
    from shfan.builder.decoder_node import add_plugin_decoder
    from shfan.contracts import BuildManifest

    manifest = BuildManifest.read(built)
    out = {}
    for p in PRECISIONS:
        heat = onnx.load(str(built / f"model_{p}.onnx"))
        out[f"{p}/none"] = heat
        out[f"{p}/onnx"] = onnx.load(str(built / f"model_{p}_onnx.onnx"))
        out[f"{p}/plugin"] = add_plugin_decoder(heat, manifest.model_config)
    summary = triton_repo.write_repository(built, tmp_path_factory.mktemp("triton") / "repo")
    out["triton/tensorrt"] = onnx.load(str(built / summary["tensorrt"]["built_from"]))
    return out


def test_tables_cover_the_supported_releases():
    """Each release whose Python API is checked has a parser table (releases.json `onnx_tables`)."""
    import json

    index = json.loads((check.DATA / "releases.json").read_text())
    assert set(TABLES) == set(index["api"]) and len(TABLES) >= 3
    assert all(t["ops"]["Conv"]["supported"] and t["opset"][0] <= 17 for t in TABLES.values())


@pytest.mark.parametrize("release", sorted(TABLES))
def test_every_built_graph_parses(graphs, release):
    problems = {label: check.check_model(model, TABLES[release]) for label, model in graphs.items()}
    assert problems == {label: [] for label in graphs}


def test_graphs_hold_what_the_checks_are_about(graphs):
    """The int8 graph really has per-channel weight Q/DQ and per-tensor activation Q/DQ, the plugin
    graph the SubpixelDecode node: the passing test above is not vacuous."""
    g = check.Graph(graphs["int8/none"])
    scales = [g.array(n.input[1]).size for n in g.nodes if n.op_type == "QuantizeLinear"]
    assert any(s > 1 for s in scales) and any(s == 1 for s in scales)
    assert [n.op_type for n in graphs["fp16/plugin"].graph.node][-1] == "SubpixelDecode"


# ------------------------------------------------------------------------------ each rule fails


def mutated(model, op_type, edit):
    m = onnx.ModelProto()
    m.CopyFrom(model)
    node = next(n for n in m.graph.node if n.op_type == op_type)
    edit(m, node)
    return m


def set_attr(node, name, value):
    for a in list(node.attribute):
        if a.name == name:
            node.attribute.remove(a)
    node.attribute.append(helper.make_attribute(name, value))


def problems(model, release="10.3.0"):
    return check.check_model(model, TABLES[release])


def test_an_unsupported_op_fails(graphs):
    m = mutated(graphs["fp32/none"], "Relu", lambda m, n: setattr(n, "op_type", "Unique"))
    assert any("Unique" in p and "not supported by the parser" in p for p in problems(m))


def test_an_unsupported_resize_mode_fails(graphs):
    m = mutated(graphs["fp32/none"], "Resize",
                lambda m, n: set_attr(n, "coordinate_transformation_mode", "tf_crop_and_resize"))
    assert any("coordinate_transformation_mode='tf_crop_and_resize'" in p for p in problems(m))


def test_a_tensor_type_outside_the_table_fails(graphs):
    def to_double(m, n):
        set_attr(n, "to", onnx.TensorProto.DOUBLE)
    m = mutated(graphs["fp16/none"], "Cast", to_double)
    assert any("is DOUBLE, supported:" in p for p in problems(m))


def test_a_nonzero_zero_point_fails(graphs):
    def shift(m, n):
        init = next(i for i in m.graph.initializer if i.name == n.input[2])
        init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) + np.int8(1), init.name))
    assert any("is not all zero" in p for p in problems(mutated(graphs["int8/none"], "QuantizeLinear", shift)))


def test_a_missing_zero_point_means_uint8_and_fails(graphs):
    m = mutated(graphs["int8/none"], "QuantizeLinear", lambda m, n: n.input.__delitem__(2))
    assert any("UINT8" in p for p in problems(m))


def test_a_scale_of_another_type_than_its_input_fails(graphs):
    def to_fp32(m, n):
        init = next(i for i in m.graph.initializer if i.name == n.input[1])
        init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float32), init.name))
    assert any("scale is FP32, input FP16" in p for p in problems(mutated(graphs["int8/none"], "QuantizeLinear", to_fp32)))


def test_a_per_channel_scale_on_an_activation_fails(graphs):
    def widen(m, n):
        q = next(x for x in m.graph.node if x.op_type == "QuantizeLinear"
                 and x.input[0] not in {i.name for i in m.graph.initializer})
        init = next(i for i in m.graph.initializer if i.name == q.input[1])
        init.CopyFrom(numpy_helper.from_array(np.repeat(numpy_helper.to_array(init).reshape(1), 4), init.name))
    assert any("per-channel scale (4) on activation" in p for p in problems(mutated(graphs["int8/none"], "QuantizeLinear", widen)))


def test_per_channel_weights_on_the_wrong_axis_fail(graphs):
    def first_weight_q(m, n):
        q = next(x for x in m.graph.node if x.op_type == "QuantizeLinear"
                 and numpy_helper.to_array(next(i for i in m.graph.initializer if i.name == x.input[1])).size > 1)
        set_attr(q, "axis", 1)
    m = mutated(graphs["int8/none"], "QuantizeLinear", first_weight_q)
    assert any("per-channel axis 1 on Conv weights (must be 0)" in p for p in problems(m))


def test_the_plugin_node_must_match_the_creator(graphs):
    node = graphs["fp32/plugin"].graph.node[-1]
    assert node.op_type == "SubpixelDecode"
    typo = mutated(graphs["fp32/plugin"], "SubpixelDecode",
                   lambda m, n: setattr(next(a for a in n.attribute if a.name == "window"), "name", "windw"))
    found = problems(typo)
    assert any("'windw' is no field of the creator" in p for p in found)
    assert any("field 'window' has no attribute" in p for p in found)
    as_int = mutated(graphs["fp32/plugin"], "SubpixelDecode", lambda m, n: set_attr(n, "temperature", 12))
    assert any("'temperature' reaches the plugin as kINT32, the creator declares kFLOAT32" in p for p in problems(as_int))
    other_ns = mutated(graphs["fp32/plugin"], "SubpixelDecode", lambda m, n: set_attr(n, "plugin_namespace", "trt"))
    assert any("do not name the creator" in p for p in problems(other_ns))


def test_creator_fields_are_read_from_the_plugin_source():
    assert check.creator_fields() == {"name": "SubpixelDecode", "version": "1", "namespace": "shfan",
                                      "fields": {"window": "kINT32", "temperature": "kFLOAT32", "scale": "kFLOAT32"}}


def test_a_restriction_no_rule_reads_is_reported(graphs):
    """TopK's restriction text has no rule: a graph with TopK must not pass unread."""
    m = mutated(graphs["fp32/none"], "Relu", lambda m, n: setattr(n, "op_type", "TopK"))
    assert any("restriction not checked by any rule" in p and "TopK" in p for p in problems(m, "10.16.1.11"))


def test_a_duplicated_opset_import_fails(graphs):
    m = onnx.ModelProto()
    m.CopyFrom(graphs["fp32/none"])
    m.opset_import.append(helper.make_opsetid("", m.opset_import[0].version))
    assert any("opset_import lists a domain twice" in p for p in problems(m))


def test_decoder_merge_refuses_conflicting_opsets():
    from shfan.builder.decoder_node import _one_opset_per_domain
    from shfan.errors import BuildError

    m = helper.make_model(helper.make_graph([], "g", [], []), opset_imports=[helper.make_opsetid("", 17)])
    m.opset_import.append(helper.make_opsetid("ai.onnx", 17))
    _one_opset_per_domain(m)
    assert [(o.domain, o.version) for o in m.opset_import] == [("", 17)]
    m.opset_import.append(helper.make_opsetid("", 19))
    with pytest.raises(BuildError, match="versions 17 and 19"):
        _one_opset_per_domain(m)
