"""Learning-rate schedules as pure functions of the optimizer step: ``factor(step) -> float``
(the lr is ``base_lr * factor``). Each is a small callable object so that ``LambdaLR`` can
store its fields in a checkpoint."""
from __future__ import annotations

import math


def _warmup(step: int, warmup_steps: int, every: int) -> float:
    """Linear warm-up from 0 to 1 over ``warmup_steps`` steps, refreshed every ``every`` steps
    (AST/DASS: ``lr = step / 1000 * base_lr`` at every 50th step up to step 1000)."""
    if warmup_steps <= 0 or step >= warmup_steps:
        return 1.0
    return (step // every) * every / warmup_steps


class StepDecaySchedule:
    """AST/DASS: linear warm-up, then multiply by ``decay`` after epochs ``start, start + step, ...``.

    Epochs count from 1 as in AST: with ``start=10, step=5, decay=0.5`` epochs 1-10 run at the base lr,
    11-15 at half, 16-20 at a quarter, 21-25 at an eighth (DASS on AS-20K); ``start=2, step=1`` halves
    after every epoch from the second (AS-2M).
    """

    def __init__(self, steps_per_epoch: int, warmup_steps: int = 1000, warmup_every: int = 50,
                 start: int = 10, step: int = 5, decay: float = 0.5):
        if steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
        self.steps_per_epoch, self.warmup_steps, self.warmup_every = steps_per_epoch, warmup_steps, warmup_every
        self.start, self.step, self.decay = start, step, decay

    def __call__(self, step: int) -> float:
        epochs_done = step // self.steps_per_epoch
        n_decays = 0 if epochs_done < self.start else (epochs_done - self.start) // self.step + 1
        return _warmup(step, self.warmup_steps, self.warmup_every) * self.decay ** n_decays


class WarmupCosineSchedule:
    """SSAM (MAE-style): linear warm-up over ``warmup_steps``, then half a cosine from 1 down to
    ``min_factor`` at ``total_steps``."""

    def __init__(self, total_steps: int, warmup_steps: int = 0, min_factor: float = 0.0, warmup_every: int = 1):
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}")
        self.total_steps, self.warmup_steps, self.warmup_every = total_steps, warmup_steps, warmup_every
        self.min_factor = min_factor

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return _warmup(step, self.warmup_steps, self.warmup_every)
        progress = min(1.0, (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps))
        return self.min_factor + (1.0 - self.min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))


class ConstantSchedule:
    """Linear warm-up, then the base lr."""

    def __init__(self, warmup_steps: int = 0, warmup_every: int = 1):
        self.warmup_steps, self.warmup_every = warmup_steps, warmup_every

    def __call__(self, step: int) -> float:
        return _warmup(step, self.warmup_steps, self.warmup_every)


def build_schedule(cfg, steps_per_epoch: int):
    """The schedule a `TrainConfig` asks for, given the number of optimizer steps per epoch."""
    warmup = cfg.warmup_steps if cfg.warmup_epochs is None else round(cfg.warmup_epochs * steps_per_epoch)
    if cfg.schedule == "step":
        return StepDecaySchedule(steps_per_epoch, warmup, cfg.warmup_every, cfg.lrscheduler_start,
                                 cfg.lrscheduler_step, cfg.lrscheduler_decay)
    if cfg.schedule == "cosine":
        return WarmupCosineSchedule(cfg.epochs * steps_per_epoch, warmup, cfg.min_lr / cfg.lr, cfg.warmup_every)
    return ConstantSchedule(warmup, cfg.warmup_every)
