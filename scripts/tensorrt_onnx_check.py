"""Check ONNX graphs against the ONNX parser of each supported TensorRT release, without TensorRT:
op types, tensor types and documented restrictions (onnx-ops-<table>.json, made by
scripts/tensorrt_onnx_ops.py), TensorRT's explicit-quantization rules for Q/DQ, and the
SubpixelDecode node against the plugin creator's fields in plugins/src.

    python scripts/tensorrt_onnx_check.py build/            # every .onnx a shfan-build folder holds
    python scripts/tensorrt_onnx_check.py model_int8.onnx

Restrictions are free text: the ones below are rules; a restriction on an op in the graph that no
rule covers is itself reported, so a new table cannot pass unread.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "tensorrt_releases"
PLUGIN_SOURCE = ROOT / "plugins" / "src" / "subpixel_decode_plugin.cpp"

# ONNX TensorProto data type -> the table's type names
TYPE_NAMES = {1: "FP32", 2: "UINT8", 3: "INT8", 6: "INT32", 7: "INT64", 9: "BOOL", 10: "FP16", 11: "DOUBLE",
              16: "BF16", 17: "FP8", 22: "INT4", 23: "FP4"}
DATA_INPUT = {"Where": 1}  # the input whose type the table lists (default: the first)
# ONNX attribute type -> the PluginFieldType the parser hands the creator (onnx-tensorrt loadFields)
FIELD_TYPE_OF_ATTR = {1: "kFLOAT32", 2: "kINT32", 3: "kCHAR", 6: "kFLOAT32", 7: "kINT32", 8: "kCHAR"}


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("<br />", " ")).strip(" |")


class Graph:
    """Types, constants and consumers of one model (shape inference where ONNX knows the ops)."""

    def __init__(self, model):
        import onnx

        try:
            inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
        except Exception:  # a custom op can stop inference; fall back to what the file declares
            inferred = model
        self.model, g = model, inferred.graph
        self.types = {}
        for v in [*g.input, *g.output, *g.value_info]:
            if v.type.HasField("tensor_type"):
                self.types[v.name] = v.type.tensor_type.elem_type
        self.consts = {i.name: i for i in g.initializer}
        for n in g.node:
            if n.op_type == "Constant":
                for a in n.attribute:
                    if a.name == "value":
                        self.consts[n.output[0]] = a.t
        for name, t in self.consts.items():
            self.types.setdefault(name, t.data_type)
        self.nodes = list(model.graph.node)
        self.consumers = {}
        for n in self.nodes:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)
        self.opset = {o.domain or "ai.onnx": o.version for o in model.opset_import}

    def array(self, name):
        from onnx import numpy_helper

        return numpy_helper.to_array(self.consts[name]) if name in self.consts else None


def attrs(node) -> dict:
    from onnx import helper

    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        out[a.name] = v.decode() if isinstance(v, bytes) else v
    return out


# ------------------------------------------------------------------------------ restriction rules


def _pool(node, g):
    a = attrs(node)
    out = []
    if len(a.get("kernel_shape", [])) not in (2, 3):
        out.append(f"{len(a.get('kernel_shape', []))}D pooling (2D or 3D only)")
    if any(d != 1 for d in a.get("dilations", [])):
        out.append(f"dilations {a['dilations']} (must be empty or all ones)")
    return out


def _zero_point(index):
    def rule(node, g):
        if len(node.input) <= index or not node.input[index]:
            return []  # the Q/DQ rules below say what a missing zero point means
        z = g.array(node.input[index])
        return [] if z is not None and not z.any() else [f"zero point {node.input[index]} is not all zero"]
    return rule


def _constant_input(name):
    def rule(node, g):
        import onnx

        schema = onnx.defs.get_schema(node.op_type, g.opset.get("ai.onnx", 0))
        names = [i.name for i in schema.inputs]
        if name not in names:
            return []  # an attribute at this opset
        idx = names.index(name)
        if len(node.input) > idx and node.input[idx] and node.input[idx] not in g.consts:
            return [f"`{name}` ({node.input[idx]}) is not an initializer or Constant"]
        return []
    return rule


def _resize(restriction):
    allowed = {}
    for label, attr in (("transformation modes", "coordinate_transformation_mode"), ("resize modes", "mode"),
                        ("nearest modes", "nearest_mode"), ("aspect ratio policy", "keep_aspect_ratio_policy")):
        m = re.search(rf"Supported (?:resize )?{label}: ([^.]*)\.", restriction)
        if m:
            allowed[attr] = re.findall(r"`(\w+)`", m.group(1))
    defaults = {"coordinate_transformation_mode": "half_pixel", "mode": "nearest",
                "nearest_mode": "round_prefer_floor", "keep_aspect_ratio_policy": "stretch"}

    def rule(node, g):
        a, out = attrs(node), []
        for attr, values in allowed.items():
            if attr == "nearest_mode" and a.get("mode", "nearest") != "nearest":
                continue
            if a.get(attr, defaults[attr]) not in values:
                out.append(f"{attr}={a.get(attr, defaults[attr])!r} (supported: {', '.join(values)})")
        if "Antialiasing is not supported" in restriction and a.get("antialias", 0):
            out.append("antialias=1 (not supported)")
        if "iota vector" in restriction and "axes" in a and list(a["axes"]) != list(range(len(a["axes"]))):
            out.append(f"axes={a['axes']} (must be 0..rank-1)")
        return out
    return rule


def _constant_attrs(node, g):
    bad = {"sparse_value", "value_string", "value_strings"} & set(attrs(node))
    return [f"attribute {', '.join(sorted(bad))} (unsupported)"] if bad else []


RULES = [  # (pattern on the normalised restriction text, rule maker)
    (r"^2D or 3D (Pooling|pooling) only\. `dilations` must be empty or all ones$", lambda r: _pool),
    (r"^`x_zero_point` must be zero$", lambda r: _zero_point(2)),
    (r"^`y_zero_point` must be 0$", lambda r: _zero_point(2)),
    (r"^`axes` must be (an initializer|resolvable to a constant\.)$", lambda r: _constant_input("axes")),
    (r"^Supported resize transformation modes", _resize),
    (r"^`sparse_value`, `value_string`, and `value_strings` attributes are unsupported\.$", lambda r: _constant_attrs),
]


def restriction_rule(text: str):
    norm = _norm(text)
    for pattern, make in RULES:
        if re.search(pattern, norm):
            return make(norm)
    return None


# ------------------------------------------------------------------------------ Q/DQ (explicit quantization)


def qdq_problems(node, g) -> list[str]:
    """TensorRT's explicit quantization: int8 symmetric (zero point present, INT8, all zero), a
    positive constant scale of the input's type, per-tensor on activations, per-channel only on
    constant weights along the output-channel axis (0 for Conv weights)."""
    out = []
    if len(node.input) < 2 or node.input[1] not in g.consts:
        return [f"scale {node.input[1] if len(node.input) > 1 else '?'} is not a constant"]
    scale = g.array(node.input[1])
    x_type, scale_type = g.types.get(node.input[0]), g.consts[node.input[1]].data_type
    if node.op_type == "QuantizeLinear" and x_type is not None and x_type != scale_type:
        out.append(f"scale is {TYPE_NAMES.get(scale_type, scale_type)}, input {TYPE_NAMES.get(x_type, x_type)} "
                   "(one type for both: ONNX opset >= 19, TensorRT strongly typed networks)")
    if not (scale > 0).all() or not (abs(scale) < float("inf")).all():
        out.append("scale has non-positive or non-finite values")
    zp = node.input[2] if len(node.input) > 2 and node.input[2] else None
    if node.op_type == "QuantizeLinear" and zp is None and attrs(node).get("output_dtype", 0) != 3:
        out.append("no zero point: ONNX then quantizes to UINT8, TensorRT needs INT8")
    if zp is not None and g.consts.get(zp) is not None and g.consts[zp].data_type != 3:
        out.append(f"zero point is {TYPE_NAMES.get(g.consts[zp].data_type, g.consts[zp].data_type)}, not INT8")
    if scale.size > 1:
        source = node.input[0]
        weights = source in g.consts or (node.op_type == "DequantizeLinear" and _quantized_constant(source, g))
        if not weights:
            out.append(f"per-channel scale ({scale.size}) on activation {source} (per-tensor only)")
        axis = attrs(node).get("axis", 1)
        for consumer in _convs_fed(node, g):
            want = 1 if consumer.op_type == "ConvTranspose" else 0
            if axis != want:
                out.append(f"per-channel axis {axis} on {consumer.op_type} weights (must be {want})")
    return out


def _quantized_constant(name, g) -> bool:
    producer = next((n for n in g.nodes if name in n.output), None)
    return producer is not None and producer.op_type == "QuantizeLinear" and producer.input[0] in g.consts


def _convs_fed(node, g):
    """Conv/ConvTranspose nodes whose weights come through this Q (and its DQ) or DQ."""
    names, found = list(node.output), []
    while names:
        for consumer in g.consumers.get(names.pop(), []):
            weights = consumer.input[1] if len(consumer.input) > 1 else None
            if consumer.op_type in ("Conv", "ConvTranspose") and weights in node.output:
                found.append(consumer)
            elif consumer.op_type == "DequantizeLinear":
                for c in g.consumers.get(consumer.output[0], []):
                    if c.op_type in ("Conv", "ConvTranspose") and c.input[1] == consumer.output[0]:
                        found.append(c)
    return found


# ------------------------------------------------------------------------------ the plugin node


def creator_fields(source: Path = PLUGIN_SOURCE) -> dict:
    """{name, version, namespace, fields: {name: PluginFieldType}} read from the creator's C++."""
    text = source.read_text()
    consts = dict(re.findall(r"kPlugin(Name|Version|Namespace)\s*=\s*\"([^\"]*)\"", text))
    ctor = re.search(r"SubpixelDecodePluginCreator::SubpixelDecodePluginCreator\(\)(.*?)mFieldCollection", text, re.S)
    fields = dict(re.findall(r"PluginField\(\"(\w+)\",\s*nullptr,\s*PluginFieldType::(\w+)", ctor.group(1) if ctor else ""))
    if not consts or not fields:
        raise SystemExit(f"error: {source}: cannot find the creator's name/version/namespace and field names")
    return {"name": consts["Name"], "version": consts["Version"], "namespace": consts["Namespace"], "fields": fields}


