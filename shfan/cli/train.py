"""shfan-train: train FAN / SH-FAN on 300-W style folders or WFLW annotation files."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from shfan.cli.common import (Parser, entry, existing_path, fail, nonneg_float, nonneg_int, open_fraction,
                               positive_float, positive_int, writable_dir)


def build_parser():
    ap = Parser(prog="shfan-train", description=__doc__)
    ap.add_argument("--data", required=True, action="append", metavar="PATH", type=existing_path,
                    help="training dataset (300-W folder or annotation file); repeatable: each gets its own "
                         "seeded validation split, reported per subset")
    ap.add_argument("--extra-data", action="append", default=[], metavar="PATH", type=existing_path,
                    help="more training data, all of it trained on (no validation split); repeatable")
    ap.add_argument("--format", default="300w", choices=["300w", "wflw"], help="dataset format")
    ap.add_argument("--val-data", type=existing_path, help="validation dataset; default: a held-out part of --data")
    ap.add_argument("--val-fraction", type=open_fraction, default=0.1, help="share of --data held out for validation")
    ap.add_argument("--test-data", type=existing_path, help="dataset scored once at the end (never used for choices)")
    ap.add_argument("--out", default="runs/train", type=writable_dir, help="run folder (checkpoints, history)")
    ap.add_argument("--stacks", type=positive_int, default=2)
    ap.add_argument("--width", type=positive_int, default=128)
    ap.add_argument("--input-size", type=positive_int, default=128)
    ap.add_argument("--sigma", type=positive_float, default=None, help="target Gaussian sigma (heatmap px)")
    ap.add_argument("--epochs", type=positive_int, default=40)
    ap.add_argument("--time-budget", type=positive_float, metavar="MINUTES",
                    help="fit the schedule to this wall time: a probe measures the step time and the "
                         "cosine schedule (warm-up, epochs) is sized to end within the budget; --epochs is ignored")
    ap.add_argument("--augment", default="hard", choices=sorted(augment_presets()),
                    help="training augmentation: hard (in-the-wild: large roll, box errors, occluders, blur, "
                         "low light, noise, JPEG, grayscale) or mild (the first default model's)")
    ap.add_argument("--batch-size", type=positive_int, default=16)
    ap.add_argument("--lr", type=positive_float, default=1e-3)
    ap.add_argument("--consistency", type=nonneg_float, default=0.1, help="Siamese consistency weight (0 = off)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device-augment", default="auto", choices=["auto", "on", "off"],
                    help="make the training views on the device in batches (auto: on CUDA, where per-face CPU "
                         "augmentation starves the GPU)")
    ap.add_argument("--workers", type=nonneg_int, default=0, help="DataLoader worker processes (0: augment in the training process)")
    ap.add_argument("--threads", type=positive_int, default=2, help="torch CPU threads")
    ap.add_argument("--val-every", type=positive_int, default=2, help="validate every N epochs")
    ap.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    ap.add_argument("--init", metavar="CHECKPOINT",
                    help="fine-tune: start from these weights ('default' or 'compact': the shipped model) with a fresh "
                         "schedule; the architecture comes from the checkpoint")
    ap.add_argument("--no-tune", action="store_true", help="skip tuning the decoder on validation")
    return ap


def augment_presets():
    from shfan.augment import PRESETS

    return PRESETS


@entry
def main(argv=None):
    ap = build_parser()
    args = ap.parse_args(argv)
    out = Path(args.out)
    try:
        import torch  # noqa: F401
    except ImportError:
        fail("shfan-train needs PyTorch: pip install 'shfan[torch]' (torch==2.13.0 on CPU)")

    from shfan import codec, evaluate
    from shfan import model as fan_model
    from shfan import train as trainer
    from shfan.datasets import read_dataset
    from shfan.errors import ShfanError

    try:
        train_s, val_s, val_names = [], [], []
        for data in args.data:
            samples = read_dataset(data, args.format)
            if args.val_data:
                train_s += samples
                continue
            fit, held_out = trainer.split_validation(samples, args.val_fraction, args.seed)
            val_s += held_out
            val_names += [Path(data).name] * len(held_out)
            train_s += fit
        if args.val_data:
            val_s = read_dataset(args.val_data, args.format)
            val_names = [Path(args.val_data).name] * len(val_s)
        for extra in args.extra_data:
            train_s = train_s + read_dataset(extra, args.format)
        test_s = read_dataset(args.test_data, args.format) if args.test_data else None
        init_state = None
        if args.init:
            init_model = fan_model.load_checkpoint(_init_path(args.init))
            init_state, cfg = init_model.state_dict(), init_model.config
            if cfg.landmarks != len(train_s[0].points):
                fail(f"--init {args.init} predicts {cfg.landmarks} landmarks but the data has "
                     f"{len(train_s[0].points)}; train from scratch (drop --init)")
        else:
            cfg = fan_model.ModelConfig(stacks=args.stacks, width=args.width, landmarks=len(train_s[0].points),
                                        input_size=args.input_size,
                                        sigma=args.sigma if args.sigma else codec.DEFAULT_SIGMA)
        if len(train_s) < args.batch_size:  # before the run folder exists: a failed run leaves nothing
            fail(f"{len(train_s)} training faces are fewer than one batch of {args.batch_size}: lower --batch-size "
                 f"(e.g. --batch-size {max(1, len(train_s))})")
        if not val_s:
            fail("no validation faces: give more --data faces, a larger --val-fraction, or --val-data")
    except (ShfanError, ValueError) as exc:
        fail(str(exc))
    tcfg = trainer.TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                               consistency=args.consistency, seed=args.seed, workers=args.workers,
                               threads=args.threads, val_every=args.val_every,
                               augment=augment_presets()[args.augment], time_budget_min=args.time_budget,
                               device_augment=args.device_augment)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    try:
        best = trainer.train(cfg, tcfg, train_s, val_s, out, resume=args.resume, init_state=init_state, log=log,
                             val_names=val_names)
    except ShfanError as exc:
        fail(str(exc))
    model = fan_model.load_checkpoint(best)
    device = torch.device("cpu")
    report = {"checkpoint": str(best), "config": model.config.to_dict()}
    if not args.no_tune:
        report.update(trainer.tune_and_save(best, val_s, device))
        model = fan_model.load_checkpoint(best)
    if test_s:
        summary, _ = evaluate.score(trainer.torch_infer(model, device), test_s, cfg.input_size)
        report["test"] = summary
    print(json.dumps(report, indent=1))


def _init_path(name: str) -> Path:
    from shfan import weights

    return weights.resolve("compact" if name == "default" else name, "checkpoint")


if __name__ == "__main__":
    main()
