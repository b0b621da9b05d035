"""SH-FAN training: subpixel Gaussian targets, intermediate supervision, and the paper's
Siamese consistency (two random views of one face must agree once mapped to a common frame).

Runs on CPU (2 cores are enough for the compact default model) or CUDA when present.
Checkpoints carry their config; `--resume` continues from `last.pt` with optimizer state.
With a time budget, the first steps measure the step time and the cosine schedule is fitted to
the minutes given (re-fitted after each epoch, validation time included).

`run(TrainJob(...))` is the whole shfan-train workflow callable from Python (data split, --init,
training, decoder tuning, test score). torch loads in the functions that train, not at import,
so the CLI can build its options (and say that PyTorch is missing) without it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from shfan import augment, evaluate, geometry
from shfan.contracts import ARCHS, DEFAULT_SIGMA, ModelConfig
from shfan.datasets import Sample
from shfan.errors import ShfanError
from shfan.options import check_fields, option

logger = logging.getLogger("shfan.train")


LOSSES = ("mse", "awing")  # TrainConfig.loss (the first, the default): HEATMAP_LOSSES' per-pixel functions
DEVICE_AUGMENT = ("auto", "on", "off")  # TrainConfig.device_augment (the first, the default): views made on the
# device (auto: on CUDA)


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
    checkpoint_min: float = 10.0  # also save last.pt inside an epoch this often (resume continues at that batch)


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
    dataset paths in `format`; each `data` entry gets its own seeded validation split."""

    data: list = field(default_factory=list)
    extra_data: list = field(default_factory=list)  # trained on whole (no validation split)
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
    epochs: int = option(40, range="positive")
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
    checkpoint_every: float = option(10.0, "also save OUT/last.pt every N minutes inside an epoch; --resume continues "
                                           "at that batch, so a killed run loses at most N minutes", "positive",
                                     metavar="MINUTES")
    batch_size: int = option(16, range="positive")
    lr: float = option(1e-3, range="positive")
    consistency: float = option(0.1, "Siamese consistency weight (0 = off: one view per face, half the cost of a "
                                     "step; double --batch-size for the same compute)", "nonneg")
    loss: str = option(LOSSES[0], "heatmap loss: mse (the paper's) or awing (adaptive wing, Wang et al. 2019: the "
                                  "shipped model's, -0.03 NME on clean faces at the same compute; its values are ~23x "
                                  "mse's, so scale --consistency with it: 2.3)", choices=LOSSES)
    seed: int = option(0)
    device_augment: str = option(DEVICE_AUGMENT[0], "make the training views on the device in batches (auto: on CUDA, "
                                                    "where per-face CPU augmentation starves the GPU)",
                                 choices=DEVICE_AUGMENT)
    workers: int = option(0, "DataLoader worker processes (0: augment in the training process)", "nonneg")
    threads: int = option(2, "torch CPU threads", "positive")
    val_every: int = option(2, "validate every N epochs", "positive")
    resume: bool = option(False, "continue from OUT/last.pt")
    init: str | None = option(None, "fine-tune: start from these weights ('default' or 'compact': the shipped model) "
                                    "with a fresh schedule; the architecture comes from the checkpoint (--stacks N: its "
                                    "first N stacks)",
                              metavar="CHECKPOINT")
    tune: bool = option(True, "skip tuning the decoder on validation")  # the switch is --no-tune

    def __post_init__(self):
        """One dataset path is accepted where a list is expected (data="helen" is ["helen"], not
        the letters h, e, l, e, n); every option is checked against its declaration."""
        for name in ("data", "extra_data"):
            value = getattr(self, name)
            if isinstance(value, (str, os.PathLike)):
                setattr(self, name, [value])
            elif value is None:
                setattr(self, name, [])
        self.validate()

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
        fit, held_out = split_validation(samples, job.val_fraction, job.seed, str(data))
        val_s += held_out
        val_names += [Path(data).name] * len(held_out)
        train_s += fit
    if job.val_data:
        val_s = read(job.val_data)
        val_names = [Path(job.val_data).name] * len(val_s)
    for extra in job.extra_data:
        train_s = train_s + read(extra)
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
    (with --init only the sizes given explicitly are compared: the rest came from the init)."""
    saved = _read_last(last).get("config") or {}
    cfg = ModelConfig.from_dict(saved)
    asked = {"stacks": job.stacks, "input_size": job.input_size}
    if not job.init:
        asked.update(stacks=job.stacks or 2, width=job.width, input_size=job.input_size or 128, arch=job.arch)
    if any(v is not None and getattr(cfg, k) != v for k, v in asked.items()) or cfg.landmarks != landmarks:
        wanted = {**cfg.to_dict(), **{k: v for k, v in asked.items() if v is not None}, "landmarks": landmarks}
        raise TrainError(f"{last} is from another model ({_arch(cfg)}) than this run ({_arch(wanted)}); "
                         "resume with the options it was trained with, or use another --out")
    return cfg


def _read_last(last: Path) -> dict:
    """OUT/last.pt as a dict; TrainError (one line) when it is damaged."""
    import torch

    try:
        state = torch.load(last, map_location="cpu", weights_only=False)
    except Exception as exc:  # truncated or not a checkpoint: pickle/zip errors of many kinds
        raise TrainError(f"{last} cannot be read ({type(exc).__name__}); it is damaged: resume from a copy, "
                         "or start afresh without --resume") from None
    if not isinstance(state, dict):
        raise TrainError(f"{last} is not a training checkpoint; start afresh without --resume, or use another --out")
    return state


def optimizer_state_in_model_order(state: dict, model) -> dict:
    """The checkpoint's optimizer state, re-indexed to `model.parameters()` order.

    torch keys an optimizer's state by the parameter's position, but the checkpoint's weights by
    name: when the network's code registers its modules in another order (FAN's stacking code
    was shared with FastFAN in session 10 and each stack's output layers moved after the
    hourglasses), a position-keyed state lands on the wrong tensors and AdamW fails on the first
    step. The saved state_dict lists the parameters in the order of the model that saved them,
    which names each position."""
    names = [name for name, _ in model.named_parameters()]
    saved_order = [k for k in state["state_dict"] if k in set(names)]
    opt_state = state["optimizer"]
    if saved_order == names or len(saved_order) != len(names):
        return opt_state  # same order (or another model: load_state_dict refuses it)
    index_of = {name: i for i, name in enumerate(saved_order)}
    moved = {i: opt_state["state"][index_of[name]] for i, name in enumerate(names)
             if index_of[name] in opt_state["state"]}
    return {**opt_state, "state": moved}


def run(job: TrainJob, log=logger.info, progress: bool | None = False) -> dict:
    """The shfan-train workflow: read and split the data, build the model (or load `init`),
    train, tune the decoder on validation (`tune`), score `test_data`. Every check that can
    refuse the run comes before the run folder exists. Returns the report shfan-train prints:
    {"checkpoint", "config"[, "decoder_validation_nme", "chosen"][, "test"]}."""
    import torch

    from shfan import model as fan_model

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


def load_images(samples):
    return [s.load_image() for s in samples]


class SiameseViews:
    """Each item: two random views of one face with targets and the view-to-view mapping (a
    map-style dataset for torch's DataLoader: __len__ and __getitem__)."""

    def __init__(self, samples, images, model_cfg: ModelConfig, aug: augment.AugmentConfig, seed: int):
        self.samples, self.images, self.cfg, self.aug, self.seed = samples, images, model_cfg, aug, seed
        self.epoch = 0

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        rng = np.random.default_rng((self.seed, self.epoch, i))
        s, img, cfg = self.samples[i], self.images[i], self.cfg
        views = [augment.make_view(rng, img, s.points, s.box, cfg.input_size, self.aug) for _ in range(2)]
        scale = cfg.heatmap_size / cfg.input_size
        out = {}
        for n, (crop, pts, m, perm) in enumerate(views, 1):
            out[f"image{n}"] = crop
            out[f"points{n}"] = pts * scale  # heatmap px, channel order of the view
            out[f"unperm{n}"] = np.argsort(perm)
        m1, m2 = views[0][2], views[1][2]
        # crop-2 px -> crop-1 px, for the consistency term
        out["view2_to_view1"] = geometry.compose(m1, geometry.invert(m2)).astype(np.float32)
        return out


def heatmap_loss(outputs, target, kind: str = "mse"):
    """Sum over the pixels of each heatmap, averaged over faces and landmarks, summed over the
    stacks: squared error (mse) or adaptive wing (awing)."""
    per_pixel = HEATMAP_LOSSES[kind]
    return sum(per_pixel(o, target).sum(dim=(-1, -2)).mean() for o in outputs)


def squared_error(pred, target):
    return (pred - target) ** 2


def adaptive_wing(pred, target, omega=14.0, theta=0.5, epsilon=1.0, alpha=2.1):
    """Adaptive wing loss per pixel (Wang et al., ICCV 2019, eq. 6, their constants): log-like
    near the target where the target is bright (foreground errors weigh more than MSE gives
    them), linear beyond theta; the exponent alpha - y flattens it on the background."""
    import torch

    diff = (pred - target).abs()
    power = alpha - target
    ratio = theta / epsilon
    a = omega / (1 + ratio ** power) * power * ratio ** (power - 1) / epsilon
    c = theta * a - omega * torch.log1p(ratio ** power)
    return torch.where(diff < theta, omega * torch.log1p((diff / epsilon) ** power), a * diff - c)


HEATMAP_LOSSES = dict(zip(LOSSES, (squared_error, adaptive_wing)))


def consistency_loss(h1, h2, batch, model_cfg, scale):
    """L1 distance (heatmap px) between view-1 predictions and view-2 predictions mapped into
    view 1, through the differentiable subpixel decoder."""
    import torch

    from shfan import codec_torch

    p1, _ = codec_torch.decode(h1, "subpixel", model_cfg.window, model_cfg.temperature)
    p2, _ = codec_torch.decode(h2, "subpixel", model_cfg.window, model_cfg.temperature)
    p1 = torch.gather(p1, 1, batch["unperm1"].unsqueeze(-1).expand(-1, -1, 2))
    p2 = torch.gather(p2, 1, batch["unperm2"].unsqueeze(-1).expand(-1, -1, 2))
    t = batch["view2_to_view1"]
    p2_in_1 = (p2 / scale) @ t[:, :, :2].transpose(1, 2) + t[:, :, 2].unsqueeze(1)
    return (p1 - p2_in_1 * scale).abs().sum(-1).mean()


def torch_infer(model, device, method="subpixel"):
    """Predictor for shfan.evaluate from a live PyTorch model: the pytorch backend's infer, so
    training validation decodes exactly as shfan-eval --backend pytorch does."""
    from shfan.torch_backend import TorchBackend

    return TorchBackend(model, device, method).infer


def tune_decoder(model, device, samples, images, windows=(3, 5, 7), temperatures=(3, 6, 9, 12, 16, 24)):
    """Pick window/temperature by validation NME (heatmaps computed once)."""
    import torch

    from shfan import codec, metrics

    cfg = model.config
    crops, mats = evaluate.crops_for(samples, cfg.input_size, images)
    with torch.no_grad():
        hms = np.concatenate([model(torch.from_numpy(c).to(device)).cpu().numpy()
                              for c in evaluate.batched(crops, 16)])
    gt = np.stack([s.points for s in samples])
    scale = cfg.input_size / cfg.heatmap_size
    results = {}
    for method, grid in [("argmax", [(1, 0.0)]), ("fan", [(1, 0.0)]),
                         ("subpixel", [(w, t) for w in windows for t in temperatures])]:
        for w, t in grid:
            pts, _ = codec.decode(hms, method, w, t)
            results[(method, w, t)] = float(metrics.nme_per_face(evaluate.to_image(pts * scale, mats), gt).mean())
    best = min((k for k in results if k[0] == "subpixel"), key=results.get)
    return best[1], best[2], results


def validate(model, device, samples, images, input_size, names=None, hard_seed=None) -> dict:
    """Clean (and hard) validation NME_io, overall and per subset name; FR@10 on the hard set."""
    from shfan import metrics

    gt = np.stack([s.points for s in samples])
    out = {}
    kinds = [("", None)] + ([("hard_", hard_seed)] if hard_seed is not None else [])
    for prefix, seed in kinds:
        pred = evaluate.predict(torch_infer(model, device), samples, input_size, images=images, hard=seed)
        per_face = metrics.nme_per_face(pred, gt, "inter_ocular")
        out[f"val_{prefix}nme_inter_ocular"] = float(per_face.mean())
        if prefix:
            out[f"val_{prefix}fr10"] = float((per_face > 10.0).mean())
        if names is not None and len(set(names)) > 1:
            for name in sorted(set(names)):
                sel = np.array([n == name for n in names])
                out[f"val_{prefix}nme/{name}"] = float(per_face[sel].mean())
    return out


class Schedule:
    """Warm-up (1 epoch, at most 5 % of the run) then cosine to 1 % of the peak over `total`
    steps; `total` may be re-fitted while training (time budgets)."""

    def __init__(self, total: int, steps_per_epoch: int):
        self.total, self.steps_per_epoch = max(1, total), steps_per_epoch

    def __call__(self, step: int) -> float:
        warmup = max(1, min(self.steps_per_epoch, self.total // 20))
        t = min(step, self.total) / self.total
        return min(1.0, (step + 1) / warmup) * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * t)))


