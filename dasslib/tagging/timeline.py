"""Frame scores -> a timeline of label scores every ``hop`` seconds -> event segments.

Bin k covers [k * hop, (k + 1) * hop) seconds and holds the mean score of the model frames whose
centre falls in it; a bin no frame centre falls in (a hop shorter than the model's frame) takes
the score interpolated between the neighbouring frame centres.
"""
import numpy as np
import pandas as pd

__all__ = ["bin_scores", "find_events"]


def bin_scores(frame_scores, frame_rate, hop, duration):
    """frame_scores (T', C) at ``frame_rate`` frames/s -> (bin start times (K,), scores (K, C)),
    K = ceil(duration / hop)."""
    if not hop > 0:
        raise ValueError(f"hop must be positive, got {hop!r}")
    frame_scores = np.asarray(frame_scores, dtype=np.float64)
    n_bins = max(1, int(np.ceil(duration / hop - 1e-9)))
    centres = (np.arange(len(frame_scores)) + 0.5) / frame_rate
    index = np.minimum((centres / hop).astype(np.int64), n_bins - 1)
    sums = np.zeros((n_bins, frame_scores.shape[1]))
    np.add.at(sums, index, frame_scores)
    counts = np.bincount(index, minlength=n_bins)
    scores = sums / np.maximum(counts, 1)[:, None]
    empty = counts == 0
    if empty.any():
        mids = (np.flatnonzero(empty) + 0.5) * hop
        scores[empty] = np.stack([np.interp(mids, centres, frame_scores[:, c])
                                  for c in range(frame_scores.shape[1])], axis=1)
    return np.arange(n_bins) * hop, scores.astype(np.float32)


def find_events(times, scores, hop, threshold=0.5, min_duration=1.0, duration=None):
    """Runs of bins with score >= ``threshold`` lasting >= ``min_duration`` seconds, per class.

    times (K,) bin starts, scores (K, C) -> DataFrame(class_index, start_s, end_s, duration_s,
    peak_score), sorted by start; ``duration`` caps the last bin's end."""
    active = np.asarray(scores) >= threshold                                    # (K, C)
    padded = np.pad(active, ((1, 1), (0, 0))).astype(np.int8)
    edges = np.diff(padded, axis=0)                                             # (K + 1, C)
    rows = []
    for c in np.flatnonzero(active.any(axis=0)):
        starts, ends = np.flatnonzero(edges[:, c] == 1), np.flatnonzero(edges[:, c] == -1)
        for a, b in zip(starts, ends):
            start, end = times[a], times[b - 1] + hop
            if duration is not None:
                end = min(end, duration)
            if end - start >= min_duration - 1e-9:
                rows.append((int(c), float(start), float(end), float(end - start),
                             float(scores[a:b, c].max())))
    columns = ["class_index", "start_s", "end_s", "duration_s", "peak_score"]
    return pd.DataFrame(rows, columns=columns).sort_values(["start_s", "class_index"],
                                                           ignore_index=True)
