"""Sweep: time and peak memory of every (model, mode, input length), as one tidy DataFrame.

Each point feeds a random fbank batch (B, frames, mel_bins), frames = length_s * frames_per_s.
A point ends in one of four statuses:

- ``ok``: measured;
- ``oom``: the step ran out of memory (memory is freed and the sweep goes on);
- ``skipped``: not run, because the same model and mode already ran out of memory at a shorter
  length, or because one warm-up call plus one timed call is predicted to exceed
  ``max_seconds_per_point`` (log-log extrapolation of the previous points, see ``_predict_call_s``);
- ``error``: any other exception, with its message in ``note`` (``errors="raise"`` re-raises).
"""
import datetime
import math
from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd
import torch
from tqdm.auto import tqdm

from .memory import free_memory, is_oom, peak_memory_mb, reset_peak
from .specs import as_spec, count_tokens
from .steps import MODES, OPTIMIZERS, check_mode, make_step, resolve_dtype
from .timing import time_step

__all__ = ["COLUMNS", "STATUSES", "DEFAULT_LENGTHS_S", "run_sweep", "default_device", "device_name"]

COLUMNS = ["model", "mode", "batch", "length_s", "frames", "tokens", "median_ms", "p10_ms", "p90_ms",
           "throughput_audio_s_per_s", "peak_mem_mb", "status", "device", "dtype", "torch_version",
           "date", "repeats", "note"]
STATUSES = ("ok", "oom", "skipped", "error")
DEFAULT_LENGTHS_S = (1, 2, 5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 5120)


def default_device():
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def device_name(device):
    """GPU model name on CUDA, ``"cpu"`` otherwise."""
    device = torch.device(device)
    return torch.cuda.get_device_name(device) if device.type == "cuda" else device.type


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


def _predict_call_s(history, frames):
    """Seconds of one call at ``frames`` from the measured (frames, seconds) history: log-log
    extrapolation with the slope of the last two points clipped to [1, 2].

    From a single point the slope is 1: a short input's time is dominated by per-layer launch and
    linear costs (DASS-Small takes ~33 ms at 1 s and ~37 ms at 10 s on an H100), and assuming the
    quadratic worst case from there skipped every longer length of the SSM models."""
    if not history:
        return None
    f1, t1 = history[-1]
    slope = 1.0
    if len(history) > 1:
        f0, t0 = history[-2]
        if f1 != f0 and t0 > 0 and t1 > 0:
            slope = min(2.0, max(1.0, math.log(t1 / t0) / math.log(f1 / f0)))
    return t1 * (frames / f1) ** slope


@dataclass(frozen=True)
class _Settings:
    device: torch.device
    dtype: torch.dtype
    optimizer: str | None
    warmup: int
    repeats: int
    budget: float | None
    errors: str


def _measure(model, mel_bins, mode, batch, frames, cfg):
    """One ok point's measured fields; raises whatever the step raises."""
    x = torch.randn(batch, frames, mel_bins, device=cfg.device)
    step = make_step(model, mode, x, dtype=cfg.dtype, optimizer=cfg.optimizer)
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


def _series_rows(model, spec, mode, batch, points, cfg, bar):
    """Rows of one (model, mode) over ascending (length_s, frames) points."""
    rows, history, stop = [], [], None
    min_calls = cfg.warmup + 1
    for length_s, frames in points:
        bar.set_postfix_str(f"{spec.label} {mode} {length_s:g}s")
        bar.update()
        row = dict(model=spec.label, mode=mode, batch=batch, length_s=length_s, frames=frames,
                   tokens=count_tokens(model, frames, spec.mel_bins))
        predicted = _predict_call_s(history, frames)
        if stop is None and cfg.budget is not None and predicted is not None \
                and predicted * min_calls > cfg.budget:
            stop = f"time budget: {min_calls} calls predicted {predicted * min_calls:.3g} s > {cfg.budget:g} s"
        if stop is not None:
            rows.append(dict(row, status="skipped", note=stop))
            continue
        fields, failure = _try_measure(model, spec.mel_bins, mode, batch, frames, cfg)
        if failure is None:
            history.append((frames, fields["median_ms"] / 1e3))
            throughput = batch * length_s / (fields["median_ms"] / 1e3)
            rows.append(dict(row, status="ok", throughput_audio_s_per_s=throughput, **fields))
            continue
        free_memory(cfg.device, model)
        if failure == "oom":
            stop = f"after oom at {length_s:g} s"
            rows.append(dict(row, status="oom"))
        else:
            rows.append(dict(row, status="error", note=failure))
    return rows


def run_sweep(specs, lengths_s=DEFAULT_LENGTHS_S, modes=MODES, *, batch=1, device=None, dtype="auto",
              optimizer="adamw", warmup=2, repeats=10, max_seconds_per_point=60.0, frames_per_s=100,
              errors="record", seed=0, progress=True):
    """Measure every spec x mode x length; returns a DataFrame with :data:`COLUMNS`.

    specs: ModelSpecs, registry names or zero-argument factories (see ``model_spec``).
    modes: subset of ``("inference", "train")``; batch: an int or ``{mode: int}``.
    dtype: ``"auto"`` (bfloat16 autocast on CUDA, float32 on CPU) or a dtype name.
    optimizer: ``"adamw"``, ``"sgd"`` or None (training step without an optimizer step).
    max_seconds_per_point: time budget of one point (None: unlimited), see the module doc.
    Models are built once per spec (seeded with ``seed``) and freed before the next one.
    """
    specs = [as_spec(s) for s in ([specs] if isinstance(specs, str) else specs)]
    if not specs:
        raise ValueError("specs is empty")
    modes = [check_mode(m) for m in ([modes] if isinstance(modes, str) else modes)]
    if errors not in ("record", "raise"):
        raise ValueError(f"errors must be 'record' or 'raise', got {errors!r}")
    if warmup < 0 or repeats < 1:
        raise ValueError(f"need warmup >= 0 and repeats >= 1, got warmup={warmup}, repeats={repeats}")
    if max_seconds_per_point is not None and max_seconds_per_point <= 0:
        raise ValueError(f"max_seconds_per_point must be positive or None, got {max_seconds_per_point}")
    if optimizer is not None and optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be None or one of {sorted(OPTIMIZERS)}, got {optimizer!r}")
    points = _lengths(lengths_s, frames_per_s)
    batches = _batches(batch, modes)
    device = torch.device(device) if device is not None else default_device()
    cfg = _Settings(device, resolve_dtype(dtype, device), optimizer, warmup, repeats,
                    max_seconds_per_point, errors)
    meta = dict(device=device_name(device), dtype=str(cfg.dtype).removeprefix("torch."),
                torch_version=torch.__version__, date=datetime.datetime.now().isoformat(timespec="seconds"))

    rows = []
    with tqdm(total=len(specs) * len(modes) * len(points), desc="sweep", disable=not progress) as bar:
        for spec in specs:
            torch.manual_seed(seed)
            model = spec.factory().to(device)
            for mode in modes:
                rows += _series_rows(model, spec, mode, batches[mode], points, cfg, bar)
            del model
            free_memory(device)
    return _frame([dict(r, **meta) for r in rows])


def _frame(rows):
    df = pd.DataFrame(rows).reindex(columns=COLUMNS)
    df["tokens"] = df["tokens"].astype("Int64")
    df["repeats"] = df["repeats"].astype("Int64")
    for col in ("median_ms", "p10_ms", "p90_ms", "throughput_audio_s_per_s", "peak_mem_mb", "length_s"):
        df[col] = df[col].astype(float)
    return df
