"""shfan-bench as a library: per-stage latency and pipeline FPS of every backend and precision
this machine can run, and the ratio to a baseline timed on the same demo frames.

Stages: detect (YuNet on the full frame), preprocess (crop + normalise), infer (the network),
decode (heatmaps -> points, where the backend decodes on the host), postprocess (points back
to image px). Each is timed over `repeats` runs after `warmup` runs and reported as a median
with its p10/p90 spread. The pipeline is timed end to end (tracking on) on pre-rendered demo
frames, so capture never counts and every configuration sees the same pixels.

config (BenchConfig, names) · stats (spread, speedup, machine) · cases (models, builds, timing)
· report (rows, tables, summary lines). `run` returns one JSON-ready dict and logs its progress
on the "shfan.bench" logger; printing is shfan.cli.bench's. The face-alignment-style baseline
(PyTorch) is not part of the package: it is benchmarks/face_alignment_baseline.py, passed to
`run` as `baseline`."""

from __future__ import annotations

import logging
import time
from typing import Callable

from shfan.bench.cases import (ModelSource, bench_cache_dir, build_folder, build_precision_choice, calibration_note,
                               default_precision, default_threads, demo_frames, detect_all, file_key, open_detector,
                               ort_cases, resolve_model, run_cases, tensorrt_cases)
from shfan.bench.config import (BATCH_STAGES, FRAME_SIZE, ORT_PRECISIONS, PIPELINE_STAGES, BenchConfig, BenchError,
                                quick, validate)
from shfan.bench.others import compare
from shfan.bench.report import case_precision, header_line, pipeline_rows, stage_rows, summary_lines, tables
from shfan.bench.timing import cpu_model, machine_details, per_face, speedup, speedup_summary, spread, timed
from shfan.contracts import BuildManifest

log = logging.getLogger("shfan.bench")

# what the CLI, benchmarks/ and the tests use; the rest lives in the submodules
__all__ = ["ModelSource", "bench_cache_dir", "build_precision_choice", "file_key", "ort_cases", "resolve_model",
           "tensorrt_cases", "BATCH_STAGES", "ORT_PRECISIONS", "PIPELINE_STAGES", "BenchConfig", "BenchError",
           "quick", "validate", "case_precision", "header_line", "pipeline_rows", "stage_rows", "summary_lines",
           "tables", "cpu_model", "machine_details", "per_face", "speedup", "speedup_summary", "spread", "timed",
           "Baseline", "NO_BASELINE", "run"]

# (detector, frames, config) -> {"fps", "frames", "stages", "description", ...}: benchmarks/face_alignment_baseline.py
Baseline = Callable[..., dict]
NO_BASELINE = ("the face-alignment baseline is not part of the installed package; run it from a source checkout "
               "(python benchmarks/face_alignment_baseline.py) or set $SHFAN_BASELINE_SCRIPT to that file, "
               "or pass --no-baseline")


def run(config: BenchConfig, baseline: Baseline | None = None) -> dict:
    """The whole benchmark -> one JSON-ready dict. `baseline` times the reference on the same
    frames when config.baseline asks for it; without one the report says why it is missing."""
    validate(config)
    t_start = time.perf_counter()
    source = resolve_model(config.model)
    detector = open_detector(config)  # before the build: a missing detector fails fast
    folder, build_s = timed(build_folder, source, config, build_precision_choice(config.precisions))
    manifest = BuildManifest.read(folder)  # read once; the helpers below take it
    log.info("rendering %d demo frames; detecting faces", config.frames)
    frames = demo_frames(max(config.frames, config.baseline_frames))
    faces, detect = detect_all(detector, frames)
    cases, skipped = ort_cases(folder, manifest, config.precisions)
    trt_cases, trt_skipped = tensorrt_cases(source, config)
    results, failed = run_cases(cases + trt_cases, faces, frames[:config.frames], detector, config)
    base = baseline(detector, frames, config) if config.baseline and baseline is not None else None
    others, others_skipped = compare(frames[:config.frames], config.compare)
    if config.baseline and baseline is None:
        failed.append({"backend": "baseline", "reason": NO_BASELINE})
    default_key = ("onnxruntime", default_precision(source, manifest))
    int8 = manifest.artifact("int8")  # the TensorRT file when there is one, the CPU file's below it
    beside = manifest.artifacts.get(("int8", "cpu")) if int8 and int8.target == "tensorrt" else None
    return {
        "tool": "shfan-bench",
        "machine": machine_details(),
        "settings": {"batch_sizes": list(config.batch_sizes), "warmup": config.warmup, "repeats": config.repeats,
                     "frames": config.frames, "baseline_frames": config.baseline_frames,
                     "threads": config.threads or default_threads(), "statistic": "median, p10/p90",
                     "int8_target": config.target},
        "model": {"source": str(source.path), "kind": source.kind, "build": str(folder),
                  "config": manifest.model_config or None, "calibration": calibration_note(manifest),
                  "int8_kept_out": list(int8.excluded_layers) if int8 else None,
                  "int8_cpu_kept_out": list(beside.excluded_layers) if beside else None},
        "frames": {"source": "demo", "count": config.frames, "size": list(FRAME_SIZE), "with_face": len(faces)},
        "detect": detect,
        "results": results,
        "skipped": skipped + trt_skipped + failed + others_skipped,
        "others": others,
        "baseline": base,
        "speedup": speedup_summary(results, base, default_key),
        "elapsed_s": round(time.perf_counter() - t_start, 1),
        "build_s": round(build_s / 1000.0, 1),
    }
