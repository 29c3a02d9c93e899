"""Sweep: time and peak memory of every (model, mode, input length), as one tidy DataFrame.

Each point feeds a random fbank batch (B, frames, mel_bins), frames = length_s * frames_per_s.
A point ends in one of four statuses:

- ``ok``: measured;
- ``oom``: the step ran out of memory (memory is freed and the sweep goes on);
- ``skipped``: not run; ``note`` says why: ``after oom at <L> s`` (the same model and mode ran
  out of memory at a shorter length), ``time budget: ...`` (one warm-up call plus one timed call
  predicted past ``max_seconds_per_point``, log-log extrapolation of the previous points, see
  :func:`predict_call_s`) or ``study time budget: ...`` (the sweep's ``budget_s``, below);
- ``error``: any other exception, with its message in ``note`` (``errors="raise"`` re-raises).

Order and budget. Modes run one after the other, in the given order. Inside a mode the points
run breadth-first by default (``order="breadth"``): the shortest length of every spec (in the
given order: put the important ones first), then the next length of every spec, and so on, so a
budget that runs out leaves every spec with its short lengths rather than a few specs with all
of theirs; ``order="depth"`` runs each spec's whole series before the next spec. ``budget_s``
bounds the wall time of the sweep: a number is shared by the modes, each mode getting an equal
share of what is left when it starts (time an earlier mode did not use rolls over to the later
ones; an overrun shortens them); a ``{mode: seconds}`` dict gives each mode its own seconds plus
whatever the earlier modes left unused. A point is skipped (``study time budget``) once its
mode's allotment is spent, or when its predicted cost (warm-up + repeats at the predicted call
time) exceeds what is left of it; a cheaper point of another spec may still run after it.
Models are built once (seeded) and only the one in use sits on the device
(:class:`~dasslib.bench.pool.ModelPool`).

Columns (:data:`COLUMNS`, one row per point, in the order mode, spec, length whatever the run
order): ``model`` (spec label), ``mode``, ``batch``, ``length_s``, ``frames``, ``tokens`` (what the
sequence mixer sees, empty when the model has no ``num_tokens``), ``median_ms`` / ``p10_ms`` /
``p90_ms`` (per timed call), ``throughput_audio_s_per_s`` (``batch * length_s / median``),
``peak_mem_mb`` (NaN on the CPU), ``status``, ``device``, ``dtype``, ``torch_version``, ``date``
(start of the sweep), ``repeats`` (timed calls made), ``wall_s`` (wall seconds the sweep spent on
the point: building the model (its first point) or moving it to the device, the input, warm-up
calls with any compilation or autotuning, the timed calls, freeing memory after an OOM; 0 for a
skipped point, so the column sums to the sweep's wall time but for the final cleanup), ``note``.
"""
import datetime
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from ..fast import check_fast
from ..runtime import resolve_device
from .memory import free_memory, is_oom, memory_limit_gib, peak_memory_mb, reset_peak
from .pool import ModelPool
from .specs import as_spec, count_tokens
from .steps import MODES, OPTIMIZERS, check_mode, make_step, resolve_dtype
from .timing import time_step, timed_calls

__all__ = ["COLUMNS", "STATUSES", "ORDERS", "DEFAULT_LENGTHS_S", "BUDGET_NOTE", "run_sweep",
           "predict_call_s", "default_device", "device_name"]

COLUMNS = ["model", "mode", "batch", "length_s", "frames", "tokens", "median_ms", "p10_ms", "p90_ms",
           "throughput_audio_s_per_s", "peak_mem_mb", "status", "device", "dtype", "torch_version",
           "date", "repeats", "wall_s", "note"]
STATUSES = ("ok", "oom", "skipped", "error")
ORDERS = ("breadth", "depth")
DEFAULT_LENGTHS_S = (1, 2, 5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 5120)
BUDGET_NOTE = "study time budget"        # prefix of the notes of points skipped for budget_s


def default_device():
    return resolve_device("auto")


def device_name(device):
    """GPU model name on CUDA (with the cap of :func:`~dasslib.bench.memory.limit_memory`, if
    any: ``"NVIDIA H200, limited to 78.5 GiB"``), ``"cpu"`` otherwise."""
    device = torch.device(device)
    if device.type != "cuda":
        return device.type
    cap = memory_limit_gib(device)
    name = torch.cuda.get_device_name(device)
    return name if cap is None else f"{name}, limited to {cap:g} GiB"


