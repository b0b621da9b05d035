"""What shfan-bench measures: the model source and its build folders (built once into the
cache), the demo frames and their faces, the backend/precision/decoder cases, and the timing
of one batch (stage by stage, through the backend seam) and of the whole pipeline.

Stage timing crops with shfan.geometry (crop_for_box, warp, transform_points): the same warp,
normalisation and back-projection the runtime pipeline runs per face, from the detector's box
alone (no tracker roll or smoothing), so each stage does the same amount of work."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from shfan.bench.config import (BATCH_STAGES, FPS, FRAME_SIZE, PIPELINE_STAGES, TRT_DECODERS, TRT_PRECISIONS,
                                BenchConfig, BenchError)
from shfan.bench.report import case_precision
from shfan.bench.timing import per_face, spread, timed
from shfan.contracts import BuildManifest
from shfan.errors import ShfanError
from shfan.io import cache_dir, sha256_file

log = logging.getLogger("shfan.bench")


# ------------------------------------------------------------------------------ models


@dataclass
class ModelSource:
    """What --model names: a build folder (used as is), an ONNX file or a checkpoint (built)."""

    kind: str  # build | onnx | weights
    path: Path


def default_source() -> ModelSource:
    """The shipped default model, as shfan-run finds it (shfan.weights): its ONNX, else its
    checkpoint."""
    from shfan import weights

    for kind, file_kind in (("onnx", "onnx"), ("weights", "checkpoint")):
        try:
            return ModelSource(kind, weights.model_path(weights.MODEL_NAMES[0], file_kind))
        except ShfanError:
            continue
    raise BenchError(f"the default model {weights.DEFAULT_ONNX} is missing from this install; pass --model PATH "
                     "(.onnx, checkpoint or shfan-build folder)")


def resolve_model(model=None) -> ModelSource:
    """--model, else the shipped default."""
    if model is None:
        return default_source()
    path = Path(model)
    if path.is_dir():
        if not (path / "manifest.json").is_file():
            raise BenchError(f"{path}: a folder without manifest.json; give a shfan-build folder, .onnx or checkpoint")
        return ModelSource("build", path)
    if not path.is_file():
        raise BenchError(f"{path}: no such model (give a shfan-build folder, .onnx file or checkpoint)")
    if path.suffix in (".engine", ".plan"):
        raise BenchError(f"{path}: give the shfan-build folder that holds this engine, so every precision can be compared")
    return ModelSource("onnx" if path.suffix == ".onnx" else "weights", path)


def bench_cache_dir(config: BenchConfig) -> Path:
    return Path(config.cache_dir) if config.cache_dir else cache_dir("bench")


def file_key(path: Path) -> str:
    return sha256_file(path)[:12]


def build_precision_choice(precisions) -> str:
    """The shfan-build --precision that yields every wanted ONNX file (best builds all three)."""
    wanted = set(precisions) - {"fp32"}
    return "fp32" if not wanted else (wanted.pop() if len(wanted) == 1 else "best")


def build_folder(source: ModelSource, config: BenchConfig, precision: str, decoder: str = "onnx",
                 max_batch: int = 4) -> Path:
    """A shfan-build folder for the source, built once into the cache (reused while the inputs
    are the same: the builder keys its output on weights, options and calibration data)."""
    if source.kind == "build":
        return source.path
    from shfan.builder.options import BuildOptions
    from shfan.builder.workflow import build
    from shfan.builder.progress import Stages

    target = "" if config.target == "tensorrt" else f"-{config.target}"
    out = bench_cache_dir(config) / f"{source.path.stem}-{file_key(source.path)}-{precision}-{decoder}{target}"
    opts = BuildOptions(weights=str(source.path) if source.kind == "weights" else None,
                        onnx=str(source.path) if source.kind == "onnx" else None, precision=precision,
                        calib_data=config.calib_data, max_calib=config.max_calib, calib_method=config.calib_method,
                        decoder=decoder, max_batch=max_batch, out=out, target=config.target)
    log.info("building %s ONNX files into %s (once; reused while the inputs are unchanged)", precision, out)
    build(opts, Stages(lambda line: log.info("  %s", line)))
    return out


def calibration_note(manifest: BuildManifest) -> dict:
    """Where the int8 ranges came from, as the build's manifest records it."""
    calib = manifest.calibration or {}
    return {"source": calib.get("source"), "fallback": calib.get("fallback"),
            "faces": calib.get("calibration_faces"), "method": calib.get("method")}


def default_precision(source: ModelSource, manifest: BuildManifest) -> str:
    """What shfan-run would use: a build folder's selected precision, else fp32."""
    if source.kind != "build":
        return "fp32"
    return manifest.selected_precision or "fp32"


