"""Log-log scaling plots of a sweep (the layout of the AuM paper's Fig. 2).

One line per (model, mode) through the ok points (colour = model, line style and marker =
mode); a cross marks where a series first ran out of memory, drawn at the height of its last ok
point (at the bottom edge if it never ran).
"""
import matplotlib.pyplot as plt
import seaborn as sns
from matplotlib.lines import Line2D

__all__ = ["plot_scaling"]

_LABELS = {"median_ms": "median time per step (ms)", "p10_ms": "10th-percentile time (ms)",
           "p90_ms": "90th-percentile time (ms)", "peak_mem_mb": "peak GPU memory (MiB)",
           "throughput_audio_s_per_s": "throughput (s of audio / s)",
           "length_s": "input length (s)", "frames": "input frames", "tokens": "tokens"}


def _select(df, column, values):
    if values is None:
        return df
    values = [values] if isinstance(values, str) else list(values)
    unknown = set(values) - set(df[column].unique())
    if unknown:
        raise ValueError(f"{column} {sorted(unknown)} not in the sweep ({sorted(df[column].unique())})")
    return df[df[column].isin(values)]


def _oom_points(data, x, metric):
    """(model, x, y) of each series' first oom row; y is the series' last ok value below it
    (None if none)."""
    points = []
    for (model, _), rows in data.groupby(["model", "mode"], sort=False):
        rows = rows.sort_values("length_s")
        ooms = rows[rows["status"] == "oom"]
        if len(ooms):
            oom = ooms.iloc[0]
            before = rows[(rows["status"] == "ok") & (rows["length_s"] < oom["length_s"])][metric].dropna()
            points.append((model, oom[x], before.iloc[-1] if len(before) else None))
    return points


def plot_scaling(df, metric="median_ms", mode=None, x="length_s", models=None, ax=None):
    """Plot ``metric`` against ``x`` ("length_s", "frames" or "tokens") on log-log axes.

    mode, models: a name or list to keep (None: all). Returns the Figure (``ax.figure``);
    ``ax.lines`` holds exactly one line per plotted (model, mode).
    """
    for name, col in (("metric", metric), ("x", x)):
        if col not in df.columns or col not in _LABELS:
            raise ValueError(f"{name} must be a sweep column among {sorted(_LABELS)}, got {col!r}")
    data = _select(_select(df, "mode", mode), "model", models)
    hue_order = list(dict.fromkeys(data["model"]))
    palette = dict(zip(hue_order, sns.color_palette(n_colors=len(hue_order))))
    ok = data[(data["status"] == "ok") & data[metric].notna() & data[x].notna()]
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4.5))
    sns.lineplot(data=ok, x=x, y=metric, hue="model", hue_order=hue_order, palette=palette,
                 style="mode", markers=True, estimator=None, errorbar=None, sort=True, ax=ax)
    handles, labels = ax.get_legend_handles_labels()
    for h in handles:          # seaborn's legend proxies: keep them out of ax.lines
        h.remove()
    ax.set(xscale="log", yscale="log", xlabel=_LABELS[x], ylabel=_LABELS[metric])
    ooms = _oom_points(data, x, metric)
    if ooms:
        for model, px, py in ooms:
            kw = dict(marker="X", s=90, color=palette[model], edgecolor="black", zorder=5)
            if py is None:
                ax.scatter([px], [0.02], transform=ax.get_xaxis_transform(), **kw)
            else:
                ax.scatter([px], [py], **kw)
        handles.append(Line2D([], [], marker="X", linestyle="", color="grey", markeredgecolor="black"))
        labels.append("out of memory")
    if handles:
        ax.legend(handles, labels, fontsize="small", loc="best")
    ax.grid(True, which="major", alpha=0.3)
    return ax.figure
