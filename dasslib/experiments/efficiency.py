"""Efficiency study (AuM Fig. 2, DASS Fig. 1c): time and memory vs. input length.

Thin layer over :mod:`dasslib.bench` adding what the notebook needs around it: specs with
per-model overrides (``scan_backend`` only for the SSM families), parameter counts, wall-clock
budgets for a whole sweep (shared by the modes, breadth-first over lengths) and for all capacity
searches (a share each, cheapest first), where the time went, a stable status table and a
computed text of where each SSM beats the SDPA AST baseline.
"""
from __future__ import annotations

import math
import time

import pandas as pd
import torch

from .. import bench
from ..models import count_parameters, list_models

NO_SCAN_FAMILIES = ("ast", "ssast")     # attention models: no scan_backend option


def _family(name: str) -> str:
    return name.split("_")[0]


def study_specs(models, ast_attn=("eager", "sdpa"), overrides=None, scan_backend="auto") -> list:
    """One :class:`~dasslib.bench.ModelSpec` per model, each ``ast_*`` once per kernel in
    ``ast_attn`` (labels ``ast_base_eager``, ``ast_base_sdpa``; other labels = the name).

    overrides: ``{family or name: {config field: value}}``, e.g. ``{"ast": {"fstride": 16},
    "dass_small": {"depths": [1, 1, 1, 1]}}`` (the name's entry wins over its family's;
    entries of models not in ``models`` are unused).
    scan_backend: passed to every model except AST / SSAST, which have no scan.
    """
    overrides = dict(overrides or {})
    if isinstance(models, str):
        models = [models]
    known = set(list_models()) | {_family(m) for m in list_models()}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"overrides for {unknown}: neither a registered model nor a family")
    specs = []
    for name in models:
        kw = {**overrides.get(_family(name), {}), **overrides.get(name, {})}
        if _family(name) in NO_SCAN_FAMILIES:
            if "scan_backend" in kw or "attn" in kw:
                raise ValueError(f"{name}: no scan_backend (no scan) and no attn (set by ast_attn) in overrides")
            specs += [bench.model_spec(name, label=f"{name}_{a}", **kw, attn=a) for a in ast_attn]
        else:
            kw.setdefault("scan_backend", scan_backend)
            specs.append(bench.model_spec(name, label=name, **kw))
    return specs


def check_labels(specs, **roles):
    """Raise ValueError unless every role's label (e.g. ``baseline="ast_base_sdpa"``,
    ``ratio_model="dass_small"``) is one of the specs' labels, before any time is spent."""
    labels = [s.label for s in specs]
    bad = [f"{role}={label!r}" for role, label in roles.items() if label not in labels]
    if bad:
        raise ValueError(f"{', '.join(bad)}: not among the measured models {labels} "
                         f"(add it to models; AST labels carry the kernel: ast_base_sdpa)")


def param_counts(specs) -> pd.DataFrame:
    """Columns model, params: parameter count of each spec, built on the ``meta`` device
    (no memory, no init cost)."""
    rows = []
    for spec in specs:
        with torch.device("meta"):
            model = spec.factory()
        rows.append(dict(model=spec.label, params=count_parameters(model)))
    return pd.DataFrame(rows)


def budgeted_sweep(specs, lengths_s, modes=bench.MODES, batch=1, budget_s=None, frames_per_s=100,
                   order="breadth", **sweep_kw) -> pd.DataFrame:
    """:func:`dasslib.bench.run_sweep` within a wall-time budget: modes one after the other, inside a
    mode breadth-first (``order="breadth"``: every spec's shortest length, in the given order, then
    every spec's next length, ...) so that every model gets its short lengths in every mode.

    budget_s: None (no limit), seconds shared by the modes (each gets an equal share of what is
    left when it starts: unused time rolls over to the later modes) or ``{mode: seconds}`` (each
    mode its own, plus what earlier modes left unused). Points past a mode's allotment, or
    predicted to cost more than what is left of it, are ``skipped`` with a note starting
    ``"study time budget"``. The ``wall_s`` column says what each point cost.
    batch: an int or ``{mode: int}``. Returns the sweep's columns (:data:`dasslib.bench.COLUMNS`).
    """
    return bench.run_sweep(specs, lengths_s, modes=modes, batch=batch, budget_s=budget_s, order=order,
                           frames_per_s=frames_per_s, **sweep_kw)


