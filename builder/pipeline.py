"""shfan-build's stages in order: source -> export + parity -> calibration faces -> precision
ONNX files (+ accuracy guard) -> decoder graphs -> TensorRT engine -> manifest. Everything is
written into a staged folder that replaces --out only when the whole build succeeded."""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path

from shfan.builder import artifacts, plan
from shfan.builder.decoder_node import DECODERS
from shfan.builder.metadata import OPSET, BuildError
from shfan.builder.precision import CALIB_METHODS, CHOICES, PRECISIONS, TARGETS
from shfan.builder.progress import Stages
from shfan.contracts import MANIFEST, BuildManifest
from shfan.io import sha256_file
from shfan.options import check_fields, option

MIN_CALIB_FACES = 32
MIN_WORKSPACE_MB = 64
MIN_HELDOUT = 8  # held-out faces the accuracy guard scores (fewer: no bound worth the name; 0 crashed ORT)
WARN_CALIB_FACES = 300
MAX_HOLDOUT = 200
FALLBACK_FACES = 384
SENSITIVITY_FACES = 32  # calibration faces (never the held-out ones) that pick ranges and rank convs


@dataclass
class BuildOptions:
    weights: str | None = None
    onnx: str | None = None
    precision: str = option("best", "best: fastest precision within --max-nme-drift (default)", choices=CHOICES)
    calib_data: str | None = None
    max_calib: int = option(512, "at most this many calibration faces (default 512)", "nonneg")
    calib_method: str = option("percentile", "int8 activation ranges: percentile (default: the 99/99.5/99.9/99.99th "
                                             "of |x| that moves landmarks least), max, or ModelOpt's entropy (~10x "
                                             "slower on CPU)", choices=CALIB_METHODS)
    max_nme_drift: float = option(0.1, "largest accepted NME increase over fp32, in inter-ocular NME points "
                                       "(default 0.1)", "positive")
    decoder: str = option("onnx", "decoder in the graph: plugin (TensorRT SubpixelDecode), onnx (standard ops), "
                                  "none (heatmaps)", choices=DECODERS)
    plugin_lib: str | None = None
    max_batch: int = option(4, "TensorRT profile: batch 1..N (default 4)", "positive")
    workspace_mb: int = option(1024, "TensorRT builder workspace (default 1024 MiB)", "positive")
    out: Path = Path("build")
    force: bool = False
    target: str = option("tensorrt", "which int8 file: tensorrt (default: symmetric Q/DQ on convs, fp16 elsewhere, "
                                     "for TensorRT), cpu (for ONNX Runtime's CPU provider: integer kernels, fp32 "
                                     "elsewhere; ~1.7x faster than fp32 on a 2-core AVX2 CPU), or all (both in one "
                                     "folder; each runtime picks its own)", choices=TARGETS)
    # transient bars for long loops, drawn only when stderr is a terminal; off for library callers
    # (shfan-bench's cached builds), on for an interactive shfan-build
    progress: bool = False

    def __post_init__(self):
        self.validate()

    def validate(self) -> "BuildOptions":
        """BuildError naming the first option outside its declared range or choices (the rules
        shfan-build's options check too), or a source given twice."""
        check_fields(self, BuildError)
        if self.weights and self.onnx:
            raise BuildError("give either --weights (export from PyTorch) or --onnx (start from an ONNX file), not both")
        if self.workspace_mb < MIN_WORKSPACE_MB:
            raise BuildError(f"workspace_mb: expected a whole number >= {MIN_WORKSPACE_MB}, got {self.workspace_mb!r}")
        return self


@dataclass
class BuildResult:
    out: Path
    manifest: dict
    reused: bool = False
    tensorrt: bool = False
    next_commands: list[str] = field(default_factory=list)


# ------------------------------------------------------------------ small helpers


def _source_fingerprint(path) -> str:
    """Cheap identity of a calibration source (names, sizes, mtimes), for the cache key."""
    if path is None:
        return "builtin-fallback"
    path = Path(path)
    if not path.exists():
        return f"missing:{path}"
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    digest = hashlib.sha256(str(path.resolve()).encode())
    for f in files:
        st = f.stat()
        digest.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return digest.hexdigest()