def _batches(batch, modes):
    per_mode = dict(batch) if isinstance(batch, Mapping) else {m: batch for m in modes}
    for m in modes:
        b = per_mode.get(m)
        if isinstance(b, bool) or not isinstance(b, int) or b < 1:
            raise ValueError(f"batch for mode {m!r} must be a positive int, got {b!r}")
    return per_mode


def _lengths(lengths_s, frames_per_s):
    lengths = sorted({float(s) for s in lengths_s})
    if not lengths or lengths[0] <= 0:
        raise ValueError(f"lengths_s must be non-empty and positive, got {lengths_s!r}")
    frames = [int(round(s * frames_per_s)) for s in lengths]
    if frames[0] < 1:
        raise ValueError(f"length {lengths[0]} s is shorter than one frame at {frames_per_s} frames/s")
    return list(zip(lengths, frames))


def predict_call_s(history, frames):
    """Seconds of one call at ``frames`` from the measured (frames, seconds) history (ascending
    frames): log-log extrapolation with the slope of the last two points clipped to [1, 2].

    From a single point the slope is 1: a short input's time is dominated by per-layer launch and
    linear costs (an eager DASS-Small call takes about as long at 1 s as at 10 s, docs/efficiency.md),
    and assuming the quadratic worst case from there skipped every longer length of the SSM models."""
    if not history:
        return None
    f1, t1 = history[-1]
    slope = 1.0
    if len(history) > 1:
        f0, t0 = history[-2]
        if f1 != f0 and t0 > 0 and t1 > 0:
            slope = min(2.0, max(1.0, math.log(t1 / t0) / math.log(f1 / f0)))
    return t1 * (frames / f1) ** slope


def _point_cost_s(call_s, warmup, repeats, max_seconds):
    """Predicted wall seconds of a point whose calls take ``call_s`` each: the warm-up calls plus
    the timed calls :func:`~dasslib.bench.timing.time_step` makes (its cut to ``max_seconds``)."""
    return call_s * (warmup + timed_calls(call_s, warmup, repeats, max_seconds))