def sweep_bounds(sweep: pd.DataFrame, model: str, mode: str, batch: int) -> tuple:
    """(known_fit, known_fail) frames for a capacity search at ``batch`` from a sweep: the longest
    length measured ``ok`` at a batch >= ``batch`` (fits at ``batch`` too) and the shortest
    ``oom`` at a batch <= ``batch`` (fails at ``batch`` too); None where the sweep says nothing."""
    rows = sweep[(sweep["model"] == model) & (sweep["mode"] == mode)]
    ok = rows[(rows["status"] == "ok") & (rows["batch"] >= batch)]["frames"]
    oom = rows[(rows["status"] == "oom") & (rows["batch"] <= batch)]["frames"]
    fit = int(ok.max()) if len(ok) else None
    fail = int(oom.min()) if len(oom) else None
    if fit is not None and fail is not None and fit >= fail:   # not monotone (fragmentation): trust neither
        return None, None
    return fit, fail


def sweep_times(sweep: pd.DataFrame, model: str, mode: str, batch: int | None = None,
                scale_to: int | None = None) -> list:
    """(frames, seconds) of the sweep's ``ok`` points of one model and mode, ascending frames: the
    median step times, warm (after warm-up). batch: only rows at that batch (None: every batch);
    scale_to: each time scaled by ``scale_to / batch`` of its row (a rough guess for another batch)."""
    if "median_ms" not in sweep:
        return []
    rows = sweep[(sweep["model"] == model) & (sweep["mode"] == mode) & (sweep["status"] == "ok")]
    if batch is not None:
        rows = rows[rows["batch"] == batch]
    rows = rows[rows["median_ms"].notna()].sort_values("frames")
    scale = [1.0] * len(rows) if scale_to is None else [scale_to / b for b in rows["batch"]]
    return [(int(f), float(ms) / 1e3 * k) for f, ms, k in zip(rows["frames"], rows["median_ms"], scale)]


def sweep_known(sweep: pd.DataFrame, batch: int):
    """``known(label, mode)`` for :func:`dasslib.bench.capacity_table` from a sweep: its bounds
    (:func:`sweep_bounds`), its warm times at ``batch`` and, where it has none there, its times at
    other batches scaled to ``batch`` (only to order the searches)."""
    def known(label, mode):
        fit, fail = sweep_bounds(sweep, label, mode, batch)
        times = sweep_times(sweep, label, mode, batch)
        guess = times or sweep_times(sweep, label, mode, scale_to=batch)
        return bench.Known(fit, fail, tuple(times), tuple(guess))
    return known


def budgeted_capacity(specs, modes=bench.MODES, batch=1, budget_s=None, max_length_s=10800.0,
                      frames_per_s=100, sweep: pd.DataFrame | None = None, order="cheapest", device=None,
                      dtype="auto", optimizer="adamw", seed=0, max_seconds_per_probe=None,
                      clock=time.perf_counter, **search_kw) -> pd.DataFrame:
    """:func:`dasslib.bench.capacity_table` capped at ``max_length_s``, started from what ``sweep``
    (a :func:`budgeted_sweep` frame) already saw (:func:`sweep_known`): each search only bisects
    the gap or doubles from the longest swept length (a model that ran the cap costs no probe) and
    predicts its probe times from the sweep's medians at the same batch. order ``"cheapest"``
    (default) runs the searches by their estimated cost, ``"given"`` spec by spec; ``budget_s``
    is shared by all searches, each getting an equal share of what is left (see
    ``capacity_table``). ``search_kw`` go to :func:`dasslib.bench.largest_fitting_length`."""
    max_frames = int(round(max_length_s * frames_per_s))
    return bench.capacity_table(
        specs, modes, batch=batch, device=device, dtype=dtype, optimizer=optimizer, seed=seed,
        known=sweep_known(sweep, batch) if sweep is not None else None, order=order, budget_s=budget_s,
        start_frames=min(frames_per_s, max_frames), max_frames=max_frames, frames_per_s=frames_per_s,
        max_seconds_per_probe=max_seconds_per_probe, progress=False, clock=clock, **search_kw)


