"""Per-stage latency and throughput: running summaries updated per frame, reported at exit
(rich table, JSON).

Memory is bounded for runs of any length (the Jetson service runs for months): mean and max are
exact running values over the whole run, percentiles come from the latest WINDOW frames. (A list
of per-frame timings grew by ~450 B per frame: ~1.2 GB a day at 30 FPS.)"""

from __future__ import annotations

import json
import time
from collections import deque

import numpy as np

STAGES = ("capture", "detect", "preprocess", "infer", "postprocess", "total")
WINDOW = 2048  # frames behind the reported percentiles (~70 s at 30 FPS)


class Stopwatch:
    """Adds elapsed milliseconds of `with sw("stage"):` blocks to a per-frame dict."""

    def __init__(self):
        self.ms: dict[str, float] = {}

    def __call__(self, stage: str):
        return _Lap(self.ms, stage)


class _Lap:
    def __init__(self, ms, stage):
        self.ms, self.stage = ms, stage

    def __enter__(self):
        self.t0 = time.perf_counter()

    def __exit__(self, *exc):
        self.ms[self.stage] = self.ms.get(self.stage, 0.0) + (time.perf_counter() - self.t0) * 1000.0


class RunStats:
    """Frame timings over a run. `total` is the per-frame processing latency (capture wait
    excluded); FPS is frames over wall time from the first to the last frame. Mean and max
    cover the whole run; p50/p95 the latest `window` frames."""

    def __init__(self, window: int = WINDOW):
        self.window = window
        self.count = 0
        self.sums = dict.fromkeys(STAGES, 0.0)
        self.maxima = dict.fromkeys(STAGES, 0.0)
        self.recent = {stage: deque(maxlen=window) for stage in STAGES}
        self.faces = 0
        self.detections = 0
        self.t_first = self.t_last = None

    def add(self, timings: dict[str, float], faces: int, detected: bool):
        now = time.perf_counter()
        if self.t_first is None:
            # The first frame's processing happened before `now`: start the clock there.
            self.t_first = now - (timings.get("total", 0.0) + timings.get("capture", 0.0)) / 1000.0
        self.t_last = now
        self.count += 1
        for stage in STAGES:
            v = float(timings.get(stage, 0.0))
            self.sums[stage] += v
            if v > self.maxima[stage]:
                self.maxima[stage] = v
            self.recent[stage].append(v)
        self.faces += faces
        self.detections += int(detected)

    @property
    def frames(self) -> int:
        return self.count

    def fps(self) -> float:
        if self.frames == 0 or self.t_last is None or self.t_last <= self.t_first:
            return 0.0
        return self.frames / (self.t_last - self.t_first)

    def summary(self, **extra) -> dict:
        stages = {}
        for stage in STAGES:
            if self.count:
                recent = np.fromiter(self.recent[stage], np.float64)
                stages[stage] = {"mean_ms": self.sums[stage] / self.count, "p50_ms": float(np.percentile(recent, 50)),
                                 "p95_ms": float(np.percentile(recent, 95)), "max_ms": self.maxima[stage]}
            else:
                stages[stage] = {"mean_ms": 0.0, "p50_ms": 0.0, "p95_ms": 0.0, "max_ms": 0.0}
        total = stages["total"]["mean_ms"]
        return {"frames": self.frames, "faces": self.faces, "detector_runs": self.detections,
                "fps": round(self.fps(), 2),
                "processing_fps": round(1000.0 / total, 2) if total > 0 else 0.0,
                "percentile_window": min(self.count, self.window),
                "stages": stages, **extra}

    def table(self, summary: dict | None = None):
        """The summary as a rich Table, for the caller (a CLI) to print."""
        from rich.table import Table

        s = summary or self.summary()
        table = Table(title=f"shfan-run: {s['frames']} frames, {s['fps']:.1f} FPS end to end")
        for col in ("stage", "mean ms", "p50 ms", "p95 ms", "max ms"):
            table.add_column(col, justify="left" if col == "stage" else "right")
        for stage, v in s["stages"].items():
            table.add_row(stage, *(f"{v[k]:.2f}" for k in ("mean_ms", "p50_ms", "p95_ms", "max_ms")))
        table.caption = (f"{s['faces']} faces · detector ran on {s['detector_runs']} frames · "
                         f"processing alone {s['processing_fps']:.1f} FPS")
        return table

    def write_json(self, path, summary: dict | None = None):
        """Atomic write (temp file + rename; OutputError naming the file when it fails)."""
        from shfan.io import write_text

        write_text(path, json.dumps(summary or self.summary(), indent=2) + "\n")
