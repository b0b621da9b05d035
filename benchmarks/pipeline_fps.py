"""shfan-run's FPS with several models side by side: the same source and options, the models
taking turns round by round so machine noise hits each alike; the median FPS of each.

    python benchmarks/pipeline_fps.py compact runs/fast_build --rounds 3 --frames 150 \\
        --detector-model ../shared/models/yunet_s_640_640.onnx

Used for the model issue's rule that `shfan-run --model fast` runs at >= 2x the default's FPS on
the demo source. A model is anything --model takes (a shipped name, a build folder, an .onnx).
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

BIN = Path(sys.executable).parent


def run_once(model: str, args, stats: Path) -> dict:
    cmd = [str(BIN / "shfan-run"), "--source", args.source, "--headless", "-q", "--max-frames", str(args.frames),
           "--model", model, "--stats-json", str(stats)]
    if args.detector_model:
        cmd += ["--detector-model", args.detector_model]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(stats.read_text())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", help="what shfan-run --model takes")
    ap.add_argument("--source", default="demo")
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--detector-model")
    ap.add_argument("--json", type=Path, help="also write the result here")
    args = ap.parse_args()
    fps = {m: [] for m in args.models}
    infer_ms = {m: [] for m in args.models}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            for m in args.models:
                s = run_once(m, args, Path(tmp) / "s.json")
                fps[m].append(s["fps"])
                infer_ms[m].append(s["stages"]["infer"]["p50_ms"])
    base = statistics.median(fps[args.models[0]])
    rows = [{"model": m, "fps_median": round(statistics.median(f), 1), "fps_runs": [round(x, 1) for x in f],
             "infer_p50_ms_median": round(statistics.median(infer_ms[m]), 2),
             "vs_first": round(statistics.median(f) / base, 2)} for m, f in fps.items()]
    report = {"machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                          "python": platform.python_version()},
              "source": args.source, "frames": args.frames, "rounds": args.rounds, "rows": rows}
    for r in rows:
        print(json.dumps(r))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