def fit_total_steps(budget_s: float, elapsed_s: float, steps_done: int, step_s: float,
                    val_s_per_epoch: float, steps_per_epoch: int) -> int:
    """Total optimizer steps that fit the budget: the time left, less the validations still to
    come (one per epoch at most, and the final one), divided by the measured step time."""
    left = max(0.0, budget_s - elapsed_s)
    per_step = step_s + val_s_per_epoch / max(1, steps_per_epoch)
    return steps_done + max(0, int((left - val_s_per_epoch) / per_step))


def tune_and_save(best: Path, val_samples, device) -> dict:
    """Tune the subpixel decoder on validation and store the choice (and the whole table) in
    the checkpoint, so every backend decodes with it."""
    import dataclasses

    import torch

    from shfan import model as fan_model

    model = fan_model.load_checkpoint(best)
    window, tau, results = tune_decoder(model, device, val_samples, load_images(val_samples))
    model.config = dataclasses.replace(model.config, window=window, temperature=tau)
    saved = torch.load(best, map_location="cpu", weights_only=False)
    extra = {k: v for k, v in saved.items() if k not in ("format", "config", "state_dict", "decoder_tuning")}
    fan_model.save_checkpoint(model, best, decoder_tuning={f"{m}/w{w}/t{t}": v for (m, w, t), v in results.items()},
                              **extra)
    return {"decoder_validation_nme": {f"{m} w={w} tau={t}": round(v, 4) for (m, w, t), v in results.items()},
            "chosen": {"window": window, "temperature": tau}}


