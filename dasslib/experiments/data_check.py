"""Can a dataset separate models? Feature baselines that need no deep model.

A strong model should score well above what simple classifiers get from clip-level statistics of the
fbank, and the eval split should not be solved by them outright. ``feature_baselines`` fits, on the
training split, a one-vs-rest logistic regression and a k-nearest-neighbour classifier (scikit-learn) on
each clip's per-mel-bin mean and standard deviation over time (``2 * num_mel_bins`` numbers), and scores
them on the eval split with `dasslib.metrics.evaluate`, next to the constant predictor.

    python -m dasslib.experiments.data_check --size gpu --out results/data_check_gpu.csv
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ..data import AudioConf, AudioDataset
from ..metrics import chance_level, evaluate


def clip_features(datafile, label_csv, stats: tuple, num_mel_bins: int = 128, target_length: int = 1024,
                  progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Per clip: mean and std over time of each mel bin of the normalized fbank -> ``X (n, 2 * num_mel_bins)``
    float64, and the multi-hot labels ``Y (n, C)``."""
    conf = AudioConf(target_length=target_length, num_mel_bins=num_mel_bins, mean=stats[0], std=stats[1])
    ds = AudioDataset(datafile, label_csv, conf)
    feats, labels = [], []
    for i in tqdm(range(len(ds)), desc="features", disable=not progress, leave=False):
        fbank, y = ds[i]
        fbank = fbank.double()
        feats.append(torch.cat([fbank.mean(0), fbank.std(0)]).numpy())
        labels.append(y.numpy())
    if not feats:
        raise ValueError(f"{datafile}: no clips")
    return np.stack(feats), np.stack(labels)


def _scores(clf, x) -> np.ndarray:
    """Per-class positive scores (n, C) of a fitted multi-output classifier."""
    if hasattr(clf, "decision_function"):
        return np.asarray(clf.decision_function(x))
    return np.stack([p[:, 1] if p.shape[1] == 2 else np.zeros(len(x)) for p in clf.predict_proba(x)], axis=1)


def feature_baselines(train: tuple, evaluation: tuple, k: int = 10, seed: int = 0) -> pd.DataFrame:
    """Fit on ``train`` = ``(X, Y)`` from `clip_features`, score on ``evaluation``. One row per method:
    ``method, mAP, mAUC, d_prime, fit_s``; classes without a positive training clip score 0."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    (xt, yt), (xe, ye) = train, evaluation
    if xt.shape[1] != xe.shape[1] or yt.shape[1] != ye.shape[1]:
        raise ValueError(f"train {xt.shape}/{yt.shape} and eval {xe.shape}/{ye.shape} disagree")
    seen = yt.sum(0) > 0
    rows = [dict(method="constant predictor", **chance_level(ye), fit_s=0.0)]
    methods = {
        "logistic regression (mean+std fbank)": make_pipeline(
            StandardScaler(), OneVsRestClassifier(LogisticRegression(C=1.0, max_iter=2000, random_state=seed))),
        f"{k}-NN (mean+std fbank)": make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=k)),
    }
    for name, clf in methods.items():
        started = time.perf_counter()
        clf.fit(xt, yt[:, seen].astype(int))
        scores = np.zeros(ye.shape)
        scores[:, seen] = _scores(clf, xe)
        rows.append(dict(method=name, **evaluate(scores, ye), fit_s=time.perf_counter() - started))
    return pd.DataFrame(rows)


def class_counts(y: np.ndarray, names) -> pd.DataFrame:
    """Positive clips per class of a multi-hot ``y (n, C)``: columns ``class, clips``."""
    return pd.DataFrame(dict(zip(("class", "clips"), (list(names), y.sum(0).astype(int)))))


def main(argv=None):
    from ..atomic import atomic_write_csv
    from ..data import read_label_csv
    from .common import norm_stats, prepare_data

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", default="ci", help="embedded dataset size (ci | gpu)")
    ap.add_argument("--data-root", default="data")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--out", required=True, help="CSV of the baselines (a _classes.csv beside it)")
    args = ap.parse_args(argv)
    paths = prepare_data(args.data_root, args.size, seed=args.seed)
    stats = norm_stats(paths)
    train = clip_features(paths["train_json"], paths["label_csv"], stats)
    evaluation = clip_features(paths["eval_json"], paths["label_csv"], stats)
    table = feature_baselines(train, evaluation, k=args.k, seed=args.seed)
    table.insert(0, "dataset", f"embedded-{args.size}-seed{args.seed}")
    table["train_clips"], table["eval_clips"] = len(train[0]), len(evaluation[0])
    atomic_write_csv(table, args.out, index=False)
    names = read_label_csv(paths["label_csv"]).names
    counts = class_counts(train[1], names).merge(class_counts(evaluation[1], names), on="class",
                                                  suffixes=("_train", "_eval"))
    atomic_write_csv(counts, str(args.out).removesuffix(".csv") + "_classes.csv", index=False)
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