def time_summary(sweep: pd.DataFrame, capacity: pd.DataFrame | None = None) -> pd.DataFrame:
    """Where the wall time went, one row per (stage, mode): ``runs`` (points run / probes),
    ``wall_s`` (sum of ``wall_s``), ``timed_s`` (sweep: timed calls, median x repeats of the ok
    points; capacity: the probes), ``other_s`` = wall_s - timed_s (warm-up calls, compilation,
    model builds and moves, out-of-memory steps, freeing memory), ``skipped`` (sweep points /
    searches cut by a budget) and the costliest model with its ``wall_s``."""
    if "wall_s" not in sweep:
        raise ValueError("the sweep has no wall_s column (made before it was recorded)")
    rows = []
    for mode, d in sweep.groupby("mode", sort=False):
        run = d[d["status"] != "skipped"]
        ok = d[d["status"] == "ok"]
        per_model = d.groupby("model", sort=False)["wall_s"].sum()
        timed = float((ok["median_ms"] * ok["repeats"].astype(float)).sum() / 1e3)
        rows.append(dict(stage="sweep", mode=mode, runs=len(run), wall_s=float(d["wall_s"].sum()), timed_s=timed,
                         skipped=int(d["note"].fillna("").str.startswith(bench.BUDGET_NOTE).sum()),
                         **_costliest(per_model)))
    if capacity is not None:
        for mode, d in capacity.groupby("mode", sort=False):
            per_model = d.groupby("model", sort=False)["wall_s"].sum()
            rows.append(dict(stage="capacity", mode=mode, runs=int(d["probes"].sum()),
                             wall_s=float(d["wall_s"].sum()), timed_s=float(d["probe_s"].sum()),
                             skipped=int((d["bound"] == "budget").sum()),
                             **_costliest(per_model)))
    out = pd.DataFrame(rows)
    out.insert(out.columns.get_loc("timed_s") + 1, "other_s", out["wall_s"] - out["timed_s"])
    return out


def _costliest(per_model):
    top = per_model.max() if len(per_model) else 0.0
    return dict(costliest=per_model.idxmax() if top > 0 else "", costliest_s=float(top))


def time_by_model(sweep: pd.DataFrame, capacity: pd.DataFrame | None = None) -> pd.DataFrame:
    """Wall seconds per model (rows, in sweep order) and stage / mode (columns ``sweep
    inference``, ``sweep train``, ``capacity inference``, ...), with a ``total`` column."""
    parts = [sweep.assign(stage="sweep")[["model", "mode", "stage", "wall_s"]]]
    if capacity is not None:
        parts.append(capacity.assign(stage="capacity")[["model", "mode", "stage", "wall_s"]])
    d = pd.concat(parts, ignore_index=True)
    d["column"] = d["stage"] + " " + d["mode"]
    wide = d.pivot_table(index="model", columns="column", values="wall_s", aggfunc="sum", sort=False)
    wide = wide.reindex(index=list(dict.fromkeys(sweep["model"])),
                        columns=list(dict.fromkeys(d["column"])))
    wide["total"] = wide.sum(axis=1)
    return wide


def status_table(df: pd.DataFrame, params: pd.DataFrame, capacity: pd.DataFrame | None = None) -> pd.DataFrame:
    """Stable summary, one row per (model, mode): parameter count, the status at each swept
    length (columns ``"<length> s"``; ``skipped`` says why: ``skip-oom`` after an OOM,
    ``skip-time`` predicted over the per-point budget, ``skip-budget`` study budget spent),
    and the capacity search's length and bound if given. No timings: the same on every run
    of a given device and settings."""
    notes = df["note"] if "note" in df else [None] * len(df)
    df = df.assign(status=[_status_code(s, n) for s, n in zip(df["status"], notes)])
    wide = df.pivot_table(index=["model", "mode"], columns="length_s", values="status", aggfunc="first")
    wide.columns = [f"{s:g} s" for s in wide.columns]
    order = list(dict.fromkeys(df["model"]))
    out = wide.reset_index().merge(params, on="model", how="left")
    if capacity is not None:
        cap = capacity[["model", "mode", "max_length_s", "bound"]].rename(
            columns={"max_length_s": "fits_up_to_s", "bound": "fit_bound"})
        out = out.merge(cap, on=["model", "mode"], how="left")
    out["_order"] = out["model"].map(order.index)
    out = out.sort_values(["mode", "_order"]).drop(columns="_order").reset_index(drop=True)
    return out[["model", "mode", "params"] + [c for c in out.columns if c not in ("model", "mode", "params")]]


