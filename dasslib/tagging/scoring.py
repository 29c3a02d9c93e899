"""Event-level precision and recall of detected events against ground-truth events.

A detection matches a reference event of the same class when they overlap by at least
``min_overlap`` of the shorter of the two; each reference matches one detection at most
(greedy, largest overlap first).
"""
import numpy as np
import pandas as pd

__all__ = ["match_events", "event_prf"]


def match_events(detected, reference, min_overlap=0.5):
    """detected, reference: DataFrames with mid, start_s, end_s -> list of (detected row, reference
    row) index pairs that match."""
    pairs = []
    for mid, ref in reference.groupby("mid"):
        det = detected[detected.mid == mid]
        if det.empty:
            continue
        d0, d1 = det.start_s.to_numpy()[:, None], det.end_s.to_numpy()[:, None]      # (D, 1)
        r0, r1 = ref.start_s.to_numpy()[None], ref.end_s.to_numpy()[None]              # (1, R)
        inter = np.minimum(d1, r1) - np.maximum(d0, r0)
        ok = (inter > 0) & (inter >= min_overlap * np.minimum(d1 - d0, r1 - r0))
        for i, j in zip(*np.nonzero(ok)):
            pairs.append((inter[i, j], det.index[i], ref.index[j]))
    matched, used_d, used_r = [], set(), set()
    for _, i, j in sorted(pairs, key=lambda p: -p[0]):
        if i not in used_d and j not in used_r:
            matched.append((i, j))
            used_d.add(i)
            used_r.add(j)
    return matched


def event_prf(detected, reference, min_overlap=0.5):
    """DataFrame of precision, recall, F1 and counts per class of the reference and ``all``."""
    matched = match_events(detected, reference, min_overlap)
    hit_d = detected.index.isin([i for i, _ in matched])
    hit_r = reference.index.isin([j for _, j in matched])
    rows = []
    for mid in list(dict.fromkeys(reference.mid)) + ["all"]:
        d = slice(None) if mid == "all" else (detected.mid == mid).to_numpy()
        r = slice(None) if mid == "all" else (reference.mid == mid).to_numpy()
        n_det, n_ref = int(hit_d[d].size), int(hit_r[r].size)
        tp_d, tp_r = int(hit_d[d].sum()), int(hit_r[r].sum())
        p = tp_d / n_det if n_det else 0.0
        rec = tp_r / n_ref if n_ref else 0.0
        rows.append(dict(mid=mid, detected=n_det, reference=n_ref, matched=tp_r, precision=p, recall=rec,
                         f1=2 * p * rec / (p + rec) if p + rec else 0.0))
    return pd.DataFrame(rows)
