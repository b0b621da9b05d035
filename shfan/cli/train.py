"""shfan-train: train FAN / SH-FAN on 300-W folders or WFLW, COFW-68 and AFLW-19 annotation files."""

from __future__ import annotations

import json

from shfan.cli.common import (Parser, add_dataclass_options, add_format_options, check_format_args, checked_options,
                               entry, existing_path, options_from, require, writable_dir)


def build_parser():
    from shfan.train import TrainJob

    ap = Parser(prog="shfan-train", description=__doc__, check=check_args)
    ap.add_argument("--data", required=True, action="append", metavar="PATH", type=existing_path,
                    help="training dataset (300-W folder or annotation file); repeatable: each gets its own "
                         "seeded validation split, reported per subset")
    ap.add_argument("--extra-data", action="append", default=[], metavar="PATH", type=existing_path,
                    help="more training data, all of it trained on (no validation split); repeatable")
    ap.add_argument("--extra-weight", action="append", default=[], metavar="W", type=float, dest="extra_weights",
                    help="heatmap loss weight of the Nth --extra-data (default 1; e.g. 0.5 for rough labels); "
                         "repeatable, in --extra-data order")
    add_format_options(ap, "dataset format")
    ap.add_argument("--val-data", type=existing_path, help="validation dataset; default: a held-out part of --data")
    add_dataclass_options(ap, TrainJob, ["val_fraction"])
    ap.add_argument("--test-data", type=existing_path, help="dataset scored once at the end (never used for choices)")
    ap.add_argument("--out", default="runs/train", type=writable_dir, help="run folder (checkpoints, history)")
    add_dataclass_options(ap, TrainJob, ["arch", "stacks", "width", "input_size", "sigma", "epochs", "time_budget", "augment",
                                         "batch_size", "lr", "consistency", "loss", "seed", "split_seed", "device_augment", "precision", "qat",
                                         "workers",
                                         "threads", "val_every", "resume", "init", "tune", "schedule_steps", "segment",
                                         "checkpoint_every"])
    return ap


def check_args(ap, args) -> None:
    check_format_args(ap, args, [("--data", p) for p in args.data] + [("--extra-data", p) for p in args.extra_data]
                      + [("--val-data", args.val_data), ("--test-data", args.test_data)])
    from shfan.train import TrainJob

    checked_options(ap, TrainJob, args)  # TrainJob's own checks (--schedule-steps with --time-budget): exit 2


def job_from_args(args):
    """The TrainJob these options ask for (each option is the field of the same name)."""
    from shfan.train import TrainJob

    return options_from(TrainJob, args)


@entry
def main(argv=None):
    args = build_parser().parse_args(argv)
    require("torch", "shfan-train needs PyTorch: pip install 'shfan[torch]' (torch==2.13.0 on CPU)")
    from shfan import train as trainer

    report = trainer.run(job_from_args(args), progress=None)  # progress bars where stderr is a terminal
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