def _validate(opts: BuildOptions) -> None:
    """The options again (a caller may have changed them since), and what int8 needs."""
    opts.validate()
    if opts.precision in ("int8", "best") and opts.max_calib < MIN_CALIB_FACES:
        raise BuildError(f"--max-calib {opts.max_calib} is below the {MIN_CALIB_FACES} faces int8 needs; use >= 300 "
                         f"(--precision {opts.precision} builds int8)")


def _precisions_to_build(requested: str, source_precision: str) -> list[str]:
    if source_precision != "fp32":
        if requested not in (source_precision, "best"):
            raise BuildError(f"the --onnx file is already {source_precision}; build --precision {source_precision}, "
                             f"or start from the fp32 model_fp32.onnx to get {requested}")
        return [source_precision]
    if requested == "best":
        return list(PRECISIONS)
    return ["fp32"] if requested == "fp32" else ["fp32", requested]


def _source_file(opts: BuildOptions) -> Path:
    if opts.onnx:
        if not Path(opts.onnx).is_file():
            raise BuildError(f"{opts.onnx}: no such ONNX file; give model_fp32.onnx from a shfan-build folder")
        return Path(opts.onnx)
    from shfan.builder.export import resolve_weights

    return resolve_weights(opts.weights)


def _tensorrt_info():
    """The TensorRT version and the GPU an engine would be built for; None without TensorRT."""
    from shfan import platform_facts

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
    from shfan.plugins import find_plugin_library

    lib = find_plugin_library(plugin_lib)
    return {"plugin_sha256": plugin_sha, "plugin_lib": str(lib) if lib else None}


def _plugin_sha(opts: BuildOptions) -> str | None:
    from shfan.plugins import PluginError, find_plugin_library, plugin_sha256

    try:
        lib = find_plugin_library(opts.plugin_lib)
    except PluginError as exc:
        raise BuildError(str(exc)) from None
    return plugin_sha256(lib) if lib else None


# ------------------------------------------------------------------ stages


def _load_source(opts: BuildOptions, stage_dir: Path, st: Stages):
    """-> (fp32-or-given ONNX path in stage_dir, model_config, model_sha256, source precision,
    torch model or None, metadata)."""
    import onnx

    from shfan.builder.metadata import read_shfan_onnx

    if opts.onnx:
        with st.stage("read ONNX") as s:
            model, meta = read_shfan_onnx(opts.onnx)
            precision = meta.get("precision", "fp32")
            path = stage_dir / f"model_{precision}.onnx"
            onnx.save(model, str(path))
            s["detail"] = f"{Path(opts.onnx).name}: {precision}, {meta['model_config']['stacks']}-stack"
        return path, meta["model_config"], sha256_file(opts.onnx), precision, None, meta

    from shfan.builder import export

    weights = export.resolve_weights(opts.weights)
    with st.stage("load checkpoint") as s:
        torch_model = export.load_model(weights)
        cfg = torch_model.config
        s["detail"] = f"{weights.name}: {cfg.stacks}-stack FAN, width {cfg.width}, {cfg.input_size} px, {cfg.landmarks} points"
    with st.stage("export ONNX (opset 17)") as s:
        proto = export.export_onnx(torch_model)
        path = stage_dir / "model_fp32.onnx"
        onnx.save(proto, str(path))
        s["detail"] = f"{len(proto.graph.node)} nodes after onnxsim"
    return path, cfg.to_dict(), sha256_file(weights), "fp32", torch_model, None


def _load_faces(opts: BuildOptions, cfg: dict, int8_wanted: bool, st: Stages):
    from shfan.calibration import sources

    with st.stage("calibration faces") as s:
        if opts.calib_data is None:
            faces = sources.fallback_faces(cfg["input_size"], FALLBACK_FACES)
        else:
            faces = sources.load_faces(opts.calib_data, cfg["input_size"], opts.max_calib + MAX_HOLDOUT)
        calib, heldout = sources.split(faces, max_holdout=MAX_HOLDOUT)
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


