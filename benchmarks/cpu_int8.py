"""CPU int8 (`shfan-build --target cpu|all`) against fp32, side by side in one run, on this CPU.

1. Network latency per face in ONNX Runtime (the runtime's own session settings), batch 1 and
   4, on real face crops: the models take turns round after round (interleaved, the order
   reversed every other round), so background load hits all of them alike; medians, p10-p90
   and the median of the per-round ratios.
2. NME on held-out faces with `shfan-eval` (same crops and metric as BENCHMARKS §3), each file
   of the build folder, and the drift against fp32.
3. `shfan-run --source demo` FPS, the fp32 default model vs the build folder, alternating runs.

    python benchmarks/cpu_int8.py --build build_cpu/ --data ../shared/data/faces68/afw \\
        --detector-model ../shared/models/yunet_s_640_640.onnx --json cpu_int8.json

Run it with nothing else on the cores if you can; BENCHMARKS.md §6 says what else ran."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BIN = Path(sys.executable).parent


def files_of(build: Path) -> dict[str, Path]:
    """label -> ONNX file (heatmap output) of every precision/target in the build folder."""
    from shfan.contracts import BuildManifest

    out = {}
    for (precision, target), artifact in BuildManifest.read(build).artifacts.items():
        label = f"{precision} cpu" if target == "cpu" else "int8 tensorrt-file" if precision == "int8" else precision
        out[label] = build / artifact.onnx
    return out


def stats(v) -> dict:
    v = np.asarray(v)
    return {"median": round(float(np.median(v)), 2), "p10": round(float(np.percentile(v, 10)), 2),
            "p90": round(float(np.percentile(v, 90)), 2), "n": int(v.size)}


def latency(files: dict[str, Path], crops: np.ndarray, batch: int, rounds: int, runs: int, threads=None) -> dict:
    """ms per face; every round runs each model `runs` times back to back, models in turn."""
    from shfan.runtime.backends.onnxruntime.runner import OnnxRuntimeBackend

    backends = {k: OnnxRuntimeBackend(p, threads=threads) for k, p in files.items()}
    x = np.ascontiguousarray(crops[:batch], np.float32)
    for b in backends.values():
        for _ in range(3):
            b.session.run(None, {b.input_name: x})
    per_face = {k: [] for k in backends}
    for r in range(rounds):
        for k in (list(backends) if r % 2 == 0 else list(backends)[::-1]):  # ABBA: no order advantage
            b = backends[k]
            t0 = time.perf_counter()
            for _ in range(runs):
                b.session.run(None, {b.input_name: x})
            per_face[k].append((time.perf_counter() - t0) * 1000.0 / runs / batch)
    ref = next(iter(per_face))
    out = {k: {"ms_per_face": stats(v)} for k, v in per_face.items()}
    for k, v in per_face.items():
        out[k]["speedup_vs_" + ref] = stats(np.asarray(per_face[ref]) / np.asarray(v))  # per-round ratios
    return out


def nme(model: Path | str, data: str, precision: str | None = None) -> dict:
    cmd = [str(BIN / "shfan-eval"), "--model", str(model), "--data", data, "--format", "300w", "--box", "gt", "--json"]
    cmd += ["--precision", precision] if precision else []
    report = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    return {"nme_inter_ocular": report["nme_inter_ocular"], "faces": report["faces"], "precision": report["precision"]}


def run_fps(models: dict[str, str], frames: int, rounds: int, detector: str | None) -> dict:
    """shfan-run on the demo source, the models alternating; fps (wall) and processing_fps."""
    got = {k: {"fps": [], "processing_fps": []} for k in models}
    with tempfile.TemporaryDirectory() as d:
        for r in range(rounds):
            for k in (list(models) if r % 2 == 0 else list(models)[::-1]):
                model = models[k]
                cmd = [str(BIN / "shfan-run"), "--source", "demo", "--headless", "--quiet", "--max-frames", str(frames),
                       "--stats-json", f"{d}/s.json"] + (["--model", model] if model else [])
                cmd += ["--detector-model", detector] if detector else []
                subprocess.run(cmd, check=True, capture_output=True)
                s = json.loads(Path(f"{d}/s.json").read_text())
                got[k]["fps"].append(s["fps"])
                got[k]["processing_fps"].append(s["processing_fps"])
    ref = next(iter(got))
    out = {k: {m: stats(v[m]) for m in v} for k, v in got.items()}
    for k in got:
        out[k]["fps_ratio_vs_" + ref] = stats(np.asarray(got[k]["fps"]) / np.asarray(got[ref]["fps"]))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", type=Path, required=True, help="shfan-build folder with a CPU int8 file")
    ap.add_argument("--data", required=True, help="held-out 300-W folder (latency crops and NME)")
    ap.add_argument("--rounds", type=int, default=15, help="interleaved latency rounds (default 15)")
    ap.add_argument("--runs", type=int, default=4, help="runs per model per round (default 4)")
    ap.add_argument("--run-rounds", type=int, default=3, help="alternating shfan-run rounds (default 3; 0: skip)")
    ap.add_argument("--frames", type=int, default=300, help="demo frames per shfan-run (default 300)")
    ap.add_argument("--detector-model", help="YuNet .onnx for shfan-run")
    ap.add_argument("--no-nme", action="store_true")
    ap.add_argument("--json", type=Path, help="also write the report here")
    args = ap.parse_args(argv)

    from shfan.bench import machine_details
    from shfan.calibration import face_sets

    files = files_of(args.build)
    cfg = json.loads((args.build / "manifest.json").read_text())["model_config"]
    crops = face_sets.load_faces(args.data, cfg["input_size"], 8).crops
    report = {"machine": machine_details(), "build": str(args.build), "files": {k: str(v) for k, v in files.items()}}
    import onnx

    from shfan.calibration import cpu_int8

    report["checks"] = {k: {**{n: v for n, v in cpu_int8.fusion_report(p).items() if n != "ops"},
                            "fp16_tensors": len(cpu_int8.fp16_tensors(onnx.load(str(p))))} for k, p in files.items()}
    for batch in (1, 4):
        print(f"latency, batch {batch} ...", file=sys.stderr, flush=True)
        report[f"latency_batch{batch}"] = latency(files, crops, batch, args.rounds, args.runs)
    if not args.no_nme:
        print("NME ...", file=sys.stderr, flush=True)
        scores = {k: nme(p, args.data) for k, p in files.items()}
        base = next(iter(scores.values()))["nme_inter_ocular"]
        for s in scores.values():
            s["drift_vs_fp32"] = round(s["nme_inter_ocular"] - base, 4)
        report["nme"] = scores
    if args.run_rounds:
        print("shfan-run FPS ...", file=sys.stderr, flush=True)
        report["shfan_run"] = run_fps({"fp32 default": "", "build folder": str(args.build)}, args.frames,
                                      args.run_rounds, args.detector_model)
    report["load_average_after"] = round(__import__("os").getloadavg()[0], 2)
    text = json.dumps(report, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