def train(model_cfg: ModelConfig, cfg: TrainConfig, train_samples: list[Sample],
          val_samples: list[Sample], out_dir: Path, resume: bool = False, init_state: dict | None = None,
          log=logger.info, val_names: list[str] | None = None, progress: bool | None = False) -> Path:
    """Train and return the path of the best checkpoint (by clean validation NME).

    `init_state` starts from those weights with a fresh optimizer and schedule (fine-tuning);
    `resume` continues OUT/last.pt and wins over it. `val_names` labels each validation face
    with its subset (per-subset NME in the history). `log` gets one line per event (the
    'shfan.train' logger by default); `progress`: a per-epoch bar (None: when stderr is a terminal)."""
    import torch
    from torch.utils.data import DataLoader

    from shfan import codec_torch
    from shfan import model as fan_model

    steps_per_epoch = len(train_samples) // cfg.batch_size  # drop_last
    if steps_per_epoch == 0:  # first: a refused run (train or run) leaves no run folder
        raise TrainError(f"{len(train_samples)} training faces are fewer than one batch of {cfg.batch_size}: lower "
                         f"--batch-size (e.g. --batch-size {max(1, len(train_samples))})")
    t_start = time.time()
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    import cv2

    cv2.setNumThreads(1)  # forked DataLoader workers deadlock on an inherited OpenCV pool
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = fan_model.build(model_cfg).to(device)
    if init_state is not None:
        model.load_state_dict(init_state)  # copied into this model's fp32 tensors
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    out_dir.mkdir(parents=True, exist_ok=True)  # after the checks: a refused run leaves no folder
    plan = Schedule(cfg.schedule_steps or cfg.epochs * steps_per_epoch, steps_per_epoch)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, plan)
    budget_s = cfg.time_budget_min * 60.0 if cfg.time_budget_min and not cfg.schedule_steps else None
    start_epoch, best_nme, history, skip = 0, float("inf"), [], 0
    last = out_dir / "last.pt"
    if resume and last.is_file():
        state = _read_last(last)
        try:
            model.load_state_dict(state["state_dict"])
            opt.load_state_dict(optimizer_state_in_model_order(state, model))
            sched.load_state_dict(state["scheduler"])
            start_epoch, best_nme, history = state["epoch"], state["best_nme"], state["history"]
        except (RuntimeError, KeyError, ValueError, TypeError):
            saved = state.get("config")
            raise TrainError(f"{last} is from another model ({_arch(saved)}) than this run ({_arch(model_cfg)}); "
                             "resume with the options it was trained with, or use another --out") from None
        plan.total = state.get("schedule_total", plan.total)
        skip = min(int(state.get("batch_in_epoch", 0)), steps_per_epoch)
        at = f"epoch {start_epoch}" + (f", batch {skip}" if skip else "")
        log(f"resumed from {last} at {at} (step {sched.last_epoch} of {plan.total})")

    log(f"loading {len(train_samples)} training and {len(val_samples)} validation images")
    train_images, val_images = load_images(train_samples), load_images(val_samples)
    on_device = cfg.device_augment == "on" or (cfg.device_augment == "auto" and device.type == "cuda")
    if on_device:
        from shfan import device_augment

        canvases = device_augment.Canvases(train_images, train_samples, 2 * model_cfg.input_size, device)
        del train_images  # the canvases hold what training needs
        gen = torch.Generator(device=device)
        log(f"views made on {device.type} in batches ({canvases.images.numel() / 2**20:.0f} MiB of canvases)")
    else:
        data = SiameseViews(train_samples, train_images, model_cfg, cfg.augment, cfg.seed)
    cuda = device.type == "cuda"
    siamese = cfg.consistency > 0  # off: the first view of each face only (the second is there for the term)
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda)
    scale = model_cfg.heatmap_size / model_cfg.input_size
    from tqdm import tqdm

    def batches(epoch, skip=0):
        """The epoch's batches from batch `skip` on (a resumed run). The CPU views of face i in
        epoch e depend on (seed, e, i) only, so a resumed epoch sees the batches it would have."""
        if on_device:  # the device generator's stream is not replayed: a resumed epoch is a new draw
            gen.manual_seed(cfg.seed * 100003 + epoch)
            order = torch.randperm(len(canvases), generator=gen, device=device)
            for i in range(skip, steps_per_epoch):
                yield device_augment.siamese_batch(gen, canvases, order[i * cfg.batch_size:(i + 1) * cfg.batch_size],
                                                   model_cfg.input_size, model_cfg.heatmap_size, cfg.augment)
            return
        data.epoch = epoch
        order = torch.randperm(len(data), generator=torch.Generator().manual_seed(cfg.seed + epoch)).tolist()
        yield from DataLoader(data, batch_size=cfg.batch_size, sampler=order[skip * cfg.batch_size:], drop_last=True,
                              num_workers=cfg.workers, worker_init_fn=_quiet_worker, persistent_workers=False)

    def save_last(epochs_done, batch_in_epoch):
        fan_model.save_checkpoint(model, last, optimizer=opt.state_dict(), scheduler=sched.state_dict(),
                                  epoch=epochs_done, batch_in_epoch=batch_in_epoch, best_nme=best_nme,
                                  history=history, schedule_total=plan.total, train_config=_jsonable(asdict(cfg)))

    def sync():
        if cuda:
            torch.cuda.synchronize()

    epochs, step_times, val_s = cfg.epochs, [], 0.0
    if cfg.schedule_steps:  # the horizon decides (a resumed run keeps the one it started with)
        epochs = math.ceil(plan.total / steps_per_epoch)
    t_train = time.time()  # the budget counts from here (image loading excluded but small)
    if budget_s is not None:
        budget_s -= t_train - t_start
    segment_end = t_start + 60.0 * cfg.segment_min if cfg.segment_min else None
    epoch = start_epoch
    while epoch < epochs:
        model.train()
        t0, sums, n_done = time.time(), {"heatmap": 0.0, "consistency": 0.0}, 0
        split = {"data": 0.0, "forward": 0.0, "backward": 0.0}
        bar = tqdm(batches(epoch, skip), total=steps_per_epoch - skip, desc=f"epoch {epoch + 1}/{epochs}",
                   unit="batch", leave=False, disable=None if progress is None else not progress)
        out_of_time = segment_over = False
        t_step = t_saved = time.time()
        for batch in bar:
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            sync()
            t_data = time.time()
            images = torch.cat([batch["image1"], batch["image2"]]) if siamese else batch["image1"]
            if cuda:
                images = images.contiguous(memory_format=torch.channels_last)
            with autocast:
                outputs = [o.float() for o in model.forward_all(images)]
            b = batch["image1"].shape[0]
            points = torch.cat([batch["points1"], batch["points2"]]) if siamese else batch["points1"]
            targets = codec_torch.encode(points, model_cfg.heatmap_size, model_cfg.sigma)
            loss_h = heatmap_loss(outputs, targets, cfg.loss)
            loss = loss_h
            loss_c = torch.zeros((), device=device)
            if siamese:
                loss_c = consistency_loss(outputs[-1][:b], outputs[-1][b:], batch, model_cfg, scale)
                loss = loss + cfg.consistency * loss_c
            sync()
            t_fwd = time.time()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            sums["heatmap"] += loss_h.item()
            sums["consistency"] += loss_c.item()
            bar.set_postfix(hm=f"{loss_h.item():.3f}", cons=f"{loss_c.item():.3f}")
            now = time.time()
            split["data"] += t_data - t_step
            split["forward"] += t_fwd - t_data
            split["backward"] += now - t_fwd
            step_times.append(now - t_step)  # the whole step, data included
            t_step = now
            n_done += 1
            if sched.last_epoch >= plan.total:
                out_of_time = True  # the schedule's end (a fixed horizon can end inside an epoch)
                break
            step_s = float(np.median(step_times))
            val_left = val_s or step_s * len(val_samples) / cfg.batch_size  # not timed yet: ~N/B steps
            if segment_end is not None and now + val_left + step_s >= segment_end:
                segment_over = True  # the next step (and the validation) would overrun the segment
                break
            if now - t_saved >= 60.0 * cfg.checkpoint_min and skip + n_done < steps_per_epoch:
                save_last(epoch, skip + n_done)  # a killed run resumes here
                t_saved = now
            if budget_s is not None:
                elapsed = time.time() - t_train
                if len(step_times) == 4 and epoch == start_epoch:  # probe: steps 2-4 (the 1st warms up)
                    # validation not timed yet: clean + hard forward passes ~ N/B training steps
                    guess = float(np.median(step_times[1:])) * len(val_samples) / cfg.batch_size
                    epochs = _refit(plan, budget_s, elapsed, sched.last_epoch, step_times, val_s or guess,
                                    steps_per_epoch, cfg, log)
                if elapsed + val_s >= budget_s or sched.last_epoch >= plan.total:
                    out_of_time = True
                    break
        n = max(1, n_done)
        entry = {"epoch": epoch + 1, "seconds": round(time.time() - t0, 1), "steps": n_done,
                 "step": sched.last_epoch, "lr": opt.param_groups[0]["lr"],
                 "loss_heatmap": sums["heatmap"] / n, "loss_consistency": sums["consistency"] / n,
                 "ms_per_step": {k: round(1000 * v / n, 1) for k, v in split.items()}}
        if skip:
            entry["resumed_at_batch"] = skip
        complete = skip + n_done >= steps_per_epoch
        final = out_of_time or (epoch + 1 >= epochs and complete)
        partial = segment_over and not final and not complete
        if partial:
            entry["partial"] = True  # the segment ended inside this epoch; the next run finishes it
        if (epoch + 1) % cfg.val_every == 0 or final or segment_over:
            model.eval()
            t_val = time.time()
            entry.update(validate(model, device, val_samples, val_images, model_cfg.input_size, val_names,
                                  cfg.hard_seed))
            val_s = max(val_s, time.time() - t_val)
            if entry["val_nme_inter_ocular"] < best_nme:
                best_nme = entry["val_nme_inter_ocular"]
                fan_model.save_checkpoint(model, out_dir / "best.pt", epoch=epoch + 1, val_nme=best_nme)
        history.append(entry)
        log(json.dumps(entry))
        if partial:
            save_last(epoch, skip + n_done)
        else:
            save_last(epoch + 1, 0)
        epoch, skip = epoch + 1, 0
        if final or segment_over:
            if segment_over and not final:
                log(f"segment of {cfg.segment_min:g} min over at step {sched.last_epoch} of {plan.total}; "
                    f"continue with --resume")
            break
        if budget_s is not None and step_times:
            epochs = _refit(plan, budget_s, time.time() - t_train, sched.last_epoch, step_times, val_s,
                            steps_per_epoch, cfg, log, quiet=True)
    from shfan.atomic import write_text

    write_text(out_dir / "history.json", json.dumps(history, indent=1))
    return out_dir / "best.pt"


