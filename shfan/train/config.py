"""What one training run is told: the recipe (TrainConfig), the losses and view modes it can
name, and the error a run that cannot start raises. Light: no torch."""

from __future__ import annotations

from dataclasses import dataclass, field

from shfan import augment, evaluate
from shfan.errors import ShfanError
from shfan.train.precision import PRECISIONS  # TrainConfig.precision: auto | fp32 | bf16

LOSSES = ("mse", "awing")  # TrainConfig.loss (the first, the default): HEATMAP_LOSSES' per-pixel functions
DEVICE_AUGMENT = ("auto", "on", "off")  # TrainConfig.device_augment (the first, the default): views made on the
# device (auto: on CUDA)
QAT = ("off", "cpu")  # TrainConfig.qat: train through the rounding of this int8 file (shfan.train.qat)


class TrainError(ShfanError, ValueError):
    """A training run that cannot start as asked (too few faces, --init of another kind, ...)."""


@dataclass
class TrainConfig:
    epochs: int = 40
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-4
    consistency: float = 0.1  # weight of the Siamese consistency term (0: off, one view per face)
    loss: str = LOSSES[0]  # heatmap loss, one of LOSSES
    seed: int = 0
    workers: int = 0  # augmentation is ~2% of a step; a worker only competes for the 2 cores
    threads: int = 2
    val_every: int = 2
    augment: augment.AugmentConfig = field(default_factory=lambda: augment.HARD)
    time_budget_min: float | None = None  # fit the schedule to this wall time (epochs ignored)
    hard_seed: int | None = evaluate.HARD_SEED  # seed of the hard validation views; None: clean only
    device_augment: str = DEVICE_AUGMENT[0]  # views made on the device in batches: auto (on CUDA) | on | off
    schedule_steps: int | None = None  # fixed cosine horizon (a campaign's, kept across resumed segments)
    segment_min: float | None = None  # stop this run after these minutes at a checkpoint; the schedule goes on
    precision: str = PRECISIONS[0]  # a step's arithmetic: bf16 autocast or fp32 (auto: bf16 where native)
    qat: str = QAT[0]  # off, or the int8 file whose rounding the steps go through (cpu: shfan.train.qat)
    checkpoint_min: float = 10.0  # also save last.pt inside an epoch this often (resume continues at that batch)
