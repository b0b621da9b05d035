"""The training loop: `train()` runs a Trainer (the model, AdamW, the LambdaLR over a Schedule,
the best NME and history) through its epochs. A Trainer steps (one batch), validates (through
the pytorch backend's seam), checkpoints (OUT/last.pt, the format `--resume` and
scripts/campaign.py continue from) and resumes; its RunSchedule sizes the run (--epochs,
--schedule-steps, --time-budget) and ends it (the horizon, the budget, a --segment).

Resume is exact: a run killed after a mid-epoch last.pt and resumed ends with the weights of a
run never stopped (tests/test_train.py, and tests/checkpoints/segment_last.pt written by the
code before this split)."""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import time
from dataclasses import asdict
from pathlib import Path

from shfan.contracts import ModelConfig
from shfan.datasets import Sample
from shfan.train.checkpoints import arch_text, jsonable, optimizer_state_in_model_order, read_last
from shfan.train.config import TrainConfig, TrainError
from shfan.train.losses import consistency_loss, heatmap_loss
from shfan.train.precision import use_bf16
from shfan.train.schedule import RunSchedule
from shfan.train.validation import load_images, validate
from shfan.train.views import EpochBatches

logger = logging.getLogger("shfan.train")


def train(model_cfg: ModelConfig, cfg: TrainConfig, train_samples: list[Sample],
          val_samples: list[Sample], out_dir: Path, resume: bool = False, init_state: dict | None = None,
          log=logger.info, val_names: list[str] | None = None, progress: bool | None = False,
          clock=None) -> Path:
    """Train and return the path of the best checkpoint (by clean validation NME).

    `init_state` starts from those weights with a fresh optimizer and schedule (fine-tuning);
    `resume` continues OUT/last.pt and wins over it. `val_names` labels each validation face
    with its subset (per-subset NME in the history). `log` gets one line per event (the
    'shfan.train' logger by default); `progress`: a per-epoch bar (None: when stderr is a terminal).
    `clock`: the time source (time.time)."""
    steps_per_epoch = len(train_samples) // cfg.batch_size  # drop_last
    if steps_per_epoch == 0:  # first: a refused run (train or run) leaves no run folder
        raise TrainError(f"{len(train_samples)} training faces are fewer than one batch of {cfg.batch_size}: lower "
                         f"--batch-size (e.g. --batch-size {max(1, len(train_samples))})")
    trainer = Trainer(model_cfg, cfg, Path(out_dir), steps_per_epoch, val_samples, val_names, init_state, log,
                      clock or time.time)
    if resume and trainer.last.is_file():
        trainer.resume()
    elif resume:  # a campaign's first segment; elsewhere perhaps a mistyped --out, so say it
        log(f"nothing to resume in {out_dir} (no last.pt): a new run starts")
    log(f"loading {len(train_samples)} training and {len(val_samples)} validation images")
    train_images, val_images = load_images(train_samples), load_images(val_samples)
    batches = EpochBatches(cfg, model_cfg, train_samples, train_images, trainer.device, steps_per_epoch, log)
    del train_images  # on the device the canvases hold what training needs
    return trainer.fit(batches, val_images, progress)


