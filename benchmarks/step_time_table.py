"""The trainer's step-time breakdown from shfan-train run folders, as a Markdown table for
BENCHMARKS.md: per run, ms per optimizer step spent waiting for data (making the views: on the CPU
per face, or on the GPU in batches), in the forward pass (with the loss) and in the backward pass
with the optimizer step, averaged over the steps of its epochs; faces per second; and the GPU's
busy share two ways: the compute share of the step ((forward + backward) / step, since on CUDA the
trainer synchronises between the parts, so data time is GPU idle time) and nvidia-smi's mean
utilization over the run's wall time (loading and validation included) when `NAME.util` is there.

    python benchmarks/step_time_table.py runs/device          (scripts/device_train.sh writes these)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

PARTS = ("data", "forward", "backward")


def breakdown(history: list[dict]) -> dict:
    """Step-weighted mean ms per step of each part over the epochs of one run's history."""
    steps = sum(e.get("steps", 0) for e in history if "ms_per_step" in e)
    if not steps:
        return {}
    ms = {p: sum(e["ms_per_step"][p] * e["steps"] for e in history if "ms_per_step" in e) / steps for p in PARTS}
    ms["step"] = sum(ms[p] for p in PARTS)
    ms["steps"] = steps
    return ms


def mean_utilization(path: Path) -> float | None:
    """Mean of nvidia-smi's utilization.gpu samples (one number per line), or None."""
    if not path.is_file():
        return None
    values = [float(x) for x in path.read_text().split() if x.strip().replace(".", "", 1).isdigit()]
    return sum(values) / len(values) if values else None


def batch_faces(run: Path) -> int | None:
    """Faces per step: the run's batch size (two views each when Siamese), from its last.pt."""
    last = run / "last.pt"
    if not last.is_file():
        return None
    import torch

    cfg = torch.load(last, map_location="cpu", weights_only=False).get("train_config", {})
    return cfg.get("batch_size")


def table(root: Path) -> str:
    rows = ["| run | steps | data ms | forward ms | backward ms | ms / step | faces / s | compute share | "
            "nvidia-smi busy |", "|---|---|---|---|---|---|---|---|---|"]
    for run in sorted(p for p in root.iterdir() if (p / "history.json").is_file()):
        ms = breakdown(json.loads((run / "history.json").read_text()))
        if not ms:
            continue
        batch = batch_faces(run)
        util = mean_utilization(root / f"{run.name}.util")
        rate = f"{1000 * batch / ms['step']:.0f}" if batch else "-"
        busy = f"{util:.0f} %" if util is not None else "-"
        rows.append(f"| {run.name} | {ms['steps']} | {ms['data']:.1f} | {ms['forward']:.1f} | {ms['backward']:.1f} | "
                    f"{ms['step']:.1f} | {rate} | {(ms['forward'] + ms['backward']) / ms['step']:.0%} | {busy} |")
    return "\n".join(rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", type=Path, help="a folder of shfan-train run folders")
    print(table(ap.parse_args().runs))


if __name__ == "__main__":
    main()
