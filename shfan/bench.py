"""shfan-bench: per-stage latency and pipeline FPS of every backend and precision this machine
can run, side by side with a face-alignment-style baseline on the same demo frames.

Stages: detect (YuNet on the full frame), preprocess (crop + normalise), infer (the network),
decode (heatmaps -> points, where the backend decodes on the host), postprocess (points back
to image px). Each is timed over `repeats` runs after `warmup` runs and reported as a median
with its p10/p90 spread. The pipeline is timed end to end (tracking on) on pre-rendered demo
frames, so capture never counts and every configuration sees the same pixels.

torch is imported only by the baseline.
"""

from __future__ import annotations

import hashlib
import os
import platform
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from shfan.errors import ShfanError

ORT_PRECISIONS = ("fp32", "fp16", "int8")
TRT_PRECISIONS = ("fp16", "int8")
TRT_DECODERS = ("plugin", "onnx")
BATCH_STAGES = ("preprocess", "infer", "decode", "postprocess")
PIPELINE_STAGES = ("detect", "preprocess", "infer", "postprocess", "total")
SPEEDUP_GOAL = 5.0
FRAME_SIZE = (640, 480)
FPS = 30.0


class BenchError(ShfanError, RuntimeError):
    """A benchmark that cannot run as asked (missing model, bad option)."""


@dataclass
class BenchConfig:
    """What to measure and how often. Defaults keep the full run under 5 minutes on 2 cores."""

    model: Path | None = None
    precisions: tuple[str, ...] = ORT_PRECISIONS
    batch_sizes: tuple[int, ...] = (1, 2, 4, 8)
    warmup: int = 3
    repeats: int = 20
    frames: int = 90
    baseline_frames: int = 10
    baseline: bool = True
    baseline_weights: Path | None = None
    calib_data: str | None = None
    max_calib: int = 128
    calib_method: str = "percentile"
    cache_dir: Path | None = None
    detector_model: str | None = None
    threads: int | None = None
    tensorrt: bool = True
    target: str = "all"  # int8 files built into the cache: both, so ONNX Runtime rows show the CPU and TensorRT files


def quick(config: BenchConfig) -> BenchConfig:
    """A smoke run: every code path once, minimal repeats."""
    return replace(config, batch_sizes=tuple(b for b in config.batch_sizes if b <= 2) or (1,), warmup=1, repeats=3,
                   frames=8, baseline_frames=2)


def log(message: str) -> None:
    print(f"shfan-bench: {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------ statistics


def spread(samples_ms) -> dict:
    """Median and p10/p90 of timing samples (ms): the median resists the odd slow run. The mean
    is kept for stages that run on some frames only (the pipeline's detector checks)."""
    v = np.asarray(list(samples_ms), np.float64)
    if v.size == 0:
        return {"median_ms": None, "p10_ms": None, "p90_ms": None, "mean_ms": None, "n": 0}
    p10, p50, p90 = np.percentile(v, [10, 50, 90])
    return {"median_ms": round(float(p50), 3), "p10_ms": round(float(p10), 3), "p90_ms": round(float(p90), 3),
            "mean_ms": round(float(v.mean()), 3), "n": int(v.size)}


def per_face(stages: dict, batch: int) -> dict:
    """Per-face cost and throughput of one batch row, from its stage medians."""
    total = sum(s["median_ms"] for s in stages.values() if s["median_ms"] is not None)
    return {"batch_ms": round(total, 3), "per_face_ms": round(total / batch, 3),
            "faces_per_s": round(1000.0 * batch / total, 1) if total > 0 else None}


def speedup(fps: float | None, baseline_fps: float | None) -> float | None:
    if not fps or not baseline_fps:
        return None
    return round(fps / baseline_fps, 2)


def speedup_summary(results: list[dict], baseline: dict | None, default_key: tuple[str, str]) -> dict:
    """shfan pipeline FPS / baseline FPS for the default configuration and the fastest one."""
    base_fps = (baseline or {}).get("fps")
    with_fps = [r for r in results if (r.get("pipeline") or {}).get("fps")]

    def entry(r):
        fps = r["pipeline"]["fps"]
        return {"backend": r["backend"], "precision": r["precision"], "decoder": r["decoder"], "fps": fps,
                "baseline_fps": base_fps, "ratio": speedup(fps, base_fps)}

    default = next((r for r in with_fps if (r["backend"], r["precision"]) == default_key), None)
    fastest = max(with_fps, key=lambda r: r["pipeline"]["fps"], default=None)
    out = {"goal": SPEEDUP_GOAL, "default": entry(default) if default else None,
           "fastest": entry(fastest) if fastest else None}
    ratio = (out["default"] or {}).get("ratio")
    out["meets_goal"] = None if ratio is None else bool(ratio >= SPEEDUP_GOAL)
    return out


def timed(fn: Callable, *args):
    """(result, elapsed ms)."""
    t0 = time.perf_counter()
    out = fn(*args)
    return out, (time.perf_counter() - t0) * 1000.0


# ------------------------------------------------------------------------------ machine


def _meminfo_gib(text: str | None) -> float | None:
    for line in (text or "").splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 2**20, 1)
    return None


