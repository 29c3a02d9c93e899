"""Largest input that fits: doubling, then bisection on the length in frames.

The search only assumes that ``fits(frames)`` is monotone (true up to a boundary, false after).
For a model spec, ``fits`` runs one inference or training step and answers False on an
out-of-memory error.
"""
import time
from dataclasses import dataclass

import pandas as pd
import torch
from tqdm.auto import tqdm

from .memory import free_memory, is_oom
from .specs import as_spec
from .steps import MODES, check_mode, make_step, resolve_dtype
from .sweep import default_device, device_name

__all__ = ["FitResult", "largest_fitting_length", "oom_predicate", "capacity_table"]


@dataclass(frozen=True)
class FitResult:
    """frames: largest length found to fit (None: not even ``start_frames``); bound: what
    ended the search: ``"memory"`` (a failing length lies within tolerance above ``frames``),
    ``"max_frames"`` (the search cap fits) or ``"time"`` (a fitting probe took longer than
    ``max_seconds_per_probe``, so no longer lengths were tried); probes: (frames, fits) in
    the order tried."""
    frames: int | None
    frames_per_s: float
    bound: str
    probes: tuple

    @property
    def length_s(self):
        return None if self.frames is None else self.frames / self.frames_per_s


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
        try:
            _run_once(model, mel_bins, mode, batch, frames, device, dtype, optimizer)
            return True
        except Exception as exc:  # noqa: BLE001 - only out-of-memory is an answer
            if not is_oom(exc):
                raise
        free_memory(device, model)   # after the handler: its traceback held the step's tensors
        return False
    return fits


def _search(fits, start_frames, max_frames, abs_tol_frames, rel_tol, max_seconds_per_probe,
            known_fit=None, known_fail=None):
    probes = []

    def probe(frames):
        begin = time.perf_counter()
        ok = bool(fits(frames))
        probes.append((frames, ok))
        return ok, time.perf_counter() - begin

    lo, hi = known_fit, known_fail
    if lo is not None and lo >= max_frames:
        return max_frames, "max_frames", probes
    if hi is None:                                     # doubling
        frames = start_frames if lo is None else min(2 * lo, max_frames)
        while True:
            ok, seconds = probe(frames)
            if not ok:
                hi = frames
                break
            lo = frames
            if frames == max_frames:
                return lo, "max_frames", probes
            if max_seconds_per_probe is not None and seconds > max_seconds_per_probe:
                return lo, "time", probes
            frames = min(2 * frames, max_frames)
    if lo is None:
        if hi > start_frames:                          # a known failure above start: try start first
            lo_ok = probe(start_frames)[0]
            if lo_ok:
                lo = start_frames
        if lo is None:
            return None, "memory", probes
    while hi - lo > max(abs_tol_frames, rel_tol * lo):  # bisection: lo fits, hi does not
        mid = (lo + hi) // 2
        if probe(mid)[0]:
            lo = mid
        else:
            hi = mid
    return lo, "memory", probes


def largest_fitting_length(spec=None, mode="inference", *, fits=None, batch=1, device=None,
                           dtype="auto", optimizer="adamw", start_frames=100, max_frames=1_080_000,
                           abs_tol_frames=100, rel_tol=0.02, max_seconds_per_probe=None,
                           frames_per_s=100, seed=0, known_fit=None, known_fail=None):
    """Largest input length (frames) that fits, to within max(abs_tol_frames, rel_tol * frames).

    Give either ``spec`` (ModelSpec, registry name or factory: the model is built on
    ``device``, probed with :func:`oom_predicate` and freed) or a predicate ``fits(frames)``.
    Lengths start_frames, 2x, 4x, ... (capped at max_frames, default 3 h at 100 frames/s)
    are tried until one fails, then the gap to the last fitting one is bisected.
    known_fit / known_fail: lengths (frames) already seen to fit / run out of memory (e.g. in a
    sweep); the search starts from them instead of from ``start_frames`` (both given: bisection
    only). Their probes are not repeated and not counted in ``probes``.
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
    if known_fit is not None and known_fit >= max_frames:
        return FitResult(max_frames, frames_per_s, "max_frames", ())
    model = None
    if spec is not None:
        spec = as_spec(spec)
        device = torch.device(device) if device is not None else default_device()
        torch.manual_seed(seed)
        model = spec.factory().to(device)
        fits = oom_predicate(model, spec.mel_bins, mode, batch=batch, device=device, dtype=dtype,
                             optimizer=optimizer)
    try:
        frames, bound, probes = _search(fits, start_frames, max_frames, abs_tol_frames, rel_tol,
                                        max_seconds_per_probe, known_fit, known_fail)
    finally:
        if model is not None:
            del model, fits
            free_memory(device)
    return FitResult(frames, frames_per_s, bound, tuple(probes))


def capacity_table(specs, modes=MODES, *, batch=1, device=None, dtype="auto", progress=True, **search_kw):
    """:func:`largest_fitting_length` of every spec and mode as a DataFrame with columns
    model, mode, batch, max_frames, max_length_s, bound, probes, device, dtype, torch_version."""
    device = torch.device(device) if device is not None else default_device()
    specs = [as_spec(s) for s in ([specs] if isinstance(specs, str) else specs)]
    modes = [check_mode(m) for m in ([modes] if isinstance(modes, str) else modes)]
    rows = []
    for spec in tqdm(specs, desc="capacity", disable=not progress):
        for mode in modes:
            res = largest_fitting_length(spec, mode, batch=batch, device=device, dtype=dtype, **search_kw)
            rows.append(dict(model=spec.label, mode=mode, batch=batch, max_frames=res.frames,
                             max_length_s=res.length_s, bound=res.bound, probes=len(res.probes),
                             device=device_name(device),
                             dtype=str(resolve_dtype(dtype, device)).removeprefix("torch."),
                             torch_version=torch.__version__))
    df = pd.DataFrame(rows)
    df["max_frames"] = df["max_frames"].astype("Int64")
    return df
