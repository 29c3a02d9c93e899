"""Tagging metrics as AST reports them: per-class AP and ROC-AUC (scikit-learn), mAP, mAUC,
d-prime, top-1 accuracy.

Classes without positives have no AP and are left out of mAP; classes without both positives
and negatives have no AUC and are left out of mAUC. Scores may be logits or probabilities:
every metric here depends only on their ranking.
"""
import math

import numpy as np
from scipy.stats import norm
from sklearn.metrics import average_precision_score, roc_auc_score

__all__ = ["class_stats", "d_prime", "evaluate"]


def _as_numpy(x, name):
    if hasattr(x, "detach"):  # torch tensors, without importing torch here
        x = x.detach().float().cpu().numpy()
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be an array or tensor of numbers: {err}") from None


def _check_multilabel(scores, targets):
    scores, targets = _as_numpy(scores, "scores"), _as_numpy(targets, "targets")
    if scores.ndim != 2:
        raise ValueError(f"scores must be (N, C), got shape {scores.shape}")
    if targets.shape != scores.shape:
        raise ValueError(f"targets {targets.shape} must have the shape of scores {scores.shape}")
    if not np.isfinite(scores).all():
        raise ValueError("scores contain NaN or infinite values")
    if not np.isin(targets, (0.0, 1.0)).all():
        raise ValueError("targets must be multi-hot (0/1 only); threshold soft labels first")
    return scores, targets


def class_stats(scores, targets) -> dict:
    """Per-class stats of ``scores (N, C)`` against multi-hot ``targets (N, C)``.

    Returns ``dict(ap=(C,), auc=(C,), positives=(C,))``; ``ap`` is NaN for classes without
    positives, ``auc`` is NaN for classes without both positives and negatives.
    """
    scores, targets = _check_multilabel(scores, targets)
    n, num_classes = targets.shape
    positives = targets.sum(axis=0).astype(np.int64)
    ap = np.full(num_classes, np.nan)
    auc = np.full(num_classes, np.nan)
    for c in range(num_classes):
        if positives[c] > 0:
            ap[c] = average_precision_score(targets[:, c], scores[:, c])
        if 0 < positives[c] < n:
            auc[c] = roc_auc_score(targets[:, c], scores[:, c])
    return {"ap": ap, "auc": auc, "positives": positives}


def d_prime(auc: float) -> float:
    """Sensitivity index ``sqrt(2) * Phi^-1(auc)`` (inf at auc = 1)."""
    return float(math.sqrt(2.0) * norm.ppf(auc))


def evaluate(scores, targets, task: str = "multilabel") -> dict:
    """Clip-level metrics of ``scores (N, C)``.

    ``task="multilabel"``: ``targets (N, C)`` multi-hot -> ``mAP``, ``mAUC``, ``d_prime``.
    ``task="multiclass"``: ``targets (N,)`` class indices (or ``(N, C)`` one-hot) -> ``acc``
    (top-1) plus the three above on one-hot targets.
    """
    if task not in ("multilabel", "multiclass"):
        raise ValueError(f"task must be 'multilabel' or 'multiclass', got {task!r}")
    out = {}
    if task == "multiclass":
        scores_np = _as_numpy(scores, "scores")
        if scores_np.ndim != 2:
            raise ValueError(f"scores must be (N, C), got shape {scores_np.shape}")
        labels = _as_numpy(targets, "targets")
        if labels.ndim == 2:
            if labels.shape != scores_np.shape:
                raise ValueError(f"one-hot targets {labels.shape} must match scores "
                                 f"{scores_np.shape}")
            labels = labels.argmax(axis=1)
        if labels.shape != scores_np.shape[:1] or (labels != np.round(labels)).any() \
                or labels.min(initial=0) < 0 or labels.max(initial=0) >= scores_np.shape[1]:
            raise ValueError(f"multiclass targets must be (N,) = ({scores_np.shape[0]},) class "
                             f"indices in [0, {scores_np.shape[1]})")
        labels = labels.astype(np.int64)
        targets = np.eye(scores_np.shape[1])[labels]
        out["acc"] = float((scores_np.argmax(axis=1) == labels).mean())
        scores = scores_np
    stats = class_stats(scores, targets)
    if np.isnan(stats["ap"]).all():
        raise ValueError("no class has a positive target: mAP is undefined")
    out["mAP"] = float(np.nanmean(stats["ap"]))
    has_auc = ~np.isnan(stats["auc"])
    out["mAUC"] = float(stats["auc"][has_auc].mean()) if has_auc.any() else float("nan")
    out["d_prime"] = d_prime(out["mAUC"]) if has_auc.any() else float("nan")
    return out


def chance_level(targets, task: str = "multilabel") -> dict:
    """What a model that ignores its input scores: `evaluate` of constant scores against
    ``targets`` (mAP = mean class prevalence, mAUC 0.5, d_prime 0) -- the floor to read a
    weak model's numbers against."""
    labels = _as_numpy(targets, "targets")
    if task == "multilabel":
        return evaluate(np.zeros(labels.shape, dtype=np.float64), labels, task)
    n_classes = int(labels.max()) + 1 if labels.ndim == 1 else labels.shape[1]
    return evaluate(np.zeros((labels.shape[0], n_classes)), labels, task)