def cpu_model(cpuinfo: str | None) -> str | None:
    """'model name' (x86) or 'Model'/'Hardware' (ARM) from /proc/cpuinfo."""
    for key in ("model name", "Model", "Hardware"):
        for line in (cpuinfo or "").splitlines():
            if line.split(":")[0].strip() == key and ":" in line:
                return line.split(":", 1)[1].strip()
    return None


def _dist_and_version(probes, dists) -> str | None:
    """'onnxruntime-gpu 1.24.4': which of the interchangeable distributions, and its version."""
    from shfan import doctor

    dist, version = doctor.first_version(probes, dists)
    return f"{dist} {version}" if dist else None


def machine_details(probes=None) -> dict:
    """The facts a reader needs to compare numbers: CPU, cores, RAM, versions, GPU, TensorRT,
    and the load average (another process on the cores slows every number here)."""
    from shfan import __version__, doctor

    probes = probes or doctor.Probes()
    jetson = doctor.jetson_model(probes)
    gpus = doctor.gpus(probes, jetson)
    trt_version, _ = doctor.tensorrt_version(probes)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "cpu": cpu_model(probes.read_text("/proc/cpuinfo")) or platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "ram_gib": _meminfo_gib(probes.read_text("/proc/meminfo")),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "shfan": __version__,
        "numpy": np.__version__,
        "onnxruntime": _dist_and_version(probes, doctor.ONNXRUNTIME_DISTS),
        "opencv": _dist_and_version(probes, doctor.OPENCV_DISTS),
        "torch": probes.dist_version("torch"),
        "gpu": ", ".join(f"{name} (sm_{sm})" if sm else name for name, sm in gpus) or None,
        "jetson": jetson,
        "tensorrt": trt_version,
        "load_average_1m": round(load[0], 2) if load else None,
    }


# ------------------------------------------------------------------------------ models


@dataclass
class ModelSource:
    """What --model names: a build folder (used as is), an ONNX file or a checkpoint (built)."""

    kind: str  # build | onnx | weights
    path: Path


def resolve_model(model=None) -> ModelSource:
    """--model, else the shipped default (its ONNX, else its checkpoint)."""
    if model is None:
        from shfan.weights import DEFAULT_CHECKPOINT, DEFAULT_ONNX

        for kind, path in (("onnx", DEFAULT_ONNX), ("weights", DEFAULT_CHECKPOINT)):
            if Path(path).is_file():
                return ModelSource(kind, Path(path))
        raise BenchError(f"the default model {DEFAULT_ONNX} is missing from this install; pass --model PATH "
                         "(.onnx, checkpoint or shfan-build folder)")
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
    if config.cache_dir:
        return Path(config.cache_dir)
    from shfan.runtime.detector import cache_dir

    return cache_dir() / "bench"


def _file_key(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:12]


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
    from shfan.builder.pipeline import BuildOptions, build
    from shfan.builder.progress import Stages

    target = "" if config.target == "tensorrt" else f"-{config.target}"
    out = bench_cache_dir(config) / f"{source.path.stem}-{_file_key(source.path)}-{precision}-{decoder}{target}"
    opts = BuildOptions(weights=str(source.path) if source.kind == "weights" else None,
                        onnx=str(source.path) if source.kind == "onnx" else None, precision=precision,
                        calib_data=config.calib_data, max_calib=config.max_calib, calib_method=config.calib_method,
                        decoder=decoder, max_batch=max_batch, out=out, target=config.target)
    log(f"building {precision} ONNX files into {out} (once; reused while the inputs are unchanged)")
    build(opts, Stages(lambda line: print(f"  {line}", file=sys.stderr, flush=True)))
    return out


