"""Largest input that fits: one search over the length in frames (doubling, then bisection), with
an optional prediction from peak memory to start it, and one out-of-memory answer
(:func:`~dasslib.bench.memory.call_or_oom`: the failed step's memory is freed outside the
``except`` block).

Two entry points. :func:`largest_fitting_length` runs the lengths themselves: it needs nothing but a
monotone ``fits(frames)`` and finds the boundary to a tolerance, at the price of running steps at and
near it (the benchmarks and notebook 05 tabulate that, per model and mode, within a time budget).
:func:`fit_and_verify` (used by :func:`dasslib.inference.max_length_that_fits`) runs only a few short
lengths, fits a polynomial to their peak memory (:func:`fit_memory_model`) and solves it for the
memory available: a quick estimate, also for lengths far too long to try (the lean DASS path, hours of
audio) and for a whole device when only part of it is free. Only where a failed allocation is cheap
and clean (the CPU under an address-space limit) is the prediction then run and, when it does not
fit, bisected down by the same search (``confirm``).

Doubling and bisection (:func:`largest_fitting_length`).
The search only assumes that ``fits(frames)`` is monotone (true up to a boundary, false after).
For a model spec, ``fits`` runs one inference or training step and answers False on an
out-of-memory error.

Time. Every probe is timed (``FitResult.seconds``). With ``max_seconds_per_probe`` the doubling
stops (bound ``"time"``) when a fitting step is slower than that, or when the next doubling is
predicted to be (log-log extrapolation of the fitting probes, slope in [1, 2], see
:func:`~dasslib.bench.sweep.predict_call_s`). A probe is a single call, so its time includes
one-time costs of a new shape: Triton kernels are compiled for each new block size / launch
configuration (e.g. every power of two of the token count up to 1024), cuDNN / cuBLAS pick
algorithms. Before giving up for time on a probe's first measurement, the search therefore runs
that length once more and keeps the faster of the two times, unless that first time agrees with
what the shorter lengths predict (within 1.5x); only a length that is slow twice ends the search.
Warm times known in advance (``known_times``, e.g. the medians of a sweep at the same batch) are
used as they are.
With ``budget_s`` no probe starts once that many seconds have passed since the call, or when
its predicted time exceeds what is left: the search ends with bound ``"budget"`` and the longest
length known to fit so far.
"""
import dataclasses
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data.frames import FRAMES_PER_SECOND, frames_text
from .memory import call_or_oom, free_memory
from .pool import ModelPool
from .specs import as_spec
from .steps import MODES, check_mode, make_step, resolve_dtype
from .sweep import default_device, device_name, predict_call_s

__all__ = ["FitResult", "Known", "BOUNDS", "CAPACITY_COLUMNS", "CAPACITY_ORDERS", "largest_fitting_length",
           "oom_predicate", "search_cost_s", "capacity_table", "capacity_row", "capacity_frame",
           "LengthFit", "fit_memory_model", "fit_and_verify"]

BOUNDS = ("memory", "max_frames", "time", "budget")
CAPACITY_ORDERS = ("given", "cheapest")
START_FRAMES, MAX_FRAMES = 100, 1_080_000        # 1 s and 3 h at 100 frames per second
ABS_TOL_FRAMES, REL_TOL = 100, 0.02              # a search ends within max(abs, rel * frames)
CAPACITY_COLUMNS = ["model", "mode", "batch", "max_frames", "max_length_s", "bound", "probes", "probe_s",
                    "wall_s", "device", "dtype", "torch_version", "note"]


@dataclass(frozen=True)
class FitResult:
    """frames: largest length found to fit (None: none known to fit); bound: what ended the
    search: ``"memory"`` (a failing length lies within tolerance above ``frames``),
    ``"max_frames"`` (the search cap fits), ``"time"`` (a fitting step was, or the next doubling
    was predicted to be, slower than ``max_seconds_per_probe``, so no longer lengths were tried)
    or ``"budget"`` (the search's time budget ran out: ``frames`` fits, longer was not tried to
    the end); probes: (frames, fits) in the order tried (a re-timed length appears twice);
    seconds: wall seconds of each probe; note: why the search stopped, in words (empty for
    ``"memory"`` / ``"max_frames"`` without re-timing)."""
    frames: int | None
    frames_per_s: float
    bound: str
    probes: tuple
    seconds: tuple = ()
    note: str = ""

    @property
    def length_s(self):
        return None if self.frames is None else self.frames / self.frames_per_s

    @property
    def probe_s(self):
        """Wall seconds of all probes."""
        return float(sum(self.seconds))


