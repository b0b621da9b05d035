"""How long a run trains: the learning-rate Schedule (warm-up, cosine) over a horizon of
optimizer steps, and RunSchedule, which sizes that horizon and the epoch count (--epochs, a
campaign's fixed --schedule-steps, or a --time-budget fitted from the measured step time) and
says when a step ends the run (the horizon, the budget, a --segment's minutes)."""

from __future__ import annotations

import math

import numpy as np


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


class RunSchedule:
    """One run's horizon and its stopping rules. `lr` is the Schedule the LambdaLR steps through
    (`lr.total`, the horizon: --schedule-steps, else --epochs' steps, re-fitted under a
    --time-budget); `epochs` the epoch count to run. A resumed run restores `lr` from OUT/last.pt
    before `begin`. `clock` is the trainer's (time.time; tests give a steady one)."""

    def __init__(self, cfg, steps_per_epoch: int, val_faces: int, log, clock):
        self.cfg, self.steps_per_epoch, self.val_faces = cfg, steps_per_epoch, val_faces
        self.log, self.clock = log, clock
        self.lr = Schedule(cfg.schedule_steps or cfg.epochs * steps_per_epoch, steps_per_epoch)
        self.budget_s = cfg.time_budget_min * 60.0 if cfg.time_budget_min and not cfg.schedule_steps else None
        self.epochs, self.step_times, self.val_s = cfg.epochs, [], 0.0
        self.t_train = self.segment_end = None

    def begin(self, t_start: float, t_train: float):
        """Training starts at `t_train` (the run at `t_start`; image loading is not budgeted): a
        fixed horizon decides the epochs (a resumed run keeps the one it started with), the
        budget counts from here, a segment ends `segment_min` after the run started."""
        if self.cfg.schedule_steps:
            self.epochs = math.ceil(self.lr.total / self.steps_per_epoch)
        self.t_train = t_train
        if self.budget_s is not None:
            self.budget_s -= t_train - t_start
        self.segment_end = t_start + 60.0 * self.cfg.segment_min if self.cfg.segment_min else None

    def record_step(self, seconds: float):
        self.step_times.append(seconds)  # the whole step, data included

    def record_validation(self, seconds: float):
        self.val_s = max(self.val_s, seconds)

    def horizon_reached(self, steps_done: int) -> bool:
        return steps_done >= self.lr.total  # a fixed horizon can end inside an epoch

    def segment_over(self, now: float) -> bool:
        """The next step (and the validation after it) would overrun the segment."""
        if self.segment_end is None:
            return False
        step_s = float(np.median(self.step_times))
        val_left = self.val_s or step_s * self.val_faces / self.cfg.batch_size  # not timed yet: ~N/B steps
        return now + val_left + step_s >= self.segment_end

    def budget_spent(self, steps_done: int, first_epoch: bool) -> bool:
        """--time-budget, after a step: the probe (steps 2-4 of the run's first epoch, the 1st warms
        up) fits the horizon; True when the time left is a validation's or the horizon is reached."""
        if self.budget_s is None:
            return False
        elapsed = self.clock() - self.t_train
        if len(self.step_times) == 4 and first_epoch:
            # validation not timed yet: clean + hard forward passes ~ N/B training steps
            guess = float(np.median(self.step_times[1:])) * self.val_faces / self.cfg.batch_size
            self.refit(elapsed, steps_done, self.val_s or guess)
        return elapsed + self.val_s >= self.budget_s or steps_done >= self.lr.total

    def after_epoch(self, steps_done: int):
        """--time-budget: re-fit the horizon after each epoch, validation time included."""
        if self.budget_s is not None and self.step_times:
            self.refit(self.clock() - self.t_train, steps_done, self.val_s, quiet=True)

    def refit(self, elapsed: float, steps_done: int, val_s: float, quiet: bool = False):
        """Fit the horizon to the time left; the epoch count follows."""
        times = self.step_times
        step_s = float(np.median(times[1:] if len(times) > 1 else times))
        self.lr.total = max(steps_done + 1, fit_total_steps(self.budget_s, elapsed, steps_done, step_s,
                                                            val_s / max(1, self.cfg.val_every), self.steps_per_epoch))
        self.epochs = math.ceil(self.lr.total / self.steps_per_epoch)
        if not quiet:
            self.log(f"time budget {self.budget_s / 60:.1f} min: {step_s * 1000:.0f} ms per step -> {self.lr.total} "
                     f"steps ({self.epochs} epochs of {self.steps_per_epoch})")