def calibration_note(folder: Path) -> dict:
    """Where the int8 ranges came from, read back from the build's manifest."""
    from shfan.runtime.backend import read_manifest

    calib = read_manifest(folder).get("calibration") or {}
    return {"source": calib.get("source"), "fallback": calib.get("fallback"),
            "faces": calib.get("calibration_faces"), "method": calib.get("method")}


def available_precisions(folder: Path, wanted) -> tuple[list[str], list[str]]:
    from shfan.runtime.backend import read_manifest

    have = read_manifest(folder).get("artifacts") or {}
    return [p for p in wanted if p in have], [p for p in wanted if p not in have]


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


# ------------------------------------------------------------------------------ one configuration


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
    from shfan.runtime.backend import open_backend
    from shfan.runtime.pipeline import Pipeline

    label = f"{case.backend} {case_precision(case.precision, case.target)} ({case.decoder})"
    backend = open_backend(case.model, case.backend, case.precision, threads=config.threads)
    try:
        batches = {}
        for b in config.batch_sizes:
            log(f"{label}: batch {b}")
            batches[str(b)] = time_batch(backend, faces, b, config.warmup, config.repeats)
    finally:
        backend.close()
    log(f"{label}: pipeline on {len(frames)} demo frames")
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
            log(f"{case.backend} {case.precision} ({case.decoder}) skipped: {exc}")
            failed.append({"backend": case.backend, "precision": case.precision, "decoder": case.decoder,
                           "reason": str(exc)})
    return results, failed


def case_precision(precision: str, target: str | None) -> str:
    """'int8 (cpu file)' for the rows of the two int8 files, else the precision."""
    return f"{precision} ({target} file)" if target else precision


def ort_cases(folder: Path, precisions) -> tuple[list[Case], list[dict]]:
    """One ONNX Runtime case per precision; int8 gets one per file in the folder: the CPU file
    (what the runtime picks, first) and the TensorRT-style file, run by path."""
    from shfan.runtime.backend import read_manifest

    have, missing = available_precisions(folder, precisions)
    artifacts = read_manifest(folder).get("artifacts") or {}
    cases = []
    for p in have:
        entry = artifacts[p]
        if p != "int8":
            cases.append(Case("onnxruntime", p, "host subpixel", folder))
            continue
        if entry.get("target") == "cpu" or entry.get("cpu"):
            cases.append(Case("onnxruntime", p, "host subpixel", folder, target="cpu"))
        if entry.get("target") != "cpu":
            trt_file = folder / entry["onnx"]
            cases.append(Case("onnxruntime", p, "host subpixel", trt_file if entry.get("cpu") else folder,
                              target="tensorrt"))
    skipped = [{"backend": "onnxruntime", "precision": p, "reason": f"{folder} has no {p} model"} for p in missing]
    return cases, skipped


def tensorrt_cases(source: ModelSource, config: BenchConfig) -> tuple[list[Case], list[dict]]:
    """TensorRT fp16/int8 with the plugin decoder and the ONNX-ops decoder, when TensorRT is
    importable; one engine build per combination (cached)."""
    from shfan.runtime.trt_backend import tensorrt_available

    if not config.tensorrt:
        return [], [{"backend": "tensorrt", "reason": "--no-tensorrt"}]
    if not tensorrt_available():
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


# ------------------------------------------------------------------------------ baseline


def fa_center_scale(box, reference_scale: float = 195.0) -> tuple[np.ndarray, float]:
    """face-alignment's crop parameters from a detector box: centre moved up 12% of the box
    height, scale = (w + h) / 195 (a 200 * scale px square maps onto the 256 px input)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    center = np.array([x1 - (x1 - x0) / 2.0, y1 - (y1 - y0) / 2.0])
    center[1] -= (y1 - y0) * 0.12
    return center, (x1 - x0 + y1 - y0) / reference_scale


def fa_transform(point, center, scale: float, resolution: float, invert: bool = False) -> np.ndarray:
    """face-alignment's image <-> crop map (integer result, as it rounds)."""
    h = 200.0 * scale
    t = np.eye(3)
    t[0, 0] = t[1, 1] = resolution / h
    t[0, 2] = resolution * (-center[0] / h + 0.5)
    t[1, 2] = resolution * (-center[1] / h + 0.5)
    if invert:
        t = np.linalg.inv(t)
    return (t @ np.array([point[0], point[1], 1.0]))[:2].astype(np.int64)