def _run_once(model, mel_bins, mode, batch, frames, device, dtype, optimizer):
    x = torch.randn(batch, frames, mel_bins, device=device)
    make_step(model, mode, x, dtype=dtype, optimizer=optimizer)()
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def oom_predicate(model, mel_bins, mode="inference", *, batch=1, device=None, dtype="auto",
                  optimizer="adamw"):
    """``fits(frames) -> bool``: one step of ``model`` (already on ``device``) on a
    (batch, frames, mel_bins) input; False on out-of-memory, other errors propagate."""
    check_mode(mode)
    device = torch.device(device) if device is not None else default_device()
    dtype = resolve_dtype(dtype, device)

    def fits(frames):
        return not call_or_oom(lambda: _run_once(model, mel_bins, mode, batch, frames, device, dtype, optimizer),
                               device, model=model)[1]
    return fits


class _Stop(Exception):
    """Ends a search: bound and note."""

    def __init__(self, bound, note=""):
        super().__init__(bound)
        self.bound, self.note = bound, note


class _Search:
    def __init__(self, fits, frames_per_s, max_seconds_per_probe, known_times, deadline, clock):
        self.fits, self.fps, self.limit = fits, frames_per_s, max_seconds_per_probe
        self.deadline, self.clock = deadline, clock
        self.probes, self.seconds, self.retimed = [], [], 0
        self.warm = {int(f): float(t) for f, t in known_times}   # frames -> seconds, already warm
        self.cold = {}                                           # frames -> seconds of one probe

    def _s(self, frames):
        return f"{frames / self.fps:g} s"

    def _history(self):
        times = {**self.cold, **self.warm}
        return sorted(times.items())

    def predict(self, frames):
        """Seconds of one step at ``frames`` from the fitting probes at shorter lengths."""
        return predict_call_s([(f, t) for f, t in self._history() if f < frames], frames)

    def probe(self, frames, retime=False):
        """fits(frames); raises _Stop("budget") instead when the budget forbids the probe."""
        if self.deadline is not None:
            left = self.deadline - self.clock()
            predicted = self.predict(frames)
            if left <= 0:
                raise _Stop("budget", f"search budget spent before the probe at {self._s(frames)}")
            if predicted is not None and predicted > left:
                raise _Stop("budget", f"the probe at {self._s(frames)} is predicted {predicted:.3g} s "
                                      f"> {left:.3g} s left of the search budget")
        begin = self.clock()
        ok = bool(self.fits(frames))
        seconds = self.clock() - begin
        self.probes.append((frames, ok))
        self.seconds.append(seconds)
        if ok:
            if retime or frames in self.cold:
                self.warm[frames] = min(seconds, self.cold.pop(frames, seconds), self.warm.get(frames, seconds))
                self.retimed += 1
            elif frames not in self.warm:
                self.cold[frames] = seconds
        return ok

    def _suspect(self, frames):
        """True when the first time at ``frames`` may include one-time costs: no shorter fitting
        length to compare with, or more than 1.5x what the shorter ones predict."""
        expected = self.predict(frames)
        return expected is None or self.cold[frames] > 1.5 * expected

    def check_time(self, frames, next_frames):
        """After ``frames`` fit: raise _Stop("time") if that step, or the one at ``next_frames``, is
        (predicted) slower than the limit. If the decision rests on a first time at ``frames`` that
        looks inflated (:meth:`_suspect`), that length is run once more first. (Only the last
        point's time can inflate the prediction: an inflated earlier point lowers the slope.)"""
        if self.limit is None:
            return
        while True:
            took = self.warm.get(frames, self.cold.get(frames))
            nxt = None if next_frames is None else self.predict(next_frames)
            if took is not None and took > self.limit:
                why = f"the step at {self._s(frames)} took {took:.3g} s > {self.limit:g} s per probe"
            elif nxt is not None and nxt > self.limit:
                why = f"the step at {self._s(next_frames)} is predicted {nxt:.3g} s > {self.limit:g} s per probe"
            else:
                return
            if frames not in self.cold or not self._suspect(frames):
                raise _Stop("time", why)
            if not self.probe(frames, retime=True):    # fitted before, not now (fragmentation): keep it
                self.warm[frames] = self.cold.pop(frames)

    def note(self, extra=""):
        parts = [extra] if extra else []
        if self.retimed:
            parts.append(f"{self.retimed} probe(s) re-timed: the first call at a new length includes "
                         "one-time costs (compilation, autotuning)")
        return "; ".join(parts)