def _status_code(status, note):
    if status != "skipped" or not isinstance(note, str):
        return status
    for prefix, code in (("after oom", "skip-oom"), ("time budget", "skip-time"), (bench.BUDGET_NOTE, "skip-budget")):
        if note.startswith(prefix):
            return code
    return status


def win_table(df: pd.DataFrame, baseline="ast_base_sdpa", metrics=("median_ms", "peak_mem_mb"),
              exclude_prefix="ast_") -> pd.DataFrame:
    """:func:`dasslib.bench.win_summary` of every model not starting with ``exclude_prefix``
    against ``baseline``, for each mode in the sweep and each metric that was measured
    (peak memory is NaN on the CPU and then left out), plus ``ratio_at_shortest`` (model /
    baseline at the shortest common length, < 1 = better)."""
    parts = []
    for metric in metrics:
        if df[metric].notna().sum() == 0:
            continue
        for mode in df["mode"].unique():
            w = bench.win_summary(df, baseline=baseline, mode=mode, metric=metric)
            w = w[~w["model"].str.startswith(exclude_prefix)].copy()
            w["ratio_at_shortest"] = [_ratio_at_shortest(df, m, baseline, mode, metric) for m in w["model"]]
            parts.append(w)
    if not parts:
        raise ValueError("no measured metric in the sweep")
    return pd.concat(parts, ignore_index=True)


def _ratio_at_shortest(df, model, baseline, mode, metric):
    ok = df[(df["mode"] == mode) & (df["status"] == "ok") & df[metric].notna()]
    a = ok[ok["model"] == model].set_index("length_s")[metric]
    b = ok[ok["model"] == baseline].set_index("length_s")[metric]
    common = sorted(set(a.index) & set(b.index))
    return float(a[common[0]] / b[common[0]]) if common else math.nan


_METRIC_WORDS = {"median_ms": "time", "peak_mem_mb": "peak memory"}


def win_text(wins: pd.DataFrame, baseline="ast_base_sdpa") -> str:
    """Plain-text verdicts computed from :func:`win_table`: per mode and metric, which models
    beat ``baseline`` at the longest common length (and from where), which do not, and the
    ratio at the shortest common length."""
    lines = []
    for (mode, metric), w in wins.groupby(["mode", "metric"], sort=False):
        win = w[w["ratio_at_longest"] < 1]
        lose = w[~(w["ratio_at_longest"] < 1)]
        lines.append(f"{mode}, {_METRIC_WORDS.get(metric, metric)} vs {baseline}: "
                     f"{len(win)} of {len(w)} SSM models better at the longest common length.")
        for _, r in w.iterrows():
            short = r["ratio_at_shortest"]
            lines.append(f"  {r['model']}: {r['verdict']}; ratio {short:.2f} at the shortest length"
                         if not math.isnan(short) else f"  {r['model']}: {r['verdict']}")
        if len(lose):
            lines.append(f"  not better at the longest common length: {', '.join(lose['model'])}")
    return "\n".join(lines)


# AuM paper, Sec. 3.3 / Fig. 2: (what it says, model, baseline, mode, metric, length_s).
AUM_CLAIMS = (
    ("AuM-B 1.6x faster than AST-B at inference, 4096 tokens (80 s)", "aum_base", "ast_base_eager",
     "inference", "median_ms", 80.0),
    ("same claim, against SDPA AST-B", "aum_base", "ast_base_sdpa", "inference", "median_ms", 80.0),
    ("AuM-B training on 20 s (1024 tokens) takes about the memory of AST-S", "aum_base", "ast_small_eager",
     "train", "peak_mem_mb", 20.0),
)


