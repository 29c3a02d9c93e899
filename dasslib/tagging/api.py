"""``dasslib.tag``: label recordings with a classifier, clip-level and (``timeline=True``) over time.

Steps per file: :func:`dasslib.data.load_audio` (any format soundfile reads, resampled to 16 kHz
with torchaudio) -> normalised fbank -> :func:`~dasslib.tagging.passes.run_passes` (one pass
when it fits, else overlapping chunks) -> sigmoid scores -> top-k table; with a timeline the
frame scores are binned every ``hop`` seconds and thresholded into events. A file that cannot
be read or run is reported in ``files`` (status "error") and the run goes on.
"""
import io
import os
import time
from dataclasses import dataclass, field

import pandas as pd
import torch
from tqdm.auto import tqdm

from ..atomic import atomic_write_csv
from ..data.audio import load_audio
from ..data.fbank import AUDIOSET_MEAN, AUDIOSET_STD, SAMPLE_RATE, ChunkedFbank, num_frames
from ..inference import expected_mel_bins, resolve_lean
from ..runtime import resolve_device
from .features import recording_fbank
from .inputs import collect_inputs
from .model import default_labels, load_model
from .passes import PROBE_FRAMES, pass_limit, run_passes
from .timeline import bin_scores, find_events

__all__ = ["TagResult", "tag"]


@dataclass
class TagResult:
    """DataFrames of a tagging run.

    files: one row per input (file, status "ok" / "error", error, duration_s, mode, seconds);
    clips: the top-k labels per file (file, rank, class_index, mid, label, score);
    timeline: label scores per bin (file, start_s, end_s, one column per class name);
    events: segments (file, class_index, mid, label, start_s, end_s, duration_s, peak_score);
    written: paths of the files written (``out_dir``)."""
    files: pd.DataFrame
    clips: pd.DataFrame
    timeline: pd.DataFrame
    events: pd.DataFrame
    written: list = field(default_factory=list)


def _column_names(labels):
    names = list(labels.names)
    return names if len(set(names)) == len(names) and all(names) else list(labels.mids)


class _Tagger:
    """One file at a time; holds the model, its device and the pass limit."""

    def __init__(self, model, labels, device, dtype, max_pass_seconds, overlap_seconds, norm, progress, lean="auto"):
        self.model, self.labels, self.device, self.dtype, self.lean = model, labels, device, dtype, lean
        self.mel_bins = expected_mel_bins(model) or 128
        self.max_pass_seconds, self.overlap = max_pass_seconds, int(overlap_seconds * 100)
        self.norm, self.progress, self._limit = norm, progress, None

    def limit(self):
        if self._limit is None:
            self._limit = pass_limit(self.model, self.mel_bins, self.device, self.max_pass_seconds, self.dtype,
                                     self.lean)
        return self._limit

    def __call__(self, path, timeline):
        wave = load_audio(path)
        duration = wave.shape[-1] / SAMPLE_RATE
        n = num_frames(wave.shape[-1])
        short = self.max_pass_seconds is None and n <= PROBE_FRAMES   # fits without measuring
        limit = n if short else self.limit()
        if n <= limit and resolve_lean(self.model, self.lean, n):
            # one pass on the lean path: the fbank is computed chunk by chunk from the waveform (kept
            # where it is), on the model's device, and never held whole
            fbank = ChunkedFbank(wave, *self.norm, num_mel_bins=self.mel_bins, device=self.device)
        else:
            fbank = recording_fbank(wave.to(self.device), *self.norm, num_mel_bins=self.mel_bins,
                                    progress=self.progress)              # on the model's device
        del wave
        measured = not short and self.max_pass_seconds is None and self.device.type == "cuda"
        out = run_passes(self.model, fbank, frames=timeline, device=self.device, dtype=self.dtype,
                         max_frames=limit, overlap=self.overlap, progress=self.progress, lean=self.lean,
                         fits_frames=limit if measured else None)
        return duration, out


def _top_k(path, probs, labels, k):
    order = torch.argsort(probs, descending=True, stable=True)[:k].tolist()
    return [dict(file=path, rank=r + 1, class_index=c, mid=labels.mids[c], label=labels.names[c],
                 score=float(probs[c])) for r, c in enumerate(order)]


def _timeline(path, out, duration, frame_rate, labels, hop, threshold, min_duration):
    """(timeline DataFrame, events DataFrame, bin times, bin scores) of one file."""
    times, scores = bin_scores(torch.sigmoid(out.frame_logits).numpy(), frame_rate, hop, duration)
    table = pd.DataFrame(scores, columns=_column_names(labels))
    table.insert(0, "end_s", (times + hop).clip(max=duration))
    table.insert(0, "start_s", times)
    table.insert(0, "file", path)
    found = find_events(times, scores, hop, threshold, min_duration, duration)
    found.insert(0, "label", [labels.names[c] for c in found.class_index])
    found.insert(0, "mid", [labels.mids[c] for c in found.class_index])
    found.insert(0, "file", path)
    return table, found, times, scores


