"""Audio NIAH experiments (DASS paper, Sec. 5): evaluate a classifier on needles inside haystacks.

Scores are mAP over the needles of an evaluation set against each needle clip's labels, as the
official code scores them."""
from __future__ import annotations

import itertools

import pandas as pd
import torch
from tqdm.auto import tqdm

from ..data import AudioConf, AudioDataset, DatasetNeedles, NiahDataset
from ..inference import predict
from ..metrics import evaluate

NEEDLE_FRAMES = 1024
NEEDLE_SECONDS = NEEDLE_FRAMES / 100  # "10 s": the needle alone, no haystack


def load_needles(paths: dict, stats: tuple, max_needles: int | None = None) -> list:
    """(fbank (1024, F) normalized, waveform, labels) of the eval set, held in memory."""
    mean, std = stats
    ds = AudioDataset(paths["eval_json"], paths["label_csv"], AudioConf(mean=mean, std=std))
    needles = DatasetNeedles(ds)
    n = len(needles) if max_needles is None else min(max_needles, len(needles))
    return [needles[i] for i in range(n)]


def niah_map(model, needles, stats, length_s, position=0.5, kind="zeros", snr_db=None, device=None,
             seed=0, batch_size=8, babble_wav=None) -> float:
    """mAP of ``model`` over ``needles`` each inside a ``length_s`` haystack (noise fbanks are
    computed on ``device`` when it is a CUDA device)."""
    mean, std = stats
    fbank_device = device if device is not None and torch.device(device).type == "cuda" else None
    ds = NiahDataset(needles, length_s, position=position, kind=kind, snr_db=snr_db, seed=seed,
                     mean=mean, std=std, babble_wav=babble_wav, fbank_device=fbank_device)
    scores, targets = [], []
    bs = batch_size if length_s <= 60 else 1
    for i in range(0, len(ds), bs):
        items = [ds[j] for j in range(i, min(i + bs, len(ds)))]
        x = torch.stack([it[0] for it in items])
        scores.append(predict(model, x, device))
        targets.append(torch.stack([it[1] for it in items]))
    return float(evaluate(torch.cat(scores).numpy(), torch.cat(targets).numpy())["mAP"])


def sweep(models: dict, needles, stats, lengths, positions=(0.5,), kinds=(("zeros", None),),
          device=None, seed=0, batch_size=8, babble_wav=None) -> pd.DataFrame:
    """One row per (model, length, position, kind, snr) with mAP and the relative drop
    ``(mAP_10 - mAP_t) / mAP_10`` against the needle alone (10.24 s). ``kinds``: (kind, snr_db)
    pairs; ``babble_wav``: the babble loop (None: the default synthetic one)."""
    rows = []
    grid = list(itertools.product(models.items(), lengths, positions, kinds))
    base = {name: niah_map(m, needles, stats, NEEDLE_SECONDS, device=device, batch_size=batch_size)
            for name, m in models.items()}
    for (name, model), length, position, (kind, snr) in tqdm(grid, desc="NIAH", leave=False):
        m = niah_map(model, needles, stats, length, position, kind, snr, device, seed, batch_size,
                     babble_wav)
        rows.append(dict(model=name, length_s=float(length), position=float(position), haystack=kind,
                         snr_db=snr, mAP=m, mAP_10s=base[name],
                         rel_drop=(base[name] - m) / base[name] if base[name] > 0 else float("nan")))
    return pd.DataFrame(rows)


def length_scaling(models: dict, lengths_s, device=None, dtype=torch.bfloat16, repeats=2,
                   num_mel_bins=128) -> pd.DataFrame:
    """Peak memory and seconds of one forward (batch 1, no grad, ``dtype`` autocast on CUDA) of
    each model at each input length. A length that does not fit is a row with ``fits=False``
    and the largest length predicted to fit, never an exception.

    Returns one row per (model, length_s): fits, seconds, peak_mem_gib, max_fit_s, note.
    """
    from ..inference import InputTooLongError, measure

    rows = []
    for name, model in models.items():
        for length in lengths_s:
            frames = int(round(float(length) * 100))
            row = dict(model=name, length_s=float(length), frames=frames)
            try:
                r = measure(model, frames, device, num_mel_bins=num_mel_bins, dtype=dtype,
                            warmup=1, repeats=repeats)
                peak = r["peak_mem_bytes"]
                row.update(fits=True, seconds=r["seconds"],
                           peak_mem_gib=None if peak is None else peak / 2**30, max_fit_s=None, note="")
            except InputTooLongError as err:
                fit = err.fit
                row.update(fits=False, seconds=None, peak_mem_gib=None,
                           max_fit_s=None if fit is None else fit.max_seconds, note=str(err))
            rows.append(row)
    return pd.DataFrame(rows)
