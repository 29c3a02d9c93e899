"""SSAM experiments (Yadav & Tan, paper Tables 1, 2, 4): masked spectrogram-patch pretraining of
SSAM (Mamba) and SSAST-style (transformer) encoders, then an MLP probe trained on frozen features.

Pipeline, as the paper and the official code do it (kaldi fbank of `dasslib.data` instead of the
official torchaudio MelSpectrogram):

* clips: 80-bin log-mel ``(clip_frames, 80)`` per labelled clip (no dataset normalization);
* pretraining: a random 2 s crop ``(200, 80)`` of every clip per epoch, standardized per
  instance ``(x - mean) / (std + 1e-8)``; loss = MSE of the reconstruction over all patches, as
  the official code (its model returns no mask, so ``mae_loss`` averages every patch; the
  training loop's ``objective="pretrain"``, ``recon_patches="all"``; ``"masked"`` scores only the
  masked ones, MAE style); evaluation loss on centre crops of the eval set. The mask token
  replaces a patch after its position was added (official), so masked tokens carry no position:
  a transformer (SSAST) then maps all of them to one output and can only predict the mean
  masked patch, while the Mamba scan knows where it is from the order. With the masked-only
  loss SSAST stays near the variance of the standardized input while SSAM learns (docs/models.md);
* features (HEAR scene embeddings, computed by `dasslib.hear`, the functions the HEAR kit calls,
  on the cached fbanks: ``frontend="kaldi"``): the clip standardized per instance, cut into 2 s
  chunks (the tail zero-padded), every chunk encoded without masking, its patch tokens grouped
  into ``f_dim * D``-wide steps, the steps of all chunks concatenated (those starting in the
  padding dropped) and averaged: ``layout="official"`` (default) groups the tokens as the
  official SSAM HEAR wrapper does, ``"dasslib"`` per time step (see `dasslib.hear`);
  ``pool="frames"`` (default) keeps the ``f_dim * D`` vector, ``pool="mean"`` also averages over
  the ``f_dim`` groups (the mean of all patch tokens, ``D``; it loses most of the band
  information);
* probe: one-hidden-layer MLP (1024 units) on standardized features, multi-label BCE, scored
  by `dasslib.metrics.evaluate` (mAP) on the eval set, repeated over seeds.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from ..hear import standardize, wrap
from ..metrics import evaluate
from ..models import count_parameters
from ..runtime import cuda_autocast

VARIANTS = {"mamba": "none", "vim": "bi_bi"}  # Table 4: SSM type -> SSAMConfig.bimamba
SSM_TYPE = {"mamba": "Mamba", "vim": "Vim"}
DEFAULT_PATCH = (4, 16)
POOLS = ("mean", "frames")
# Paper Sec. 3.2 / official configs: AdamW, wd 0.05, 10 warm-up epochs then cosine, 100 epochs;
# betas (0.9, 0.95) and lr 1.5e-4 * batch / 256 from the official train.py.
PRETRAIN_RECIPE = dict(optimizer="adamw", weight_decay=0.05, betas=(0.9, 0.95), schedule="cosine",
                       warmup_epochs=10, warmup_every=1, epochs=100, lr=6e-4, wa=False,
                       objective="pretrain", loss="masked_mse", recon_patches="all", main_metric="eval_loss")


# ---------------------------------------------------------------- data
def load_clips(datafile, label_csv, num_mel_bins=80, clip_frames=998, cache=True, num_workers=0,
               batch_size=32) -> Dataset:
    """Labelled clips ``(fbank (clip_frames, num_mel_bins) raw log-mel, labels (C,))``.

    ``cache=True`` computes every fbank once (through a DataLoader with ``num_workers``) and
    returns a `TensorDataset` held in memory (4 * clip_frames * num_mel_bins bytes per clip);
    ``cache=False`` returns the streaming `AudioDataset` (AudioSet-sized sets)."""
    from ..data import AudioConf, AudioDataset

    conf = AudioConf(target_length=clip_frames, num_mel_bins=num_mel_bins, mean=None, std=None)
    ds = AudioDataset(datafile, label_csv, conf)
    if not cache:
        return ds
    xs, ys = [], []
    for x, y in DataLoader(ds, batch_size=batch_size, num_workers=num_workers):
        xs.append(x)
        ys.append(y)
    return TensorDataset(torch.cat(xs), torch.cat(ys))


class CropDataset(Dataset):
    """Items ``(crop (crop_frames, F) standardized per instance, labels)`` of a clip dataset.

    ``random=True``: the crop start of item ``i`` in epoch ``e`` is drawn from a generator seeded
    by ``(seed, e, i)`` (reproducible in workers and after resumption; the loop calls
    `set_epoch`); ``random=False``: the centre crop."""

    def __init__(self, clips: Dataset, crop_frames: int = 200, random: bool = True, seed: int = 0):
        if crop_frames < 1:
            raise ValueError(f"crop_frames must be positive, got {crop_frames}")
        self.clips, self.crop_frames, self.random, self.seed = clips, int(crop_frames), random, int(seed)
        self.epoch = 0

    def __len__(self):
        return len(self.clips)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __getitem__(self, index):
        x, y = self.clips[index][:2]
        t = x.shape[0]
        if t < self.crop_frames:
            raise ValueError(f"clip {index} has {t} frames, fewer than crop_frames={self.crop_frames}")
        if self.random:
            rng = np.random.default_rng([self.seed, self.epoch, int(index)])
            start = int(rng.integers(0, t - self.crop_frames + 1))
        else:
            start = (t - self.crop_frames) // 2
        return standardize(x[start:start + self.crop_frames]), y


# ---------------------------------------------------------------- models and pretraining
def model_label(name: str, pretrained: bool = True) -> str:
    """``"ssam_tiny"`` -> ``"SSAM-Tiny"`` (``" (random init)"`` appended when not pretrained)."""
    family, _, size = name.partition("_")
    return f"{family.upper()}-{size.title()}" + ("" if pretrained else " (random init)")


def create_encoder(name: str, patch_size=DEFAULT_PATCH, variant: str = "mamba", overrides: dict | None = None):
    """A registry SSAM / SSAST model without classifier head (``num_classes=0``).

    ``overrides``: ``{"ssam": {...}, "ssast": {...}}`` config overrides per family (tiny CPU
    models); ``variant`` ("mamba" | "vim") only applies to SSAM."""
    from .. import models

    family = name.split("_")[0]
    if family not in ("ssam", "ssast"):
        raise ValueError(f"{name!r} is not an SSAM / SSAST model")
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose one of {sorted(VARIANTS)}")
    kw = dict((overrides or {}).get(family, {}), patch_size=tuple(patch_size))
    if family == "ssam":
        kw["bimamba"] = VARIANTS[variant]
    return models.create(name, num_classes=0, **kw)


def pretrain_config(train: dict, seed: int = 0, device: str = "auto") -> dict:
    """The `TrainConfig` fields of a pretraining run: `PRETRAIN_RECIPE` updated by ``train``."""
    from ..train import TrainConfig

    cfg = TrainConfig.from_dict({**PRETRAIN_RECIPE, **dict(train), "seed": seed, "device": device})
    if cfg.objective != "pretrain":
        raise ValueError("SSAM pretraining needs objective='pretrain'")
    return cfg.to_dict()


def pretrain(model: nn.Module, train_crops: Dataset, eval_crops: Dataset | None, out_dir, train_cfg: dict,
             batch_size: int = 64, num_workers: int = 0):
    """Masked reconstruction of ``model`` through `dasslib.train.fit` (resumes / reloads ``out_dir``).

    Returns the `FitResult` (history: one row per epoch with ``train_loss``, ``eval_loss``)."""
    from ..train import TrainConfig, fit

    cfg = TrainConfig.from_dict(train_cfg)
    common = dict(num_workers=num_workers, pin_memory=torch.cuda.is_available())
    train_loader = DataLoader(train_crops, batch_size=batch_size, shuffle=True, **common)
    eval_loader = None if eval_crops is None else DataLoader(eval_crops, batch_size=2 * batch_size, **common)
    return fit(model, train_loader, eval_loader, cfg, out_dir, resume=True)


# ---------------------------------------------------------------- features and probe
@torch.inference_mode()
def embed_clips(model: nn.Module, clips: Dataset, chunk_frames: int = 200, pool: str = "frames",
                batch_size: int = 16, device=None, num_workers: int = 0, layout: str = "official"):
    """Frozen scene embeddings of every clip: ``(features (N, D'), targets (N, C))`` float32 tensors,
    ``D' = D`` for ``pool="mean"``, ``f_dim * D`` for ``pool="frames"`` (see the module doc)."""
    if pool not in POOLS:
        raise ValueError(f"unknown pool {pool!r}; choose one of {POOLS}")
    device = torch.device(device or "cpu")
    hear_model = wrap(model.to(device), layout=layout, frontend="kaldi", chunk_frames=chunk_frames,
                      num_mel_bins=clips[0][0].shape[-1])
    feats, targets = [], []
    workers = 0 if isinstance(clips, TensorDataset) else num_workers  # in memory: nothing to load
    for x, y in DataLoader(clips, batch_size=batch_size, num_workers=workers):
        with cuda_autocast(device, torch.bfloat16):
            h, _ = hear_model.frame_embeddings(standardize(x).to(device))   # (b, steps, f_dim * D)
        h = h.float().mean(dim=1)                                  # the HEAR scene embedding
        b = h.shape[0]
        if pool == "mean":
            h = h.reshape(b, -1, model.cfg.embed_dim).mean(dim=1)  # (b, D)
        feats.append(h.cpu())
        targets.append(y)
    return torch.cat(feats), torch.cat(targets)


def probe(train_x, train_y, eval_x, eval_y, hidden: int = 1024, dropout: float = 0.1, epochs: int = 100,
          lr: float = 1e-3, batch_size: int = 1024, weight_decay: float = 0.0, seed: int = 0,
          device=None) -> dict:
    """Train a one-hidden-layer MLP on frozen features and score it on the eval set.

    ``train_x (N, D)``, ``train_y (N, C)`` multi-hot; features standardized with the training
    mean / std; Adam, BCE, ``epochs`` passes in ``batch_size`` minibatches, all randomness from
    ``seed``. Returns `dasslib.metrics.evaluate` of the eval logits (``mAP``, ``mAUC``, ``d_prime``)."""
    train_x, eval_x = torch.as_tensor(train_x).float(), torch.as_tensor(eval_x).float()
    train_y, eval_y = torch.as_tensor(train_y).float(), torch.as_tensor(eval_y).float()
    if train_x.dim() != 2 or train_x.shape[1] != eval_x.shape[1]:
        raise ValueError(f"features must be (N, D) with the same D, got {tuple(train_x.shape)} and "
                         f"{tuple(eval_x.shape)}")
    if train_y.shape[0] != train_x.shape[0] or eval_y.shape[0] != eval_x.shape[0]:
        raise ValueError("features and targets differ in their number of rows")
    device = torch.device(device or "cpu")
    mean, std = train_x.mean(0), train_x.std(0).clamp_min(1e-6)
    train_x, eval_x = ((train_x - mean) / std).to(device), ((eval_x - mean) / std).to(device)
    train_y = train_y.to(device)
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.enable_grad():
        torch.manual_seed(seed)
        mlp = nn.Sequential(nn.Linear(train_x.shape[1], hidden), nn.ReLU(), nn.Dropout(dropout),
                            nn.Linear(hidden, train_y.shape[1])).to(device)
        opt = torch.optim.Adam(mlp.parameters(), lr=lr, weight_decay=weight_decay)
        order = torch.Generator().manual_seed(seed)
        n = train_x.shape[0]
        for _ in range(epochs):
            mlp.train()
            for idx in torch.randperm(n, generator=order).split(batch_size):
                idx = idx.to(device)
                loss = nn.functional.binary_cross_entropy_with_logits(mlp(train_x[idx]), train_y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        mlp.eval()
        with torch.no_grad():
            scores = mlp(eval_x).float().cpu()
    return {k: float(v) for k, v in evaluate(scores, eval_y).items() if np.ndim(v) == 0}


# ---------------------------------------------------------------- experiment plan and tables
def _key(name, patch_size, variant, pretrained):
    ps = "x".join(str(p) for p in patch_size)
    v = f"-{variant}" if name.startswith("ssam") else ""
    return f"{name}-p{ps}{v}" + ("" if pretrained else "-init")


def plan_runs(models=("ssam_tiny", "ssast_tiny"), no_pretrain=("ssam_tiny",),
              ablation_models=("ssast_tiny", "ssam_tiny"), patch_sizes=(DEFAULT_PATCH,),
              variants=("mamba",)) -> pd.DataFrame:
    """Rows ``(table, model, setting, key)`` of Tables 1, 2 and 4, and the run behind each.

    Table 1: every name in ``models`` pretrained plus every name in ``no_pretrain`` frozen at its
    random initialisation (default patch, Mamba). Table 2: ``ablation_models`` x ``patch_sizes``.
    Table 4: the SSAST models of ``ablation_models`` (SSM type "None") and its SSAM models x
    ``variants``. Runs shared by several rows have one ``key`` (trained once)."""
    for v in variants:
        if v not in VARIANTS:
            raise ValueError(f"unknown variant {v!r}; choose from {sorted(VARIANTS)}")
    for ps in patch_sizes:
        if len(ps) != 2 or min(ps) < 1:
            raise ValueError(f"a patch size is (time, frequency) > 0, got {ps}")
    rows = []

    def add(table, setting, name, patch=DEFAULT_PATCH, variant="mamba", pretrained=True):
        rows.append(dict(table=table, model=model_label(name, pretrained), setting=setting,
                         key=_key(name, patch, variant, pretrained), name=name,
                         patch_size=tuple(int(p) for p in patch), variant=variant, pretrained=pretrained))

    for name in models:
        add("Table 1", "pretrained", name)
    for name in no_pretrain:
        add("Table 1", "no pretraining", name, pretrained=False)
    for ps in patch_sizes:
        for name in ablation_models:
            add("Table 2", f"patch {tuple(ps)}", name, patch=ps)
    for name in ablation_models:
        if name.startswith("ssast"):
            add("Table 4", "SSM None", name)
        else:
            for v in variants:
                add("Table 4", f"SSM {SSM_TYPE[v]}", name, variant=v)
    if not rows:
        raise ValueError("nothing to run: give at least one model")
    return pd.DataFrame(rows)


def config_hash(*parts) -> str:
    """8 hex digits identifying a run's settings (its folder name, so a changed setting retrains)."""
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:8]


def run_experiments(plan: pd.DataFrame, clips: dict, out_dir, overrides: dict, train: dict,
                    crop_frames=200, batch_size=64, num_workers=0, pool="frames", probe_kw: dict | None = None,
                    probe_seeds=(0,), seed=0, device=None, data_id: str = "",
                    layout: str = "official") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Pretrain (or keep at init) and probe every distinct run of ``plan``.

    ``clips``: clip datasets (`load_clips`) ``train`` / ``eval`` (pretraining and its eval loss)
    and ``probe_train`` / ``probe_eval`` (the labelled probing sets; default: ``train`` / ``eval``).
    Pretraining runs live in ``out_dir/<key>-<hash of the settings and data_id>``. The probe's
    features are `embed_clips` with ``pool`` and the HEAR ``layout``.

    Returns ``(results, history)``: one row per run key (``params_M``, ``n_patches``,
    ``pretrain_eval_loss``, ``feature_dim``, ``mAP``, ``mAP_std`` over ``probe_seeds``, ``mAUC``,
    ``d_prime``, ``pretrain_s``, ``probe_s``) and the pretraining history of every pretrained run."""
    from ..train.seeding import seed_everything

    device = torch.device(device or "cpu")
    cfg = pretrain_config(train, seed, device.type)
    train_clips = clips["train"]
    probe_sets = (clips.get("probe_train", train_clips), clips.get("probe_eval", clips.get("eval")))
    if probe_sets[1] is None:
        raise ValueError("probing needs an eval set: give clips['eval'] or clips['probe_eval']")
    f_bins = train_clips[0][0].shape[1]
    train_crops = CropDataset(train_clips, crop_frames, random=True, seed=seed)
    eval_crops = None if clips.get("eval") is None else CropDataset(clips["eval"], crop_frames, random=False)
    results, histories = [], []
    for run in plan.drop_duplicates("key").itertuples():
        seed_everything(seed)  # identical initial weights for a run and its no-pretraining twin
        model = create_encoder(run.name, run.patch_size, run.variant, overrides)
        row = dict(key=run.key, model=model_label(run.name, run.pretrained),
                   params_M=count_parameters(model) / 1e6,
                   n_patches=(crop_frames // run.patch_size[0]) * (f_bins // run.patch_size[1]),
                   pretrain_eval_loss=float("nan"), pretrain_s=0.0)
        t0 = time.perf_counter()
        if run.pretrained:
            settings = config_hash(overrides.get(run.name.split("_")[0]), cfg, crop_frames, batch_size,
                                   len(train_clips), data_id)
            folder = Path(out_dir) / f"{run.key}-{settings}"
            res = pretrain(model, train_crops, eval_crops, folder, cfg, batch_size, num_workers)
            if "eval_loss" in res.history:
                row["pretrain_eval_loss"] = float(res.history["eval_loss"].iloc[-1])
            histories.append(res.history.assign(key=run.key, model=row["model"]))
        row["pretrain_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        feats = [embed_clips(model, c, crop_frames, pool, batch_size, device, num_workers, layout)
                 for c in probe_sets]
        scores = pd.DataFrame([probe(*feats[0], *feats[1], seed=s, device=device, **(probe_kw or {}))
                               for s in probe_seeds])
        row.update(feature_dim=feats[0][0].shape[1], mAP=scores["mAP"].mean(), mAP_std=scores["mAP"].std(ddof=0),
                   mAUC=scores["mAUC"].mean(), d_prime=scores["d_prime"].mean(), probe_s=time.perf_counter() - t0)
        results.append(row)
        model.cpu()
    history = pd.concat(histories, ignore_index=True) if histories else pd.DataFrame()
    return pd.DataFrame(results), history


def make_tables(plan: pd.DataFrame, results: pd.DataFrame) -> dict:
    """Paper-shaped tables from `plan_runs` and `run_experiments`: ``table1`` (model, pretraining,
    params, mAP), ``table2`` (model, patch size, number of patches, mAP), ``table4`` (model, SSM
    type, mAP) and ``combined`` (index table / model / setting; mAP, mAP_std, mAUC)."""
    df = plan.merge(results.drop(columns="model"), on="key", how="left", validate="many_to_one")
    cols = ["model", "mAP", "mAP_std", "mAUC"]
    t1 = df[df.table == "Table 1"].rename(columns={"setting": "pretraining"})
    t2 = df[df.table == "Table 2"].assign(patch_size=lambda d: d.patch_size.map(str))
    t4 = df[df.table == "Table 4"].assign(ssm_type=lambda d: d.setting.str.removeprefix("SSM "))
    return dict(
        table1=t1[["model", "pretraining", "params_M", "n_patches", "pretrain_eval_loss",
                   *cols[1:]]].reset_index(drop=True),
        table2=t2[["model", "patch_size", "n_patches", *cols[1:]]].reset_index(drop=True),
        table4=t4[["model", "ssm_type", *cols[1:]]].reset_index(drop=True),
        combined=df.set_index(["table", "model", "setting"])[cols[1:]],
    )


# ---------------------------------------------------------------- figures, reading a finished run back
def plot_tables(combined: pd.DataFrame):
    """Seaborn bar charts of `make_tables`' ``combined`` (index table / model / setting): probe mAP
    per run, one panel per table, coloured by family (SSAM / SSAST). Returns the ``FacetGrid``."""
    import seaborn as sns

    bars = combined.reset_index().assign(run=lambda d: d.model + "\n" + d.setting,
                                         family=lambda d: d.model.str.split("-").str[0])
    g = sns.catplot(data=bars, kind="bar", x="run", y="mAP", hue="family", col="table", sharex=False,
                    height=3.5, aspect=1.1)
    g.set_xticklabels(rotation=30, ha="right", fontsize=7)
    g.set_axis_labels("", "probe mAP (eval)")
    return g


def plot_pretrain_history(history: pd.DataFrame):
    """Reconstruction MSE on the eval crops per pretraining epoch, one line per run key. Returns the
    Figure."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    fig, ax = plt.subplots(figsize=(6.4, 4))
    sns.lineplot(data=history, x="epoch", y="eval_loss", hue="key", marker="o", ax=ax)
    ax.set(title="reconstruction MSE on eval crops", ylabel="eval loss")
    ax.xaxis.get_major_locator().set_params(integer=True)
    return fig


def read_results(out) -> dict:
    """What the notebook saved in ``out``: ``table1``, ``table2``, ``table4`` (as `make_tables`),
    ``combined`` (index table / model / setting) and ``history`` (the pretraining history, empty
    when nothing was pretrained)."""
    out = Path(out)
    try:
        history = pd.read_csv(out / "pretrain_history.csv")
    except (FileNotFoundError, pd.errors.EmptyDataError):
        history = pd.DataFrame()
    tables = {name: pd.read_csv(out / f"{name}.csv") for name in ("table1", "table2", "table4")}
    tables["table4"]["ssm_type"] = tables["table4"]["ssm_type"].fillna("None")    # pandas reads "None" as NaN
    return dict(tables, combined=pd.read_csv(out / "combined.csv", index_col=["table", "model", "setting"]),
                history=history)


PROFILE_SCOPES = {
    "ci": "tiny 2-layer encoders pretrained for one short epoch on the small embedded `ci` set and probed on the "
          "same clips. It shows that pretraining, feature extraction and the probe run end to end; with this few clips "
          "and steps the differences between runs are within noise, so it cannot rank SSAM against SSAST.",
    "gpu": "Tiny encoders pretrained for a few epochs on the embedded `gpu` set (synthetic clips, not AudioSet) and "
           "probed on its labels. It can show whether masked pretraining helps each encoder on this data and how "
           "patch size and block type move the probe; it cannot reproduce the paper's HEAR scores s(m) or its "
           "AudioSet-scale ranking.",
    "paper": "the paper's setting (AudioSet pretraining, HEAR-style probing): its numbers can be put next to the "
             "paper's Tables 1, 2 and 4 (as probe mAP, not the aggregated s(m)).",
}


def summary(results: dict, profile: str, epochs: int | None = None) -> str:
    """The "What this run shows" Markdown of a 02 run, computed from `read_results`."""
    from .common import profile_sentence

    t1, t2, t4 = results["table1"], results["table2"], results["table4"]
    lines = ["### What this run shows", "", profile_sentence(profile, "02_ssam_pretrain", PROFILE_SCOPES)]
    if epochs is not None:
        lines[-1] += f" Pretraining: {epochs} epoch(s)."
    pre = t1[t1["pretraining"] == "pretrained"].set_index("model")["mAP"]
    text = ["**Table 1** (the paper: pretrained SSAM outperforms the transformer SSAST, and pretraining helps)."]
    if len(pre):
        best = pre.idxmax()
        text.append("Here: " + ", ".join(f"{m} {v:.3f}" for m, v in pre.items())
                    + (f" probe mAP; {best} is ahead by {pre.max() - pre.min():.3f}." if len(pre) > 1
                       else " probe mAP."))
        ssam = pre[[m for m in pre.index if m.startswith("SSAM-")]]
        ssast = pre[[m for m in pre.index if m.startswith("SSAST-")]]
        if len(ssam) and len(ssast):
            text.append("SSAM ahead of SSAST, as in the paper." if ssam.max() > ssast.max()
                        else "SSAST ahead of SSAM, unlike the paper.")
    init = t1[t1["pretraining"] == "no pretraining"]
    for row in init.itertuples():
        name = row.model.removesuffix(" (random init)")
        if name in pre.index:
            gain = pre[name] - row.mAP
            text.append(f"Pretraining moved {name} from {row.mAP:.3f} (frozen random init) to {pre[name]:.3f} "
                        f"({gain:+.3f}).")
    lines += ["", " ".join(text)]
    if t2["patch_size"].nunique() > 1:
        parts = []
        for model, d in t2.groupby("model", sort=False):
            d = d.sort_values("mAP", ascending=False)
            parts.append(f"{model}: best {d['patch_size'].iloc[0]} ({d['mAP'].iloc[0]:.3f}), worst "
                         f"{d['patch_size'].iloc[-1]} ({d['mAP'].iloc[-1]:.3f})")
        lines += ["", "**Table 2** (the paper ablates the patch size). Here: " + "; ".join(parts) + "."]
    else:
        lines += ["", f"**Table 2** (the paper ablates the patch size): this run tried one patch size "
                      f"({t2['patch_size'].iloc[0]}), so it shows no patch-size effect."]
    ssm = t4[t4["ssm_type"] != "None"].set_index("ssm_type")["mAP"]
    if len(ssm) > 1:
        lines += ["", "**Table 4** (the paper compares unidirectional Mamba blocks with Vim's bidirectional ones). "
                      "Here: " + ", ".join(f"{k} {v:.3f}" for k, v in ssm.items())
                  + f"; {ssm.idxmax()} is ahead by {ssm.max() - ssm.min():.3f}."]
    else:
        lines += ["", "**Table 4** (the paper compares Mamba with Vim blocks): this run tried one SSM type, so it "
                      "shows no block-type effect."]
    return "\n".join(lines)
