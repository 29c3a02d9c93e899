"""Audio NIAH experiments (DASS paper, Sec. 5): evaluate a classifier on needles inside haystacks.

Scores are mAP over the needles of an evaluation set against each needle clip's labels, as the
official code scores them."""
from __future__ import annotations

import itertools
import warnings

import pandas as pd
import torch
from tqdm.auto import tqdm

from ..data import AudioConf, AudioDataset, DatasetNeedles, NiahDataset
from ..data.frames import FRAMES_PER_SECOND
from ..inference import InputTooLongError, predict
from ..metrics import evaluate

NEEDLE_FRAMES = 1024
NEEDLE_SECONDS = NEEDLE_FRAMES / FRAMES_PER_SECOND  # "10 s": the needle alone, no haystack


def load_needles(paths: dict, stats: tuple, max_needles: int | None = None) -> list:
    """(fbank (1024, F) normalized, waveform, labels) of the eval set, held in memory."""
    mean, std = stats
    ds = AudioDataset(paths["eval_json"], paths["label_csv"], AudioConf(mean=mean, std=std))
    needles = DatasetNeedles(ds)
    n = len(needles) if max_needles is None else min(max_needles, len(needles))
    return [needles[i] for i in range(n)]


def niah_map(model, needles, stats, length_s, position=0.5, kind="zeros", snr_db=None, device=None,
             seed=0, batch_size=8, babble_wav=None, fast="auto") -> float:
    """mAP of ``model`` over ``needles`` each inside a ``length_s`` haystack (noise fbanks are
    computed on ``device`` when it is a CUDA device). ``fast``: the forward path of
    :func:`dasslib.inference.predict` (compiled on CUDA under "auto"; "off": eager)."""
    mean, std = stats
    fbank_device = device if device is not None and torch.device(device).type == "cuda" else None
    ds = NiahDataset(needles, length_s, position=position, kind=kind, snr_db=snr_db, seed=seed,
                     mean=mean, std=std, babble_wav=babble_wav, fbank_device=fbank_device)
    scores, targets = [], []
    bs = batch_size if length_s <= 60 else 1
    for i in range(0, len(ds), bs):
        items = [ds[j] for j in range(i, min(i + bs, len(ds)))]
        x = torch.stack([it[0] for it in items])
        scores.append(predict(model, x, device, fast=fast))
        targets.append(torch.stack([it[1] for it in items]))
    return float(evaluate(torch.cat(scores).numpy(), torch.cat(targets).numpy())["mAP"])


def sweep(models: dict, needles, stats, lengths, positions=(0.5,), kinds=(("zeros", None),),
          device=None, seed=0, batch_size=8, babble_wav=None, progress: bool | None = None,
          fast="auto") -> pd.DataFrame:
    """One row per (model, length, position, kind, snr) with mAP and the relative drop
    ``(mAP_10 - mAP_t) / mAP_10`` against the needle alone (10.24 s). ``kinds``: (kind, snr_db)
    pairs; ``babble_wav``: the babble loop (None: the default synthetic one); ``progress``: a
    progress bar (None: only in a live notebook, `dasslib.display.widgets_live`, so papermill and
    nbval store no progress widget); ``fast``: see :func:`niah_map`.

    A length that does not fit in memory (:class:`dasslib.inference.InputTooLongError`) is left out
    for that model, with the longer ones, and a warning gives the error (with the largest length
    predicted to fit): the rows measured are kept."""
    if progress is None:
        from ..display import widgets_live

        progress = widgets_live()
    rows = []
    grid = list(itertools.product(models.items(), lengths, positions, kinds))
    base = {name: niah_map(m, needles, stats, NEEDLE_SECONDS, device=device, batch_size=batch_size,
                           fast=fast)
            for name, m in models.items()}
    too_long = {}  # model name -> the shortest length that did not fit
    for (name, model), length, position, (kind, snr) in tqdm(grid, "NIAH", leave=False, disable=not progress):
        if length >= too_long.get(name, float("inf")):
            continue
        try:
            m = niah_map(model, needles, stats, length, position, kind, snr, device, seed, batch_size,
                         babble_wav, fast)
        except InputTooLongError as err:
            too_long[name] = length
            warnings.warn(f"NIAH sweep: {name} left out at {length:g} s and longer: {err}")
            continue
        rows.append(dict(model=name, length_s=float(length), position=float(position), haystack=kind,
                         snr_db=snr, mAP=m, mAP_10s=base[name],
                         rel_drop=(base[name] - m) / base[name] if base[name] > 0 else float("nan")))
    return pd.DataFrame(rows)