def default_threads() -> int:
    from shfan.runtime.backends.onnxruntime.runner import default_threads as ort_default_threads

    return ort_default_threads()  # what the sessions use, so the report cannot drift from it


# ------------------------------------------------------------------------------ frames, detector


def demo_frames(count: int) -> list[np.ndarray]:
    """The demo source's first `count` frames (moving astronaut, 640 x 480 RGB)."""
    from shfan.runtime.sources import DemoDevice

    device = DemoDevice(frames=count, fps=FPS, size=FRAME_SIZE)
    device.open()
    frames = []
    while (item := device.read()) is not None:
        frames.append(item[0])
    return frames


def open_detector(config: BenchConfig):
    from shfan.runtime.detector import YuNetDetector

    return YuNetDetector(config.detector_model)


def detect_all(detector, frames) -> tuple[list[tuple[np.ndarray, np.ndarray]], dict]:
    """[(frame, landmark box)] for frames with a face, and the detect-stage spread (ms/frame)."""
    from shfan.runtime.detector import landmark_box_from_detection

    found, samples = [], []
    for frame in frames:
        dets, ms = timed(detector.detect_faces, frame)
        samples.append(ms)
        if dets:
            found.append((frame, landmark_box_from_detection(dets[0].box)))
    if not found:
        raise BenchError("the face detector found no face in the demo frames; check --detector-model")
    return found, spread(samples)


# ------------------------------------------------------------------------------ stage timing


def split_infer(backend):
    """(network, decoder or None): backends whose graph outputs heatmaps are decoded on the host,
    so the two are timed apart (through the seam's infer_heatmaps / decode_heatmaps); graphs with
    the decoder inside time as one stage."""
    if getattr(backend, "outputs_heatmaps", False):
        return backend.infer_heatmaps, backend.decode_heatmaps
    return backend.infer, None


def preprocess(faces, size: int):
    """Crops around each face's box and the float batch the backends take (as the pipeline)."""
    from shfan import geometry

    mats = [geometry.crop_for_box(box, size) for _, box in faces]
    crops = np.stack([geometry.warp(frame, m, size) for (frame, _), m in zip(faces, mats)])
    batch = crops.astype(np.float32).transpose(0, 3, 1, 2) * np.float32(1.0 / 255.0)
    return np.ascontiguousarray(batch), mats


def postprocess(points, mats):
    """Points from crop px back to image px (exact inverse of each crop)."""
    from shfan import geometry

    return [geometry.transform_points(points[i].astype(np.float64), geometry.invert(m)) for i, m in enumerate(mats)]


def batch_once(backend, network, decode, faces) -> dict[str, float]:
    """One batch through every stage -> {stage: ms}."""
    (batch, mats), t_pre = timed(preprocess, faces, backend.info.input_size)
    out, t_inf = timed(network, batch)
    t_dec = 0.0
    if decode is not None:
        out, t_dec = timed(decode, out)
    points = out[0]
    _, t_post = timed(postprocess, points, mats)
    return {"preprocess": t_pre, "infer": t_inf, "decode": t_dec, "postprocess": t_post}


def time_batch(backend, faces, batch: int, warmup: int, repeats: int) -> dict:
    """Stage spreads for batches of `batch` faces, cycling through the detected faces."""
    network, decode = split_infer(backend)
    samples = {stage: [] for stage in BATCH_STAGES}
    for i in range(warmup + repeats):
        chosen = [faces[(i * batch + j) % len(faces)] for j in range(batch)]
        ms = batch_once(backend, network, decode, chosen)
        if i >= warmup:
            for stage, v in ms.items():
                samples[stage].append(v)
    stages = {stage: spread(v) for stage, v in samples.items()}
    if decode is None:
        stages["decode"] = {**spread([]), "note": "inside infer"}
    return {"stages": stages, **per_face(stages, batch)}


def time_pipeline(pipeline, frames, warmup: int) -> dict:
    """Frames per second of the whole pipeline (detector + tracker + landmarks), tracking on."""
    for i, frame in enumerate(frames[:warmup]):
        pipeline.process(frame, track=True, timestamp=i / FPS, index=i)
    pipeline.tracker.reset()
    rows, faces, detector_runs = [], 0, 0
    t0 = time.perf_counter()
    for i, frame in enumerate(frames):
        result = pipeline.process(frame, track=True, timestamp=i / FPS, index=i)
        rows.append(result.timings)
        faces += len(result.faces)
        detector_runs += int(result.detector_ran)
    wall = time.perf_counter() - t0
    return {"frames": len(frames), "faces": faces, "detector_runs": detector_runs,
            "fps": round(len(frames) / wall, 2),
            "stages": {s: spread(r.get(s, 0.0) for r in rows) for s in PIPELINE_STAGES}}