def _refit(plan: Schedule, budget_s, elapsed, steps_done, step_times, val_s, steps_per_epoch, cfg, log,
           quiet=False) -> int:
    """Fit the schedule's total steps to the time left; returns the epoch count to run."""
    step_s = float(np.median(step_times[1:] if len(step_times) > 1 else step_times))
    val_est = val_s if val_s else 0.0
    plan.total = max(steps_done + 1, fit_total_steps(budget_s, elapsed, steps_done, step_s,
                                                     val_est / max(1, cfg.val_every), steps_per_epoch))
    epochs = math.ceil(plan.total / steps_per_epoch)
    if not quiet:
        log(f"time budget {budget_s / 60:.1f} min: {step_s * 1000:.0f} ms per step -> {plan.total} steps "
            f"({epochs} epochs of {steps_per_epoch})")
    return epochs


def _arch(cfg) -> str:
    cfg = cfg.to_dict() if hasattr(cfg, "to_dict") else (cfg or {})
    keys = ("stacks", "width", "input_size", "landmarks")
    return ", ".join(f"{k} {cfg[k]}" for k in keys if k in cfg) or "unknown architecture"


def _quiet_worker(_):
    import cv2
    import torch

    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def _jsonable(d):
    return json.loads(json.dumps(d, default=str))
