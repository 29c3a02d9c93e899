"""The one timer of the package and its benchmarks.

- :func:`time_step`: a model step (forward, training step, a whole call): CUDA events on the GPU,
  ``time.perf_counter`` on the CPU; every call timed on its own (the GPU is synchronized after each
  one), after ``warmup`` untimed calls (allocator growth, autotuning, optimizer-state creation).
- :func:`back_to_back_ms`: the same step called ``calls`` times with no synchronisation in between, the
  mean per call: the host's work for a call then overlaps the GPU's work on the previous ones (throughput),
  where :func:`time_step` exposes it (latency of a call on an idle GPU).
- :func:`kernel_ms`: a kernel (the scans): ``triton.testing.do_bench`` on the GPU, which flushes the
  L2 cache between calls (so a small input is not timed out of cache) and takes the median; on the
  CPU (Triton's interpreter) one untimed and one timed call.
"""
import time
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["Timing", "time_step", "back_to_back_ms", "kernel_ms"]


@dataclass(frozen=True)
class Timing:
    """Per-call milliseconds of the timed repeats."""
    times_ms: tuple

    @property
    def median_ms(self):
        return float(np.median(self.times_ms))

    @property
    def p10_ms(self):
        return float(np.percentile(self.times_ms, 10))

    @property
    def p90_ms(self):
        return float(np.percentile(self.times_ms, 90))


def _cpu_call_ms(step):
    start = time.perf_counter()
    step()
    return (time.perf_counter() - start) * 1e3


def _cuda_call_ms(step, stream):
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record(stream)
    step()
    end.record(stream)
    end.synchronize()
    return start.elapsed_time(end)


def timed_calls(call_s, warmup, repeats, max_seconds=None):
    """How many timed calls :func:`time_step` makes when one call takes ``call_s`` seconds:
    ``repeats``, cut so that warm-up + repeats fit in ``max_seconds`` (at least one)."""
    if max_seconds is None or not call_s:
        return repeats
    return max(1, min(repeats, int(max_seconds / call_s) - warmup))


def time_step(step, device, warmup=2, repeats=10, max_seconds=None):
    """Time ``step()`` ``repeats`` times after ``warmup`` untimed calls.

    max_seconds: budget for the whole measurement at the steady-state cost of one call (the last
    warm-up call): repeats are cut so that warm-up + repeats fit in it, at least one timed call is
    made. One-time costs of the first call (compilation, autotuning) do not count, so a slow first
    call does not cut the repeats of a fast step to one.
    """
    if warmup < 0 or repeats < 1:
        raise ValueError(f"need warmup >= 0 and repeats >= 1, got warmup={warmup}, repeats={repeats}")
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
        stream = torch.cuda.current_stream(device)
        call_ms = lambda step: _cuda_call_ms(step, stream)  # noqa: E731
    else:
        call_ms = _cpu_call_ms
    last_ms = None
    for _ in range(warmup):
        last_ms = call_ms(step)
    n = timed_calls(None if last_ms is None else last_ms / 1e3, warmup, repeats, max_seconds)
    return Timing(tuple(call_ms(step) for _ in range(n)))


def back_to_back_ms(step, device, calls=20):
    """Mean milliseconds per call of ``calls`` calls of ``step()`` issued back to back (one synchronisation
    at the end; CUDA events on the GPU, ``time.perf_counter`` on the CPU). Call it after warm-up."""
    if calls < 1:
        raise ValueError(f"need calls >= 1, got {calls}")
    if torch.device(device).type != "cuda":
        start = time.perf_counter()
        for _ in range(calls):
            step()
        return (time.perf_counter() - start) * 1e3 / calls
    torch.cuda.synchronize(device)
    stream = torch.cuda.current_stream(device)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record(stream)
    for _ in range(calls):
        step()
    end.record(stream)
    end.synchronize()
    return start.elapsed_time(end) / calls


def kernel_ms(fn, device, budget_ms: float = 300.0, warmup_ms: float = 100.0) -> float:
    """Median milliseconds of ``fn()``: on CUDA ``triton.testing.do_bench`` (``warmup_ms`` of warm-up calls,
    then as many calls as fit in ``budget_ms``, the L2 cache flushed before each); elsewhere one untimed
    call (compilation) and one timed call."""
    if torch.device(device).type != "cuda":
        fn()
        return _cpu_call_ms(fn)
    from triton.testing import do_bench

    return float(do_bench(fn, warmup=warmup_ms, rep=budget_ms, return_mode="median"))