def claim_table(df: pd.DataFrame, claims=AUM_CLAIMS) -> pd.DataFrame:
    """Our measurement behind each claim: model and baseline ``metric`` at ``length_s`` (log-log
    interpolated between sweep lengths, NaN outside them) and ``ratio`` = model / baseline
    (< 1: the model is faster / uses less memory). Claims whose models were not swept are left out."""
    rows = []
    for claim, model, baseline, mode, metric, length_s in claims:
        present = set(df.loc[df["mode"] == mode, "model"])
        if not {model, baseline} <= present:
            continue
        r = bench.ratio_table(df, at_length_s=length_s, baseline=baseline, metric=metric, modes=mode)
        r = r[r["model"] == model].iloc[0]
        rows.append(dict(claim=claim, model=model, baseline=baseline, mode=mode, metric=metric,
                         length_s=length_s, model_value=r["value"], baseline_value=r["baseline_value"],
                         ratio=r["ratio"]))
    return pd.DataFrame(rows, columns=["claim", "model", "baseline", "mode", "metric", "length_s",
                                       "model_value", "baseline_value", "ratio"])


# ---------------------------------------------------------------- figures and what this run shows
X_AXES = {"seconds": "length_s", "frames": "frames", "tokens": "tokens"}


def x_axes(df: pd.DataFrame) -> dict:
    """The x axes a sweep can be drawn against (`X_AXES` entries whose column has values; tokens
    only when the models report them)."""
    return {k: c for k, c in X_AXES.items() if c in df.columns and df[c].notna().any()}


