"""Reading a sweep: where a model overtakes a baseline, and ratios at a fixed length.

All functions take the DataFrame of one :func:`~dasslib.bench.sweep.run_sweep` run and use
only its ``ok`` rows. Values between sweep lengths are interpolated linearly in log-log
(power laws, the natural shape of time and memory vs. length, are straight lines there).
"""
import math

import numpy as np
import pandas as pd

__all__ = ["loglog_interp", "crossover_length", "ratio_table", "win_summary"]

_HIGHER_IS_BETTER = {"throughput_audio_s_per_s"}
_WORD = {"peak_mem_mb": "uses less memory"}


def loglog_interp(x, xs, ys):
    """y at x from points (xs ascending, positive) joined by straight lines in log-log;
    NaN outside [xs[0], xs[-1]] or where a neighbouring y is not positive."""
    xs, ys = np.asarray(xs, float), np.asarray(ys, float)
    if len(xs) == 0 or not xs[0] <= x <= xs[-1]:
        return math.nan
    hit = np.isclose(xs, x, rtol=1e-9, atol=0)
    if hit.any():
        return float(ys[hit][0])
    i = int(np.searchsorted(xs, x)) - 1
    if ys[i] <= 0 or ys[i + 1] <= 0:
        return math.nan
    w = math.log(x / xs[i]) / math.log(xs[i + 1] / xs[i])
    return float(math.exp((1 - w) * math.log(ys[i]) + w * math.log(ys[i + 1])))


def _check(df, metric):
    missing = {"model", "mode", "batch", "length_s", "status", metric} - set(df.columns)
    if missing:
        raise ValueError(f"DataFrame lacks columns {sorted(missing)}")


def _series(df, model, mode, metric, batch=None):
    """ok values of ``metric`` of one model and mode, indexed by ascending length_s."""
    rows = df[(df["model"] == model) & (df["mode"] == mode)]
    if rows.empty:
        raise ValueError(f"no rows for model {model!r} in mode {mode!r}; models: "
                         f"{sorted(df['model'].unique())}, modes: {sorted(df['mode'].unique())}")
    if batch is not None:
        rows = rows[rows["batch"] == batch]
    elif rows["batch"].nunique() > 1:
        raise ValueError(f"model {model!r} ({mode}) was run at batches {sorted(rows['batch'].unique())}: "
                         "pass batch=...")
    ok = rows[rows["status"] == "ok"]
    return ok.groupby("length_s")[metric].median().sort_index()


def _ratios(df, model, baseline, mode, metric, batch):
    """model / baseline ``metric`` at the lengths where both are ok; < 1 means the model is
    better (for throughput the inverse ratio is taken, so < 1 still means better)."""
    m, b = _series(df, model, mode, metric, batch), _series(df, baseline, mode, metric, batch)
    both = pd.concat([m, b], axis=1, keys=["m", "b"], join="inner").dropna()
    r = both["m"] / both["b"]
    return 1 / r if metric in _HIGHER_IS_BETTER else r


def _crossing(r):
    """Length where the ratio series r (index length_s) last drops below 1 and stays below
    to the end, interpolated in log-log; None if r never crosses that way."""
    if len(r) < 2 or r.iloc[-1] >= 1:
        return None
    below = (r < 1).to_numpy()
    i = len(r) - 1
    while i > 0 and below[i - 1]:
        i -= 1
    if i == 0:
        return None                       # better at every length: no crossing in range
    (l0, r0), (l1, r1) = (r.index[i - 1], r.iloc[i - 1]), (r.index[i], r.iloc[i])
    if r0 == 1:
        return float(l0)
    w = math.log(r0) / (math.log(r0) - math.log(r1))
    return float(math.exp(math.log(l0) + w * (math.log(l1) - math.log(l0))))


def crossover_length(df, model, baseline="ast_base_sdpa", mode="inference", metric="median_ms", batch=None):
    """Input length (s) from which ``model`` is better than ``baseline`` on ``metric``.

    Time ratio model / baseline at the common ok lengths; the crossing is the last step from
    ratio >= 1 to < 1 after which the ratio stays < 1, interpolated in log-log between the two
    sweep points. None if the model is better already at the shortest common length, never
    better, or not better at the longest one.
    """
    _check(df, metric)
    return _crossing(_ratios(df, model, baseline, mode, metric, batch))


