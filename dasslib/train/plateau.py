"""The plateau rule: stop training once the eval metric has stopped improving.

A run stops after ``patience`` epochs in a row without an improvement of at least ``min_delta`` over the
best value so far (the Keras / Lightning ``EarlyStopping`` rule); ``TrainConfig.epochs`` stays the cap.
The decision is a pure function of the per-epoch metric values, so a resumed run makes the same one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


def lower_is_better(metric: str) -> bool:
    """Losses are minimised, every other metric (mAP, mAUC, acc...) maximised."""
    return "loss" in metric


@dataclass(frozen=True)
class PlateauState:
    """best: the reference value (the last improvement by at least ``min_delta``); best_epoch: its 1-based
    epoch; stale: epochs since then; stop: the rule fired at the last epoch seen."""

    best: float | None
    best_epoch: int | None
    stale: int
    stop: bool


def plateau_state(values, patience: int | None, min_delta: float = 0.0, lower: bool = False) -> PlateauState:
    """The rule applied to ``values`` (one metric value per epoch, oldest first; NaN counts as no
    improvement). ``patience=None`` never stops."""
    if min_delta < 0:
        raise ValueError(f"min_delta must be >= 0, got {min_delta}")
    best, best_epoch, stale = None, None, 0
    for epoch, value in enumerate(values, start=1):
        value = float(value)
        better = math.isfinite(value) and (
            best is None or (value < best - min_delta if lower else value > best + min_delta))
        if better:
            best, best_epoch, stale = value, epoch, 0
        else:
            stale += 1
    return PlateauState(best, best_epoch, stale, patience is not None and stale >= patience)


def describe_stop(epochs_run: int, cap: int, state: PlateauState | None, metric: str,
                  patience: int | None = None) -> dict:
    """What ended a run, for metrics.json: ``{"reason": r, "epochs": n, ...}`` with r ``"plateau"`` (the rule
    fired), ``"epoch_cap"`` (the cap came first) or ``"fixed_epochs"`` (no rule: ``patience`` None)."""
    if state is not None and state.stop:
        return {"reason": "plateau", "epochs": epochs_run, "metric": metric, "best_epoch": state.best_epoch,
                "stale_epochs": state.stale}
    out = {"reason": "epoch_cap" if patience is not None else "fixed_epochs", "epochs": epochs_run, "cap": cap}
    if state is not None:
        out.update(metric=metric, best_epoch=state.best_epoch, stale_epochs=state.stale)
    return out