def _build_int8(src: Path, stage_dir: Path, calib, reference, cfg: dict, opts: BuildOptions, st: Stages,
                calibration_log: dict):
    from shfan.builder.precision import to_int8
    from shfan.calibration import ranges
    from shfan.calibration.guard import guarded_quantize, mean_nme
    from shfan.calibration.ort_tools import predict_landmarks

    dst = stage_dir / "model_int8.onnx"
    tuning = calib.crops[:SENSITIVITY_FACES]  # calibration faces: the held-out ones stay unseen
    tuning_fp32 = predict_landmarks(src, tuning, cfg)
    cache = None
    if opts.calib_method in ranges.RANGE_METHODS:
        with st.stage(f"int8 ranges ({opts.calib_method})") as s:
            sample = ranges.sample_conv_inputs(src, calib.crops)
            cache_path = stage_dir / artifacts.CALIBRATION_CACHE
            if opts.calib_method == "max":
                cache = ranges.write_trt_cache(sample.ranges("max"), cache_path)
                s["detail"] = f"max |x| of {len(sample.amax)} conv inputs over {len(calib)} faces"
            else:
                def drift_at(p):  # every conv in int8 with this percentile's ranges, vs fp32
                    ranges.write_trt_cache(sample.ranges("percentile", p), cache_path)
                    to_int8(src, dst, calib.crops, [], calibration_cache=cache_path)
                    return mean_nme(predict_landmarks(dst, tuning, cfg), tuning_fp32)

                scores = {p: drift_at(p) for p in ranges.PERCENTILES}
                best = min(scores, key=scores.get)
                cache = ranges.write_trt_cache(sample.ranges("percentile", best), cache_path)
                calibration_log["percentile"] = best
                calibration_log["percentile_scores"] = {str(p): round(v, 4) for p, v in scores.items()}
                s["detail"] = (f"{best}th percentile of |x| over {len(calib)} faces (drift vs fp32 on "
                               f"{len(tuning)} of them: " + ", ".join(f"{p}: {v:.2f}" for p, v in scores.items()) + ")")

    def quantize(excluded):
        with st.stage(f"int8 PTQ ({len(calib)} faces)") as s:
            to_int8(src, dst, calib.crops, excluded, method=opts.calib_method, calibration_cache=cache)
            s["detail"] = f"{len(excluded)} convs kept in fp16" if excluded else "every conv in int8"
        return dst

    rank = _conv_ranker(st, "int8 sensitivity per conv", tuning, tuning_fp32, cfg, opts.progress)

    result = guarded_quantize(quantize, reference, rank, opts.max_nme_drift, st.note)
    return dst, result