def plugin_problems(node, g, creator: dict) -> list[str]:
    a = {x.name: x for x in node.attribute}
    values = attrs(node)
    out = []
    if values.get("plugin_version", "1") != creator["version"] or values.get("plugin_namespace", "") != creator["namespace"]:
        out.append(f"plugin_version/plugin_namespace {values.get('plugin_version')!r}/{values.get('plugin_namespace')!r} "
                   f"do not name the creator ({creator['version']!r}/{creator['namespace']!r})")
    fields = creator["fields"]
    for name in sorted(set(a) - {"plugin_version", "plugin_namespace"} - set(fields)):
        out.append(f"attribute {name!r} is no field of the creator ({', '.join(fields)}): the parser drops it")
    for name, ftype in fields.items():
        if name not in a:
            out.append(f"field {name!r} has no attribute (the parser warns and the plugin uses its default)")
        elif FIELD_TYPE_OF_ATTR.get(a[name].type) != ftype:
            out.append(f"attribute {name!r} reaches the plugin as {FIELD_TYPE_OF_ATTR.get(a[name].type)}, "
                       f"the creator declares {ftype}")
    t = g.types.get(node.input[0])
    if t not in (1, 10):
        out.append(f"input {node.input[0]} is {TYPE_NAMES.get(t, t)}; the plugin takes FP32 or FP16 heatmaps")
    return out