def _search(fits, start_frames, max_frames, abs_tol_frames, rel_tol, max_seconds_per_probe,
            known_fit=None, known_fail=None, known_times=(), deadline=None, clock=time.perf_counter,
            frames_per_s=100):
    """(frames, bound, search state, note): see :func:`largest_fitting_length`."""
    s = _Search(fits, frames_per_s, max_seconds_per_probe, known_times, deadline, clock)
    lo, hi = known_fit, known_fail
    try:
        if lo is not None and lo >= max_frames:
            return max_frames, "max_frames", s, ""
        if hi is None:                                     # doubling
            frames = start_frames if lo is None else min(2 * lo, max_frames)
            if lo is not None:
                s.check_time(lo, frames)                   # known warm times may already say stop
            while True:
                if not s.probe(frames):
                    hi = frames
                    break
                lo = frames
                if frames == max_frames:
                    return lo, "max_frames", s, ""
                nxt = min(2 * frames, max_frames)
                s.check_time(frames, nxt)
                frames = nxt
        if lo is None:
            if hi > start_frames and s.probe(start_frames):   # a known failure above start: try start
                lo = start_frames
            if lo is None:
                return None, "memory", s, ""
        while hi - lo > max(abs_tol_frames, rel_tol * lo):  # bisection: lo fits, hi does not
            mid = (lo + hi) // 2
            if s.probe(mid):
                lo = mid
            else:
                hi = mid
        return lo, "memory", s, ""
    except _Stop as stop:
        return lo, stop.bound, s, stop.note


def largest_fitting_length(spec=None, mode="inference", *, fits=None, batch=1, device=None,
                           dtype="auto", optimizer="adamw", start_frames=START_FRAMES, max_frames=MAX_FRAMES,
                           abs_tol_frames=ABS_TOL_FRAMES, rel_tol=REL_TOL, max_seconds_per_probe=None,
                           frames_per_s=100, seed=0, known_fit=None, known_fail=None, known_times=(),
                           budget_s=None, clock=time.perf_counter):
    """Largest input length (frames) that fits, to within max(abs_tol_frames, rel_tol * frames).

    Give either ``spec`` (ModelSpec, registry name or factory: the model is built on
    ``device``, probed with :func:`oom_predicate` and freed) or a predicate ``fits(frames)``.
    Lengths start_frames, 2x, 4x, ... (capped at max_frames, default 3 h at 100 frames/s)
    are tried until one fails, then the gap to the last fitting one is bisected.
    known_fit / known_fail: lengths (frames) already seen to fit / run out of memory (e.g. in a
    sweep); the search starts from them instead of from ``start_frames`` (both given: bisection
    only). Their probes are not repeated and not counted in ``probes``.
    known_times: (frames, seconds) of warm steps measured elsewhere (same model, mode and batch),
    used to predict probe times. max_seconds_per_probe, budget_s: see the module doc.
    clock: the wall clock of probe times and the budget (tests pass a fake one).
    Returns a :class:`FitResult`.
    """
    if (spec is None) == (fits is None):
        raise ValueError("give exactly one of spec and fits")
    if not (isinstance(start_frames, int) and isinstance(max_frames, int) and 1 <= start_frames <= max_frames):
        raise ValueError(f"need ints 1 <= start_frames <= max_frames, got {start_frames}, {max_frames}")
    if abs_tol_frames < 1 or rel_tol < 0:
        raise ValueError(f"need abs_tol_frames >= 1 and rel_tol >= 0, got {abs_tol_frames}, {rel_tol}")
    if known_fit is not None and known_fail is not None and known_fit >= known_fail:
        raise ValueError(f"known_fit ({known_fit}) must be shorter than known_fail ({known_fail})")
    if budget_s is not None and budget_s < 0:
        raise ValueError(f"budget_s must be None or >= 0, got {budget_s}")
    if known_fit is not None and known_fit >= max_frames:
        return FitResult(max_frames, frames_per_s, "max_frames", ())
    deadline = None if budget_s is None else clock() + budget_s
    model = None
    if spec is not None:
        spec = as_spec(spec)
        device = torch.device(device) if device is not None else default_device()
        torch.manual_seed(seed)
        model = spec.factory().to(device)
        fits = oom_predicate(model, spec.mel_bins, mode, batch=batch, device=device, dtype=dtype,
                             optimizer=optimizer)
    try:
        frames, bound, search, note = _search(fits, start_frames, max_frames, abs_tol_frames, rel_tol,
                                              max_seconds_per_probe, known_fit, known_fail, known_times,
                                              deadline, clock, frames_per_s)
    finally:
        if model is not None:
            del model, fits
            free_memory(device)
    return FitResult(frames, frames_per_s, bound, tuple(search.probes), tuple(search.seconds),
                     search.note(note))