def _build_int8_cpu(src: Path, stage_dir: Path, calib, reference, cfg: dict, opts: BuildOptions, st: Stages,
                    calibration_log: dict):
    """int8 for ONNX Runtime's CPU provider (calibration.cpu_int8): the same faces, percentile
    search, accuracy guard and bound as the TensorRT file; then the fusion is checked on the
    graph the CPU provider actually runs."""
    import tempfile

    import onnx

    from shfan.builder.metadata import get_metadata
    from shfan.builder.precision import to_int8_cpu
    from shfan.calibration import cpu_int8, ranges
    from shfan.calibration.guard import guarded_quantize, mean_nme
    from shfan.calibration.ort_tools import predict_landmarks

    dst = stage_dir / "model_int8_cpu.onnx"
    meta = get_metadata(onnx.load(str(src), load_external_data=False))
    tuning = calib.crops[:SENSITIVITY_FACES]
    tuning_fp32 = predict_landmarks(src, tuning, cfg)
    log = calibration_log.setdefault("cpu", {})
    with tempfile.TemporaryDirectory(prefix="shfan-cpu-int8-") as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        with st.stage("CPU int8 ranges") as s:
            model = cpu_int8.prepare(onnx.load(str(src)))
            onnx.save(model, str(prepared))
            sample = ranges.sample_tensors(model, cpu_int8.tensors_to_quantize(model), calib.crops)
            if opts.calib_method == "max":
                chosen = None
                s["detail"] = f"max of {len(sample.amax)} tensors over {len(calib)} faces"
            else:  # entropy has no uint8 counterpart here: the percentile search stands in for it
                def drift_at(p):
                    to_int8_cpu(prepared, dst, cpu_int8.asymmetric_ranges(sample, p), [], meta)
                    return mean_nme(predict_landmarks(dst, tuning, cfg), tuning_fp32)

                scores = {p: drift_at(p) for p in ranges.PERCENTILES}
                chosen = min(scores, key=scores.get)
                log["percentile"] = chosen
                log["percentile_scores"] = {str(p): round(v, 4) for p, v in scores.items()}
                s["detail"] = (f"{chosen}th percentile of |x| for {len(sample.amax)} tensors over {len(calib)} faces "
                               "(drift vs fp32: " + ", ".join(f"{p}: {v:.2f}" for p, v in scores.items()) + ")")
        tensor_ranges = cpu_int8.asymmetric_ranges(sample, chosen)

        def quantize(excluded):
            with st.stage(f"CPU int8 QDQ ({len(calib)} faces)") as s:
                to_int8_cpu(prepared, dst, tensor_ranges, excluded, meta)
                s["detail"] = f"{len(excluded)} convs kept in fp32" if excluded else "every op with an integer kernel"
            return dst

        rank = _conv_ranker(st, "CPU int8 sensitivity per conv", tuning, tuning_fp32, cfg, opts.progress)

        result = guarded_quantize(quantize, reference, rank, opts.max_nme_drift, lambda m: st.note("cpu: " + m))
    with st.stage("CPU int8 fusion check") as s:
        report = cpu_int8.fusion_report(dst)
        fp16 = cpu_int8.fp16_tensors(onnx.load(str(dst)))
        log["fusion"] = {k: v for k, v in report.items() if k != "ops"}
        s["detail"] = (f"ONNX Runtime runs {report['integer_convs']} integer convs, {report['float_convs']} float, "
                       f"{report['transposes']} transposes")
    excluded = len(result.accepted.excluded)
    if fp16 or report["integer_convs"] == 0 or report["float_convs"] > excluded:
        raise BuildError(f"the CPU int8 file is not what ONNX Runtime fuses ({report['integer_convs']} integer convs, "
                         f"{report['float_convs']} float, {len(fp16)} fp16 tensors); use --target tensorrt or "
                         "a newer onnxruntime")
    return dst, result


def _int8_cpu_measured(src, stage_dir, calib, reference, cfg, opts: BuildOptions, st: Stages, calibration: dict):
    from shfan.calibration.ort_tools import latency_ms

    dst, guard = _build_int8_cpu(src, stage_dir, calib, reference, cfg, opts, st, calibration)
    accepted = guard.accepted
    calibration["cpu"]["guard"] = guard.to_dict()
    calibration["cpu"]["method"] = (f"{opts.calib_method} ranges, onnxruntime QDQ quantizer (uint8 activations, "
                                    "7-bit symmetric per-channel int8 weights), BatchNorm as depthwise conv")
    if opts.target == "cpu":
        calibration["method"] = calibration["cpu"]["method"]
    if not guard.within_bound and opts.precision == "int8":
        raise BuildError(f"CPU int8 drift {accepted.drift:+.3f} NME points (95% upper bound {accepted.drift_upper:+.3f}) "
                         f"exceeds --max-nme-drift {opts.max_nme_drift} even with the {len(accepted.excluded)} most "
                         "sensitive convs kept in fp32; use --precision fp32, more/better --calib-data, or a larger bound")
    m = {"nme": accepted.nme, "drift": accepted.drift, "excluded": accepted.excluded, "target": "cpu",
         "latency": latency_ms(dst, cfg["input_size"]), "path": dst, "within_bound": guard.within_bound}
    st.note(f"CPU int8 accepted: NME {accepted.nme:.3f}, drift {accepted.drift:+.3f}, {len(accepted.excluded)} "
            f"convs kept in fp32, ONNX Runtime CPU {m['latency']:.1f} ms")
    return m


def _bar(desc: str, enabled: bool = True):
    """A transient tqdm bar for long loops inside one stage (the stage line stays the record);
    drawn only when asked (BuildOptions.progress) and stderr is a terminal (tqdm's disable=None),
    so logs and library callers get the stage lines only."""
    if not enabled:
        return None
    from tqdm import tqdm

    return lambda items: tqdm(items, desc=desc, unit="conv", leave=False, disable=None)


def _measure(path: Path, reference, cfg: dict):
    from shfan.calibration.ort_tools import latency_ms

    m = reference.measure(path) if reference else None
    nme, drift = (m.nme, m.drift) if m else (None, None)
    return nme, drift, latency_ms(path, cfg["input_size"])


