"""shfan-build's workflow: source -> export + parity -> calibration faces -> the artifact steps
(builder/steps.STEPS: fp32, fp16, int8 for TensorRT, int8 for the CPU; each made, measured and
held to --max-nme-drift) -> selection -> decoder graphs -> TensorRT engine -> manifest.
Everything is written into a staged folder that replaces --out only when the whole build
succeeded; identical inputs reuse the previous folder (builder/cache)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from shfan.builder import artifacts, cache, engine_rules, inputs
from shfan.builder.decoder_node import add_decoder
from shfan.builder.engine import add_engine
from shfan.builder.inputs import plugin_record  # noqa: F401  (re-exported: the manifest's plugin fields)
from shfan.builder.inputs import tensorrt_info as _tensorrt_info
from shfan.builder.export import parity_check
from shfan.builder.metadata import OPSET, get_metadata, set_metadata
from shfan.errors import BuildError
from shfan.builder.options import BuildOptions  # noqa: F401  (re-exported: the Python API's build options)
from shfan.builder.progress import Stages
from shfan.builder.steps import STEPS, Context, Measured
from shfan.contracts import MANIFEST, Artifact, BuildManifest


@dataclass
class BuildResult:
    """What build() made (or found up to date) and what to run next."""

    out: Path
    manifest: BuildManifest
    next_commands: list[str] = field(default_factory=list)
    reused: bool = False  # the folder was up to date: nothing written
    tensorrt: bool = False  # TensorRT is here (an engine was built or reused)


def build(opts: BuildOptions, st: Stages | None = None) -> BuildResult:
    """The build folder opts.out (reused when its inputs are unchanged), then the Triton model
    repository from it when opts.triton_repo names one."""
    st = st or Stages()
    result = _build_folder(opts, st)
    if opts.triton_repo:
        from shfan.builder.triton_repo import write_repository

        write_repository(result.out, Path(opts.triton_repo), engine_max_batch=opts.max_batch,
                         plugin_lib=opts.plugin_lib)
    return result


def _build_folder(opts: BuildOptions, st: Stages) -> BuildResult:
    from shfan import __version__

    opts.validate_for_build()
    out = Path(opts.out)
    artifacts.check_out_dir(out)
    old, old_cache = cache.read_old(out)
    trt_info = _tensorrt_info()
    plugin_sha = inputs.plugin_sha(opts, trt_info)
    inputs_key = cache.inputs_key(opts, inputs.source_file(opts), __version__)
    reuse = not opts.force and old_cache.get("inputs_key") == inputs_key and old is not None
    if reuse:
        damaged = cache.damaged_files(out, old_cache)
        if damaged:
            st.note(f"{out}: {damaged[0]}{f' (+{len(damaged) - 1} more)' if len(damaged) > 1 else ''} is missing "
                    "or changed since it was built; rebuilding")
            reuse = False
    if reuse and (trt_info is None or cache.engine_up_to_date(out, old, old_cache, opts, trt_info, plugin_sha)):
        st.note(f"{out} is up to date (same weights, options and calibration data; cache key {inputs_key[:12]}); "
                "--force rebuilds")
        return BuildResult(out, old, _next_commands(out, old, trt_info), reused=True, tensorrt=trt_info is not None)

    with artifacts.staged_folder(out) as stage_dir:
        if reuse:
            manifest, calibration = cache.reuse_onnx(out, stage_dir, old, st)
        else:
            manifest, calibration = build_onnx(opts, stage_dir, st, __version__)
        manifest, engine_keys = add_engine(stage_dir, manifest, opts, trt_info, plugin_sha, old_cache, st)
        manifest = replace(manifest, tensorrt=trt_info, **plugin_record(opts.decoder, plugin_sha, opts.plugin_lib))
        artifacts.write_json(stage_dir / MANIFEST, manifest.to_json())
        artifacts.write_json(stage_dir / artifacts.CALIBRATION, calibration)
        artifacts.write_json(stage_dir / artifacts.CACHE, {"inputs_key": inputs_key, "engines": engine_keys,
                                                           "files": cache.file_hashes(stage_dir)})
    return BuildResult(out, manifest, _next_commands(out, manifest, trt_info), tensorrt=trt_info is not None)


def build_onnx(opts: BuildOptions, stage_dir: Path, st: Stages, version: str) -> tuple[BuildManifest, dict]:
    """The ONNX files: every wanted step of STEPS in order (a given fp16/int8 file: itself)."""
    source = inputs.load_source(opts, stage_dir, st)
    wanted = opts.precisions_to_build(source.precision)
    calibration = {"source": None, "fallback": None, "faces_total": 0, "calibration_faces": 0, "heldout_faces": 0,
                   "reference": None, "method": None, "max_nme_drift": opts.max_nme_drift}
    ctx = Context(opts, stage_dir, st, source.path, source.model_config, calibration=calibration)
    measured: dict[tuple[str, str], Measured] = {}
    if source.precision == "fp32":
        _faces_and_parity(ctx, source, "int8" in wanted)
        for step in (s for s in STEPS if s.precision in wanted and s.wanted(opts)):
            m = step.make(ctx)
            if step.failure and not m.within_bound and opts.precision == step.precision:
                raise BuildError(step.failure(m, opts.max_nme_drift))
            if step.note:
                st.note(step.note(m))
            measured[(step.precision, step.target)] = m
    else:
        measured[(source.precision, "tensorrt")] = _given(ctx, source)
    selected = select(opts.precision, measured, opts.max_nme_drift)
    if opts.precision == "best":
        st.note(f"best = {selected}: fastest within ±{opts.max_nme_drift} NME by ONNX Runtime CPU latency "
                "(a proxy here; TensorRT on the Jetson may rank fp16/int8 differently)")
    manifest = BuildManifest(shfan_version=version, model_config=source.model_config, model_sha256=source.sha256,
                             decoder=opts.decoder, opset=OPSET, selected_precision=selected,
                             artifacts=_decoded_records(ctx, measured),
                             calibration={k: v for k, v in calibration.items() if k not in ("guard", "cpu")})
    return manifest, calibration


def _faces_and_parity(ctx: Context, source: inputs.Source, int8_wanted: bool) -> None:
    """The calibration and held-out faces (into ctx), and PyTorch vs ONNX Runtime parity on the
    held-out ones for an exported checkpoint."""
    faces, ctx.calib, ctx.heldout = inputs.load_faces(ctx.opts, source.config, int8_wanted, ctx.st)
    ctx.calibration.update(source=faces.origin, fallback=faces.fallback, faces_total=len(faces),
                           calibration_faces=len(ctx.calib) if int8_wanted else 0, heldout_faces=len(ctx.heldout),
                           skipped_files=len(faces.skipped))
    if source.torch_model is not None:
        with ctx.st.stage("parity PyTorch vs ORT") as s:
            parity = parity_check(source.torch_model, source.path, ctx.heldout.crops[:16])
            s["detail"] = (f"max |heatmap diff| {parity.max_heatmap_diff:.2e}, "
                           f"max landmark diff {parity.max_landmark_diff_px:.2e} px ({parity.faces} faces)")
        ctx.calibration["parity"] = parity.to_dict()


def _given(ctx: Context, source: inputs.Source) -> Measured:
    """A given fp16/int8 file: the accuracy recorded when it was built, the latency here."""
    prior = source.meta or {}
    ctx.st.note(f"{source.precision} ONNX given: accuracy numbers are the ones recorded when it was built")
    return Measured(source.path, prior.get("nme_inter_ocular"), prior.get("nme_drift"), ctx.latency(source.path),
                    tuple(prior.get("excluded_layers", [])))


def select(requested: str, measured: dict[tuple[str, str], Measured], bound: float) -> str:
    """The precision asked for; for "best" the fastest whose files all fit the bound, a
    precision with a CPU int8 file ranked by that file (the one ONNX Runtime runs here)."""
    if requested != "best":
        return requested

    def fits(m: Measured) -> bool:
        return m.within_bound and (m.drift is None or m.drift <= bound)

    files: dict[str, list[Measured]] = {}
    for (precision, _), m in measured.items():
        files.setdefault(precision, []).append(m)
    ok = [p for p, ms in files.items() if all(fits(m) for m in ms)]
    if not ok:  # e.g. --onnx of an fp16/int8 file whose recorded drift is over the bound: nothing to pick
        drifts = ", ".join(f"{p} {m.drift:+.3f}" for (p, _), m in measured.items() if m.drift is not None)
        raise BuildError(f"--precision best: no file of this build stays within ±{bound} NME of fp32 ({drifts}); "
                         "ask for one precision (--precision fp16|int8) or raise --max-nme-drift")
    return min(ok, key=lambda p: files[p][-1].latency)


def _decoded_records(ctx: Context, measured: dict[tuple[str, str], Measured]) -> dict[tuple[str, str], Artifact]:
    """Each file's accuracy into its metadata, its decoded graph beside it, its manifest record."""
    import onnx

    decoder, records = ctx.opts.decoder, {}
    with ctx.st.stage(f"decoder ({decoder})") as s:
        for (precision, target), m in measured.items():
            _record_accuracy(m)
            decoded = None
            if decoder != "none":
                decoded = f"{m.path.stem}_{decoder}.onnx"
                onnx.save(add_decoder(onnx.load(str(m.path)), ctx.model_config, decoder), str(ctx.stage_dir / decoded))
            entry = artifacts.artifact_entry(m.path.name, decoded, None, m.nme, m.drift, list(m.excluded),
                                             m.path.stat().st_size, m.latency)
            records[(precision, target)] = Artifact.from_json(precision, entry, target)
        s["detail"] = "heatmap-output ONNX kept beside each decoded graph" if decoder != "none" else "heatmaps out"
    return records


def _record_accuracy(m: Measured) -> None:
    """Carry the measured accuracy inside the ONNX metadata, so a build from `--onnx` on the
    Jetson (no faces, no fp32 reference there) still reports it."""
    import onnx

    model = onnx.load(str(m.path))
    meta = get_metadata(model) or {}
    meta.update(nme_inter_ocular=m.nme, nme_drift=m.drift, excluded_layers=list(m.excluded))
    onnx.save(set_metadata(model, meta), str(m.path))


def _next_commands(out: Path, manifest: BuildManifest, trt_info) -> list[str]:
    selected = manifest.selected_precision
    cmds = [f"shfan-eval --model {out} --data FACES_300W_FOLDER", f"shfan-run --model {out}"]
    art = manifest.artifact(selected)
    if trt_info is None and art.target != "cpu":
        cmds.append("on the Jetson: copy " + f"{out}/{art.onnx} there and run: "
                    + engine_rules.jetson_command(art.onnx, selected, manifest.decoder, 4))
    return cmds
