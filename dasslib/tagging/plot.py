"""The timeline figure: a heat map of the top classes' scores over time above their event segments."""
import matplotlib.pyplot as plt
import numpy as np

__all__ = ["timeline_figure"]


def timeline_figure(times, scores, names, events, hop, title="", top=10):
    """Figure of the ``top`` classes by peak score: heat map (classes x time, scores 0-1) and,
    below, each class's events (DataFrame with class_index, start_s, end_s) as bars.

    times (K,) bin starts in s, scores (K, C), names: C class names."""
    scores = np.asarray(scores)
    order = np.argsort(-scores.max(axis=0), kind="stable")[:top]
    end = float(times[-1] + hop) if len(times) else hop
    minutes = end > 600
    unit, scale = ("min", 60.0) if minutes else ("s", 1.0)
    fig, (ax, ax_ev) = plt.subplots(2, 1, figsize=(12, 1.5 + 0.55 * len(order)), sharex=True,
                                    gridspec_kw=dict(height_ratios=(3, 2)), layout="constrained")
    image = ax.imshow(scores[:, order].T, aspect="auto", interpolation="nearest", cmap="magma",
                      vmin=0.0, vmax=1.0, extent=(0, end / scale, len(order) - 0.5, -0.5))
    ax.set_yticks(range(len(order)), [names[i] for i in order])
    ax.set_title(title)
    fig.colorbar(image, ax=(ax, ax_ev), label="score", pad=0.01, fraction=0.03)
    for row, c in enumerate(order):
        mine = events[events.class_index == c]
        ax_ev.broken_barh([(s / scale, (e - s) / scale) for s, e in zip(mine.start_s, mine.end_s)],
                          (row - 0.4, 0.8), color=plt.cm.tab10(row % 10))
    ax_ev.set_yticks(range(len(order)), [names[i] for i in order])
    ax_ev.set_ylim(len(order) - 0.5, -0.5)
    ax_ev.set_xlim(0, end / scale)
    ax_ev.set_xlabel(f"time ({unit})")
    ax_ev.set_title("events (score >= threshold for at least the minimum duration)", fontsize=9)
    return fig
