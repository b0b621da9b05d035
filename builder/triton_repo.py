"""A Triton Inference Server model repository from a shfan-build folder.

    DIR/onnxruntime/shfan_landmarks/{config.pbtxt, 1/model.onnx}   tritonserver --model-repository DIR/onnxruntime
    DIR/tensorrt/shfan_landmarks/{config.pbtxt, 1/model.plan}      (the plan only where a build made one)
    DIR/tensorrt/plugins/libshfan_plugins.so                        (--decoder plugin builds)
    DIR/README.md, DIR/shfan_repo.json

One model name in both repositories, so clients do not change with the backend. The ONNX file is
copied byte for byte from the build (Triton's onnxruntime backend runs exactly what shfan-eval
measured). config.pbtxt declares the inputs and outputs read from that ONNX file (the engine is
built from the same graph), and is checked against Triton's own schema (tritonclient's
model_config_pb2) whenever tritonclient is installed.

The TensorRT SubpixelDecode plugin is not part of a model repository: Triton loads custom
TensorRT plugins through LD_PRELOAD (Triton's "Custom Operations" guide) or, on the TensorRT
backend, `--backend-config=tensorrt,plugins="/path/libshfan_plugins.so"`. The library registers
its creator when it is dlopen'ed (plugins/src/plugin_registration.cpp), which both paths do.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from shfan.builder.artifacts import staged_folder
from shfan.errors import BuildError
from shfan.contracts import Artifact, BuildManifest
from shfan.io import sha256_file

log = logging.getLogger("shfan.builder")

MODEL_NAME = "shfan_landmarks"
MARKER = "shfan_repo.json"
BACKENDS = ("onnxruntime", "tensorrt")
KINDS = ("cpu", "gpu")
# Dynamic batching. On the 2-core CPU (ONNX Runtime, compact model) a face costs nearly the same
# alone or in a batch (40.2 ms at 1, 37.8 at 4, 37.0 at 8, 37.9 at 16 per face), and batching gave
# shfan-serve 5-10 % more throughput at 16 clients there (BENCHMARKS.md §8); on a GPU a batch is what
# fills the device. A 2 ms queue delay: same 16-client throughput as 0 or 8 ms, fuller batches
# (mean 5.0 / 7.5 / 7.9), +2 ms for a lone client; the preferred sizes fit the TensorRT
# profile of shfan-build --max-batch 8 or more. Tune them on the target (perf_analyzer).
MAX_BATCH = 16
PREFERRED_BATCH = (4, 8)
QUEUE_DELAY_US = 2000

# ONNX TensorProto element types -> Triton data types
ONNX_TO_TRITON = {1: "TYPE_FP32", 2: "TYPE_UINT8", 3: "TYPE_INT8", 5: "TYPE_INT16", 6: "TYPE_INT32",
                  7: "TYPE_INT64", 9: "TYPE_BOOL", 10: "TYPE_FP16", 11: "TYPE_FP64", 16: "TYPE_BF16"}


@dataclass(frozen=True)
class TensorSpec:
    name: str
    data_type: str  # TYPE_FP32, ...
    dims: tuple[int, ...]  # without the batch dimension when the model batches


@dataclass
class ModelSpec:
    backend: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    max_batch_size: int
    preferred_batch_sizes: tuple[int, ...] = PREFERRED_BATCH
    queue_delay_us: int = QUEUE_DELAY_US
    kind: str = "cpu"
    instances: int = 1
    name: str = MODEL_NAME
    parameters: dict = field(default_factory=dict)


def onnx_io(path) -> tuple[list[TensorSpec], list[TensorSpec], bool]:
    """(inputs, outputs, batched) of an ONNX file: batched when every tensor's first dimension is
    symbolic (dims are then given without it, as Triton wants with max_batch_size > 0)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}

    def specs(values):
        out = []
        for v in values:
            if v.name in initializers:
                continue
            t = v.type.tensor_type
            if t.elem_type not in ONNX_TO_TRITON:
                raise BuildError(f"{Path(path).name}: tensor {v.name} has ONNX type {t.elem_type}, which Triton has no type for")
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
            first_symbolic = bool(t.shape.dim) and not t.shape.dim[0].HasField("dim_value")
            out.append((TensorSpec(v.name, ONNX_TO_TRITON[t.elem_type], tuple(dims)), first_symbolic))
        return out

    ins, outs = specs(graph.input), specs(graph.output)
    batched = all(b for _, b in ins + outs)
    strip = (lambda s: TensorSpec(s.name, s.data_type, s.dims[1:])) if batched else (lambda s: s)
    return [strip(s) for s, _ in ins], [strip(s) for s, _ in outs], batched


