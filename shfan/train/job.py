"""The shfan-train workflow: TrainJob (the CLI's options as a dataclass), the data split, the
model to start from (scratch, --init, or a resumed OUT/last.pt), and `run(job)`: train, tune the
decoder, score the test set. Light at import: torch loads in the functions that train."""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from shfan import augment, evaluate
from shfan.contracts import ARCHS, DEFAULT_SIGMA, ModelConfig
from shfan.errors import ShfanError
from shfan.options import check_fields, option
from shfan.train.checkpoints import arch_text, read_last
from shfan.train.config import DEVICE_AUGMENT, LOSSES, PRECISIONS, QAT, TrainConfig, TrainError

logger = logging.getLogger("shfan.train")

MIN_SPLIT_FACES = 2  # a --data set split for validation: one face to train on, one held out


def split_validation(samples, fraction: float, seed: int, name: str = "the dataset"):
    """(training, validation) of one dataset folder: a seeded share held out, never trained on.
    helen_train with fraction 0.1, seed 0 gives the 87 faces every default model validated on.
    TrainError when fewer than MIN_SPLIT_FACES faces leave nothing to train on."""
    if len(samples) < MIN_SPLIT_FACES:
        raise TrainError(f"{name}: {len(samples)} face(s); a --data set needs at least {MIN_SPLIT_FACES} (one to "
                         "train on, one held out for validation), or give --val-data")
    order = np.random.default_rng(seed).permutation(len(samples))
    n_val = max(1, int(round(fraction * len(samples))))
    return [samples[i] for i in sorted(order[n_val:])], [samples[i] for i in sorted(order[:n_val])]


