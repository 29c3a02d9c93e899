"""Efficiency benchmarks: time and peak memory vs. input length, largest fitting input.

- :mod:`.specs`: what is measured (:class:`ModelSpec` from a registry name or a factory);
- :mod:`.steps`, :mod:`.timing`, :mod:`.memory`: one timed step, its peak memory, OOM recovery;
- :mod:`.sweep`: :func:`run_sweep` over models x modes x lengths -> tidy DataFrame;
- :mod:`.capacity`: :func:`largest_fitting_length` (doubling + bisection);
- :mod:`.analysis`: :func:`crossover_length`, :func:`ratio_table`, :func:`win_summary`;
- :mod:`.plots`: :func:`plot_scaling` (log-log, seaborn).
"""
from .analysis import crossover_length, loglog_interp, ratio_table, win_summary
from .capacity import FitResult, capacity_table, largest_fitting_length, oom_predicate
from .memory import free_memory, is_oom, peak_memory_mb, reset_peak
from .plots import plot_scaling
from .specs import PAPER_MODELS, ModelSpec, as_spec, count_tokens, default_specs, model_spec
from .steps import MODES, make_step, resolve_dtype
from .sweep import COLUMNS, DEFAULT_LENGTHS_S, STATUSES, run_sweep
from .timing import Timing, time_step

__all__ = ["ModelSpec", "model_spec", "as_spec", "default_specs", "count_tokens", "PAPER_MODELS",
           "MODES", "make_step", "resolve_dtype", "Timing", "time_step",
           "is_oom", "free_memory", "reset_peak", "peak_memory_mb",
           "COLUMNS", "STATUSES", "DEFAULT_LENGTHS_S", "run_sweep",
           "FitResult", "largest_fitting_length", "oom_predicate", "capacity_table",
           "loglog_interp", "crossover_length", "ratio_table", "win_summary", "plot_scaling"]
