"""Shared experiment steps: resolve the dataset (embedded by default), its normalization stats, and
train (or load) a registry classifier through the one training loop."""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..atomic import atomic_write_text
from ..runtime import resolve_device  # noqa: F401 (re-exported: experiments use it from here)

if TYPE_CHECKING:
    import pandas as pd


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
    atomic_write_text(json.dumps(dict(mean=float(m), std=float(s), max_items=max_items)), cache)
    return float(m), float(s)


KD_LOSSES = ("kd_kl", "kd_bce")


def audio_confs(stats: tuple, seed: int, audio: dict | None, augment: dict | None) -> tuple[dict, dict]:
    """(train, eval) `AudioConf` dicts: normalization ``stats``, shared feature settings ``audio``
    (e.g. target_length), train-only ``augment`` (freqm, timem, mixup)."""
    mean, std = stats
    shared = dict(audio or {}, mean=mean, std=std)
    return dict(shared, **(augment or {}), seed=int(seed)), shared


def fit_input(section: dict, audio: dict | None = None) -> dict:
    """``section`` with ``input_tdim`` / ``input_fdim`` (models that have them, e.g. AST's positional
    grid) set to the features' ``target_length`` / ``num_mel_bins`` unless the section gives them."""
    import dataclasses

    from ..data import AudioConf
    from ..models import get_config

    conf = AudioConf.from_dict(dict(audio or {}))
    fields = {f.name for f in dataclasses.fields(get_config(section["name"]))}
    sizes = dict(input_tdim=conf.target_length, input_fdim=conf.num_mel_bins)
    return dict({k: v for k, v in sizes.items() if k in fields}, **section)


def classifier_config(out_dir, model: dict, paths: dict, stats: tuple, train: dict, loader: dict,
                      audio: dict | None = None, augment: dict | None = None, teacher: dict | None = None,
                      balanced: bool = False, bad_clips: str = "raise") -> dict:
    """A `dasslib.train.cli` run config (the default builder, `dasslib.train.builders.build_audioset`) for a multi-label
    classifier: model section ``{name, <create overrides>}`` sized with :func:`fit_input`, feature
    settings ``audio`` for both splits, train-only ``augment``, balanced sampling and an optional
    ``teacher`` section (a trained model: ``{name, <overrides>, checkpoint}``, with a KD loss).
    ``bad_clips``: "raise" (default) or "skip" training clips that cannot be loaded (counted in the
    run's history, column ``skipped_clips``)."""
    from ..data import read_label_csv
    from ..data.dataset import BAD_CLIPS

    if bad_clips not in BAD_CLIPS:
        raise ValueError(f"bad_clips must be one of {list(BAD_CLIPS)}, got {bad_clips!r}")

    num_classes = read_label_csv(paths["label_csv"]).num_classes
    train_audio, eval_audio = audio_confs(stats, train.get("seed", 0), audio, augment)
    config = dict(
        out_dir=str(out_dir), task="multilabel", train=dict(train),
        model=dict(fit_input(model, audio), num_classes=num_classes),
        data=dict(train_json=paths["train_json"], eval_json=paths["eval_json"], label_csv=paths["label_csv"],
                  train_audio=train_audio, eval_audio=eval_audio, balanced=bool(balanced)),
        loader=dict(loader))
    if bad_clips != "raise":  # the default stays out of the run identity (earlier runs keep theirs)
        config["data"]["bad_clips"] = bad_clips
    if teacher:
        if not teacher.get("checkpoint"):
            raise ValueError("a teacher must be a trained model: give its section a 'checkpoint' path")
        if train.get("loss") not in KD_LOSSES:
            raise ValueError(f"a teacher needs a distillation loss (train['loss'] in {KD_LOSSES}), "
                             f"got {train.get('loss')!r}")
        config["teacher"] = dict(fit_input(teacher, audio), num_classes=num_classes)
    return config


def train_from_config(config: dict):
    """Train what :func:`classifier_config` describes with `dasslib.train.fit` (a finished run in
    ``out_dir`` is returned as stored, an interrupted one resumes). Returns ``(model holding the
    reported weights, metrics dict)``."""
    from ..train import TrainConfig, builders, fit
    from ..train.seeding import seed_everything

    cfg = TrainConfig.from_dict(config["train"])
    seed_everything(cfg.seed)
    parts = builders.build_audioset(config)  # after seeding: identical initial weights every run
    result = fit(parts["model"], parts["train_loader"], parts["eval_loader"], cfg, config["out_dir"],
                 teacher=parts.get("teacher"), task="multilabel", resume=True)
    return parts["model"], result.metrics