# ------------------------------------------------------------------------------ one model, one table


def check_model(model, table: dict, creator: dict | None = None) -> list[str]:
    """Problems of `model` for the parser described by `table`; [] when it should parse."""
    creator = creator or creator_fields()
    g = Graph(model)
    out = []
    domains = [o.domain or "ai.onnx" for o in model.opset_import]
    if len(domains) != len(set(domains)):
        out.append(f"opset_import lists a domain twice: {[(o.domain, o.version) for o in model.opset_import]}")
    lo, hi = table["opset"]
    if not lo <= g.opset.get("ai.onnx", 0) <= hi:
        out.append(f"opset {g.opset.get('ai.onnx')} outside {lo}-{hi}")
    unread = set()
    for node in g.nodes:
        where = f"{node.op_type} {node.name or node.output[0]}"
        if node.op_type == creator["name"]:
            out += [f"{where}: {p}" for p in plugin_problems(node, g, creator)]
            continue
        if node.domain not in ("", "ai.onnx"):
            out.append(f"{where}: domain {node.domain!r} (only the default domain or a plugin op)")
            continue
        op = table["ops"].get(node.op_type)
        if op is None or not op["supported"]:
            out.append(f"{where}: not supported by the parser" + (f" ({op['restrictions']})" if op else ""))
            continue
        idx = DATA_INPUT.get(node.op_type, 0)
        checked = [(name, g.types.get(name)) for name in node.input[idx:idx + 1] if name]
        if node.op_type == "Cast":  # the output type is the attribute, whatever value_info says
            checked.append((node.output[0], attrs(node).get("to")))
        for name, t in checked:
            if t is None:
                out.append(f"{where}: type of {name} unknown (shape inference)")
            elif TYPE_NAMES.get(t, str(t)) not in op["types"]:
                out.append(f"{where}: {name} is {TYPE_NAMES.get(t, t)}, supported: {', '.join(op['types'])}")
        if op["restrictions"]:
            rule = restriction_rule(op["restrictions"])
            if rule is None:
                unread.add(f"{node.op_type}: restriction not checked by any rule: {_norm(op['restrictions'])!r}")
            else:
                out += [f"{where}: {p}" for p in rule(node, g)]
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            out += [f"{where}: {p}" for p in qdq_problems(node, g)]
    return out + sorted(unread)


