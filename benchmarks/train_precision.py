"""Training step time in fp32 and in bf16 autocast (shfan-train --precision) for the zoo's three
recipes, the two precisions taking turns step by step in one run, so that machine load falls on
both alike. Real steps: the trainer's own `Trainer.step` (two Siamese views per face, awing loss,
consistency term, AdamW) on real faces with the hard augmentation, one CPU thread by default.

    python benchmarks/train_precision.py --data ../shared/data/faces68/helen_train [--steps 8] [--json out.json]

bf16 is fast only where the CPU has it natively (AMX / AVX512-BF16: `--precision auto` checks
/proc/cpuinfo); elsewhere expect it slower than fp32, which is why auto stays fp32 there.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
from pathlib import Path

# (name, arch, stacks, width, input px, batch): the campaign recipes of README's model table
RECIPES = [("compact", "fan", 2, 128, 128, 8), ("accurate", "fan", 2, 128, 192, 8), ("fast", "fast", 2, 64, 128, 16)]


def batches(samples, model_cfg, batch_size: int, count: int):
    """`count` real training batches (hard views of the first faces), collated as the trainer's."""
    import torch
    from torch.utils.data import default_collate

    from shfan import augment
    from shfan.train import SiameseViews, load_images

    views = SiameseViews(samples, load_images(samples), model_cfg, augment.HARD, seed=0)
    items = [views[i % len(views)] for i in range(batch_size * count)]
    return [default_collate(items[i * batch_size:(i + 1) * batch_size]) for i in range(count)]


def time_recipe(recipe, samples, steps: int, threads: int) -> dict:
    """Median ms per step of each precision (after one warm-up step each), steps interleaved."""
    import time

    from shfan.contracts import ModelConfig
    from shfan.train import TrainConfig, Trainer

    name, arch, stacks, width, size, batch_size = recipe
    model_cfg = ModelConfig(stacks=stacks, width=width, input_size=size, arch=arch)
    data = batches(samples, model_cfg, batch_size, steps + 1)
    trainers = {}
    with tempfile.TemporaryDirectory() as tmp:
        for precision in ("fp32", "bf16"):
            cfg = TrainConfig(batch_size=batch_size, consistency=2.3, loss="awing", threads=threads,
                              precision=precision, schedule_steps=steps + 1)
            trainers[precision] = Trainer(model_cfg, cfg, Path(tmp) / precision, steps + 1, [], log=lambda _: None)
        times = {p: [] for p in trainers}
        for i, batch in enumerate(data):
            for precision, trainer in trainers.items():
                t = time.perf_counter()
                trainer.step(batch)
                if i:  # the first step of each is a warm-up (oneDNN picks its kernels)
                    times[precision].append(time.perf_counter() - t)
    ms = {p: 1000 * statistics.median(v) for p, v in times.items()}
    return {"model": name, "arch": f"{arch} {stacks}x{width} @{size}px", "batch": batch_size,
            "fp32_ms": round(ms["fp32"]), "bf16_ms": round(ms["bf16"]), "speedup": round(ms["fp32"] / ms["bf16"], 2)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="a 300-W folder: the faces of the batches")
    ap.add_argument("--steps", type=int, default=8, help="timed steps per precision per recipe")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", nargs="+", choices=[r[0] for r in RECIPES])
    ap.add_argument("--json", help="write the rows and the machine here")
    args = ap.parse_args()

    from shfan.datasets import read_300w
    from shfan.train.precision import NATIVE_BF16_FLAGS, cpu_flags

    samples = read_300w(args.data)[:64]
    native = sorted(set(NATIVE_BF16_FLAGS) & cpu_flags())
    print(f"{platform.processor() or platform.machine()}, native bf16 flags: {', '.join(native) or 'none'}; "
          f"{args.threads} thread(s), {args.steps} steps each")
    print("| model | network | batch | fp32 ms/step | bf16 ms/step | speed-up |\n|---|---|---|---|---|---|")
    rows = []
    for recipe in RECIPES:
        if args.only and recipe[0] not in args.only:
            continue
        row = time_recipe(recipe, samples, args.steps, args.threads)
        rows.append(row)
        print(f"| {row['model']} | {row['arch']} | {row['batch']} | {row['fp32_ms']} | {row['bf16_ms']} | "
              f"{row['speedup']}x |", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"native_bf16": native, "threads": args.threads, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