def fa_crop(image: np.ndarray, center, scale: float, resolution: int = 256) -> np.ndarray:
    """face-alignment's crop: copy the (zero-padded) square into a new image, then resize."""
    import cv2

    ul = fa_transform([1, 1], center, scale, resolution, True)
    br = fa_transform([resolution, resolution], center, scale, resolution, True)
    ht, wd = image.shape[:2]
    out = np.zeros((br[1] - ul[1], br[0] - ul[0], image.shape[2]), np.uint8)
    new_x = (max(1, -ul[0] + 1), min(br[0], wd) - ul[0])
    new_y = (max(1, -ul[1] + 1), min(br[1], ht) - ul[1])
    old_x = (max(1, ul[0] + 1), min(br[0], wd))
    old_y = (max(1, ul[1] + 1), min(br[1], ht))
    if new_x[1] >= new_x[0] and new_y[1] >= new_y[0]:
        out[new_y[0] - 1:new_y[1], new_x[0] - 1:new_x[1]] = image[old_y[0] - 1:old_y[1], old_x[0] - 1:old_x[1]]
    return cv2.resize(out, (resolution, resolution), interpolation=cv2.INTER_LINEAR)


def fa_points_to_image(points_hm: np.ndarray, center, scale: float, heatmap_size: int) -> np.ndarray:
    """Heatmap-cell points back to image px through the inverse crop map (face-alignment
    rounds here; we keep the fraction, which costs the same)."""
    h = 200.0 * scale
    return center + (points_hm / heatmap_size - 0.5) * h


class FaceAlignmentBaseline:
    """face-alignment's per-frame path: detect every frame, centre/scale crop, FAN eager in
    PyTorch one face at a time, argmax +-0.25 decoding. Default FAN-4 (4 stacks, 256 ch, 256 px)."""

    description = ("face-alignment-style: YuNet on every frame, centre/scale crop, FAN-4 (4 stacks x 256 ch, "
                   "256 px) PyTorch eager, one face per forward, argmax +-0.25 decoding")

    def __init__(self, detector, weights=None, stacks: int = 4, width: int = 256, input_size: int = 256):
        import torch

        from shfan.model import FAN, ModelConfig, load_checkpoint

        self.torch = torch
        if weights:
            self.model = load_checkpoint(weights)
        else:
            torch.manual_seed(0)
            self.model = FAN(ModelConfig(stacks=stacks, width=width, input_size=input_size))
        self.model.eval()
        self.input_size = self.model.config.input_size
        self.detector = detector

    def process(self, image: np.ndarray) -> dict[str, float]:
        """One frame -> {stage: ms}."""
        from shfan import codec

        ms = dict.fromkeys(("detect", "preprocess", "infer", "decode", "postprocess"), 0.0)
        dets, ms["detect"] = timed(self.detector.detect_faces, image)
        for det in dets:
            t0 = time.perf_counter()
            center, scale = fa_center_scale(det.box)
            crop = fa_crop(image, center, scale, self.input_size)
            inp = self.torch.from_numpy(crop.transpose(2, 0, 1)).float().div_(255.0).unsqueeze_(0)
            t1 = time.perf_counter()
            with self.torch.inference_mode():
                heatmaps = self.model(inp).numpy()
            t2 = time.perf_counter()
            points, _ = codec.decode(heatmaps, "fan")
            t3 = time.perf_counter()
            fa_points_to_image(points[0], center, scale, heatmaps.shape[-1])
            t4 = time.perf_counter()
            for stage, a, b in (("preprocess", t0, t1), ("infer", t1, t2), ("decode", t2, t3), ("postprocess", t3, t4)):
                ms[stage] += (b - a) * 1000.0
        ms["total"] = sum(ms.values())
        return ms


def run_baseline(detector, frames, config: BenchConfig) -> dict:
    """Baseline FPS and stage spreads on the first `baseline_frames` of the same frames."""
    log(f"baseline: FAN-4 PyTorch eager on {config.baseline_frames} frames (slow by design)")
    baseline = FaceAlignmentBaseline(detector, config.baseline_weights)
    frames = frames[:max(1, config.baseline_frames)]
    for frame in frames[:1]:
        baseline.process(frame)  # warm-up: first-call allocations
    rows = []
    t0 = time.perf_counter()
    for frame in frames:
        rows.append(baseline.process(frame))
    wall = time.perf_counter() - t0
    return {"description": baseline.description,
            "weights": str(config.baseline_weights) if config.baseline_weights else "random (speed only)",
            "torch_threads": baseline.torch.get_num_threads(), "frames": len(frames),
            "fps": round(len(frames) / wall, 3),
            "stages": {s: spread(r[s] for r in rows) for s in (*BATCH_STAGES, "detect", "total")}}