def load_classifier(section: dict, label_csv, audio: dict | None = None, role: str = "model") -> torch.nn.Module:
    """A registry model from ``{name, <overrides>, checkpoint}`` sized for the dataset's classes
    and (:func:`fit_input`) for the features ``audio``."""
    from ..data import read_label_csv
    from ..train import builders

    if not section.get("checkpoint"):
        raise ValueError(f"no checkpoint in model section {section}")
    section = dict(fit_input(section, audio), num_classes=read_label_csv(label_csv).num_classes)
    return builders.build_model(section, role)


def train_classifier(out_dir, model: dict, paths: dict, stats: tuple, train: dict, loader: dict,
                     checkpoint=None, teacher: dict | None = None, audio: dict | None = None,
                     augment: dict | None = None, balanced: bool = False, bad_clips: str = "raise"):
    """Train ``model`` (``{name, <create overrides>}``) on the dataset, or load ``checkpoint``.

    ``audio``: `AudioConf` fields for both splits (e.g. ``target_length``); ``augment``: training-only
    `AudioConf` fields (``freqm``, ``timem``, ``mixup``); ``teacher``/``balanced``/``bad_clips``: see
    :func:`classifier_config`.

    Returns ``(model, metrics)`` (metrics None for a loaded checkpoint); the run lives in ``out_dir``
    and a finished run is not re-trained (the loop resumes or returns what is stored)."""
    if checkpoint:
        return load_classifier(dict(model, checkpoint=checkpoint), paths["label_csv"], audio), None
    return train_from_config(classifier_config(out_dir, model, paths, stats, train, loader, audio, augment,
                                               teacher, balanced, bad_clips))


def chance_map(paths: dict) -> float:
    """mAP of a constant predictor on the eval set (`dasslib.metrics.chance_level`): the mean class
    prevalence, the floor the tables' numbers should be read against."""
    from ..data import AudioDataset
    from ..metrics import chance_level

    ds = AudioDataset(paths["eval_json"], paths["label_csv"])     # labels only: no audio is read
    return float(chance_level(torch.stack([ds.target(i) for i in range(len(ds))]))["mAP"])


# ---------------------------------------------------------------- reading a run, for the notebooks' views
PROFILES = ("ci", "gpu", "paper")


def profile_sentence(profile: str, notebook: str, scopes: dict) -> str:
    """One Markdown sentence naming the parameter profile of a run and what it can show.

    profile: "ci" / "gpu" / "paper" (``params/<profile>/<notebook>.yaml``) or any other name (a
    hand-made parameter set); scopes: ``{profile: sentence}`` of what each profile can and cannot
    show (a missing entry says the run cannot be read against a known profile)."""
    where = f"`params/{profile}/{notebook}.yaml`" if profile in PROFILES else "no profile file"
    scope = scopes.get(profile, "a parameter set of its own: read its numbers against its parameters, "
                                "not against a profile.")
    return f"Profile **{profile}** ({where}): {scope}"


HISTORY_METRICS = ("mAP", "mAUC", "train_loss", "eval_loss")


def read_histories(run_dirs: dict) -> pd.DataFrame:
    """Per-epoch history of training runs: ``run_dirs`` ``{label: folder with history.csv}`` (as
    `dasslib.train.fit` writes it); returns the rows of every history with a first column ``run``
    (the label; runs without a history are left out)."""
    import pandas as pd

    parts = []
    for label, folder in run_dirs.items():
        path = Path(folder) / "history.csv"
        if path.is_file():
            parts.append(pd.read_csv(path).assign(run=label))
    if not parts:
        return pd.DataFrame(columns=["run", "epoch"])
    hist = pd.concat(parts, ignore_index=True)
    return hist[["run"] + [c for c in hist.columns if c != "run"]]