def _select(requested: str, measured: dict, bound: float) -> str:
    if requested != "best":
        return requested
    def fits(m):
        return m.get("within_bound", True) and (m["drift"] is None or m["drift"] <= bound)

    # a precision with a CPU int8 file is ranked by that file (the one ONNX Runtime runs here)
    ok = [p for p, m in measured.items() if fits(m) and fits(m.get("cpu", m))]
    return min(ok, key=lambda p: measured[p].get("cpu", measured[p])["latency"])


def _engine_key(folder: Path, entry: dict, opts: BuildOptions, trt_info: dict, plugin_sha: str | None) -> str:
    onnx_name = entry["onnx_decoded"] or entry["onnx"]
    return plan.engine_cache_key(trt_info["version"], trt_info["sm"], sha256_file(folder / onnx_name),
                                 plugin_sha if opts.decoder == "plugin" else None, opts.max_batch, opts.workspace_mb)


def _engine_up_to_date(out: Path, manifest: dict, cache: dict, opts: BuildOptions, trt_info: dict,
                       plugin_sha: str | None) -> bool:
    selected = manifest.get("selected_precision")
    entry = manifest.get("artifacts", {}).get(selected)
    if not entry or not entry.get("engine") or not (out / entry["engine"]).is_file():
        return False
    return cache.get("engines", {}).get(selected) == _engine_key(out, entry, opts, trt_info, plugin_sha)


def _engines(stage_dir: Path, manifest_artifacts: dict, selected: str, cfg: dict, opts: BuildOptions,
             trt_info: dict, plugin_sha: str | None, old_cache: dict, st: Stages) -> dict:
    """Build (or reuse) the selected precision's engine; returns {precision: cache key}."""
    from shfan.builder import tensorrt_build

    entry = manifest_artifacts[selected]
    onnx_name = entry["onnx_decoded"] or entry["onnx"]
    key = _engine_key(stage_dir, entry, opts, trt_info, plugin_sha)
    name = plan.engine_name(selected, opts.decoder)
    old_engine = Path(opts.out) / name
    if not opts.force and old_cache.get("engines", {}).get(selected) == key and old_engine.is_file():
        shutil.copy2(old_engine, stage_dir / name)
        st.note(f"engine {name} reused (cache key {key[:12]})")
    else:
        cache_file = stage_dir / "timing.cache"
        if (Path(opts.out) / "timing.cache").is_file():
            shutil.copy2(Path(opts.out) / "timing.cache", cache_file)
        with st.stage(f"TensorRT {trt_info['version']} engine") as s:
            tensorrt_build.build_engine(stage_dir / onnx_name, stage_dir / name, cfg["input_size"], opts.max_batch,
                                        opts.workspace_mb, cache_file, opts.plugin_lib, opts.decoder == "plugin",
                                        log=st.warn)
            s["detail"] = f"{name}, batch 1..{opts.max_batch}, sm_{trt_info['sm']}"
    entry["engine"] = name
    return {selected: key}


# ------------------------------------------------------------------ the build