def capacity_row(label, mode, batch, res, wall_s, device, dtype):
    """One row of :data:`CAPACITY_COLUMNS` from a :class:`FitResult`; ``wall_s``: seconds of the whole search."""
    device = torch.device(device)
    meta = dict(device=device_name(device), dtype=str(resolve_dtype(dtype, device)).removeprefix("torch."),
                torch_version=torch.__version__)
    return dict(model=label, mode=mode, batch=batch, max_frames=res.frames, max_length_s=res.length_s,
                bound=res.bound, probes=len(res.probes), probe_s=res.probe_s, wall_s=wall_s, note=res.note,
                **meta)


def capacity_frame(rows):
    """Rows of :func:`capacity_row` as a DataFrame with :data:`CAPACITY_COLUMNS` and stable dtypes."""
    import pandas as pd  # here: inference imports this module for fit_and_verify, without the table machinery

    df = pd.DataFrame(rows).reindex(columns=CAPACITY_COLUMNS)
    df["max_frames"] = df["max_frames"].astype("Int64")
    df["probes"] = df["probes"].astype("Int64")
    for col in ("max_length_s", "probe_s", "wall_s"):
        df[col] = df[col].astype(float)
    df["note"] = df["note"].fillna("")
    return df


@dataclass(frozen=True)
class Known:
    """What is known of one (model, mode) at the batch of a capacity search before it starts:
    fit / fail: lengths (frames) seen to fit / run out of memory; times: warm (frames, seconds)
    steps at that batch (used as they are, see :func:`largest_fitting_length`); guess: (frames,
    seconds) only used to order the searches (e.g. times from another batch, scaled)."""
    fit: int | None = None
    fail: int | None = None
    times: tuple = ()
    guess: tuple = ()


def search_cost_s(history, fit, fail, start_frames, max_frames, rel_tol=REL_TOL, abs_tol_frames=ABS_TOL_FRAMES,
                  max_seconds_per_probe=None) -> float:
    """Rough seconds of a capacity search, only to order searches (cheapest first): 0 when the
    known fit reaches ``max_frames``; else the predicted step times (from ``history``, (frames,
    seconds) ascending, see :func:`~dasslib.bench.sweep.predict_call_s`; each capped at
    ``max_seconds_per_probe``, after which the search would stop) of the doubling lengths up to
    ``max_frames`` when no failure is known, or of the bisection probes (at the failing length)
    when one is; ``inf`` without history."""
    if fit is not None and fit >= max_frames:
        return 0.0
    if not history:
        return math.inf
    lo = fit if fit is not None else start_frames
    lengths = []
    if fail is None:
        f = lo
        while f < max_frames:
            f = min(2 * f, max_frames)
            lengths.append(f)
    else:
        gap, tol = fail - lo, max(abs_tol_frames, rel_tol * lo)
        lengths = [fail] * (math.ceil(math.log2(gap / tol)) if gap > tol else 0)
    cap = math.inf if max_seconds_per_probe is None else max_seconds_per_probe
    total = 0.0
    for f in lengths:
        t = predict_call_s(history, f)
        total += min(t, cap)
        if t > cap:
            break
    return total