def config_text(spec: ModelSpec) -> str:
    """config.pbtxt (protobuf text format of Triton's ModelConfig)."""
    def tensors(items):
        return ",\n".join(f'  {{\n    name: "{t.name}"\n    data_type: {t.data_type}\n    dims: [ {", ".join(map(str, t.dims))} ]\n  }}'
                          for t in items)

    lines = [f'name: "{spec.name}"', f'backend: "{spec.backend}"', f"max_batch_size: {spec.max_batch_size}",
             "input [", tensors(spec.inputs), "]", "output [", tensors(spec.outputs), "]"]
    if spec.max_batch_size > 0:
        sizes = [b for b in spec.preferred_batch_sizes if b <= spec.max_batch_size]
        lines += ["dynamic_batching {", f"  preferred_batch_size: [ {', '.join(map(str, sizes))} ]",
                  f"  max_queue_delay_microseconds: {spec.queue_delay_us}", "}"]
    lines += ["instance_group [", f"  {{\n    count: {spec.instances}\n    kind: KIND_{spec.kind.upper()}\n  }}", "]"]
    for key, value in spec.parameters.items():
        lines += [f'parameters {{\n  key: "{key}"\n  value: {{ string_value: "{value}" }}\n}}']
    return "\n".join(lines) + "\n"


def parse_config(text: str):
    """A config.pbtxt as Triton's ModelConfig message (tritonclient's model_config_pb2); raises
    ImportError without tritonclient and BuildError on anything the schema rejects."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    try:
        return text_format.Parse(text, model_config_pb2.ModelConfig())
    except text_format.ParseError as exc:
        raise BuildError(f"config.pbtxt does not parse as Triton's ModelConfig: {exc}") from None


def validate_config(text: str) -> bool:
    """True when checked against Triton's schema, False when tritonclient is not installed."""
    try:
        parse_config(text)
    except ImportError:
        log.info("tritonclient is not installed: config.pbtxt not checked against Triton's schema "
                 "(pip install 'shfan[serve]')")
        return False
    return True


def pick_onnx(build: Path, decoder: str, selected: str, entry: Artifact) -> tuple[Path, str]:
    """(ONNX file for Triton's onnxruntime backend, why) for the selected precision's artifact
    (on CPU instances the file built for ONNX Runtime's CPU provider, if any). The graph with the
    standard-ops decoder when the build has one (landmarks + scores out); the heatmap graph
    otherwise (a plugin node does not run in ONNX Runtime)."""
    if decoder == "onnx" and entry.onnx_decoded:
        return build / entry.onnx_decoded, f"{selected}, standard-ops subpixel decoder (landmarks + scores out)"
    return build / entry.onnx, f"{selected}, heatmaps out (decoder {decoder}: decode on the client)"