def tag(paths, model="dass_small", checkpoint=None, labels=None, *, timeline=False, hop=1.0, top_k=5,
        threshold=0.5, min_duration=1.0, overrides=None, device="auto", dtype=torch.bfloat16,
        max_pass_seconds=None, overlap_seconds=10.0, norm_mean=AUDIOSET_MEAN, norm_std=AUDIOSET_STD,
        out_dir=None, plot_top=10, progress=None, lean="auto") -> TagResult:
    """Tag audio files, folders or datafiles; returns a :class:`TagResult` of DataFrames.

    model: a registry name (with ``checkpoint``, ``overrides``; see
    :func:`~dasslib.tagging.model.load_model`) or a built classifier module; labels: label csv
    path or LabelSet (None: classes named by index). timeline: also score every ``hop`` seconds
    and find events (score >= ``threshold`` for >= ``min_duration`` s). device: "auto" (CUDA when
    available), dtype: CUDA autocast dtype. max_pass_seconds: longest single pass (None: what fits
    on CUDA, 600 s on the CPU); longer recordings run in chunks with ``overlap_seconds`` context.
    norm_mean / norm_std: the fbank normalisation the model was trained with. out_dir: when given,
    writes files.csv, clips.csv (and timeline.csv, events.csv, one PNG per file) there, atomically.
    progress: bars over files and over the pieces and passes of long files (None: files when more
    than one, pieces and passes when more than one; False: none). lean: the memory-lean DASS path
    ("auto": for long passes, see :func:`dasslib.inference.predict`; True / False). On CUDA the
    files table's ``mode`` gives the longest pass predicted to fit (on that path) when a file was
    long enough to ask.
    """
    if isinstance(model, str):
        model, labels = load_model(model, checkpoint, labels, overrides)
    else:
        from ..data.datafile import read_label_csv

        labels = read_label_csv(labels) if isinstance(labels, (str, os.PathLike)) else labels
        labels = labels if labels is not None else default_labels(model.num_classes)
    if labels.num_classes != model.num_classes:
        raise ValueError(f"the labels have {labels.num_classes} classes but the model has {model.num_classes}")
    files = collect_inputs(paths)
    show_files = len(files) > 1 if progress is None else progress
    device = resolve_device(device)
    model = model.to(device).eval()
    tagger = _Tagger(model, labels, device, dtype, max_pass_seconds, overlap_seconds, (norm_mean, norm_std),
                     progress is not False, lean)
    rows, clips, bins, events, written, used = [], [], [], [], [], set()
    for path in tqdm(files, desc="tagging", unit="file", disable=not show_files):
        begin = time.perf_counter()
        try:
            duration, out = tagger(path, timeline)
        except (ValueError, RuntimeError, MemoryError, OSError) as err:  # unreadable or unusable: report, go on
            rows.append(dict(file=path, status="error", error=f"{type(err).__name__}: {err}"))
            continue
        probs = torch.sigmoid(out.clip_logits)
        clips += _top_k(path, probs, labels, top_k)
        rows.append(dict(file=path, status="ok", error="", duration_s=duration, mode=out.mode,
                         seconds=time.perf_counter() - begin))
        if timeline:
            table, found, times, scores = _timeline(path, out, duration, model.frame_rate, labels, hop, threshold,
                                                    min_duration)
            bins.append(table)
            events.append(found)
            if out_dir is not None:   # each file's figure as soon as it is tagged
                written.append(_write_png(os.path.join(out_dir, _png_name(path, used)), times, scores, found,
                                          labels, hop, os.path.basename(path), plot_top))
    result = TagResult(pd.DataFrame(rows, columns=["file", "status", "error", "duration_s", "mode", "seconds"]),
                       pd.DataFrame(clips, columns=["file", "rank", "class_index", "mid", "label", "score"]),
                       pd.concat(bins, ignore_index=True) if bins else pd.DataFrame(),
                       pd.concat(events, ignore_index=True) if events else pd.DataFrame())
    if out_dir is not None:
        result.written = _write_tables(result, out_dir, timeline) + written
    return result


def _png_name(path, used):
    stem = os.path.splitext(os.path.basename(path))[0] or "audio"
    name, i = f"{stem}.timeline.png", 2
    while name in used:
        name, i = f"{stem}_{i}.timeline.png", i + 1
    used.add(name)
    return name


def _write_png(path, times, scores, found, labels, hop, title, plot_top):
    """The timeline figure of one file as a PNG at ``path``, written atomically."""
    import matplotlib.pyplot as plt

    from ..train.checkpoint import atomic_write_bytes
    from .plot import timeline_figure

    fig = timeline_figure(times, scores, labels.names, found, hop, title=title, top=plot_top)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return str(atomic_write_bytes(buf.getvalue(), path))


def _write_tables(result, out_dir, timeline):
    """files.csv, clips.csv (and timeline.csv, events.csv) under ``out_dir``, written atomically."""
    names = ("files", "clips") + (("timeline", "events") if timeline else ())
    paths = [os.path.join(out_dir, f"{name}.csv") for name in names]
    for name, path in zip(names, paths):
        atomic_write_csv(getattr(result, name), path, index=False)
    return paths