def build(opts: BuildOptions, st: Stages | None = None) -> BuildResult:
    from shfan import __version__
    from shfan.builder.decoder_node import add_decoder

    st = st or Stages()
    _validate(opts)
    out = Path(opts.out)
    artifacts.check_out_dir(out)
    old_manifest = artifacts.read_json(out / MANIFEST) or {}  # unreadable: nothing to reuse
    old_cache = artifacts.read_json(out / artifacts.CACHE) or {}
    trt_info = _tensorrt_info()
    plugin_sha = _plugin_sha(opts)
    if opts.decoder == "plugin" and trt_info and plugin_sha is None:
        from shfan.plugins import BUILD_COMMAND

        raise BuildError(f"--decoder plugin needs the SubpixelDecode plugin library; build it with: {BUILD_COMMAND} "
                         "(or pass --plugin-lib, or use --decoder onnx)")
    source_file = _source_file(opts)
    inputs_key = plan.build_inputs_key(
        source=sha256_file(source_file), precision=opts.precision, decoder=opts.decoder,
        calib=_source_fingerprint(opts.calib_data), max_calib=opts.max_calib, calib_method=opts.calib_method, max_nme_drift=opts.max_nme_drift,
        shfan=__version__, opset=OPSET, **({"target": opts.target} if opts.target != "tensorrt" else {}))

    reuse = (not opts.force and old_cache.get("inputs_key") == inputs_key and bool(old_manifest))
    if reuse:
        damaged = damaged_files(out, old_cache)
        if damaged:
            st.note(f"{out}: {damaged[0]}{f' (+{len(damaged) - 1} more)' if len(damaged) > 1 else ''} is missing "
                    "or changed since it was built; rebuilding")
            reuse = False
    if reuse and (trt_info is None or _engine_up_to_date(out, old_manifest, old_cache, opts, trt_info, plugin_sha)):
        st.note(f"{out} is up to date (same weights, options and calibration data; cache key {inputs_key[:12]}); "
                "--force rebuilds")
        return BuildResult(out, old_manifest, reused=True, tensorrt=trt_info is not None,
                           next_commands=_next_commands(out, old_manifest, trt_info))

    with artifacts.staged_folder(out) as stage_dir:
        if reuse:
            manifest, calibration = _reuse_onnx(out, stage_dir, old_manifest, st)
        else:
            manifest, calibration = _build_onnx(opts, stage_dir, st, add_decoder, __version__)
        selected = manifest.selected_precision
        engine_keys = {}
        if trt_info is not None and manifest.artifacts[selected].get("target") == "cpu":
            st.note(f"no TensorRT engine: the selected {selected} file is for ONNX Runtime's CPU provider "
                    "(build --target all or tensorrt for an engine)")
        elif trt_info is not None:
            engine_keys = _engines(stage_dir, manifest.artifacts, selected, manifest.model_config, opts, trt_info,
                                   plugin_sha, old_cache, st)
        manifest = replace(manifest, tensorrt=trt_info, **plugin_record(opts.decoder, plugin_sha, opts.plugin_lib))
        written = manifest.to_json()
        artifacts.write_json(stage_dir / MANIFEST, written)
        artifacts.write_json(stage_dir / artifacts.CALIBRATION, calibration)
        artifacts.write_json(stage_dir / artifacts.CACHE, {"inputs_key": inputs_key, "engines": engine_keys,
                                                           "files": file_hashes(stage_dir)})
    return BuildResult(out, written, tensorrt=trt_info is not None, next_commands=_next_commands(out, written, trt_info))


def file_hashes(folder: Path) -> dict:
    """sha256 of every file of a build folder (but cache.json, which holds them): a later build
    with the same inputs is skipped only while every one is still there, unchanged."""
    return {str(p.relative_to(folder)): sha256_file(p) for p in sorted(Path(folder).rglob("*"))
            if p.is_file() and p.name != artifacts.CACHE}


def damaged_files(folder: Path, cache: dict) -> list[str]:
    """Files recorded in cache.json that are missing or differ; all of them for a folder built
    before the hashes were recorded (["cache.json (no file hashes)"])."""
    recorded = cache.get("files")
    if not isinstance(recorded, dict) or not recorded:
        return [f"{artifacts.CACHE} (no file hashes)"]
    folder = Path(folder)
    return [name for name, sha in recorded.items()
            if not (folder / name).is_file() or sha256_file(folder / name) != sha]


def _reuse_onnx(out: Path, stage_dir: Path, old_manifest: dict, st: Stages):
    """Identical inputs: copy the ONNX files, only the engine is (re)built."""
    manifest = BuildManifest.from_json(old_manifest, str(out / MANIFEST))
    with st.stage("reuse ONNX files") as s:
        for entry in manifest.artifacts.values():
            cpu = entry.get("cpu") or {}
            for name in (entry["onnx"], entry["onnx_decoded"], cpu.get("onnx"), cpu.get("onnx_decoded")):
                if name:
                    shutil.copy2(out / name, stage_dir / name)
            entry["engine"] = None
        if (out / artifacts.CALIBRATION_CACHE).is_file():
            shutil.copy2(out / artifacts.CALIBRATION_CACHE, stage_dir / artifacts.CALIBRATION_CACHE)
        s["detail"] = f"from {out} (same inputs)"
    calibration = artifacts.read_json(out / artifacts.CALIBRATION) or manifest.calibration
    return manifest, calibration


