"""`TrainConfig`: every knob of the training loop, with the DASS AudioSet-20K recipe as defaults."""
from __future__ import annotations

import dataclasses
import difflib
import math
import numbers
from dataclasses import dataclass

from ..losses import RECON_PATCHES

_OPTIMIZERS = ("adam", "adamw")
_SCHEDULES = ("step", "cosine", "constant")
_AMP = ("auto", "bf16", "fp16", "none")
_OBJECTIVES = ("classify", "pretrain")
_DECAY_EXEMPT = ("auto", "none", "standard")

# Fields that may change between a run and its resumption (they do not change the result).
RESUMABLE_CHANGES = frozenset({"progress", "log_every", "checkpoint_every_steps", "checkpoint_every_minutes", "device",
                               "fast", "diagnostics_every"})
_FAST = ("auto", "off", "compile", "graphs")


@dataclass
class TrainConfig:
    """Training hyper-parameters. Defaults: DASS on AudioSet-20K (official ``run.sh``, balanced set).

    AS-2M (DASS): ``epochs=5, lrscheduler_start=2, lrscheduler_step=1, wa_start=1`` (+ balanced sampling).
    SSAM pretraining (paper: AdamW, weight decay 0.05, 10 warm-up epochs then cosine, 100 epochs; betas are
    not given, MAE's (0.9, 0.95) assumed): ``optimizer="adamw", weight_decay=0.05, betas=(0.9, 0.95),
    schedule="cosine", warmup_epochs=10, warmup_every=1, epochs=100, wa=False, objective="pretrain",
    loss="masked_mse", main_metric="eval_loss"``; under DDP also ``find_unused_parameters=True`` (the
    classification head takes no part in pretraining, the reconstruction head none in fine-tuning).
    """

    epochs: int = 25
    lr: float = 1e-4
    optimizer: str = "adam"  # "adam" | "adamw"
    weight_decay: float = 5e-7
    decay_exempt: str = "auto"  # "auto" | "none" | "standard": which parameters skip weight decay (see optim)
    betas: tuple = (0.95, 0.999)
    # learning-rate schedule: linear warm-up, then "step" (AST/DASS), "cosine" (SSAM) or "constant"
    schedule: str = "step"
    warmup_steps: int = 1000
    warmup_epochs: float | None = None  # when set, replaces warmup_steps (= warmup_epochs * steps per epoch)
    warmup_every: int = 50  # AST/DASS refresh the warm-up lr every 50 steps; 1 = every step
    lrscheduler_start: int = 10  # "step": multiply the lr by `decay` after epochs start, start+step, ...
    lrscheduler_step: int = 5
    lrscheduler_decay: float = 0.5
    min_lr: float = 0.0  # "cosine": final lr
    # weight averaging of the weights at the end of epochs wa_start..wa_end (1-based, inclusive)
    wa: bool = True
    wa_start: int = 6
    wa_end: int | None = None  # None: the last epoch
    # objective and loss
    objective: str = "classify"  # "classify" | "pretrain" (masked reconstruction, `model.forward_pretrain`)
    loss: str = "bce"  # a `dasslib.losses` name: bce | ce | kd_kl | kd_bce | masked_mse
    kd_weight: float = 0.5
    kd_temperature: float = 1.0
    norm_target: bool = False  # masked_mse: normalize each target patch
    recon_patches: str = "all"  # masked_mse: "all" patches (official SSAM code) | "masked" only (MAE / SSAST)
    main_metric: str = "mAP"  # eval metric that picks best_model.pt ("mAP", "acc", "eval_loss", ...)
    # plateau rule (dasslib.train.plateau): stop after `patience` epochs without an improvement of main_metric
    # by at least `min_delta` over its best; `epochs` is then the cap. None: train all `epochs`
    patience: int | None = None
    min_delta: float = 0.0
    # numerics
    grad_clip: float | None = None  # max global grad norm; None: no clipping
    amp: str = "auto"  # "auto": bf16 autocast on CUDA, none on CPU | "bf16" | "fp16" (GradScaler) | "none"
    device: str = "auto"  # "auto" | "cpu" | "cuda"
    # training forward + backward compiled by torch.compile, "graphs": and replayed as CUDA graphs ("auto":
    # graphs on CUDA, eager on the CPU; the scan is a custom op, so the whole model compiles; results equal
    # eager up to rounding, see dasslib.fast)
    fast: str = "auto"  # "auto" | "off" | "compile" | "graphs"
    seed: int = 0
    deterministic: bool = False
    find_unused_parameters: bool = False  # DDP option for models with parameters a step does not use
    # bookkeeping
    checkpoint_every_steps: int = 0  # extra mid-epoch checkpoints; 0: only at epoch ends and interruptions
    checkpoint_every_minutes: float = 0.0
    log_every: int = 50  # steps between progress-bar loss updates (and divergence checks)
    progress: bool = True
    # gradient norms per stage every k steps and activation statistics at epoch ends, as history columns
    # (dasslib.train.diagnostics); 0: off. Observations only: a run's identity ignores it
    diagnostics_every: int = 0

    def __post_init__(self):
        self._check_types()
        _choice("optimizer", self.optimizer, _OPTIMIZERS)
        _choice("decay_exempt", self.decay_exempt, _DECAY_EXEMPT)
        _choice("schedule", self.schedule, _SCHEDULES)
        _choice("amp", self.amp, _AMP)
        _choice("objective", self.objective, _OBJECTIVES)
        _choice("device", self.device, ("auto", "cpu", "cuda"))
        _choice("fast", self.fast, _FAST)
        _choice("recon_patches", self.recon_patches, RECON_PATCHES)
        if self.wa:
            end = self.wa_epoch_range[1]
            if not 1 <= self.wa_start <= end <= self.epochs:
                raise ValueError(
                    f"weight averaging needs 1 <= wa_start <= wa_end <= epochs, got wa_start={self.wa_start}, "
                    f"wa_end={self.wa_end}, epochs={self.epochs} (set wa=False to switch it off)")

    def _check_types(self):
        """Type and range of every field, naming the field; number-like strings (YAML reads ``1e-4``
        as a string) become numbers."""
        for name, (kind, low, high, optional) in _NUMBERS.items():
            value = getattr(self, name)
            if value is None and optional:
                continue
            setattr(self, name, _number(name, value, kind, low, high, optional))
        betas = self.betas
        if isinstance(betas, (str, bytes)) or not hasattr(betas, "__len__") or len(betas) != 2:
            raise ValueError(f"betas must be two numbers in [0, 1), got {betas!r}")
        self.betas = tuple(_number("betas", b, float, (0.0, True), (1.0, False), False) for b in betas)
        for name in _BOOLS:
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        for name in ("loss", "main_metric"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"{name} must be a non-empty string, got {value!r}")

    @property
    def wa_epoch_range(self) -> tuple[int, int]:
        """Inclusive 1-based epoch range whose end-of-epoch weights are averaged."""
        return self.wa_start, self.epochs if self.wa_end is None else self.wa_end

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        """Build from a mapping, rejecting unknown keys with a close-match suggestion."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = [k for k in values if k not in names]
        if unknown:
            hints = []
            for k in unknown:
                close = difflib.get_close_matches(k, names, n=1)
                hints.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            raise ValueError(f"unknown training option(s): {', '.join(hints)}")
        return cls(**values)

    def differences(self, other: "TrainConfig") -> dict:
        """``{field: (self value, other value)}`` for fields that differ, ignoring `RESUMABLE_CHANGES`."""
        a, b = self.to_dict(), other.to_dict()
        return {k: (a[k], b[k]) for k in a if k not in RESUMABLE_CHANGES and _norm(a[k]) != _norm(b[k])}


# numeric fields: (int or float, (low, inclusive) or None, (high, inclusive) or None, None allowed)
_NUMBERS = {
    "epochs": (int, (1, True), None, False),
    "lr": (float, (0.0, False), None, False),
    "weight_decay": (float, (0.0, True), None, False),
    "warmup_steps": (int, (0, True), None, False),
    "warmup_epochs": (float, (0.0, True), None, True),
    "warmup_every": (int, (1, True), None, False),
    "lrscheduler_start": (int, (0, True), None, False),
    "lrscheduler_step": (int, (1, True), None, False),
    "lrscheduler_decay": (float, (0.0, False), None, False),
    "min_lr": (float, (0.0, True), None, False),
    "wa_start": (int, (1, True), None, False),
    "wa_end": (int, (1, True), None, True),
    "kd_weight": (float, (0.0, True), (1.0, True), False),
    "patience": (int, (1, True), None, True),
    "min_delta": (float, (0.0, True), None, False),
    "kd_temperature": (float, (0.0, False), None, False),
    "grad_clip": (float, (0.0, False), None, True),
    "seed": (int, (0, True), None, False),
    "checkpoint_every_steps": (int, (0, True), None, False),
    "checkpoint_every_minutes": (float, (0.0, True), None, False),
    "log_every": (int, (1, True), None, False),
    "diagnostics_every": (int, (0, True), None, False),
}
_BOOLS = ("wa", "norm_target", "deterministic", "find_unused_parameters", "progress")


def _number(name: str, value, kind, low, high, optional):
    """``value`` as a finite ``kind`` within the bounds, else ValueError naming the field."""
    what = ("an int" if kind is int else "a number") + (" or None" if optional else "")
    number = None
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            pass
    elif isinstance(value, numbers.Real) and not isinstance(value, bool):
        number = value
    if number is not None and math.isfinite(number) and kind is int:
        number = int(number) if float(number).is_integer() else None
    elif number is not None:
        number = float(number) if math.isfinite(number) else None
    bounds_ok = number is not None and not (
        low and (number < low[0] or (number == low[0] and not low[1]))) and not (
        high and (number > high[0] or (number == high[0] and not high[1])))
    if not bounds_ok:
        limits = []
        if low:
            limits.append(f"{'>=' if low[1] else '>'} {low[0]}")
        if high:
            limits.append(f"{'<=' if high[1] else '<'} {high[0]}")
        raise ValueError(f"{name} must be {what} ({' and '.join(limits)}), got {value!r}")
    return number


def _norm(value):
    return list(value) if isinstance(value, tuple) else value


def _choice(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")