def length_scaling(models: dict, lengths_s, device=None, dtype=torch.bfloat16, repeats=2,
                   num_mel_bins=128, fast="off", lean="auto") -> pd.DataFrame:
    """Peak memory and seconds of one forward (batch 1, no grad, ``dtype`` autocast on CUDA) of
    each model at each input length (``fast``: the path of :func:`dasslib.inference.measure`;
    its compile falls in the warm-up call, not in the timed ones; ``lean``: DASS's memory-lean
    path, "auto" as :func:`dasslib.inference.predict` takes it: from 131,072 frames on). A length
    that does not fit is a row with ``fits=False`` and the largest length predicted to fit, never an
    exception.

    Returns one row per (model, length_s): fits, seconds, peak_mem_gib, max_fit_s, note.
    """
    from ..inference import InputTooLongError, measure

    rows = []
    for name, model in models.items():
        for length in lengths_s:
            frames = int(round(float(length) * FRAMES_PER_SECOND))
            row = dict(model=name, length_s=float(length), frames=frames)
            try:
                r = measure(model, frames, device, num_mel_bins=num_mel_bins, dtype=dtype,
                            warmup=1, repeats=repeats, fast=fast, lean=lean)
                peak = r["peak_mem_bytes"]
                row.update(fits=True, seconds=r["seconds"],
                           peak_mem_gib=None if peak is None else peak / 2**30, max_fit_s=None, note="")
            except InputTooLongError as err:
                fit = err.fit
                row.update(fits=False, seconds=None, peak_mem_gib=None,
                           max_fit_s=None if fit is None else fit.max_seconds, note=str(err))
            rows.append(row)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- figures
def plot_fig3(fig3: pd.DataFrame, length_s: float):
    """Fig. 3: relative mAP drop per needle position, one bar per model (pooling). Returns the Figure."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    fig, ax = plt.subplots(figsize=(6.4, 4))
    sns.barplot(data=fig3, x="position", y="rel_drop", hue="model", ax=ax)
    ax.set(title=f"NIAH, {length_s:g} s zeros haystack", ylabel="relative mAP drop")
    return fig


def plot_fig4(fig4: pd.DataFrame):
    """Fig. 4: mAP vs haystack length (log x), one line per ``series`` (model @ position)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    fig, ax = plt.subplots(figsize=(6.4, 4))
    sns.lineplot(data=fig4, x="length_s", y="mAP", hue="series", marker="o", ax=ax)
    ax.set(xscale="log", title="NIAH, zeros haystack", xlabel="input length (s)")
    return fig


def plot_fig5(fig5: pd.DataFrame, length_s: float, model: str):
    """Fig. 5: mAP vs SNR per noise kind, the needle alone as a dashed line."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    fig, ax = plt.subplots(figsize=(6.4, 4))
    sns.lineplot(data=fig5, x="snr_db", y="mAP", hue="haystack", marker="o", ax=ax)
    ax.axhline(fig5["mAP_10s"].iloc[0], ls="--", c="gray", label="needle alone")
    ax.legend()
    ax.set(title=f"NIAH, {length_s:g} s noise haystack, {model}", xlabel="SNR (dB)")
    return fig


def plot_fig6(fig6: pd.DataFrame, model: str):
    """Fig. 6: mAP vs length (log x) in white noise at 0 dB."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    fig, ax = plt.subplots(figsize=(6.4, 4))
    sns.lineplot(data=fig6, x="length_s", y="mAP", marker="o", ax=ax)
    ax.set(xscale="log", title=f"NIAH, white noise 0 dB, {model}", xlabel="input length (s)")
    return fig