# ------------------------------------------------------------------------------ the run


def default_precision(source: ModelSource, folder: Path) -> str:
    """What shfan-run would use: a build folder's selected precision, else fp32."""
    if source.kind != "build":
        return "fp32"
    from shfan.runtime.backend import read_manifest

    return read_manifest(folder).get("selected_precision") or "fp32"


def _default_threads() -> int:
    from shfan.runtime.ort_backend import physical_cores

    return min(physical_cores(), 8)


def validate(config: BenchConfig) -> None:
    bad = [p for p in config.precisions if p not in ORT_PRECISIONS]
    if bad or not config.precisions:
        raise BenchError(f"unknown precision {', '.join(bad) or '(none)'}; choose from {', '.join(ORT_PRECISIONS)}")
    if not config.batch_sizes or any(b < 1 or b > 64 for b in config.batch_sizes):
        raise BenchError("--batch-sizes must be integers from 1 to 64, e.g. 1,2,4,8")
    if config.repeats < 1 or config.warmup < 0 or config.frames < 1 or config.baseline_frames < 1:
        raise BenchError("--repeats, --frames and --baseline-frames must be >= 1 and --warmup >= 0")
    from shfan.builder.precision import TARGETS

    if config.target not in TARGETS:
        raise BenchError(f"unknown --target {config.target!r}; choose {', '.join(TARGETS)}")
    if config.baseline_weights and not Path(config.baseline_weights).is_file():
        raise BenchError(f"--baseline-weights {config.baseline_weights}: no such checkpoint")


def run(config: BenchConfig) -> dict:
    """The whole benchmark -> one JSON-ready dict."""
    validate(config)
    t_start = time.perf_counter()
    source = resolve_model(config.model)
    detector = open_detector(config)  # before the build: a missing detector fails fast
    folder, build_s = timed(build_folder, source, config, build_precision_choice(config.precisions))
    from shfan.runtime.backend import read_manifest

    manifest = read_manifest(folder)
    log(f"rendering {config.frames} demo frames; detecting faces")
    frames = demo_frames(max(config.frames, config.baseline_frames))
    faces, detect = detect_all(detector, frames)
    cases, skipped = ort_cases(folder, config.precisions)
    trt_cases, trt_skipped = tensorrt_cases(source, config)
    results, failed = run_cases(cases + trt_cases, faces, frames[:config.frames], detector, config)
    baseline = run_baseline(detector, frames, config) if config.baseline else None
    default_key = ("onnxruntime", default_precision(source, folder))
    return {
        "tool": "shfan-bench",
        "machine": machine_details(),
        "settings": {"batch_sizes": list(config.batch_sizes), "warmup": config.warmup, "repeats": config.repeats,
                     "frames": config.frames, "baseline_frames": config.baseline_frames,
                     "threads": config.threads or _default_threads(), "statistic": "median, p10/p90",
                     "int8_target": config.target},
        "model": {"source": str(source.path), "kind": source.kind, "build": str(folder),
                  "config": manifest.get("model_config"), "calibration": calibration_note(folder),
                  "int8_kept_out": ((manifest.get("artifacts") or {}).get("int8") or {}).get("excluded_layers"),
                  "int8_cpu_kept_out": ((((manifest.get("artifacts") or {}).get("int8") or {}).get("cpu") or {})
                                        .get("excluded_layers"))},
        "frames": {"source": "demo", "count": config.frames, "size": list(FRAME_SIZE), "with_face": len(faces)},
        "detect": detect,
        "results": results,
        "skipped": skipped + trt_skipped + failed,
        "baseline": baseline,
        "speedup": speedup_summary(results, baseline, default_key),
        "elapsed_s": round(time.perf_counter() - t_start, 1),
        "build_s": round(build_s / 1000.0, 1),
    }


# ------------------------------------------------------------------------------ tables


def _ms(stage: dict | None) -> str:
    if not stage or stage.get("median_ms") is None:
        return "—"
    return f"{stage['median_ms']:.2f} ({stage['p10_ms']:.1f}–{stage['p90_ms']:.1f})"


def _mean(stage: dict | None) -> str:
    return "—" if not stage or stage.get("mean_ms") is None else f"{stage['mean_ms']:.2f}"