def write_repository(build, dest, *, kind: str = "cpu", max_batch: int = MAX_BATCH,
                     preferred: tuple[int, ...] = PREFERRED_BATCH, queue_delay_us: int = QUEUE_DELAY_US,
                     instances: int = 1, engine_max_batch: int | None = None, plugin_lib=None) -> dict:
    """Write DIR (see the module doc) from a shfan-build folder; returns the summary also written
    to DIR/shfan_repo.json. The whole folder is staged and renamed into place."""
    from shfan.errors import BackendError

    build, dest = Path(build), Path(dest)
    if kind not in KINDS:
        raise BuildError(f"unknown instance kind {kind!r}; choose {', '.join(KINDS)}")
    if max_batch < 1 or instances < 1 or queue_delay_us < 0:
        raise BuildError("max batch and instances must be >= 1 and the queue delay >= 0 us")
    try:
        manifest = BuildManifest.read(build)
        selected, entry = manifest.entry(None, build)
    except BackendError as exc:  # same one-line message
        raise BuildError(str(exc)) from None
    onnx_path, why = pick_onnx(build, manifest.decoder, selected, manifest.artifact(selected, cpu=kind == "cpu"))
    inputs, outputs, batched = onnx_io(onnx_path)
    engine = build / entry.engine if entry.engine else None
    summary = {"source_build": str(build.resolve()), "model_name": MODEL_NAME, "precision": selected,
               "decoder": manifest.decoder, "input_size": manifest.model_config["input_size"],
               "landmarks": manifest.model_config["landmarks"], "onnxruntime": {}, "tensorrt": {}}
    with staged_folder(dest, MARKER, "shfan Triton repository", "--triton-repo") as stage:
        ort_dir = stage / "onnxruntime" / MODEL_NAME
        (ort_dir / "1").mkdir(parents=True)
        shutil.copyfile(onnx_path, ort_dir / "1" / "model.onnx")
        spec = ModelSpec("onnxruntime", inputs, outputs, max_batch if batched else 0, preferred, queue_delay_us,
                         kind, instances)
        text = config_text(spec)
        checked = validate_config(text)
        (ort_dir / "config.pbtxt").write_text(text)
        summary["onnxruntime"] = {"onnx": onnx_path.name, "what": why, "sha256": sha256_file(onnx_path),
                                  "max_batch_size": spec.max_batch_size, "kind": kind, "schema_checked": checked}

        # TensorRT: the engine's I/O are those of the graph it was built from (decoded graph).
        trt_source = build / entry.engine_source
        t_in, t_out, t_batched = onnx_io(trt_source) if manifest.decoder != "plugin" else (inputs, None, batched)
        if t_out is None:  # plugin graph: same outputs as the standard-ops decoder by contract (DESIGN.md §4)
            k = int(manifest.model_config["landmarks"])
            t_out = [TensorSpec("landmarks", "TYPE_FP32", (k, 2)), TensorSpec("scores", "TYPE_FP32", (k,))]
        trt_batch = min(max_batch, engine_max_batch) if engine_max_batch else max_batch
        trt_spec = ModelSpec("tensorrt", t_in, t_out, trt_batch if t_batched else 0, preferred, queue_delay_us,
                             "gpu", instances)
        trt_dir = stage / "tensorrt" / MODEL_NAME
        (trt_dir / "1").mkdir(parents=True)
        trt_text = config_text(trt_spec)
        validate_config(trt_text)
        (trt_dir / "config.pbtxt").write_text(trt_text)
        if engine is not None and engine.is_file():
            shutil.copyfile(engine, trt_dir / "1" / "model.plan")
        plugin = None
        if manifest.decoder == "plugin":
            from shfan.plugins import find_plugin_library

            lib = find_plugin_library(plugin_lib, manifest.plugin_lib)
            if lib is not None:
                (stage / "tensorrt" / "plugins").mkdir()
                plugin = stage / "tensorrt" / "plugins" / Path(lib).name
                shutil.copyfile(lib, plugin)
        summary["tensorrt"] = {"engine": "model.plan" if engine is not None and engine.is_file() else None,
                               "built_from": trt_source.name, "max_batch_size": trt_spec.max_batch_size,
                               "plugin": f"plugins/{plugin.name}" if plugin else None,
                               "needs_plugin": manifest.decoder == "plugin",
                               "tensorrt_version": (manifest.tensorrt or {}).get("version")}
        (stage / "README.md").write_text(readme(summary, spec, trt_spec))
        (stage / MARKER).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def readme(summary: dict, ort: ModelSpec, trt: ModelSpec) -> str:
    s, k = summary["input_size"], summary["landmarks"]
    trt_info = summary["tensorrt"]
    engine_line = ("`tensorrt/shfan_landmarks/1/model.plan` is the engine shfan-build made "
                   f"(TensorRT {trt_info['tensorrt_version']}); it runs only on that GPU model and TensorRT version."
                   if trt_info["engine"] else
                   "There is no `tensorrt/shfan_landmarks/1/model.plan` yet (no TensorRT where this was built). On the "
                   "target, build the engine with `shfan-build --onnx <model>.onnx --out build` and copy "
                   "`build/<engine>` to `tensorrt/shfan_landmarks/1/model.plan` (or rerun shfan-build with "
                   "--triton-repo there). The engine's TensorRT must be the one inside your Triton release.")
    plugin = ""
    if trt_info["needs_plugin"]:
        lib = trt_info["plugin"] or "libshfan_plugins.so (build it: make plugin)"
        plugin = f"""
The engine contains the `SubpixelDecode` TensorRT plugin; Triton must load its library before the
model (Triton's "Custom Operations" guide). Either

    LD_PRELOAD=$PWD/tensorrt/{lib}:$LD_PRELOAD tritonserver --model-repository=$PWD/tensorrt

or, with the TensorRT backend's own option,

    tritonserver --model-repository=$PWD/tensorrt --backend-config=tensorrt,plugins="$PWD/tensorrt/{lib}"

Build the library against the TensorRT of your Triton release (the NGC TensorRT container of the
same yy.mm, or JetPack's TensorRT on a Jetson).
"""
    return f"""# shfan landmarks: Triton model repository

Made by `shfan-build --triton-repo` from `{summary['source_build']}` ({summary['precision']}, decoder
{summary['decoder']}). Model `shfan_landmarks`: input `{ort.inputs[0].name}` = face crops,
float32 RGB in [0, 1], NCHW, {s}x{s}; outputs {', '.join(f'`{o.name}`' for o in ort.outputs)}
(`landmarks`: [{k}, 2] in crop pixels, continuous convention; `scores`: [{k}] heatmap peaks).
Cropping and mapping back to the image are the caller's (shfan.geometry.crop_for_box, or let
`shfan-serve` do all of it: images in, faces with points out).

## onnxruntime backend (CPU or GPU)

    tritonserver --model-repository=$PWD/onnxruntime
    # or in NVIDIA's container:
    docker run --rm -p8000:8000 -p8001:8001 -p8002:8002 -v $PWD/onnxruntime:/models \\
        nvcr.io/nvidia/tritonserver:<yy.mm>-py3 tritonserver --model-repository=/models

`1/model.onnx` is byte for byte the build's `{summary['onnxruntime']['onnx']}` (sha256
{summary['onnxruntime']['sha256'][:16]}...). Instances: KIND_{ort.kind.upper()}; edit `instance_group` for the
other kind. Dynamic batching: up to {ort.max_batch_size} crops, preferred
{', '.join(map(str, [b for b in ort.preferred_batch_sizes if b <= ort.max_batch_size]))}, {ort.queue_delay_us} us queue delay.

## tensorrt backend (GPU, Jetson)

    tritonserver --model-repository=$PWD/tensorrt

{engine_line} max_batch_size {trt.max_batch_size} must not exceed the engine's optimization
profile (`shfan-build --max-batch`).
{plugin}
## Client

```python
import numpy as np
import tritonclient.http as httpclient

client = httpclient.InferenceServerClient("localhost:8000")
crops = np.random.rand(4, 3, {s}, {s}).astype(np.float32)       # your face crops
inp = httpclient.InferInput("{ort.inputs[0].name}", list(crops.shape), "FP32")
inp.set_data_from_numpy(crops)
result = client.infer("shfan_landmarks", [inp])
print({{o: result.as_numpy(o).shape for o in {[o.name for o in ort.outputs]!r}}})
```

Metrics (Prometheus): http://localhost:8002/metrics.
"""