FIGURE_FILES = {"fig3": "fig3_pooling_position", "fig4": "fig4_length", "fig5": "fig5_noise_snr",
                "fig6": "fig6_length_white0db", "scaling": "length_scaling"}


def read_results(out) -> dict:
    """What the notebook saved in ``out``: the frames of Figs. 3-6 and the length scaling
    (keys of `FIGURE_FILES`; a missing file is left out)."""
    from pathlib import Path

    res = {}
    for key, stem in FIGURE_FILES.items():
        path = Path(out) / f"{stem}.csv"
        if path.is_file():
            res[key] = pd.read_csv(path)
    return res


# ---------------------------------------------------------------- what this run shows
PROFILE_SCOPES = {
    "ci": "tiny DASS and AST models trained for a few steps on the small embedded `ci` set, a handful of needles "
          "and haystacks of seconds. It shows that every NIAH variant runs end to end; its relative drops have "
          "changed sign "
          "between two CPU machines, so it cannot show how length, position or noise affect a model.",
    "gpu": "full-size DASS-Small and AST-Small trained from scratch on the embedded `gpu` set (synthetic clips, no "
           "AudioSet, no ImageNet initialization) and haystacks up to hours. It can show how the needle's mAP "
           "changes with haystack length, position and noise for models of the paper's size; its absolute mAPs "
           "are far below the paper's AudioSet-trained models.",
    "paper": "the paper's setting (official checkpoints, AudioSet eval needles): its curves can be put next to "
             "the paper's Figs. 3-6.",
}


def _span(d: pd.DataFrame) -> str:
    d = d.sort_values("length_s")
    first, last = d.iloc[0], d.iloc[-1]
    return (f"{first['mAP_10s']:.3f} alone, {first['mAP']:.3f} at {first['length_s']:g} s, "
            f"{last['mAP']:.3f} at {last['length_s']:g} s ({_drop(last['rel_drop'])} the needle alone)")


def _lost(rel: float) -> str:
    return f"lost {rel:.0%}" if rel >= 0 else f"gained {-rel:.0%}"


def _drop(rel: float) -> str:
    return f"{rel:.0%} below" if rel >= 0 else f"{-rel:.0%} above"