def plot_scaling_grid(df: pd.DataFrame, metric: str = "median_ms", modes=None, models=None, x: str = "length_s",
                      batch: dict | None = None):
    """AuM Fig. 2 layout: one log-log panel per mode (`dasslib.bench.plot_scaling`), one colour per
    model (husl palette), legend outside. models: labels to draw (None: all); batch: ``{mode: batch}``
    for the titles. Returns the Figure."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    modes = list(dict.fromkeys(df["mode"])) if modes is None else list(modes)
    models = list(dict.fromkeys(df["model"])) if models is None else [m for m in dict.fromkeys(df["model"])
                                                                       if m in set(models)]
    fig, axes = plt.subplots(1, len(modes), figsize=(7.5 * len(modes), 4.2), squeeze=False, layout="constrained")
    device = df["device"].iloc[0] if "device" in df and len(df) else ""
    with sns.color_palette("husl", max(len(models), 1)):
        for ax, mode in zip(axes[0], modes):
            keep = [m for m in models if m in set(df.loc[df["mode"] == mode, "model"])]
            if keep:
                bench.plot_scaling(df, metric=metric, mode=mode, x=x, models=keep, ax=ax)
                sns.move_legend(ax, "upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
            else:
                ax.text(0.5, 0.5, "no model selected", ha="center", va="center", transform=ax.transAxes)
            b = (batch or {}).get(mode)
            ax.set_title(f"{mode} ({'' if b is None else f'batch {b}, '}{device})")
    return fig


def scaling_view(df: pd.DataFrame, metric: str, modes, batch: dict | None = None, save_to=None, live=None):
    """`plot_scaling_grid` of every model against seconds (saved to ``save_to``) and, in a live
    notebook, a model selector and an x-axis menu (`x_axes`) to re-draw it."""
    import ipywidgets as widgets

    from ..display import explore

    models = list(dict.fromkeys(df["model"]))
    axes = x_axes(df)
    controls = dict(models=(widgets.SelectMultiple, dict(options=models, value=tuple(models), description="models",
                                                         rows=min(len(models), 8))),
                    x=(widgets.Dropdown, dict(options=list(axes.items()), value="length_s", description="x axis")))
    return explore(lambda models, x: plot_scaling_grid(df, metric, modes, models, x, batch), controls, save_to,
                   live=live)


_RESULT_FILES = {"sweep": "sweep.csv", "capacity": "capacity.csv", "wins": "wins.csv", "claims": "aum_claims.csv",
                 "status": "status.csv", "params": "params.csv"}


def read_results(out) -> dict:
    """What the notebook saved in ``out``: ``sweep``, ``capacity``, ``wins``, ``claims``,
    ``status``, ``params`` frames (a missing file is left out), ``ratios`` (the
    ``throughput_ratio_*.csv`` frame, if any) and ``metadata`` (run_metadata.json, or {})."""
    import json
    from pathlib import Path

    out = Path(out)
    res = {key: pd.read_csv(out / name) for key, name in _RESULT_FILES.items() if (out / name).is_file()}
    ratio_files = sorted(out.glob("throughput_ratio_*.csv"))
    if ratio_files:
        res["ratios"] = pd.read_csv(ratio_files[0])
    meta = out / "run_metadata.json"
    res["metadata"] = json.loads(meta.read_text()) if meta.is_file() else {}
    return res


PROFILE_SCOPES = {
    "ci": "tiny models, two short lengths and one repeat on the CPU, with no memory counter. It shows that the "
          "sweep, the capacity searches and the tables run end to end; CPU timings of tiny models say nothing "
          "about GPU speed, so it cannot show where an SSM overtakes AST.",
    "gpu": "the full-size models of both papers on one GPU (bf16 autocast), inputs from a second to hours, within "
           "time budgets. It can show the time and memory scaling, the crossover lengths against SDPA AST and the "
           "longest inputs that fit; a budget can cut a series short (see the status table), and the paper's GPU, "
           "batch and AST implementation differ from ours.",
    "paper": "the AuM paper's Fig. 2 setting: read the direction of its curves, not the digits, against the paper's "
             "figure (another GPU).",
}


def summary(results: dict, profile: str, baseline: str = "ast_base_sdpa", ratio_model: str = "dass_small") -> str:
    """The "What this run shows" Markdown of a 05 run from `read_results`: the device, the inference
    crossovers against ``baseline``, ``ratio_model``'s throughput ratio, the capacity results and
    our measurement behind each AuM claim."""
    from .common import profile_sentence

    meta = results.get("metadata", {})
    sweep = results.get("sweep")
    device = meta.get("device") or (sweep["device"].iloc[0] if sweep is not None and len(sweep) else "?")
    lines = ["### What this run shows", "", profile_sentence(profile, "05_efficiency", PROFILE_SCOPES)
             + f" Measured on {device}" + (f" ({meta['dtype']})." if meta.get("dtype") else ".")]
    wins = results.get("wins")
    if wins is not None and len(wins):
        t = wins[(wins["metric"] == "median_ms") & (wins["mode"] == "inference")]
        if len(t):
            cross = t[t["crossover_length_s"].notna()].sort_values("crossover_length_s")
            never = t[t["crossover_length_s"].isna()]
            text = (f"**Inference time** (AuM Fig. 2 / DASS Fig. 1c: the SSMs' cost grows linearly with length, AST's "
                    f"quadratically, so past some length the SSM is faster). Against {baseline}: ")
            text += ("; ".join(f"{r.model} faster from ~{r.crossover_length_s:.0f} s" for r in cross.itertuples())
                     if len(cross) else "no SSM became faster within the lengths both ran")
            if len(never) and len(cross):
                text += f"; not faster at any common length: {', '.join(never['model'])}"
            shortest = t["ratio_at_shortest"].dropna()
            if len(shortest):
                text += (f". At the shortest common length the SSMs took {shortest.min():.2f}x to "
                         f"{shortest.max():.2f}x "
                         f"{baseline}'s time")
            lines += ["", text + "."]
    ratios = results.get("ratios")
    if ratios is not None and (ratios["model"] == ratio_model).any():
        r = ratios[ratios["model"] == ratio_model].iloc[0]
        lines += ["", f"**Throughput at {r['length_s']:g} s**: {ratio_model} {r['value']:.1f} s of audio per second, "
                      f"{r['ratio']:.2f}x {r['baseline']} ({r['baseline_value']:.1f})."]
    caps = results.get("capacity")
    if caps is not None and len(caps):
        parts = []
        for mode, d in caps.groupby("mode", sort=False):
            d = d.sort_values("max_length_s", ascending=False)
            parts.append(f"{mode}: " + ", ".join(f"{r.model} {r.max_length_s:g} s ({r.bound})" for r in d.itertuples()))
        lines += ["", "**Longest input that fits** (bound in brackets: memory = the next length ran out of memory; "
                      "time / budget / max_frames = the search stopped first, so the model may fit longer): "
                  + "; ".join(parts) + "."]
    claims = results.get("claims")
    if claims is not None and len(claims):
        parts = [f"{r.claim}: ratio {r.ratio:.2f}" if pd.notna(r.ratio) else f"{r.claim}: not measured here"
                 for r in claims.itertuples()]
        lines += ["", "**The AuM paper's statements** (ratio = model / baseline; < 1: faster or lighter): "
                  + "; ".join(parts) + "."]
    return "\n".join(lines)
