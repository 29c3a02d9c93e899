"""Efficiency benchmarks: time and peak memory vs. input length, largest fitting input.

- :mod:`.specs`: what is measured (:class:`ModelSpec` from a registry name or a factory);
- :mod:`.steps`, :mod:`.timing`, :mod:`.memory`: one timed step, its peak memory, OOM recovery;
- :mod:`.pool`: :class:`ModelPool`, models built once, one at a time on the device;
- :mod:`.sweep`: :func:`run_sweep` over models x modes x lengths -> tidy DataFrame, optionally
  within a wall-time budget (breadth-first over lengths, shares per mode);
- :mod:`.capacity`: :func:`largest_fitting_length` (doubling + bisection, timed probes) and
  :func:`capacity_table` over models x modes (known bounds, cheapest first, a shared budget);
- :mod:`.analysis`: :func:`crossover_length`, :func:`ratio_table`, :func:`win_summary`;
- :mod:`.plots`: :func:`plot_scaling` (log-log, seaborn).
"""
from .analysis import crossover_length, loglog_interp, ratio_table, win_summary
from .capacity import (
                       BOUNDS,
                       CAPACITY_COLUMNS,
                       CAPACITY_ORDERS,
                       FitResult,
                       Known,
                       capacity_frame,
                       capacity_row,
                       capacity_table,
                       largest_fitting_length,
                       oom_predicate,
                       search_cost_s,
)
from .memory import free_memory, is_oom, limit_memory, memory_limit_gib, peak_memory_mb, reset_peak
from .plots import plot_scaling
from .pool import ModelPool
from .specs import PAPER_MODELS, ModelSpec, as_spec, count_tokens, default_specs, model_spec
from .steps import MODES, make_step, resolve_dtype
from .sweep import BUDGET_NOTE, COLUMNS, DEFAULT_LENGTHS_S, ORDERS, STATUSES, predict_call_s, run_sweep
from .timing import Timing, time_step

__all__ = ["ModelSpec", "model_spec", "as_spec", "default_specs", "count_tokens", "PAPER_MODELS",
           "MODES", "make_step", "resolve_dtype", "Timing", "time_step",
           "is_oom", "free_memory", "reset_peak", "peak_memory_mb", "limit_memory", "memory_limit_gib", "ModelPool",
           "COLUMNS", "STATUSES", "ORDERS", "BUDGET_NOTE", "DEFAULT_LENGTHS_S", "run_sweep", "predict_call_s",
           "FitResult", "Known", "BOUNDS", "CAPACITY_COLUMNS", "CAPACITY_ORDERS", "largest_fitting_length",
           "oom_predicate", "search_cost_s", "capacity_table", "capacity_row", "capacity_frame",
           "loglog_interp", "crossover_length", "ratio_table", "win_summary", "plot_scaling"]