@dataclass
class TrainJob:
    """One shfan-train run, with the CLI's defaults; `run(job)` runs it from Python. Paths are
    dataset paths in `format`; each `data` entry gets its own seeded validation split. The recipe
    fields it shares with TrainConfig (train_config()) take their defaults from there: declared once."""

    data: list = field(default_factory=list)
    extra_data: list = field(default_factory=list)  # trained on whole (no validation split)
    extra_weights: list = field(default_factory=list)  # the heatmap loss weight of each extra_data (1.0 if absent)
    format: str = "300w"
    image_root: str | None = None  # images of wflw/aflw19 annotation files
    points_dir: str | None = None  # COFW-68 points folder (cofw68)
    val_data: str | None = None  # validation dataset instead of the held-out shares
    val_fraction: float = option(0.1, "share of --data held out for validation", "fraction")
    test_data: str | None = None  # scored once at the end (never used for choices)
    out: str = "runs/train"
    stacks: int | None = option(None, "hourglass stacks (default 2); with --init, fewer than the checkpoint's keeps "
                                      "its first N stacks (a faster model to fine-tune)", "positive")
    width: int = option(128, range="positive")
    arch: str = option("fan", "network when training from scratch: fan (the compact/accurate hourglass) or fast "
                              "(conv-BN-ReLU residual hourglass, every BatchNorm folds; e.g. --arch fast --stacks 1 "
                              "--width 64: 0.26 GMAC at 128 px)", choices=ARCHS)
    input_size: int | None = option(None, "input crop side in px (default 128); with --init, another size than the "
                                          "checkpoint's fine-tunes its weights at that resolution", "positive")
    sigma: float | None = option(None, "target Gaussian sigma (heatmap px)", "positive")
    epochs: int = option(TrainConfig.epochs, range="positive")
    time_budget: float | None = option(None, "fit the schedule to this wall time: a probe measures the step time and the "
                                     "cosine schedule (warm-up, epochs) is sized to end within the budget; --epochs "
                                     "is ignored", "positive", metavar="MINUTES")
    augment: str = option("hard", "training augmentation: hard (in-the-wild: large roll, box errors, occluders, blur, "
                                  "low light, noise, JPEG, grayscale) or mild (the first default model's)",
                          choices=tuple(sorted(augment.PRESETS)))
    schedule_steps: int | None = option(None, "fix the cosine schedule's length at this many optimizer steps, whatever "
                                               "this run's time: the horizon of a campaign that --resume continues over "
                                               "several --segment runs (--epochs and --time-budget are ignored)",
                                        "positive", metavar="STEPS")
    segment: float | None = option(None, "stop after this many minutes at a checkpoint (validated), the schedule "
                                         "unchanged; continue later with --resume", "positive", metavar="MINUTES")
    checkpoint_every: float = option(TrainConfig.checkpoint_min,
                                     "also save OUT/last.pt every N minutes inside an epoch; --resume continues at "
                                     "that batch, so a killed run loses at most N minutes", "positive", metavar="MINUTES")
    batch_size: int = option(TrainConfig.batch_size, range="positive")
    lr: float = option(TrainConfig.lr, range="positive")
    consistency: float = option(TrainConfig.consistency,
                                "Siamese consistency weight (0 = off: one view per face, half the cost of a step; "
                                "double --batch-size for the same compute)", "nonneg")
    loss: str = option(TrainConfig.loss,
                       "heatmap loss: mse (the paper's) or awing (adaptive wing, Wang et al. 2019: the shipped "
                       "model's, -0.03 NME on clean faces at the same compute; its values are ~23x mse's, so scale "
                       "--consistency with it: 2.3)", choices=LOSSES)
    seed: int = option(TrainConfig.seed)
    split_seed: int | None = option(None, "seed of the validation split (default: --seed); give 0 with another --seed "
                                          "to compare seeds on the same held-out faces", "nonneg")
    device_augment: str = option(TrainConfig.device_augment,
                                 "make the training views on the device in batches (auto: on CUDA, where per-face "
                                 "CPU augmentation starves the GPU)", choices=DEVICE_AUGMENT)
    precision: str = option(TrainConfig.precision,
                            "a training step's arithmetic: bf16 autocast (weights, optimizer and losses stay fp32) "
                            "or fp32; auto: bf16 on CUDA and on CPUs with native bf16 (AMX / AVX512-BF16: 1.9-2.7x "
                            "faster a step on this project's Xeon), else fp32", choices=PRECISIONS)
    qat: str = option(TrainConfig.qat, "quantization-aware fine-tuning: train through the rounding of this int8 file "
                                       "(cpu: ONNX Runtime's, uint8 activations over 99.9th-percentile ranges, 7-bit "
                                       "weights), so its drift from fp32 shrinks; for fine-tuning weights whose int8 "
                                       "file fails shfan-build's guard", choices=QAT)
    workers: int = option(TrainConfig.workers, "DataLoader worker processes (0: augment in the training process)",
                          "nonneg")
    threads: int = option(TrainConfig.threads, "torch CPU threads", "positive")
    val_every: int = option(TrainConfig.val_every, "validate every N epochs", "positive")
    resume: bool = option(False, "continue from OUT/last.pt")
    init: str | None = option(None, "fine-tune: start from these weights ('default' or 'compact': the shipped model) "
                                    "with a fresh schedule; the architecture comes from the checkpoint (--stacks N: its "
                                    "first N stacks)",
                              metavar="CHECKPOINT")
    tune: bool = option(True, "skip tuning the decoder on validation")  # the switch is --no-tune

    def __post_init__(self):
        """One dataset path is accepted where a list is expected (data="helen" is ["helen"], not
        the letters h, e, l, e, n); every option is checked against its declaration."""
        for name in ("data", "extra_data", "extra_weights"):
            value = getattr(self, name)
            if isinstance(value, (str, os.PathLike, int, float)):
                setattr(self, name, [value])
            elif value is None:
                setattr(self, name, [])
        self.validate()

    @property
    def held_out_seed(self) -> int:
        """The validation split's seed: --split-seed, else --seed (the split every run before it had)."""
        return self.seed if self.split_seed is None else self.split_seed

    def train_config(self) -> "TrainConfig":
        """The TrainConfig of this job: the fields of the same name, the augment preset by name."""
        same = ({f.name for f in fields(TrainConfig)} & {f.name for f in fields(self)}) - {"augment"}
        return TrainConfig(**{name: getattr(self, name) for name in same}, augment=augment.PRESETS[self.augment],
                           time_budget_min=self.time_budget, segment_min=self.segment,
                           checkpoint_min=self.checkpoint_every)

    def validate(self) -> "TrainJob":
        """TrainError naming the first option outside its declared choices or range (the rules
        shfan-train's options check too), or the two ways of sizing the schedule given together."""
        check_fields(self, TrainError)
        if len(self.extra_weights) > len(self.extra_data):
            raise TrainError(f"{len(self.extra_weights)} --extra-weight for {len(self.extra_data)} --extra-data: give "
                             "one weight per --extra-data, in the same order")
        bad = [w for w in self.extra_weights if not 0 < w <= 10]
        if bad:
            raise TrainError(f"--extra-weight {bad[0]}: a loss weight is in (0, 10] (1 trains on the folder like on "
                             "--data; 0.5 counts its labels half)")
        if self.schedule_steps and self.time_budget:
            raise TrainError("--schedule-steps fixes the schedule and --time-budget fits it to a time: give one (limit "
                             "this run's time with --segment)")
        return self


def read_job_data(job: TrainJob):
    """(train, validation, validation subset names, test) samples as shfan-train splits them."""
    from shfan.datasets import read_dataset

    def read(path):
        return read_dataset(path, job.format, image_root=job.image_root, points_dir=job.points_dir)

    train_s, val_s, val_names = [], [], []
    for data in job.data:
        samples = read(data)
        if job.val_data:
            train_s += samples
            continue
        fit, held_out = split_validation(samples, job.val_fraction, job.held_out_seed, str(data))
        val_s += held_out
        val_names += [Path(data).name] * len(held_out)
        train_s += fit
    if job.val_data:
        val_s = read(job.val_data)
        val_names = [Path(job.val_data).name] * len(val_s)
    for i, extra in enumerate(job.extra_data):
        weight = job.extra_weights[i] if i < len(job.extra_weights) else 1.0
        samples = read(extra)
        train_s = train_s + (samples if weight == 1.0 else [dataclasses.replace(s, weight=weight) for s in samples])
    test_s = read(job.test_data) if job.test_data else None
    if not train_s:
        raise TrainError("no training faces: give more --data faces (or --extra-data)")
    return train_s, val_s, val_names, test_s