def capacity_table(specs, modes=MODES, *, batch=1, device=None, dtype="auto", optimizer="adamw", seed=0,
                   known=None, order="given", budget_s=None, start_frames=START_FRAMES, max_frames=MAX_FRAMES,
                   frames_per_s=100, max_seconds_per_probe=None, progress=True, clock=time.perf_counter,
                   **search_kw):
    """:func:`largest_fitting_length` of every spec and mode as a DataFrame with
    :data:`CAPACITY_COLUMNS`: model, mode, batch, max_frames, max_length_s, bound, probes,
    probe_s (wall seconds of the probes), wall_s (of the whole search, model build or move
    included), device, dtype, torch_version, note (why the search stopped, see :class:`FitResult`).
    Rows in spec order, modes inner.

    known: None or ``known(label, mode) -> Known``: what each search starts from (a model whose
    known fit reaches ``max_frames`` costs no probe and is never built).
    order: ``"given"`` (spec by spec) or ``"cheapest"`` (by :func:`search_cost_s` of the known
    times or guesses; ties and searches without any in the given order).
    budget_s: None or seconds for all searches; each gets an equal share of what is left when it
    starts (a cheap search's leftover rolls over to the later ones); a search whose share runs out
    ends with bound ``"budget"`` and the longest length known to fit.
    Models are built once each (:class:`~dasslib.bench.ModelPool`), one at a time on the device.
    ``search_kw`` go to :func:`largest_fitting_length` (``rel_tol``, ``abs_tol_frames``).
    """
    if order not in CAPACITY_ORDERS:
        raise ValueError(f"order must be one of {CAPACITY_ORDERS}, got {order!r}")
    if budget_s is not None and not budget_s >= 0:
        raise ValueError(f"budget_s must be None or >= 0, got {budget_s!r}")
    device = torch.device(device) if device is not None else default_device()
    specs = [as_spec(s) for s in ([specs] if isinstance(specs, str) else specs)]
    modes = [check_mode(m) for m in ([modes] if isinstance(modes, str) else modes)]
    tol = dict(rel_tol=search_kw.get("rel_tol", REL_TOL),
               abs_tol_frames=search_kw.get("abs_tol_frames", ABS_TOL_FRAMES))
    jobs = []
    for spec in specs:
        for mode in modes:
            k = known(spec.label, mode) if known is not None else Known()
            cost = search_cost_s(list(k.times or k.guess), k.fit, k.fail, start_frames, max_frames,
                                 max_seconds_per_probe=max_seconds_per_probe, **tol)
            jobs.append((spec, mode, k, cost))
    run = sorted(range(len(jobs)), key=lambda j: (jobs[j][3], j)) if order == "cheapest" else list(range(len(jobs)))
    rows, start = [None] * len(jobs), clock()
    with ModelPool(device, seed) as pool:
        for pos, j in enumerate(tqdm(run, desc="capacity", disable=not progress)):
            spec, mode, k, _ = jobs[j]
            share = None if budget_s is None else max(0.0, (budget_s - (clock() - start)) / (len(run) - pos))
            begin = clock()
            probes = (k.fit is None or k.fit < max_frames) and (share is None or share > 0)
            fits = oom_predicate(pool.get(spec), spec.mel_bins, mode, batch=batch, device=device, dtype=dtype,
                                 optimizer=optimizer) if probes else (lambda frames: False)
            res = largest_fitting_length(fits=fits, start_frames=start_frames, max_frames=max_frames,
                                         frames_per_s=frames_per_s, known_fit=k.fit, known_fail=k.fail,
                                         known_times=k.times, max_seconds_per_probe=max_seconds_per_probe,
                                         budget_s=share, clock=clock, **search_kw)
            del fits
            if res.bound == "budget":
                res = dataclasses.replace(res, note=f"search {pos + 1} of {len(run)}, share {share:.3g} s: {res.note}")
            rows[j] = capacity_row(spec.label, mode, batch, res, clock() - begin, device, dtype)
    return capacity_frame(rows)