def summary(results: dict, profile: str, main: str, baseline: str | None = None) -> str:
    """The "What this run shows" Markdown of a 04 run from `read_results`; ``main``: the DASS
    model label of Figs. 4-6 (``"<model>/<pooling>"``), ``baseline``: the AST label."""
    from .common import profile_sentence

    lines = ["### What this run shows", "", profile_sentence(profile, "04_niah", PROFILE_SCOPES)]
    fig4 = results.get("fig4")
    if fig4 is not None and len(fig4):
        text = ("**Fig. 4** (the paper: DASS loses little mAP as the zeros haystack grows to hours, and holds up "
                "better than AST). Here, ")
        dass = fig4[fig4["model"] == main]
        text += f"{main} (needle in the middle): {_span(dass)}"
        others = [m for m in fig4["model"].unique() if m != main]
        for m in others:
            text += f"; {m} (needle first): {_span(fig4[fig4['model'] == m])}"
        lines += ["", text + "."]
        if others and len(dass):
            common = sorted(set(dass["length_s"]) & set(fig4[fig4["model"] == others[0]]["length_s"]))
            if common:
                at = common[-1]
                a = float(dass.set_index("length_s").loc[at, "rel_drop"])
                b = float(fig4[fig4["model"] == others[0]].set_index("length_s").loc[at, "rel_drop"])
                lines[-1] += (f" At {at:g} s, the longest length both ran, {main} {_lost(a)} and {others[0]} "
                              f"{_lost(b)} of its needle-alone mAP: "
                              + ("the SSM held up better, as in the paper." if a < b else
                                 "the SSM did not hold up better, unlike the paper."))
    fig3 = results.get("fig3")
    if fig3 is not None and len(fig3):
        parts = []
        for m, d in fig3.groupby("model", sort=False):
            worst = d.loc[d["rel_drop"].idxmax()]
            parts.append(f"{m}: relative drops from {d['rel_drop'].min():.0%} to {d['rel_drop'].max():.0%}, "
                         "largest with "
                         f"the needle at {worst['position']:g}")
        lines += ["", "**Fig. 3** (the paper compares poolings over needle positions: a pooling that does not "
                      f"depend on where the needle is loses the same everywhere). Here, {fig3['length_s'].iloc[0]:g} s "
                      "haystacks: " + "; ".join(parts) + "."]
    fig5 = results.get("fig5")
    if fig5 is not None and len(fig5):
        parts = []
        for kind, d in fig5.groupby("haystack", sort=False):
            d = d.sort_values("snr_db")
            parts.append(f"{kind} {d['mAP'].iloc[0]:.3f} at {d['snr_db'].iloc[0]:g} dB and {d['mAP'].iloc[-1]:.3f} "
                         f"at {d['snr_db'].iloc[-1]:g} dB")
        lines += ["", f"**Fig. 5** (the paper scores white-noise and babble haystacks at several SNRs). Here, "
                      f"{fig5['length_s'].iloc[0]:g} s haystacks, needle alone {fig5['mAP_10s'].iloc[0]:.3f}: "
                      + "; ".join(parts) + "."]
    fig6 = results.get("fig6")
    if fig6 is not None and len(fig6):
        lines += ["", "**Fig. 6** (the paper: mAP against length in white noise at 0 dB). Here: "
                      + _span(fig6) + "."]
    scaling = results.get("scaling")
    if scaling is not None and len(scaling):
        parts = []
        for m, d in scaling.groupby("model", sort=False):
            fit = d[d["fits"].astype(bool)].sort_values("length_s")
            if len(fit):
                last = fit.iloc[-1]
                mem = "" if pd.isna(last["peak_mem_gib"]) else f", {last['peak_mem_gib']:.1f} GiB peak"
                parts.append(f"{m} ran {last['length_s']:g} s in {last['seconds']:.2f} s{mem}")
            if (~d["fits"].astype(bool)).any():
                parts.append(f"{m} did not fit {d.loc[~d['fits'].astype(bool), 'length_s'].min():g} s")
        lines += ["", "**Length scaling** (random weights, batch 1): " + "; ".join(parts) + "."]
    return "\n".join(lines)


# ---------------------------------------------------------------- listening and exploring
def label_names(label_csv) -> tuple:
    """Display names of the classes of a label csv, in index order."""
    from ..data import read_label_csv

    return read_label_csv(label_csv).names


def _names_of(labels, names) -> list:
    return [names[i] for i in torch.as_tensor(labels).nonzero().flatten().tolist()]


def show_listening(needle, names, length_s=30.0, kinds=(("zeros", None), ("white", 0.0), ("babble", 0.0)),
                   seed=0, babble_wav=None, excerpt_s=5.0, index=0, sr=16000):
    """Players of a needle (``(fbank, waveform (1, samples), labels)`` of `load_needles`, item
    ``index``), of ``excerpt_s`` seconds of each ``length_s`` haystack around the needle's start
    (half before, half after; noise as NIAH item ``index`` gets it) and of the babble loop.
    names: class display names (`label_names`)."""
    from ..data.niah import haystack_waveform
    from ..display import show_audio

    fbank, wave, labels = needle
    show_audio(f"**Needle** (eval clip {index}, first {excerpt_s:g} s): {', '.join(_names_of(labels, names))}",
               wave, sr, seconds=excerpt_s)
    for kind, snr in kinds:
        hay, start = haystack_waveform(wave, length_s, 0.5, kind, snr, seed=(seed, index), sr=sr,
                                       babble_wav=babble_wav, needle_frames=fbank.shape[0])
        what = "silence for the zeros haystack" if kind == "zeros" else f"{kind} noise at {snr:g} dB SNR"
        show_audio(f"**{length_s:g} s haystack, {what}**: {excerpt_s / 2:g} s before the needle at "
                   f"{start / sr:.2f} s, then the needle's first {excerpt_s / 2:g} s",
                   hay, sr, start_s=start / sr - excerpt_s / 2, seconds=excerpt_s)
    if babble_wav is not None:
        show_audio(f"**Babble track** (the loop's first {excerpt_s:g} s; synthetic talkers, not real speech)",
                   babble_wav, sr, seconds=excerpt_s)