def _number(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x >= 0


class _ModeBudget:
    """Seconds each mode may use: ``budget_s`` None (no limit), a number (equal shares of what is
    left, in mode order) or ``{mode: seconds}`` (own seconds plus what earlier modes left)."""

    def __init__(self, budget_s, modes, clock):
        self.modes, self.clock, self.total, self.per_mode = list(modes), clock, None, None
        if isinstance(budget_s, Mapping):
            if set(budget_s) != set(self.modes) or not all(_number(v) for v in budget_s.values()):
                raise ValueError(f"budget_s as a dict needs one non-negative number per mode {self.modes}, "
                                 f"got {dict(budget_s)!r}")
            self.per_mode = {m: float(budget_s[m]) for m in self.modes}
        elif budget_s is not None:
            if not _number(budget_s):
                raise ValueError(f"budget_s must be None, a non-negative number or {{mode: seconds}}, "
                                 f"got {budget_s!r}")
            self.total = float(budget_s)
        self.start = clock()

    def allot(self, i):
        """Seconds mode number ``i`` may use from now on (None: no limit); call it when the mode starts."""
        spent = self.clock() - self.start
        if self.per_mode is not None:
            return max(0.0, sum(self.per_mode[m] for m in self.modes[:i + 1]) - spent)
        if self.total is not None:
            return max(0.0, (self.total - spent) / (len(self.modes) - i))
        return None


@dataclass(frozen=True)
class _Settings:
    device: torch.device
    dtype: torch.dtype
    optimizer: str | None
    warmup: int
    repeats: int
    budget: float | None          # max_seconds_per_point
    errors: str
    clock: object
    fast: str = "off"


def _measure(model, mel_bins, mode, batch, frames, cfg):
    """One ok point's measured fields; raises whatever the step raises."""
    x = torch.randn(batch, frames, mel_bins, device=cfg.device)
    step = make_step(model, mode, x, dtype=cfg.dtype, optimizer=cfg.optimizer, fast=cfg.fast)
    reset_peak(cfg.device)
    timing = time_step(step, cfg.device, warmup=cfg.warmup, repeats=cfg.repeats, max_seconds=cfg.budget)
    return dict(median_ms=timing.median_ms, p10_ms=timing.p10_ms, p90_ms=timing.p90_ms,
                peak_mem_mb=peak_memory_mb(cfg.device), repeats=len(timing.times_ms))


def _try_measure(model, mel_bins, mode, batch, frames, cfg):
    """(fields, None) when measured, (None, "oom") or (None, message) when the step failed.
    Returning from the handler drops the traceback, so the failed step's tensors can be freed."""
    try:
        return _measure(model, mel_bins, mode, batch, frames, cfg), None
    except Exception as exc:  # noqa: BLE001 - every failure becomes a row
        if is_oom(exc):
            return None, "oom"
        if cfg.errors == "raise":
            raise
        return None, f"{type(exc).__name__}: {exc}"


def _meta_model(spec):
    """The spec's model built on the meta device (no memory, no init cost) for token counts, or
    None when its factory cannot build there."""
    try:
        with torch.device("meta"):
            return spec.factory()
    except Exception:  # noqa: BLE001 - token counts then come from the real model
        return None


class _Series:
    """One (spec, mode): the (frames, seconds) history of its ok points and why it stopped."""

    def __init__(self, spec, mode, batch, token_models):
        self.spec, self.mode, self.batch, self.token_models = spec, mode, batch, token_models
        self.history, self.stop = [], None

    def tokens(self, frames, pool):
        """Token count at ``frames`` from the built model, or (never built: every point skipped) from
        one built on the meta device, cached in ``token_models``."""
        model = pool.built(self.spec)
        if model is None:
            if self.spec.label not in self.token_models:
                self.token_models[self.spec.label] = _meta_model(self.spec)
            model = self.token_models[self.spec.label]
        return None if model is None else count_tokens(model, frames, self.spec.mel_bins)


def _point(series, length_s, frames, pool, cfg, allotment, mode_start):
    """The row of one point; ``allotment``: seconds the mode may use from ``mode_start`` (clock
    time) on, None: no limit."""
    spec, mode, batch = series.spec, series.mode, series.batch
    row = dict(model=spec.label, mode=mode, batch=batch, length_s=length_s, frames=frames, wall_s=0.0)
    predicted = predict_call_s(series.history, frames)
    min_calls = cfg.warmup + 1
    if series.stop is None and cfg.budget is not None and predicted is not None \
            and predicted * min_calls > cfg.budget:
        series.stop = f"time budget: {min_calls} calls predicted {predicted * min_calls:.3g} s > {cfg.budget:g} s"
    if series.stop is not None:
        return dict(row, tokens=series.tokens(frames, pool), status="skipped", note=series.stop)
    if allotment is not None:
        left = allotment - (cfg.clock() - mode_start)
        cost = None if predicted is None else _point_cost_s(predicted, cfg.warmup, cfg.repeats, cfg.budget)
        why = None
        if left <= 0:
            why = f"{BUDGET_NOTE}: the {mode} allotment of {allotment:.4g} s is spent"
        elif cost is not None and cost > left:
            why = f"{BUDGET_NOTE}: predicted {cost:.3g} s > {left:.3g} s left of the {mode} allotment"
        if why is not None:
            return dict(row, tokens=series.tokens(frames, pool), status="skipped", note=why)
    begin = cfg.clock()
    model = pool.get(spec)
    row["tokens"] = count_tokens(model, frames, spec.mel_bins)
    fields, failure = _try_measure(model, spec.mel_bins, mode, batch, frames, cfg)
    if failure is None:
        series.history.append((frames, fields["median_ms"] / 1e3))
        throughput = batch * length_s / (fields["median_ms"] / 1e3)
        row.update(status="ok", throughput_audio_s_per_s=throughput, **fields)
    else:
        free_memory(cfg.device, model)
        if failure == "oom":
            series.stop = f"after oom at {length_s:g} s"
            row.update(status="oom")
        else:
            row.update(status="error", note=failure)
    row["wall_s"] = cfg.clock() - begin
    return row


def run_sweep(specs, lengths_s=DEFAULT_LENGTHS_S, modes=MODES, *, batch=1, device=None, dtype="auto",
              optimizer="adamw", warmup=2, repeats=10, max_seconds_per_point=60.0, budget_s=None,
              order="breadth", frames_per_s=100, errors="record", seed=0, progress=True,
              clock=time.perf_counter, fast="off"):
    """Measure every spec x mode x length; returns a DataFrame with :data:`COLUMNS`.

    specs: ModelSpecs, registry names or zero-argument factories (see ``model_spec``), in priority
    order; labels must be unique. modes: subset of ``("inference", "train")``, run in this order;
    batch: an int or ``{mode: int}``.
    dtype: ``"auto"`` (bfloat16 autocast on CUDA, float32 on CPU) or a dtype name.
    optimizer: ``"adamw"``, ``"sgd"`` or None (training step without an optimizer step).
    max_seconds_per_point: time budget of one point (None: unlimited).
    budget_s: wall-time budget of the whole sweep, None, seconds shared by the modes or
    ``{mode: seconds}``; order: ``"breadth"`` or ``"depth"`` (see the module doc).
    clock: the wall clock of budgets and ``wall_s`` (tests pass a fake one); the timed calls
    themselves use CUDA events or ``time.perf_counter``.
    fast: the :mod:`dasslib.fast` path of every step ("off": eager; otherwise each new length
    compiles once in the warm-up calls, which ``wall_s`` and the budgets count).
    Models are built once per spec (seeded with ``seed``) and freed at the end.
    """
    specs = [as_spec(s) for s in ([specs] if isinstance(specs, str) else specs)]
    if not specs:
        raise ValueError("specs is empty")
    labels = [s.label for s in specs]
    if len(set(labels)) != len(labels):
        raise ValueError(f"spec labels must be unique, got {labels}")
    modes = [check_mode(m) for m in ([modes] if isinstance(modes, str) else modes)]
    if errors not in ("record", "raise"):
        raise ValueError(f"errors must be 'record' or 'raise', got {errors!r}")
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
    if warmup < 0 or repeats < 1:
        raise ValueError(f"need warmup >= 0 and repeats >= 1, got warmup={warmup}, repeats={repeats}")
    if max_seconds_per_point is not None and max_seconds_per_point <= 0:
        raise ValueError(f"max_seconds_per_point must be positive or None, got {max_seconds_per_point}")
    if optimizer is not None and optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be None or one of {sorted(OPTIMIZERS)}, got {optimizer!r}")
    points = _lengths(lengths_s, frames_per_s)
    batches = _batches(batch, modes)
    budget = _ModeBudget(budget_s, modes, clock)
    device = torch.device(device) if device is not None else default_device()
    check_fast(fast)
    cfg = _Settings(device, resolve_dtype(dtype, device), optimizer, warmup, repeats,
                    max_seconds_per_point, errors, clock, fast)
    meta = dict(device=device_name(device), dtype=str(cfg.dtype).removeprefix("torch."),
                torch_version=torch.__version__, date=datetime.datetime.now().isoformat(timespec="seconds"))
    token_models = {}

    rows = {}
    with ModelPool(device, seed) as pool, \
            tqdm(total=len(specs) * len(modes) * len(points), desc="sweep", disable=not progress) as bar:
        for mi, mode in enumerate(modes):
            allotment, started = budget.allot(mi), clock()
            series = [_Series(s, mode, batches[mode], token_models) for s in specs]
            if order == "breadth":
                schedule = [(si, li) for li in range(len(points)) for si in range(len(specs))]
            else:
                schedule = [(si, li) for si in range(len(specs)) for li in range(len(points))]
            for si, li in schedule:
                length_s, frames = points[li]
                bar.set_postfix_str(f"{specs[si].label} {mode} {length_s:g}s")
                bar.update()
                rows[mi, si, li] = _point(series[si], length_s, frames, pool, cfg, allotment, started)
    return _frame([dict(rows[k], **meta) for k in sorted(rows)])


def _frame(rows):
    import pandas as pd  # here: capacity imports this module and inference imports capacity

    df = pd.DataFrame(rows).reindex(columns=COLUMNS)
    df["tokens"] = df["tokens"].astype("Int64")
    df["repeats"] = df["repeats"].astype("Int64")
    for col in ("median_ms", "p10_ms", "p90_ms", "throughput_audio_s_per_s", "peak_mem_mb", "length_s", "wall_s"):
        df[col] = df[col].astype(float)
    return df