def stage_rows(report: dict) -> list[list[str]]:
    """One row per backend/precision/batch: stage medians (p10–p90), ms per face, faces/s."""
    rows = []
    for r in report["results"]:
        for b, row in r["batches"].items():
            s = row["stages"]
            rows.append([r["backend"], case_precision(r["precision"], r.get("target")), r["decoder"], b, *(_ms(s[k]) for k in BATCH_STAGES),
                         f"{row['per_face_ms']:.2f}", f"{row['faces_per_s'] or 0:.0f}"])
    return rows


def pipeline_rows(report: dict) -> list[list[str]]:
    """One row per configuration plus the baseline: FPS, stage medians, ratio to baseline."""
    base = report.get("baseline") or {}
    rows = []
    for r in report["results"]:
        p = r["pipeline"]
        ratio = speedup(p["fps"], base.get("fps"))
        rows.append([f"shfan {r['backend']} {case_precision(r['precision'], r.get('target'))} ({r['decoder']})",
                     f"{p['fps']:.1f}",
                     *(_mean(p["stages"][k]) for k in PIPELINE_STAGES), f"{p['faces']}/{p['detector_runs']}",
                     f"{ratio:.1f}x" if ratio else "—"])
    if base:
        rows.append(["baseline FAN-4 eager", f"{base['fps']:.2f}", *(_mean(base["stages"][k]) for k in PIPELINE_STAGES),
                     f"—/{base['frames']}", "1.0x"])
    return rows


def print_tables(report: dict, console) -> None:
    from rich.table import Table

    m = report["machine"]
    console.print(f"[bold]shfan-bench[/] on {m['cpu']} ({m['cores']} cores, {m['ram_gib']} GiB), "
                  f"{m['onnxruntime']}, torch {m['torch'] or '—'}, GPU {m['gpu'] or 'none'}, "
                  f"TensorRT {m['tensorrt'] or 'none'}, load {m['load_average_1m']}")
    stages = Table(title="Stages per batch: median ms (p10–p90)")
    for col in ("backend", "precision", "decoder", "batch", *BATCH_STAGES, "ms/face", "faces/s"):
        stages.add_column(col, justify="left" if col in ("backend", "precision", "decoder") else "right")
    for row in stage_rows(report):
        stages.add_row(*row)
    stages.caption = f"detect (YuNet, 640x480 frame): {_ms(report['detect'])} ms per frame"
    console.print(stages)
    pipe = Table(title=f"Pipeline on {report['frames']['count']} demo frames (tracking on): mean ms per frame")
    for col in ("configuration", "FPS", *PIPELINE_STAGES, "faces/detections", "vs baseline"):
        pipe.add_column(col, justify="left" if col == "configuration" else "right")
    for row in pipeline_rows(report):
        pipe.add_row(*row)
    console.print(pipe)
    for line in summary_lines(report):
        console.print(line, highlight=False, markup=False)


def summary_lines(report: dict) -> list[str]:
    lines = []
    sp = report["speedup"]
    for key in ("default", "fastest"):
        e = sp.get(key)
        if e and e["ratio"]:
            lines.append(f"speedup ({key}: {e['backend']} {e['precision']}): {e['fps']:.1f} FPS vs baseline "
                         f"{e['baseline_fps']:.2f} FPS = {e['ratio']:.1f}x (goal >= {sp['goal']:.0f}x)")
    for r in report["results"]:
        p = r["pipeline"]
        if p["faces"] == 0:
            lines.append(f"{r['backend']} {case_precision(r['precision'], r.get('target'))}: the tracker kept no face (landmark scores below its "
                         "min_score: an untrained model?), so the detector ran on every frame: "
                         "this FPS is the no-tracking worst case")
    cal = report["model"]["calibration"]
    if any(r["precision"] == "int8" for r in report["results"]):
        origin = "built-in fallback face" if cal.get("fallback") else cal.get("source")
        kept = report["model"].get("int8_kept_out") or []
        lines.append(f"int8 calibrated on {cal.get('faces')} faces from {origin} ({cal.get('method')}); "
                     f"kept out of int8 by the accuracy guard: {', '.join(kept) or 'nothing'}")
        if report["model"].get("int8_cpu_kept_out") is not None:
            kept = report["model"]["int8_cpu_kept_out"]
            lines.append(f"int8 (cpu file): ONNX Runtime's integer kernels; kept in fp32 by the accuracy guard: "
                         f"{', '.join(kept) or 'nothing'}")
    for s in report["skipped"]:
        what = " ".join(str(s[k]) for k in ("backend", "precision", "decoder") if s.get(k))
        lines.append(f"skipped {what}: {s['reason']}")
    return lines