def _build_onnx(opts: BuildOptions, stage_dir: Path, st: Stages, add_decoder, version: str):
    import onnx

    from shfan.builder.precision import to_fp16
    from shfan.calibration import sources
    from shfan.calibration.guard import Reference

    src, cfg, model_sha, source_precision, torch_model, meta = _load_source(opts, stage_dir, st)
    wanted = _precisions_to_build(opts.precision, source_precision)
    calibration = {"source": None, "fallback": None, "faces_total": 0, "calibration_faces": 0, "heldout_faces": 0,
                   "reference": None, "method": None, "max_nme_drift": opts.max_nme_drift}
    reference = None
    measured = {}
    if source_precision == "fp32":
        faces, calib, heldout = _load_faces(opts, cfg, "int8" in wanted, st)
        calibration.update(source=faces.origin, fallback=faces.fallback, faces_total=len(faces),
                           calibration_faces=len(calib) if "int8" in wanted else 0, heldout_faces=len(heldout),
                           skipped_files=len(faces.skipped))
        if torch_model is not None:
            from shfan.builder.export import parity_check

            with st.stage("parity PyTorch vs ORT") as s:
                parity = parity_check(torch_model, src, heldout.crops[:16])
                s["detail"] = (f"max |heatmap diff| {parity.max_heatmap_diff:.2e}, "
                               f"max landmark diff {parity.max_landmark_diff_px:.2e} px ({parity.faces} faces)")
            calibration["parity"] = parity.to_dict()
        with st.stage("fp32 accuracy + latency") as s:
            reference = Reference.from_fp32(src, sources.with_jittered_views(heldout), cfg)
            calibration["reference"] = reference.kind
            nme, drift, lat = _measure(src, reference, cfg)
            measured["fp32"] = {"nme": nme, "drift": drift, "latency": lat, "excluded": [], "path": src}
            s["detail"] = (f"NME {nme:.3f} vs ground truth, ORT CPU {lat:.1f} ms" if reference.kind == "ground truth"
                           else f"the reference (no ground truth: other precisions are scored against its "
                                f"landmarks), ORT CPU {lat:.1f} ms")
    else:
        prior = meta or {}
        st.note(f"{source_precision} ONNX given: accuracy numbers are the ones recorded when it was built")
        from shfan.calibration.ort_tools import latency_ms

        measured[source_precision] = {"nme": prior.get("nme_inter_ocular"), "drift": prior.get("nme_drift"),
                                      "latency": latency_ms(src, cfg["input_size"]),
                                      "excluded": prior.get("excluded_layers", []), "path": src}
    if "fp16" in wanted and source_precision == "fp32":
        dst = stage_dir / "model_fp16.onnx"
        with st.stage("fp16 (AutoCast)") as s:
            to_fp16(src, dst)
            nme, drift, lat = _measure(dst, reference, cfg)
            measured["fp16"] = {"nme": nme, "drift": drift, "latency": lat, "excluded": [], "path": dst}
            s["detail"] = f"NME {nme:.3f}, drift {drift:+.3f}, ORT CPU {lat:.1f} ms"
        if opts.precision == "fp16" and drift > opts.max_nme_drift:
            raise BuildError(f"fp16 drift {drift:+.3f} NME points exceeds --max-nme-drift {opts.max_nme_drift}; "
                             "build --precision fp32 or raise the bound")
    if "int8" in wanted and source_precision == "fp32" and opts.target != "cpu":
        calibration["method"] = f"{opts.calib_method} ranges, ModelOpt ONNX PTQ (symmetric int8 Q/DQ on Conv), CPU"
        dst, guard = _build_int8(src, stage_dir, calib, reference, cfg, opts, st, calibration)
        accepted = guard.accepted
        calibration["guard"] = guard.to_dict()
        if not guard.within_bound and opts.precision == "int8":
            raise BuildError(f"int8 drift {accepted.drift:+.3f} NME points (95% upper bound {accepted.drift_upper:+.3f}) "
                             f"exceeds --max-nme-drift {opts.max_nme_drift} "
                             f"even with the {len(accepted.excluded)} most sensitive convs kept in fp16; use --precision fp16, "
                             "more/better --calib-data, or a larger bound")
        from shfan.calibration.ort_tools import latency_ms

        measured["int8"] = {"nme": accepted.nme, "drift": accepted.drift, "excluded": accepted.excluded,
                            "latency": latency_ms(dst, cfg["input_size"]), "path": dst,
                            "within_bound": guard.within_bound}
        st.note(f"int8 accepted: NME {accepted.nme:.3f}, drift {accepted.drift:+.3f}, "
                f"{len(accepted.excluded)} convs kept out of int8{': ' + ', '.join(accepted.excluded) if accepted.excluded else ''}")
    if "int8" in wanted and source_precision == "fp32" and opts.target != "tensorrt":
        cpu = _int8_cpu_measured(src, stage_dir, calib, reference, cfg, opts, st, calibration)
        if "int8" in measured:
            measured["int8"]["cpu"] = cpu  # --target all: beside the TensorRT file
        else:
            measured["int8"] = cpu
    selected = _select(opts.precision, measured, opts.max_nme_drift)
    if opts.precision == "best":
        st.note(f"best = {selected}: fastest within ±{opts.max_nme_drift} NME by ONNX Runtime CPU latency "
                "(a proxy here; TensorRT on the Jetson may rank fp16/int8 differently)")

    def entry(m):
        _record_accuracy(m["path"], m)
        decoded = None
        if opts.decoder != "none":
            decoded = f"{m['path'].stem}_{opts.decoder}.onnx"
            onnx.save(add_decoder(onnx.load(str(m["path"])), cfg, opts.decoder), str(stage_dir / decoded))
        made = artifacts.artifact_entry(m["path"].name, decoded, None, m["nme"], m["drift"], m["excluded"],
                                        m["path"].stat().st_size, m["latency"])
        return {**made, "target": "cpu"} if m.get("target") == "cpu" else made

    entries = {}
    with st.stage(f"decoder ({opts.decoder})") as s:
        for precision, m in measured.items():
            entries[precision] = entry(m)
            if "cpu" in m:
                entries[precision]["cpu"] = entry(m["cpu"])
        s["detail"] = "heatmap-output ONNX kept beside each decoded graph" if opts.decoder != "none" else "heatmaps out"
    manifest = BuildManifest(shfan_version=version, model_config=cfg, model_sha256=model_sha, decoder=opts.decoder,
                             opset=OPSET, selected_precision=selected, artifacts=entries,
                             calibration={k: v for k, v in calibration.items() if k not in ("guard", "cpu")})
    return manifest, calibration