def ratio_table(df, at_length_s=10, baseline="ast_base_sdpa", metric="throughput_audio_s_per_s",
                modes=None, batch=None):
    """Every model's ``metric`` at ``at_length_s`` and its ratio to ``baseline`` in the same mode.

    Returns columns model, mode, length_s, metric, value, baseline, baseline_value, ratio
    (value / baseline_value; e.g. 2.0 throughput = twice as fast). Values between sweep points
    are log-log interpolated; NaN where a model has no ok point around the length.
    """
    _check(df, metric)
    modes = sorted(df["mode"].unique()) if modes is None else ([modes] if isinstance(modes, str) else modes)
    rows = []
    for mode in modes:
        base = _series(df, baseline, mode, metric, batch)
        base_value = loglog_interp(at_length_s, base.index, base.to_numpy())
        for model in df.loc[df["mode"] == mode, "model"].unique():
            s = _series(df, model, mode, metric, batch)
            value = loglog_interp(at_length_s, s.index, s.to_numpy())
            rows.append(dict(model=model, mode=mode, length_s=float(at_length_s), metric=metric, value=value,
                             baseline=baseline, baseline_value=base_value, ratio=value / base_value))
    return pd.DataFrame(rows, columns=["model", "mode", "length_s", "metric", "value", "baseline",
                                       "baseline_value", "ratio"])


def _last_ok_and_stop(df, model, mode, batch):
    rows = df[(df["model"] == model) & (df["mode"] == mode)]
    if batch is not None:
        rows = rows[rows["batch"] == batch]
    rows = rows.sort_values("length_s")
    ok = rows[rows["status"] == "ok"]
    last_ok = float(ok["length_s"].max()) if len(ok) else math.nan
    after = rows[(rows["status"] != "ok") & ~(rows["length_s"] < last_ok)]
    return last_ok, (after["status"].iloc[0] if len(after) else None)


def win_summary(df, baseline="ast_base_sdpa", mode="inference", metric="median_ms", batch=None):
    """Where each model beats ``baseline`` on ``metric`` in ``mode``, one row per model.

    Columns: model, crossover_length_s (see :func:`crossover_length`; NaN if none),
    better_from_s (shortest length from which it stays better; NaN if never),
    longest_common_s and ratio_at_longest (model / baseline there, < 1 is better),
    max_ok_s and baseline_max_ok_s (longest measured lengths), verdict (a sentence).
    """
    _check(df, metric)
    word = _WORD.get(metric, "faster")
    base_max, base_stop = _last_ok_and_stop(df, baseline, mode, batch)
    rows = []
    for model in df.loc[(df["mode"] == mode) & (df["model"] != baseline), "model"].unique():
        r = _ratios(df, model, baseline, mode, metric, batch)
        cross = _crossing(r)
        max_ok, _ = _last_ok_and_stop(df, model, mode, batch)
        if r.empty:
            better_from, verdict = math.nan, "no length where both ran"
        else:
            lo, hi, end = r.index[0], r.index[-1], r.iloc[-1]
            if (r < 1).all():
                better_from, verdict = float(lo), f"{word} at every common length ({lo:g}-{hi:g} s)"
            elif cross is not None:
                better_from, verdict = cross, f"{word} from {cross:.3g} s (ratio {end:.2f} at {hi:g} s)"
            else:
                better_from, verdict = math.nan, f"baseline ahead up to {hi:g} s (ratio {end:.2f})"
        if math.isnan(base_max) and not math.isnan(max_ok):
            verdict += f"; runs up to {max_ok:g} s, baseline never ran ({base_stop})"
        elif max_ok > base_max:
            verdict += f"; runs up to {max_ok:g} s, baseline only to {base_max:g} s"
            verdict += f" ({base_stop} beyond)" if base_stop else ""
        rows.append(dict(model=model, mode=mode, metric=metric,
                         crossover_length_s=math.nan if cross is None else cross, better_from_s=better_from,
                         longest_common_s=float(r.index[-1]) if len(r) else math.nan,
                         ratio_at_longest=float(r.iloc[-1]) if len(r) else math.nan,
                         max_ok_s=max_ok, baseline_max_ok_s=base_max, verdict=verdict))
    return pd.DataFrame(rows)