def load_tables(folder: Path = DATA) -> dict[str, dict]:
    """{release: its table} for every supported release (releases.json `onnx_tables`)."""
    index = json.loads((folder / "releases.json").read_text())
    order = sorted(index["onnx_tables"], key=lambda v: tuple(int(p) for p in re.findall(r"\d+", v)))
    return {release: json.loads((folder / f"onnx-ops-{index['onnx_tables'][release]['table']}.json").read_text())
            for release in order}


def main(argv=None) -> int:
    import onnx

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not Path(args[0]).exists():
        print("usage: python scripts/tensorrt_onnx_check.py BUILD_FOLDER_OR_ONNX", file=sys.stderr)
        return 2
    target = Path(args[0])
    files = sorted(target.glob("*.onnx")) if target.is_dir() else [target]
    files = [f for f in files if not f.name.endswith("_cpu.onnx")]  # ONNX Runtime's CPU int8, never TensorRT's
    count = 0
    for release, table in load_tables().items():
        for f in files:
            for problem in check_model(onnx.load(str(f)), table):
                print(f"TensorRT {release} (table {table['table']}): {f.name}: {problem}")
                count += 1
    print(f"{len(files)} graph(s) checked against {len(load_tables())} TensorRT release(s): {count} problem(s)")
    return 1 if count else 0


if __name__ == "__main__":
    sys.exit(main())