# ---------------------------------------------------------------- fit and verify (inference's estimate)
def _gib(n_bytes):
    return f"{n_bytes / 2**30:.2f} GiB"


@dataclass(frozen=True)
class LengthFit:
    """Largest input length predicted to fit, from a memory model fitted to probes.

    max_frames: largest length (frames) whose predicted peak stays within ``budget_bytes``
    (the memory available when the fit was made); max_frames_total: the same for
    ``total_bytes`` (the whole device), None when unknown; coeffs: the fitted polynomial
    peak_bytes(frames), highest power first (None when no probe fitted); probes: measured
    (frames, peak_bytes or None when it did not fit), in the order tried; confirmed: max_frames was
    run (on the CPU under an address-space limit), not only predicted.
    """
    max_frames: int
    max_frames_total: int | None
    budget_bytes: int
    total_bytes: int | None
    batch_size: int
    coeffs: tuple | None
    probes: tuple
    confirmed: bool = False

    @property
    def max_seconds(self):
        return self.max_frames / FRAMES_PER_SECOND

    def __str__(self):
        if self.max_frames == 0:
            tried = min(f for f, _ in self.probes) if self.probes else 0
            return f"nothing fits: even {frames_text(tried)} at batch size {self.batch_size} ran out of memory"
        text = (f"largest length {'measured' if self.confirmed else 'predicted'} to fit at batch size "
                f"{self.batch_size}: "
                f"{frames_text(self.max_frames)} in the {_gib(self.budget_bytes)} available now")
        if self.max_frames_total is not None:
            text += (f"; {frames_text(self.max_frames_total)} if all {_gib(self.total_bytes)} "
                     "of the device were free")
        fitted = ", ".join(str(f) for f, peak in self.probes if peak is not None)
        if self.coeffs is None:   # found by running lengths: the probes' peaks did not grow
            return text + f" (found by running lengths from {fitted} frames up)"
        *quad, per_frame, base = self.coeffs
        model = f"{_gib(base)} + {per_frame / 2**10:.1f} KiB/frame"
        if quad:
            model += f" + {quad[0]:.3g} B/frame^2"
        return text + f" (peak memory ~ {model}, fitted to peaks measured at {fitted} frames)"


def fit_memory_model(probes, budget_bytes, degree=1):
    """Fit ``peak_bytes = poly(frames)`` to ``probes`` and solve it for ``budget_bytes``.

    probes: (frames, peak_bytes) pairs with at least ``degree + 1`` distinct lengths.
    Returns (max_frames, coeffs): the largest integer length whose predicted peak is
    <= budget_bytes (0 when even a length-0 input would not fit) and the polynomial
    coefficients, highest power first. A degree-2 fit that does not curve upwards falls back
    to degree 1; ValueError when the peak does not grow with the length at all.
    """
    if degree not in (1, 2):
        raise ValueError(f"degree must be 1 or 2, got {degree!r}")
    frames = np.array([f for f, _ in probes], dtype=np.float64)
    peaks = np.array([p for _, p in probes], dtype=np.float64)
    if len(np.unique(frames)) < degree + 1:
        raise ValueError(f"a degree-{degree} memory model needs {degree + 1} distinct lengths, "
                         f"got {[int(f) for f in frames]}")
    coeffs = np.polyfit(frames, peaks, degree)
    if degree == 2 and coeffs[0] <= 0:
        return fit_memory_model(probes, budget_bytes, degree=1)
    if degree == 1 and coeffs[0] < 1.0:  # less than a byte per frame: no measurable growth
        raise ValueError("peak memory does not grow with the length, cannot extrapolate; probes "
                         f"(frames, bytes): {[(int(f), int(p)) for f, p in zip(frames, peaks)]}")
    shifted = coeffs.copy()
    shifted[-1] -= budget_bytes
    roots = [r.real for r in np.roots(shifted) if abs(r.imag) < 1e-9 * max(1.0, abs(r.real))]
    largest = max(roots, default=-1.0)
    max_frames = int(math.floor(largest + 1e-6)) if largest > 0 else 0  # 1e-6: the fit's rounding
    return max_frames, tuple(float(c) for c in coeffs)


