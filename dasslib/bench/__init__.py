"""Efficiency benchmarks: time and peak memory vs. input length, largest fitting input.

- :mod:`.specs`: what is measured (:class:`ModelSpec` from a registry name or a factory);
- :mod:`.steps`, :mod:`.timing`, :mod:`.memory`: one timed step, its peak memory, OOM recovery;
- :mod:`.pool`: :class:`ModelPool`, models built once, one at a time on the device;
- :mod:`.sweep`: :func:`run_sweep` over models x modes x lengths -> tidy DataFrame, optionally
  within a wall-time budget (breadth-first over lengths, shares per mode);
- :mod:`.capacity`: :func:`largest_fitting_length` (doubling + bisection, timed probes) and
  :func:`capacity_table` over models x modes (known bounds, cheapest first, a shared budget);
  :func:`fit_and_verify` (peak memory of a few short lengths, :func:`fit_memory_model` extrapolated
  to the memory available: the estimate behind ``dasslib.inference.max_length_that_fits``);
- :mod:`.analysis`: :func:`crossover_length`, :func:`ratio_table`, :func:`win_summary`;
- :mod:`.plots`: :func:`plot_scaling` (log-log, seaborn).

Names are imported from their submodules on first use: ``dasslib.bench.memory``, ``.timing`` and ``.capacity``
(which inference uses) do not load the table and plotting machinery (pandas, seaborn); the sweep and capacity
tables import pandas when they build a DataFrame.
"""
from .._lazy import lazy_namespace

_EXPORTS = {
    "analysis": ("crossover_length", "loglog_interp", "ratio_table", "win_summary"),
    "capacity": ("BOUNDS", "CAPACITY_COLUMNS", "CAPACITY_ORDERS", "FitResult", "Known", "LengthFit", "capacity_frame",
                 "capacity_row", "capacity_table", "fit_and_verify", "fit_memory_model", "largest_fitting_length",
                 "oom_predicate", "search_cost_s"),
    "memory": ("free_memory", "is_oom", "limit_memory", "memory_limit_gib", "peak_memory_mb", "reset_peak"),
    "plots": ("plot_scaling",),
    "pool": ("ModelPool",),
    "specs": ("PAPER_MODELS", "ModelSpec", "as_spec", "count_tokens", "default_specs", "model_spec"),
    "steps": ("MODES", "make_step", "resolve_dtype"),
    "sweep": ("BUDGET_NOTE", "COLUMNS", "DEFAULT_LENGTHS_S", "ORDERS", "STATUSES", "predict_call_s", "run_sweep"),
    "timing": ("Timing", "back_to_back_ms", "kernel_ms", "time_step"),
}
__getattr__, __dir__, __all__ = lazy_namespace(__name__, _EXPORTS)
