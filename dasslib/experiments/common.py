"""Shared experiment steps: resolve the dataset (embedded by default), its normalization stats, and
train (or load) a registry classifier through the one training loop."""
from __future__ import annotations

import json
from pathlib import Path

import torch


def resolve_device(device: str = "auto") -> torch.device:
    """'auto' -> cuda when available, else cpu."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device)


def prepare_data(data_root="data", data_size="ci", train_json=None, eval_json=None, label_csv=None,
                 seed=0) -> dict:
    """Paths of a dataset in the AudioSet json format: the given files, or the embedded dataset
    generated (once, deterministically) under ``data_root/embedded-<data_size>-seed<seed>``."""
    given = [train_json, eval_json, label_csv]
    if any(p is not None for p in given):
        if any(p is None for p in given):
            raise ValueError("give all of train_json, eval_json and label_csv, or none of them "
                             "(none = the embedded dataset)")
        for p in given:
            if not Path(p).is_file():
                raise ValueError(f"dataset file not found: {p}")
        return dict(train_json=str(train_json), eval_json=str(eval_json), label_csv=str(label_csv))
    from ..data import make_embedded_dataset

    root = Path(data_root) / f"embedded-{data_size}-seed{seed}"
    return make_embedded_dataset(root, size=data_size, seed=seed, progress=False)


def norm_stats(paths: dict, mean=None, std=None, max_items=400) -> tuple[float, float]:
    """(mean, std) for fbank normalization: the given values, or computed on (up to ``max_items``
    of) the training set and cached next to the train json."""
    if mean is not None and std is not None:
        return float(mean), float(std)
    cache = Path(paths["train_json"]).with_suffix(".stats.json")
    if cache.is_file():
        stats = json.loads(cache.read_text())
        return stats["mean"], stats["std"]
    from ..data import compute_norm_stats

    m, s = compute_norm_stats(paths["train_json"], paths["label_csv"], max_items=max_items)
    cache.write_text(json.dumps(dict(mean=float(m), std=float(s), max_items=max_items)))
    return float(m), float(s)


def train_classifier(out_dir, model: dict, paths: dict, stats: tuple, train: dict, loader: dict,
                     checkpoint=None, teacher: dict | None = None, audio: dict | None = None,
                     augment: dict | None = None):
    """Train ``model`` (``{name, <create overrides>}``) on the dataset, or load ``checkpoint``.

    ``audio``: `AudioConf` fields for both splits (e.g. ``target_length``); ``augment``: training-only
    `AudioConf` fields (``freqm``, ``timem``, ``mixup``).

    Returns ``(model, metrics)``; the run lives in ``out_dir`` and a finished run is not
    re-trained (the loop resumes or returns what is stored)."""
    from ..data import read_label_csv
    from ..train import cli

    num_classes = read_label_csv(paths["label_csv"]).num_classes
    mean, std = stats
    model_section = dict(model, num_classes=num_classes)
    if checkpoint:
        model_section["checkpoint"] = checkpoint
        return cli._model(model_section, "model"), None
    config = dict(
        out_dir=str(out_dir), task="multilabel", train=dict(train), model=model_section,
        data=dict(train_json=paths["train_json"], eval_json=paths["eval_json"], label_csv=paths["label_csv"],
                  train_audio=dict(audio or {}, **(augment or {}), mean=mean, std=std,
                                   seed=int(train.get("seed", 0))),
                  eval_audio=dict(audio or {}, mean=mean, std=std)),
        loader=dict(loader),
    )
    if teacher:
        config["teacher"] = dict(teacher, num_classes=num_classes)
    from ..train import TrainConfig, fit
    from ..train.seeding import seed_everything

    cfg = TrainConfig.from_dict(config["train"])
    seed_everything(cfg.seed)
    parts = cli.build_audioset(config)  # after seeding: identical initial weights every run
    result = fit(parts["model"], parts["train_loader"], parts["eval_loader"], cfg, out_dir,
                 teacher=parts.get("teacher"), task="multilabel", resume=True)
    return parts["model"], result.metrics