def top_k(model, x, labels, names, k=5, device=None) -> pd.DataFrame:
    """The model's ``k`` highest-scoring classes on one input ``x (T, F)``: rows rank, class,
    probability (sigmoid of the logit), in_truth (the class is one of ``labels``, multi-hot (C,))."""
    scores = torch.sigmoid(predict(model, x, device, fast="off")).flatten()   # one call per choice
    top = torch.topk(scores, min(k, scores.numel()))
    truth = set(torch.as_tensor(labels).nonzero().flatten().tolist())
    return pd.DataFrame(dict(rank=range(1, len(top.indices) + 1), **{"class": [names[i] for i in top.indices.tolist()]},
                             probability=top.values.tolist(), in_truth=[i in truth for i in top.indices.tolist()]))


def haystack_choices(noise_kinds, snrs) -> dict:
    """``{label: (kind, snr_db)}`` of the haystacks a reader can pick: zeros, then every noise kind at
    every SNR (``"white 0 dB"``)."""
    out = {"zeros": ("zeros", None)}
    out.update({f"{k} {float(s):g} dB": (k, float(s)) for k in noise_kinds for s in snrs})
    return out


def needle_view(model, needles, stats, names, lengths, haystacks: dict, seed=0, babble_wav=None, device=None,
                excerpt_s=5.0, sr=16000, live=None):
    """Pick a needle, a haystack length and a haystack (``haystacks``: `haystack_choices`); see the
    model's top 5 against the needle's labels and hear ``excerpt_s`` s around the needle. The
    default view is needle 0 in the longest length's first haystack (`dasslib.display.explore`)."""
    import ipywidgets as widgets

    from .. import display as D
    from ..data.niah import build_haystack, haystack_waveform

    mean, std = stats
    options = [(f"{i}: {', '.join(_names_of(n[2], names))}", i) for i, n in enumerate(needles)]
    controls = dict(index=(widgets.Dropdown, dict(options=options, value=0, description="needle")),
                    length_s=(widgets.Dropdown, dict(options=[float(n) for n in lengths], value=float(max(lengths)),
                                                     description="length (s)")),
                    haystack=(widgets.Dropdown, dict(options=list(haystacks), value=list(haystacks)[0],
                                                     description="haystack")))

    def render(index, length_s, haystack):
        fbank, wave, labels = needles[index]
        kind, snr = haystacks[haystack]
        x, start = build_haystack(fbank, wave, length_s, 0.5, kind, snr, seed=(seed, index), mean=mean, std=std,
                                  sr=sr, babble_wav=babble_wav)
        try:
            table = top_k(model, x, labels, names, device=device)
            rows = "\n".join(f"| {r.rank} | {r._2} | {r.probability:.3f} | {'yes' if r.in_truth else ''} |"
                             for r in table.itertuples())
            scores = f"| rank | class | probability | in truth |\n| --- | --- | --- | --- |\n{rows}"
        except InputTooLongError as err:  # the view stays usable for the lengths that fit
            scores = f"Not scored: {err}."
        D.show_markdown(f"Needle {index} in a {length_s:g} s {haystack} haystack, at "
                        f"{start / FRAMES_PER_SECOND:.2f} s. "
                        f"Truth: **{', '.join(_names_of(labels, names))}**\n\n{scores}")
        hay, first = haystack_waveform(wave, length_s, 0.5, kind, snr, seed=(seed, index), sr=sr,
                                       babble_wav=babble_wav, needle_frames=fbank.shape[0])
        D.display(D.audio(hay, sr, start_s=first / sr - excerpt_s / 2, seconds=excerpt_s))

    return D.explore(render, controls, live=live)
