"""The model a tagging run uses: a registry name, optional config overrides, and a checkpoint.

A checkpoint is a dasslib weights file (``best_model.pt``, ``model_wa.pt``, ``model_final.pt``,
or a training ``checkpoint.pt``) or an official one (DASS, AST, AuM, SSAM releases):
:func:`dasslib.models.load_official` maps the keys either way. A ``run.json`` written by
:func:`dasslib.train.fit` next to the checkpoint gives the model's config (its sizes), unless
``overrides`` are given.
"""
import dataclasses
import json
import os
import warnings

from .. import models
from ..data.datafile import LabelSet, read_label_csv

__all__ = ["load_model", "default_labels"]


def _run_config(checkpoint, name):
    """Config fields from a run.json beside ``checkpoint`` (fields unknown to ``name`` dropped)."""
    path = os.path.join(os.path.dirname(os.path.abspath(checkpoint)), "run.json")
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as f:
        config = json.load(f).get("model_config") or {}
    known = {f.name for f in dataclasses.fields(models.get_config(name))}
    dropped = sorted(set(config) - known)
    if dropped:
        warnings.warn(f"{path}: config field(s) {dropped} are unknown to {name} and ignored")
    return {k: tuple(v) if isinstance(v, list) else v for k, v in config.items() if k in known}


def default_labels(num_classes):
    """A LabelSet naming classes by index, for runs without a label csv."""
    ids = tuple(str(i) for i in range(num_classes))
    return LabelSet(ids, tuple(f"class {i}" for i in ids))


def load_model(name, checkpoint=None, labels=None, overrides=None):
    """-> (model in eval mode on the CPU, LabelSet).

    name: a registry name (``dasslib.models.list_models()``); checkpoint: weights file or None
    (random weights); labels: a label csv path, a LabelSet or None (classes named by index);
    overrides: config fields (e.g. ``{"depths": (1, 1)}``); num_classes comes from the labels,
    else the overrides, else a run.json beside the checkpoint, else 527.
    """
    if isinstance(labels, (str, os.PathLike)):
        labels = read_label_csv(labels)
    config = dict(_run_config(checkpoint, name) if checkpoint else {}, **(overrides or {}))
    if labels is not None:
        config["num_classes"] = labels.num_classes
    model = models.create(name, **config)
    if checkpoint is not None:
        from ..train.checkpoint import load_checkpoint

        state = load_checkpoint(checkpoint)          # plain or checksummed torch files
        models.load_official(model, state)
    return model.eval(), labels if labels is not None else default_labels(model.num_classes)
