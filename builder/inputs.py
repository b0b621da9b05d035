"""What a build starts from: the source model (a checkpoint exported here, or a given ONNX file),
the calibration / held-out faces and the policy on how many are enough, and the machine's
TensorRT and SubpixelDecode plugin."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from shfan import platform_facts, plugins
from shfan.builder import export
from shfan.builder.metadata import read_shfan_onnx
from shfan.errors import BuildError
from shfan.builder.options import (FALLBACK_FACES, MAX_HOLDOUT, MIN_CALIB_FACES, MIN_HELDOUT, WARN_CALIB_FACES,
                                   BuildOptions)
from shfan.builder.progress import Stages
from shfan.calibration import face_sets
from shfan.contracts import ModelConfig
from shfan.io import sha256_file


@dataclass
class Source:
    """The model a build starts from, saved into the staged folder."""

    path: Path  # model_<precision>.onnx in the staged folder
    model_config: dict  # as recorded (the manifest's model_config)
    sha256: str  # of the checkpoint or the given ONNX file
    precision: str  # fp32, or the precision of a given ONNX file
    torch_model: object | None = None  # the exported checkpoint's model (parity check)
    meta: dict | None = None  # a given ONNX file's shfan metadata (its recorded accuracy)

    @property
    def config(self) -> ModelConfig:
        return ModelConfig.from_dict(self.model_config)


def source_file(opts: BuildOptions) -> Path:
    if opts.onnx:
        if not Path(opts.onnx).is_file():
            raise BuildError(f"{opts.onnx}: no such ONNX file; give model_fp32.onnx from a shfan-build folder")
        return Path(opts.onnx)
    return export.resolve_weights(opts.weights)


def load_source(opts: BuildOptions, stage_dir: Path, st: Stages) -> Source:
    import onnx

    if opts.onnx:
        with st.stage("read ONNX") as s:
            model, meta = read_shfan_onnx(opts.onnx)
            precision = meta.get("precision", "fp32")
            path = stage_dir / f"model_{precision}.onnx"
            onnx.save(model, str(path))
            s["detail"] = f"{Path(opts.onnx).name}: {precision}, {meta['model_config']['stacks']}-stack"
        return Source(path, meta["model_config"], sha256_file(opts.onnx), precision, None, meta)

    weights = export.resolve_weights(opts.weights)
    with st.stage("load checkpoint") as s:
        torch_model = export.load_model(weights)
        cfg = torch_model.config
        network = "FastFAN" if cfg.arch == "fast" else "FAN"
        s["detail"] = (f"{weights.name}: {cfg.stacks}-stack {network}, width {cfg.width}, {cfg.input_size} px, "
                       f"{cfg.landmarks} points")
    with st.stage("export ONNX (opset 17)") as s:
        proto = export.export_onnx(torch_model)
        path = stage_dir / "model_fp32.onnx"
        onnx.save(proto, str(path))
        s["detail"] = f"{len(proto.graph.node)} nodes after onnxsim"
    return Source(path, cfg.to_dict(), sha256_file(weights), "fp32", torch_model)


def load_faces(opts: BuildOptions, config: ModelConfig, int8_wanted: bool, st: Stages):
    """(all faces, calibration faces, held-out faces); BuildError when too few for the guard or
    for int8, warnings when few or the built-in fallback face."""
    with st.stage("calibration faces") as s:
        if opts.calib_data is None:
            faces = face_sets.fallback_faces(config.input_size, FALLBACK_FACES)
        else:
            faces = face_sets.load_faces(opts.calib_data, config.input_size, opts.max_calib + MAX_HOLDOUT)
        calib, heldout = face_sets.split(faces, max_holdout=MAX_HOLDOUT)
        calib = calib.subset(slice(0, opts.max_calib))
        s["detail"] = (f"{len(calib)} for calibration, {len(heldout)} held out, each scored clean and jittered "
                       f"({faces.origin})")
    if faces.skipped:
        st.warn(f"{len(faces.skipped)} unreadable files skipped (first: {faces.skipped[0]})")
    if faces.fallback and int8_wanted:
        st.warn("!" * 78)
        st.warn("NO --calib-data: calibrating int8 on the BUILT-IN FALLBACK face (one astronaut, jittered).")
        st.warn("This is a stand-in, not calibration. Pass --calib-data with faces from your cameras.")
        st.warn("!" * 78)
    if int8_wanted and len(calib) < MIN_CALIB_FACES:
        raise BuildError(f"only {len(calib)} calibration faces from {faces.origin}; int8 needs >= {MIN_CALIB_FACES} "
                         f"(>= {WARN_CALIB_FACES} recommended): add images to --calib-data or build --precision fp16")
    if len(heldout) < MIN_HELDOUT:
        raise BuildError(f"only {len(faces)} usable faces from {faces.origin}: the accuracy guard scores at least "
                         f"{MIN_HELDOUT} held-out faces, so >= {2 * MIN_HELDOUT} are needed; add face images to "
                         "--calib-data, or leave it out to use the built-in fallback face")
    if int8_wanted and len(calib) < WARN_CALIB_FACES and not faces.fallback:
        st.warn(f"only {len(calib)} calibration faces (>= {WARN_CALIB_FACES} recommended for stable int8 ranges)")
    return faces, calib, heldout


def tensorrt_info():
    """The TensorRT version and the GPU an engine would be built for; None without TensorRT."""
    version, _ = platform_facts.tensorrt_version()
    if version is None:
        return None
    name, sm = platform_facts.gpu_device()
    return {"version": version, "device": name, "sm": sm}


def plugin_record(decoder: str, plugin_sha: str | None, plugin_lib) -> dict:
    """Manifest fields for the SubpixelDecode plugin: only engines that contain the node
    (--decoder plugin) depend on it; recording it for onnx/none engines made the runtime refuse
    them whenever the plugin was rebuilt or absent. `plugin_lib` is the library used, tried by
    the runtime after $SHFAN_PLUGIN_LIB."""
    if decoder != "plugin" or plugin_sha is None:
        return {"plugin_sha256": None, "plugin_lib": None}
    lib = plugins.find_plugin_library(plugin_lib)
    return {"plugin_sha256": plugin_sha, "plugin_lib": str(lib) if lib else None}


def plugin_sha(opts: BuildOptions, trt_info) -> str | None:
    """sha256 of the SubpixelDecode plugin library found, None without one; BuildError when
    --decoder plugin needs it for an engine and it is missing."""
    lib = plugins.find_plugin_library(opts.plugin_lib)  # PluginError (a ShfanError): one line from the CLI
    sha = plugins.plugin_sha256(lib) if lib else None
    if opts.decoder == "plugin" and trt_info and sha is None:
        raise BuildError("--decoder plugin needs the SubpixelDecode plugin library; build it with: "
                         f"{plugins.BUILD_COMMAND} (or pass --plugin-lib, or use --decoder onnx)")
    return sha