def fit_and_verify(probe, budget_bytes, total_bytes=None, *, batch_size=1, start_frames=8192, min_frames=64,
                   degree=1, confirm=False, upper_frames=None) -> LengthFit:
    """Largest length predicted (``confirm``: and then found by running it) to fit in ``budget_bytes``.

    probe(frames) -> peak bytes of one step at that length, or None when it ran out of memory (e.g. a
    step through :func:`~dasslib.bench.memory.call_or_oom`). Peak memory is probed at ``start_frames``
    (halved until it fits, down to ``min_frames``; a :class:`LengthFit` with ``max_frames`` 0 when
    nothing does) and at that length / 2 (and / 4 for ``degree=2``); :func:`fit_memory_model`
    extrapolates them to ``budget_bytes`` (and to ``total_bytes``, the whole device, when given).
    ValueError when the peaks do not grow with the length, unless ``confirm``: then the lengths
    themselves are tried from the largest probe up to ``upper_frames`` (a length known not to fit;
    default 16x that probe), and the fit has no coefficients.
    confirm: the predicted length is run and, when it does not fit, bisected down from it to one that
    does (``confirmed=True``), by the same search as :func:`largest_fitting_length` (to within
    max(ABS_TOL_FRAMES, REL_TOL * frames)); only where a failed allocation is cheap and clean.
    batch_size is recorded in the result (``probe`` runs at it). See the module docstring for when to
    use :func:`largest_fitting_length` instead.
    """
    if not (1 <= min_frames <= start_frames):
        raise ValueError(f"need 1 <= min_frames <= start_frames, got {min_frames}, {start_frames}")
    tried = []
    frames = start_frames
    while True:
        tried.append((frames, probe(frames)))
        if tried[-1][1] is not None:
            break
        if frames // 2 < min_frames:
            return LengthFit(0, None, budget_bytes, total_bytes, batch_size, None, tuple(tried))
        frames //= 2
    for k in range(1, degree + 1):
        smaller = max(1, frames >> k)
        tried.append((smaller, probe(smaller)))
    fitted = [(f, p) for f, p in tried if p is not None]
    try:
        max_frames, coeffs = fit_memory_model(fitted, budget_bytes, degree)
        max_total = fit_memory_model(fitted, total_bytes, degree)[0] if total_bytes is not None else None
    except ValueError:
        if not confirm:
            raise
        # small probes can reuse memory the process freed earlier (no measurable growth): under an
        # address-space limit the lengths themselves can be tried, up to one known not to fit
        max_frames, coeffs, max_total = upper_frames or 16 * max(f for f, _ in fitted), None, None
    if confirm:
        max_frames = _confirm_fit(probe, max(f for f, _ in fitted), max_frames)
    return LengthFit(max_frames, max_total, budget_bytes, total_bytes, batch_size, coeffs, tuple(tried), confirm)


def _confirm_fit(probe, fits, guess):
    """The largest length found to fit (``probe`` not None) between ``fits`` (known to fit) and
    ``guess``: ``guess`` itself when it fits, else the gap bisected by the search engine of
    :func:`largest_fitting_length` (to within its default tolerance)."""
    if guess <= fits or probe(guess) is not None:
        return max(guess, fits)
    frames, _, _, _ = _search(lambda f: probe(f) is not None, fits, guess, ABS_TOL_FRAMES, REL_TOL, None,
                              known_fit=fits, known_fail=guess)
    return frames
