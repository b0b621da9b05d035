"""Timing statistics (median and p10/p90 spread, per-face cost, speedup against the baseline)
and the machine facts a reader needs to compare numbers. Machine probing goes through
shfan.platform_facts' probes, so a test can feed it fixed /proc files and versions."""

from __future__ import annotations

import os
import platform
import time
from typing import Callable

import numpy as np

SPEEDUP_GOAL = 5.0


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
    from shfan import platform_facts

    dist, version = platform_facts.first_version(probes, dists)
    return f"{dist} {version}" if dist else None


def machine_details(probes=None) -> dict:
    """The facts a reader needs to compare numbers: CPU, cores, RAM, versions, GPU, TensorRT,
    and the load average (another process on the cores slows every number here)."""
    from shfan import __version__, platform_facts

    probes = probes or platform_facts.Probes()
    jetson = platform_facts.jetson_model(probes)
    gpus = platform_facts.gpus(probes, jetson)
    trt_version, _ = platform_facts.tensorrt_version(probes)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "cpu": cpu_model(probes.read_text("/proc/cpuinfo")) or platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "ram_gib": _meminfo_gib(probes.read_text("/proc/meminfo")),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "shfan": __version__,
        "numpy": np.__version__,
        "onnxruntime": _dist_and_version(probes, platform_facts.ONNXRUNTIME_DISTS),
        "opencv": _dist_and_version(probes, platform_facts.OPENCV_DISTS),
        "torch": probes.dist_version("torch"),
        "gpu": ", ".join(f"{name} (sm_{sm})" if sm else name for name, sm in gpus) or None,
        "jetson": jetson,
        "tensorrt": trt_version,
        "load_average_1m": round(load[0], 2) if load else None,
    }