def _record_accuracy(path: Path, m: dict) -> None:
    """Carry the measured accuracy inside the ONNX metadata, so a build from `--onnx` on the
    Jetson (no faces, no fp32 reference there) still reports it."""
    import onnx

    from shfan.builder.metadata import get_metadata, set_metadata

    model = onnx.load(str(path))
    meta = get_metadata(model) or {}
    meta.update(nme_inter_ocular=m["nme"], nme_drift=m["drift"], excluded_layers=list(m["excluded"]))
    onnx.save(set_metadata(model, meta), str(path))


def _next_commands(out: Path, manifest: dict, trt_info) -> list[str]:
    selected = manifest["selected_precision"]
    cmds = [f"shfan-eval --model {out} --data FACES_300W_FOLDER", f"shfan-run --model {out}"]
    if trt_info is None and manifest["artifacts"][selected].get("target") != "cpu":
        entry = manifest["artifacts"][selected]
        decoder = manifest["decoder"]
        cmds.append("on the Jetson: copy " + f"{out}/{entry['onnx']} there and run: "
                    + plan.jetson_command(entry["onnx"], selected, decoder, 4))
    return cmds


def _conv_ranker(st, label, tuning, tuning_fp32, cfg, progress: bool = True):
    """The guard's `rank` step for either int8 target: each conv alone in int8, ranked by the
    landmark drift it causes on the tuning faces (one progress stage)."""

    def rank(int8_path):
        from shfan.calibration import sensitivity

        with st.stage(label) as s:
            ranking = sensitivity.rank_convs(int8_path, tuning, tuning_fp32, cfg, progress=_bar("ranking convs", progress))
            s["detail"] = "worst: " + ", ".join(f"{n} {d:+.2f}" for n, d in ranking[:3])
        return ranking

    return rank
