"""Builders: the datasets, loaders and models a run config names (used by the command line
`dasslib.train.cli` and by the notebooks' experiments alike).

A builder takes the whole run config dict and returns ``dict(model=..., train_loader=..., eval_loader=...,
teacher=None)``; `build_audioset` is the default one.
"""
from __future__ import annotations


def build_model(section: dict, what: str = "model"):
    """A registry model from a run-config section ``{name, checkpoint?, imagenet_init?, <config overrides>}``
    (``what`` names the section in errors): created, then initialised from a VMamba checkpoint and/or loaded
    from an official or dasslib checkpoint."""
    from .. import models

    section = dict(section)
    if "name" not in section:
        raise ValueError(f"the {what} section needs a name (one of {models.list_models()})")
    name, checkpoint = section.pop("name"), section.pop("checkpoint", None)
    imagenet = section.pop("imagenet_init", None)
    model = models.create(name, **section)
    if imagenet:
        models.init_dass_from_vmamba(model, imagenet)
    if checkpoint:
        models.load_official(model, checkpoint)
    return model


def build_audioset(config: dict) -> dict:
    """AST-recipe data and a registry model from the sections

    ``model: {name, num_classes, checkpoint?, imagenet_init?, <config overrides>}``,
    ``teacher: {name, checkpoint, ...}`` (optional, for distillation),
    ``data: {train_json, eval_json, label_csv, train_audio: {AudioConf}, eval_audio: {AudioConf}, balanced,
    bad_clips}`` (``bad_clips: skip``: a training clip that cannot be loaded is replaced, with a warning,
    and counted in the history's ``skipped_clips`` column; default ``raise``),
    ``loader: {batch_size: 12, eval_batch_size: 2 * batch_size, num_workers: 4, pin_memory: <CUDA available>}``.
    """
    import torch
    from torch.utils.data import DataLoader, WeightedRandomSampler

    from ..data import AudioConf, AudioDataset, balanced_sample_weights
    from ..data.dataset import BAD_CLIPS

    for section in ("model", "data"):
        if not isinstance(config.get(section), dict):
            raise ValueError(f"the run config needs a {section!r} section")
    data, loader = config["data"], dict(config.get("loader") or {})
    train_conf = AudioConf.from_dict({**(data.get("train_audio") or {}), "train": True})
    eval_conf = AudioConf.from_dict({**(data.get("eval_audio") or {}), "train": False})
    bad_clips = data.get("bad_clips", "raise")
    if bad_clips not in BAD_CLIPS:
        raise ValueError(f"data.bad_clips must be one of {list(BAD_CLIPS)}, got {bad_clips!r}")
    train_ds = AudioDataset(data["train_json"], data["label_csv"], train_conf, bad_clips)
    eval_ds = AudioDataset(data["eval_json"], data["label_csv"], eval_conf) if data.get("eval_json") else None
    batch_size = loader.pop("batch_size", 12)
    eval_batch_size = loader.pop("eval_batch_size", 2 * batch_size)
    common = dict(num_workers=loader.pop("num_workers", 4),
                  pin_memory=loader.pop("pin_memory", torch.cuda.is_available()))
    if loader:
        raise ValueError(f"unknown loader option(s): {sorted(loader)}")
    sampler = None
    if data.get("balanced", False):
        sampler = WeightedRandomSampler(balanced_sample_weights(train_ds), len(train_ds), replacement=True)
    train_loader = DataLoader(train_ds, batch_size=batch_size, shuffle=sampler is None, sampler=sampler, **common)
    eval_loader = None if eval_ds is None else DataLoader(eval_ds, batch_size=eval_batch_size, **common)
    teacher = build_model(config["teacher"], "teacher") if config.get("teacher") else None
    return dict(model=build_model(config["model"], "model"), train_loader=train_loader, eval_loader=eval_loader,
                teacher=teacher)