def plot_learning_curves(hist, runs=None, metric: str = "mAP", loss: str | None = "train_loss"):
    """Seaborn line plots per epoch, one line per run of ``hist`` (`read_histories`): ``loss`` (None or
    a column ``hist`` lacks: no such panel) beside the eval ``metric``. runs: labels to draw (None: all,
    in ``hist``'s order). Returns the Figure."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    if metric not in hist.columns:
        raise ValueError(f"metric {metric!r} is not a history column ({list(hist.columns)})")
    panels = [m for m in (loss, metric) if m is not None and m in hist.columns
              and (m == metric or hist[m].notna().any())]
    panels = list(dict.fromkeys(panels))
    order = list(dict.fromkeys(hist["run"]))
    runs = order if runs is None else [r for r in order if r in set(runs)]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels) + 2.2, 3.8), squeeze=False)
    data = hist[hist["run"].isin(runs)]
    for i, (ax, name) in enumerate(zip(axes[0], panels)):
        if len(data):
            sns.lineplot(data=data, x="epoch", y=name, hue="run", hue_order=runs, marker="o", ax=ax,
                         legend=i == len(panels) - 1)
            ax.xaxis.get_major_locator().set_params(integer=True)
        else:
            ax.text(0.5, 0.5, "no run selected", ha="center", va="center", transform=ax.transAxes)
        ax.set(title=f"eval {name} per epoch" if name in ("mAP", "mAUC") else f"{name} per epoch", ylabel=name)
    if len(data):
        sns.move_legend(axes[0, -1], "upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small", title=None)
    fig.tight_layout()
    return fig


def learning_curves_view(hist, save_to=None, metric: str = "mAP", live: bool | None = None):
    """`plot_learning_curves` (training loss beside ``metric``) of every run of ``hist`` (saved to
    ``save_to``), and, in a live notebook, a run selector and a metric menu to re-draw it
    (`dasslib.display.explore`)."""
    import ipywidgets as widgets

    from ..display import explore

    runs = list(dict.fromkeys(hist["run"]))
    metrics = [m for m in HISTORY_METRICS if m in hist.columns and hist[m].notna().any()] or [metric]
    controls = dict(runs=(widgets.SelectMultiple, dict(options=runs, value=tuple(runs), description="runs",
                                                       rows=min(len(runs), 8) or 1)),
                    metric=(widgets.Dropdown, dict(options=metrics, value=metric if metric in metrics else metrics[0],
                                                   description="metric")))
    return explore(lambda runs, metric: plot_learning_curves(hist, runs, metric), controls, save_to, live=live)


def read_stops(run_dirs: dict) -> pd.DataFrame:
    """What ended each training run of ``run_dirs`` ``{label: folder}``: one row per run with a
    ``metrics.json``, columns ``run, reason, epochs, best_epoch`` (``reason``: ``plateau``, ``epoch_cap``, or
    ``fixed_epochs`` for runs trained without the rule, or before it was recorded)."""
    import pandas as pd

    rows = []
    for label, folder in run_dirs.items():
        path = Path(folder) / "metrics.json"
        if not path.is_file():
            continue
        stored = json.loads(path.read_text())
        stop = stored.get("stopped") or {}
        rows.append(dict(run=label, reason=stop.get("reason", "fixed_epochs"), epochs=stop.get("epochs"),
                         best_epoch=stop.get("best_epoch", (stored.get("best") or {}).get("epoch"))))
    return pd.DataFrame(rows, columns=["run", "reason", "epochs", "best_epoch"])


def stops_sentence(stops) -> str:
    """One sentence on how the runs of `read_stops` ended ("" when none is recorded)."""
    if not len(stops):
        return ""
    groups = {r: list(g["run"]) for r, g in stops.groupby("reason", sort=False)}
    parts = []
    if "plateau" in groups:
        parts.append(f"{len(groups['plateau'])} of {len(stops)} run(s) stopped on the plateau rule")
    if "epoch_cap" in groups:
        parts.append(f"{len(groups['epoch_cap'])} hit the epoch cap before the plateau rule fired "
                     f"({', '.join(groups['epoch_cap'])}): they may not have converged")
    if "fixed_epochs" in groups:
        parts.append(f"{len(groups['fixed_epochs'])} of {len(stops)} trained a fixed number of epochs with no "
                     "plateau rule (their curves say whether they had converged)")
    return "Training: " + "; ".join(parts) + "."


def loudest_window(wave, sr: int = 16000, seconds: float = 5.0, step_s: float = 0.5) -> float:
    """Start (s, a multiple of ``step_s``) of the ``seconds``-long window of ``wave`` ((samples,) or
    (1, samples)) with the most energy; 0 when the clip is not longer than the window."""
    import numpy as np

    x = np.asarray(wave, dtype=np.float64).reshape(-1)
    n, step = int(round(seconds * sr)), int(round(step_s * sr))
    if x.size <= n:
        return 0.0
    energy = np.concatenate([[0.0], np.cumsum(x * x)])
    starts = np.arange(0, x.size - n + 1, step)
    return float(starts[int(np.argmax(energy[starts + n] - energy[starts]))] / sr)


def show_example_clip(paths: dict, split: str = "eval", index: int | None = None, seconds: float = 5.0) -> int:
    """Display one clip of a dataset with its labels and a player of its loudest ``seconds``.

    index: the clip (None: the first with the most labels among the first 16). Returns the index."""
    from ..data import load_audio, read_datafile, read_label_csv
    from ..display import show_audio

    entries = read_datafile(paths[f"{split}_json"])
    labels = read_label_csv(paths["label_csv"])
    if index is None:
        counts = [len(e.labels) for e in entries[:16]]
        index = counts.index(max(counts))
    entry = entries[index]
    wave = load_audio(entry.wav)[0].numpy()
    names = [labels.names[labels.index[m]] for m in entry.labels]
    start = loudest_window(wave, seconds=seconds)
    show_audio(f"**{split} clip {index}** ({len(wave) / 16000:g} s; playing {start:g}-{start + seconds:g} s, its "
               f"loudest {seconds:g} s). Labels: " + ", ".join(f"{n} (`{m}`)" for n, m in zip(names, entry.labels)),
               wave, start_s=start, seconds=seconds)
    return index