# ------------------------------------------------------------------------------ cases


@dataclass
class Case:
    """One backend/precision/decoder configuration to measure."""

    backend: str  # onnxruntime | tensorrt
    precision: str
    decoder: str  # what decodes the heatmaps: "host subpixel" | "plugin" | "onnx ops"
    model: Path  # the build folder (or, for a build's TensorRT-style int8 file in ONNX Runtime, that file)
    results: dict = field(default_factory=dict)
    target: str | None = None  # int8 only: which file ONNX Runtime runs, "cpu" or "tensorrt"


def run_case(case: Case, faces, frames, detector, config: BenchConfig) -> dict:
    """Stage timings per batch size, then the pipeline's FPS, for one configuration."""
    from shfan.runtime.backends import open_backend
    from shfan.runtime.pipeline import Pipeline

    label = f"{case.backend} {case_precision(case.precision, case.target)} ({case.decoder})"
    backend = open_backend(case.model, case.backend, case.precision, threads=config.threads)
    try:
        batches = {}
        for b in config.batch_sizes:
            log.info("%s: batch %s", label, b)
            batches[str(b)] = time_batch(backend, faces, b, config.warmup, config.repeats)
    finally:
        backend.close()
    log.info("%s: pipeline on %d demo frames", label, len(frames))
    with Pipeline(case.model, case.backend, case.precision, detector=detector, threads=config.threads) as pipeline:
        pipe = time_pipeline(pipeline, frames, config.warmup)
    return {"backend": case.backend, "precision": case.precision, "decoder": case.decoder, "target": case.target,
            "model": str(case.model), "batches": batches, "pipeline": pipe}


def run_cases(cases: list[Case], faces, frames, detector, config: BenchConfig) -> tuple[list[dict], list[dict]]:
    """Every case that opens and runs; the others are reported with their one-line reason."""
    results, failed = [], []
    for case in cases:
        try:
            results.append(run_case(case, faces, frames, detector, config))
        except ShfanError as exc:
            log.info("%s %s (%s) skipped: %s", case.backend, case.precision, case.decoder, exc)
            failed.append({"backend": case.backend, "precision": case.precision, "decoder": case.decoder,
                           "reason": str(exc)})
    return results, failed


def ort_cases(folder: Path, manifest: BuildManifest, precisions) -> tuple[list[Case], list[dict]]:
    """One ONNX Runtime case per precision of the folder (`manifest` is its manifest); int8 gets
    one per file in the folder: the CPU file (what the runtime picks, first) and the
    TensorRT-style file, run by path."""
    missing = [p for p in precisions if p not in manifest.precisions]
    cases = []
    for p in (p for p in precisions if p in manifest.precisions):
        if p != "int8":
            cases.append(Case("onnxruntime", p, "host subpixel", folder))
            continue
        cpu, trt = manifest.artifacts.get((p, "cpu")), manifest.artifacts.get((p, "tensorrt"))
        if cpu:
            cases.append(Case("onnxruntime", p, "host subpixel", folder, target="cpu"))
        if trt:
            cases.append(Case("onnxruntime", p, "host subpixel", folder / trt.onnx if cpu else folder,
                              target="tensorrt"))
    skipped = [{"backend": "onnxruntime", "precision": p, "reason": f"{folder} has no {p} model"} for p in missing]
    return cases, skipped


def tensorrt_cases(source: ModelSource, config: BenchConfig) -> tuple[list[Case], list[dict]]:
    """TensorRT fp16/int8 with the plugin decoder and the ONNX-ops decoder, when TensorRT is
    importable; one engine build per combination (cached)."""
    from shfan.runtime import backends

    if not config.tensorrt:
        return [], [{"backend": "tensorrt", "reason": "--no-tensorrt"}]
    if not backends.get("tensorrt").available():
        return [], [{"backend": "tensorrt", "reason": "TensorRT is not importable here (python -c 'import tensorrt' "
                                                      "fails); shfan-doctor shows how to get it"}]
    cases, skipped = [], []
    for decoder in TRT_DECODERS:
        for precision in TRT_PRECISIONS:
            if precision not in config.precisions:
                continue
            try:
                folder = (source.path if source.kind == "build"  # engines: the TensorRT-style files only
                          else build_folder(source, replace(config, target="tensorrt"), precision, decoder,
                                            max(config.batch_sizes)))
                cases.append(Case("tensorrt", precision, "plugin" if decoder == "plugin" else "onnx ops", folder))
            except ShfanError as exc:
                skipped.append({"backend": "tensorrt", "precision": precision, "decoder": decoder, "reason": str(exc)})
    return cases, skipped
