"""SH-FAN training: subpixel Gaussian targets, intermediate supervision, and the paper's
Siamese consistency (two random views of one face must agree once mapped to a common frame).

Runs on CPU (2 cores are enough for the compact default model) or CUDA when present.
Checkpoints carry their config; `--resume` continues from `last.pt` with optimizer state.
With a time budget, the first steps measure the step time and the cosine schedule is fitted to
the minutes given (re-fitted after each epoch, validation time included).

`run(TrainJob(...))` is the whole shfan-train workflow callable from Python (data split, --init,
training, decoder tuning, test score). torch loads in the functions that train, not at import,
so the CLI can build its options (and say that PyTorch is missing) without it.

The modules (every public name is importable from shfan.train, as before the split):
    config       TrainConfig (the recipe), TrainError, LOSSES, DEVICE_AUGMENT
    job          TrainJob (shfan-train's options), the data split, the model to start from, run()
    trainer      train(), Trainer (step, validate, checkpoint, resume, fit)
    schedule     Schedule (warm-up + cosine, the LambdaLR's), RunSchedule (horizon, --time-budget, --segment)
    checkpoints  OUT/last.pt: reading it, AdamW state matched to the parameters by name
    views        SiameseViews (CPU views per face), EpochBatches (CPU or on-device batches)
    losses       heatmap losses (mse, adaptive wing), the Siamese consistency term
    validation   validation NME and decoder tuning, through the pytorch backend's seam
    qat          quantization-aware fine-tuning (--qat cpu): the CPU int8 file's rounding on the model
"""

from __future__ import annotations

import time
from pathlib import Path

from shfan.train.checkpoints import optimizer_state_in_model_order, read_last
from shfan.train.config import DEVICE_AUGMENT, LOSSES, TrainConfig, TrainError
from shfan.train.job import (MIN_SPLIT_FACES, TrainJob, init_path, job_model, logger, read_job_data, run,
                             split_validation)
from shfan.train.losses import HEATMAP_LOSSES, adaptive_wing, consistency_loss, heatmap_loss, squared_error
from shfan.train.schedule import RunSchedule, Schedule, fit_total_steps
from shfan.train.trainer import Trainer
from shfan.train.trainer import train as _train
from shfan.train.validation import load_images, torch_infer, tune_and_save, tune_decoder, validate
from shfan.train.views import EpochBatches, SiameseViews

__all__ = ["DEVICE_AUGMENT", "HEATMAP_LOSSES", "LOSSES", "MIN_SPLIT_FACES", "EpochBatches", "RunSchedule", "Schedule",
           "SiameseViews", "TrainConfig", "TrainError", "TrainJob", "Trainer", "adaptive_wing", "consistency_loss",
           "fit_total_steps", "heatmap_loss", "init_path", "job_model", "load_images", "optimizer_state_in_model_order",
           "read_job_data", "read_last", "run", "split_validation", "squared_error", "torch_infer", "train",
           "tune_and_save", "tune_decoder", "validate"]


def train(model_cfg, cfg: TrainConfig, train_samples, val_samples, out_dir: Path, resume: bool = False,
          init_state: dict | None = None, log=logger.info, val_names: list[str] | None = None,
          progress: bool | None = False) -> Path:
    """Train and return the path of the best checkpoint: shfan.train.trainer.train on this
    module's clock (`shfan.train.time.time`, looked up at each call, so a test can hand the
    trainer a steady clock by replacing `shfan.train.time`)."""
    return _train(model_cfg, cfg, train_samples, val_samples, out_dir, resume=resume, init_state=init_state, log=log,
                  val_names=val_names, progress=progress, clock=time.time)
