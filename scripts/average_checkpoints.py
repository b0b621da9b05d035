"""Maintainer step: average the weights of several checkpoints of one architecture (a "model
soup": snapshots along one fine-tune, or a fine-tune and its parent), written as one checkpoint.

    python scripts/average_checkpoints.py runs/v5/snap/e13.pt runs/v5/snap/e14.pt runs/v5/snap/e15.pt \
        --out runs/v5/soup.pt

Float tensors (weights, BatchNorm running statistics) are averaged, integer ones
(`num_batches_tracked`) taken from the first. With `--data` (shfan-train's folders) the subpixel
decoder is tuned again on their validation split, as shfan-train does at the end of a run. Score
the result like any checkpoint (`benchmarks/paired_validation.py`) before shipping it.

One checkpoint with `--data` is the decoder re-tuning alone: shfan-train tunes the decoder of
best.pt only, so shipping the end of a schedule (last.pt, as model v6 was) goes through here.

    python scripts/average_checkpoints.py runs/v6/last.pt --out runs/v6/e14.pt --data helen_train --data lfpw_train
"""

import argparse
from pathlib import Path

import torch

from shfan import model as fan
from shfan import train
from shfan.datasets import read_dataset
from shfan.errors import DatasetError

ARCHITECTURE = ("stacks", "width", "landmarks", "input_size", "sigma")  # what must match; the decoder need not


def average(paths) -> fan.FAN:
    """The first checkpoint's model with every float tensor replaced by the mean over `paths`."""
    models = [fan.load_checkpoint(p) for p in paths]
    first = models[0]
    shape = {k: getattr(first.config, k) for k in ARCHITECTURE}
    for p, m in zip(paths[1:], models[1:]):
        if {k: getattr(m.config, k) for k in ARCHITECTURE} != shape:
            raise SystemExit(f"error: {p} is not a {shape} model like {paths[0]}: only one architecture averages")
    states = [m.state_dict() for m in models]
    mean = {k: (torch.stack([s[k].float() for s in states]).mean(0).to(v.dtype) if v.is_floating_point() else v)
            for k, v in states[0].items()}
    first.load_state_dict(mean)
    return first


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoints", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--data", action="append", default=[],
                    help="shfan-train --data folder (repeatable): tune the decoder on its validation split")
    args = ap.parse_args()
    if len(args.checkpoints) < 2 and not args.data:
        raise SystemExit("error: give two or more checkpoints to average, or one with --data to re-tune its decoder")
    job = train.TrainJob()  # shfan-train's default split: the faces it validated on
    # read before anything is written: a bad --data folder leaves no untuned checkpoint behind
    try:
        val = [s for d in args.data
               for s in train.split_validation(read_dataset(d, job.format), job.val_fraction, job.held_out_seed)[1]]
    except DatasetError as e:
        raise SystemExit(f"error: {e}") from None
    extra = {"averaged_from": [str(p) for p in args.checkpoints]}
    if len(args.checkpoints) == 1:  # a re-tuning: the weights stay that epoch's (mmap: the metadata without the tensors)
        extra["epoch"] = torch.load(args.checkpoints[0], map_location="cpu", weights_only=False, mmap=True).get("epoch")
    fan.save_checkpoint(average(args.checkpoints), args.out, **extra)
    if val:
        chosen = train.tune_and_save(args.out, val, "cpu")["chosen"]
        print(f"decoder tuned on {len(val)} validation faces: window {chosen['window']}, tau {chosen['temperature']}")
    what = f"the mean of {len(args.checkpoints)} checkpoints" if len(args.checkpoints) > 1 else "its weights as they were"
    print(f"wrote {args.out}: {what}")


if __name__ == "__main__":
    main()