def init_path(name: str) -> Path:
    """--init: 'default' or 'compact' (the shipped model), 'accurate', or a checkpoint path."""
    from shfan import weights

    return weights.resolve("compact" if name == "default" else name, "checkpoint")


def job_model(job: TrainJob, landmarks: int):
    """(ModelConfig, initial state dict or None): a resumed run's from OUT/last.pt (--init is not
    read: its weights were the start of that run, and a campaign's later sessions need not have
    it), else from the --init checkpoint, else the job's sizes."""
    from shfan import model as fan_model

    last = Path(job.out) / "last.pt"
    if job.resume and last.is_file():
        return _resumed_config(job, last, landmarks), None
    if job.init:
        init_model = fan_model.load_checkpoint(init_path(job.init))
        if job.stacks and job.stacks != init_model.config.stacks:
            if job.stacks > init_model.config.stacks:
                raise TrainError(f"--init {job.init} has {init_model.config.stacks} stacks; fine-tuning can keep "
                                 f"fewer (--stacks 1..{init_model.config.stacks}), not add {job.stacks}")
            init_model = fan_model.first_stacks(init_model, job.stacks)
        cfg = init_model.config
        if job.input_size and job.input_size != cfg.input_size:  # fully convolutional: same weights, new size
            cfg = dataclasses.replace(cfg, input_size=job.input_size)
        if cfg.landmarks != landmarks:
            raise TrainError(f"--init {job.init} predicts {cfg.landmarks} landmarks but the data has "
                             f"{landmarks}; train from scratch (drop --init)")
        return cfg, init_model.state_dict()
    return ModelConfig(stacks=job.stacks or 2, width=job.width, landmarks=landmarks, input_size=job.input_size or 128,
                       sigma=job.sigma if job.sigma else DEFAULT_SIGMA, arch=job.arch), None


def _resumed_config(job: TrainJob, last: Path, landmarks: int) -> ModelConfig:
    """The model config stored in OUT/last.pt; TrainError where the job asks for another model
    (for a run started from --init only the sizes given explicitly are compared: the rest came
    from the init, so `--resume` alone continues it)."""
    state = read_last(last)
    cfg = ModelConfig.from_dict(state.get("config") or {})
    asked = {"stacks": job.stacks, "input_size": job.input_size}
    if not (job.init or state.get("from_init")):
        asked.update(stacks=job.stacks or 2, width=job.width, input_size=job.input_size or 128, arch=job.arch)
    if any(v is not None and getattr(cfg, k) != v for k, v in asked.items()) or cfg.landmarks != landmarks:
        wanted = {**cfg.to_dict(), **{k: v for k, v in asked.items() if v is not None}, "landmarks": landmarks}
        raise TrainError(f"{last} is from another model ({arch_text(cfg)}) than this run ({arch_text(wanted)}); "
                         "resume with the options it was trained with, or use another --out")
    return cfg


def run(job: TrainJob, log=logger.info, progress: bool | None = False) -> dict:
    """The shfan-train workflow: read and split the data, build the model (or load `init`),
    train, tune the decoder on validation (`tune`), score `test_data`. Every check that can
    refuse the run comes before the run folder exists. Returns the report shfan-train prints:
    {"checkpoint", "config"[, "decoder_validation_nme", "chosen"][, "test"]}."""
    import torch

    from shfan import model as fan_model
    from shfan.train.trainer import train
    from shfan.train.validation import torch_infer, tune_and_save

    job.validate()  # before any data is read (the job may have changed since it was made)
    if not job.data:
        raise TrainError("no training data: give at least one dataset (--data, TrainJob.data)")
    try:
        train_s, val_s, val_names, test_s = read_job_data(job)
        cfg, init_state = job_model(job, len(train_s[0].points))
    except ValueError as exc:  # ModelConfig's checks; a ShfanError (DatasetError, TrainError) is one line already
        if not isinstance(exc, ShfanError):
            raise TrainError(str(exc)) from None
        raise
    if not val_s:
        raise TrainError("no validation faces: give more --data faces, a larger --val-fraction, or --val-data")
    best = train(cfg, job.train_config(), train_s, val_s, Path(job.out), resume=job.resume, init_state=init_state,
                 log=log, val_names=val_names, progress=progress)
    model = fan_model.load_checkpoint(best)
    device = torch.device("cpu")
    report = {"checkpoint": str(best), "config": model.config.to_dict()}
    if job.tune:
        report.update(tune_and_save(best, val_s, device))
        model = fan_model.load_checkpoint(best)
    if test_s:
        summary, _ = evaluate.score(torch_infer(model, device), test_s, cfg.input_size)
        report["test"] = summary
    return report