class Trainer:
    """One run's state and what a run does with it: `step` (one batch), `validate`, `checkpoint`
    (OUT/last.pt), `resume` (from it), `fit` (the epochs). Built in the order the first code
    built it (seed, model, optimizer, schedule), so a seed gives the same initial weights."""

    def __init__(self, model_cfg: ModelConfig, cfg: TrainConfig, out_dir: Path, steps_per_epoch: int,
                 val_samples, val_names=None, init_state=None, log=logger.info, clock=time.time):
        import torch

        from shfan import model as fan_model

        self.clock, self.t_start = clock, clock()
        torch.manual_seed(cfg.seed)
        torch.set_num_threads(cfg.threads)
        import cv2

        cv2.setNumThreads(1)  # forked DataLoader workers deadlock on an inherited OpenCV pool
        self._torch, self.model_cfg, self.cfg, self.log = torch, model_cfg, cfg, log
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.cuda = self.device.type == "cuda"
        self.bf16 = use_bf16(cfg.precision, self.device.type)
        # channels_last: what oneDNN/cuDNN's bf16 convolutions want (on the CPU a bf16 step 1.6x faster with it); the
        # fp32 CPU step keeps the layout it always had (bit for bit the earlier runs)
        self.channels_last = self.cuda or self.bf16
        self.autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)
        self.model = fan_model.build(model_cfg).to(self.device)
        self.from_init = init_state is not None  # kept in last.pt: a resume then takes its sizes from there
        if self.from_init:
            self.model.load_state_dict(init_state)  # copied into this model's fp32 tensors
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        log(f"training arithmetic: {'bf16 autocast' if self.bf16 else 'fp32'} on {self.device.type} "
            f"(--precision {cfg.precision})")
        self.fake_quant = None  # --qat: the int8 file's rounding on the model (ranges at the first fit)
        if cfg.qat != "off":
            from shfan.train.qat import FakeQuant

            self.fake_quant = FakeQuant(self.model)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        out_dir.mkdir(parents=True, exist_ok=True)  # after the checks: a refused run leaves no folder
        self.out_dir, self.last, self.steps_per_epoch = out_dir, out_dir / "last.pt", steps_per_epoch
        self.schedule = RunSchedule(cfg, steps_per_epoch, len(val_samples), log, clock)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, self.schedule.lr)
        self.val_samples, self.val_names = val_samples, val_names
        self.start_epoch, self.skip, self.best_nme, self.history = 0, 0, float("inf"), []

    @property
    def steps_done(self) -> int:
        return self.sched.last_epoch

    def resume(self):
        """Continue OUT/last.pt: weights, AdamW state (matched to the parameters by name), LR
        schedule and its horizon, epoch and batch, best NME, history."""
        state = read_last(self.last)
        try:
            self.model.load_state_dict(state["state_dict"])
            self.opt.load_state_dict(optimizer_state_in_model_order(state, self.model))
            self.sched.load_state_dict(state["scheduler"])
            self.start_epoch, self.best_nme, self.history = state["epoch"], state["best_nme"], state["history"]
            self.from_init = bool(state.get("from_init", False))
            if self.fake_quant is not None and state.get("qat_ranges"):
                self.fake_quant.ranges = {k: tuple(v) for k, v in state["qat_ranges"].items()}
        except (RuntimeError, KeyError, ValueError, TypeError):
            saved = state.get("config")
            raise TrainError(f"{self.last} is from another model ({arch_text(saved)}) than this run "
                             f"({arch_text(self.model_cfg)}); resume with the options it was trained with, or use "
                             "another --out") from None
        plan = self.schedule.lr
        plan.total = state.get("schedule_total", plan.total)
        self.skip = min(int(state.get("batch_in_epoch", 0)), self.steps_per_epoch)
        at = f"epoch {self.start_epoch}" + (f", batch {self.skip}" if self.skip else "")
        self.log(f"resumed from {self.last} at {at} (step {self.steps_done} of {plan.total})")

    def checkpoint(self, epochs_done: int, batch_in_epoch: int):
        """OUT/last.pt: the weights and everything `resume` continues from."""
        from shfan import model as fan_model

        fan_model.save_checkpoint(self.model, self.last, optimizer=self.opt.state_dict(),
                                  scheduler=self.sched.state_dict(), epoch=epochs_done, batch_in_epoch=batch_in_epoch,
                                  best_nme=self.best_nme, history=self.history, schedule_total=self.schedule.lr.total,
                                  train_config=jsonable(asdict(self.cfg)), from_init=self.from_init,
                                  **({"qat_ranges": self.fake_quant.ranges} if self.fake_quant is not None else {}))

    def step(self, batch) -> tuple:
        """One optimizer step on a batch (both views with the consistency term, the first alone
        without it). Returns (heatmap loss, consistency loss, clock after the data, after forward)."""
        from shfan import codec_torch

        torch, cfg, model_cfg = self._torch, self.cfg, self.model_cfg
        siamese = cfg.consistency > 0  # off: the first view of each face only (the second is there for the term)
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        self._sync()
        t_data = self.clock()
        images = torch.cat([batch["image1"], batch["image2"]]) if siamese else batch["image1"]
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with self.autocast:
            outputs = [o.float() for o in self.model.forward_all(images)]
        b = batch["image1"].shape[0]
        points = torch.cat([batch["points1"], batch["points2"]]) if siamese else batch["points1"]
        targets = codec_torch.encode(points, model_cfg.heatmap_size, model_cfg.sigma)
        weight = batch.get("weight")  # per face (--extra-weight); all ones: the unweighted mean, bit for bit
        if weight is not None and bool((weight == 1).all()):
            weight = None
        elif weight is not None and siamese:
            weight = torch.cat([weight, weight])
        loss_h = heatmap_loss(outputs, targets, cfg.loss, weight)
        loss = loss_h
        loss_c = torch.zeros((), device=self.device)
        if siamese:
            scale = model_cfg.heatmap_size / model_cfg.input_size
            loss_c = consistency_loss(outputs[-1][:b], outputs[-1][b:], batch, model_cfg, scale)
            loss = loss + cfg.consistency * loss_c
        self._sync()
        t_fwd = self.clock()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.sched.step()
        return loss_h.item(), loss_c.item(), t_data, t_fwd

    def validate(self, val_images, epochs_done: int) -> dict:
        """Clean (and hard) validation NME of the model now (timed for the schedule); a new best
        is saved to OUT/best.pt."""
        from shfan import model as fan_model

        self.model.eval()
        t_val = self.clock()
        with self.fake_quant.suspended() if self.fake_quant is not None else contextlib.nullcontext():
            scores = validate(self.model, self.device, self.val_samples, val_images, self.model_cfg.input_size,
                              self.val_names, self.cfg.hard_seed)  # fp32, as every other run's
        self.schedule.record_validation(self.clock() - t_val)
        if scores["val_nme_inter_ocular"] < self.best_nme:
            self.best_nme = scores["val_nme_inter_ocular"]
            fan_model.save_checkpoint(self.model, self.out_dir / "best.pt", epoch=epochs_done, val_nme=self.best_nme)
        return scores

    def fit(self, batches: EpochBatches, val_images, progress: bool | None = False) -> Path:
        """The epochs from the resumed one (or the first) to the schedule's end, a budget's or a
        segment's; history.json at the end. Returns OUT/best.pt."""
        if self.fake_quant is not None:
            self._attach_fake_quant(batches)
        self.schedule.begin(self.t_start, self.clock())  # the budget counts from here (image loading is small)
        epoch, skip = self.start_epoch, self.skip
        while epoch < self.schedule.epochs:
            if self._epoch(batches, val_images, epoch, skip, progress):
                break
            self.schedule.after_epoch(self.steps_done)
            epoch, skip = epoch + 1, 0
        from shfan.atomic import write_text

        write_text(self.out_dir / "history.json", json.dumps(self.history, indent=1))
        return self.out_dir / "best.pt"

    def _epoch(self, batches, val_images, epoch: int, skip: int, progress) -> bool:
        """One epoch (from batch `skip`): its steps, the history entry, validation when due, and
        last.pt. True when the run ends with it (the horizon, the budget, or the segment)."""
        cfg, spe, schedule = self.cfg, self.steps_per_epoch, self.schedule
        t0, meter = self.clock(), _EpochMeter()
        stop = self._steps(batches, epoch, skip, progress, meter)
        entry = meter.entry(epoch, self.clock() - t0, self.steps_done, self.opt.param_groups[0]["lr"])
        if skip:
            entry["resumed_at_batch"] = skip
        complete = skip + meter.steps >= spe
        final = stop == "end" or (epoch + 1 >= schedule.epochs and complete)
        segment_over = stop == "segment"
        partial = segment_over and not final and not complete
        if partial:
            entry["partial"] = True  # the segment ended inside this epoch; the next run finishes it
        if (epoch + 1) % cfg.val_every == 0 or final or segment_over:
            entry.update(self.validate(val_images, epoch + 1))
        self.history.append(entry)
        self.log(json.dumps(entry))
        if partial:
            self.checkpoint(epoch, skip + meter.steps)
        else:
            self.checkpoint(epoch + 1, 0)
        if segment_over and not final:
            self.log(f"segment of {cfg.segment_min:g} min over at step {self.steps_done} of {schedule.lr.total}; "
                     f"continue with --resume")
        return final or segment_over

    def _steps(self, batches, epoch: int, skip: int, progress, meter: "_EpochMeter") -> str | None:
        """The epoch's steps from batch `skip`, with mid-epoch checkpoints every `checkpoint_min`.
        Returns why they stopped early: "end" (horizon or budget), "segment", or None."""
        from tqdm import tqdm

        schedule, spe = self.schedule, self.steps_per_epoch
        self.model.train()
        if self.fake_quant is not None:
            self.fake_quant.freeze_batchnorm()
        bar = tqdm(batches(epoch, skip), total=spe - skip, desc=f"epoch {epoch + 1}/{schedule.epochs}",
                   unit="batch", leave=False, disable=None if progress is None else not progress)
        t_step = t_saved = self.clock()
        for batch in bar:
            loss_h, loss_c, t_data, t_fwd = self.step(batch)
            bar.set_postfix(hm=f"{loss_h:.3f}", cons=f"{loss_c:.3f}")
            now = self.clock()
            meter.add(loss_h, loss_c, t_step, t_data, t_fwd, now)
            schedule.record_step(now - t_step)
            t_step = now
            if schedule.horizon_reached(self.steps_done):
                return "end"
            if schedule.segment_over(now):
                return "segment"
            if now - t_saved >= 60.0 * self.cfg.checkpoint_min and skip + meter.steps < spe:
                self.checkpoint(epoch, skip + meter.steps)  # a killed run resumes here
                t_saved = now
            if schedule.budget_spent(self.steps_done, first_epoch=epoch == self.start_epoch):
                return "end"
        return None

    def _attach_fake_quant(self, batches, calibration_batches: int = 16):
        """--qat: the int8 ranges (from OUT/last.pt, else measured on the first views of this
        epoch, fp32) and the rounding on the model."""
        fq = self.fake_quant
        if not fq.ranges:
            def images():
                for batch in itertools.islice(batches(self.start_epoch), calibration_batches):
                    x = batch["image1"].to(self.device)
                    yield x.contiguous(memory_format=self._torch.channels_last) if self.channels_last else x
            fq.calibrate(images(), seed=self.cfg.seed)
            self.log(f"--qat {self.cfg.qat}: int8 ranges of {len(fq.ranges)} tensors from "
                     f"{calibration_batches * self.cfg.batch_size} training views")
        fq.attach()

    def _sync(self):
        if self.cuda:
            self._torch.cuda.synchronize()


class _EpochMeter:
    """An epoch's step count, mean losses and data / forward / backward split."""

    def __init__(self):
        self.steps, self.sums = 0, {"heatmap": 0.0, "consistency": 0.0}
        self.split = {"data": 0.0, "forward": 0.0, "backward": 0.0}

    def add(self, loss_h, loss_c, t_step, t_data, t_fwd, now):
        self.sums["heatmap"] += loss_h
        self.sums["consistency"] += loss_c
        self.split["data"] += t_data - t_step
        self.split["forward"] += t_fwd - t_data
        self.split["backward"] += now - t_fwd
        self.steps += 1

    def entry(self, epoch: int, seconds: float, step: int, lr: float) -> dict:
        n = max(1, self.steps)
        return {"epoch": epoch + 1, "seconds": round(seconds, 1), "steps": self.steps, "step": step, "lr": lr,
                "loss_heatmap": self.sums["heatmap"] / n, "loss_consistency": self.sums["consistency"] / n,
                "ms_per_step": {k: round(1000 * v / n, 1) for k, v in self.split.items()}}
