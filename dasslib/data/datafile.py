"""AudioSet / AST datafiles: ``{"data": [{"wav": path, "labels": "/m/..,/m/.."}]}`` and
``class_labels_indices.csv`` (columns ``index,mid,display_name``).

The same format describes AudioSet, ESC-50, Speech Commands or the embedded dataset. Relative
``wav`` paths resolve against the folder of the json that lists them.
"""
import csv
import io
import json
import os
from dataclasses import dataclass, field

import numpy as np
import soundfile as sf

from ..atomic import atomic_write_json, atomic_write_text

__all__ = ["LabelSet", "Entry", "read_label_csv", "write_label_csv", "read_datafile",
           "write_datafile", "validate_datafile"]

_CSV_COLUMNS = ("index", "mid", "display_name")
_FRAME_S = 0.025  # one fbank frame (dasslib.data.fbank.FRAME_LENGTH_MS): shorter clips give no fbank


@dataclass(frozen=True)
class LabelSet:
    """Classes of a label csv, in index order."""
    mids: tuple
    names: tuple
    path: str = ""
    index: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "index", {mid: i for i, mid in enumerate(self.mids)})

    @property
    def num_classes(self) -> int:
        return len(self.mids)

    def multi_hot(self, mids, source: str = "") -> np.ndarray:
        """Label ids -> ``(num_classes,)`` float32 multi-hot; ``ValueError`` names an unknown id."""
        out = np.zeros(self.num_classes, dtype=np.float32)
        for mid in mids:
            if mid not in self.index:
                where = f" (used by {source})" if source else ""
                csv_name = self.path or "the label csv"
                raise ValueError(f"unknown label {mid!r}{where}: not in {csv_name}")
            out[self.index[mid]] = 1.0
        return out


@dataclass(frozen=True)
class Entry:
    """One clip of a datafile: resolved wav path and its label ids."""
    wav: str
    labels: tuple


def read_label_csv(path) -> LabelSet:
    """Read ``class_labels_indices.csv``; indices must be 0..C-1 (any row order), mids unique."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"label csv not found: {path}")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in _CSV_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"label csv {path} lacks column(s) {missing}; "
                             f"header must be {','.join(_CSV_COLUMNS)}")
        rows = {}
        for line, row in enumerate(reader, start=2):
            try:
                idx = int(row["index"])
            except (TypeError, ValueError):
                raise ValueError(f"label csv {path} line {line}: index {row['index']!r} "
                                 f"is not an integer") from None
            mid = (row["mid"] or "").strip()
            if not mid:
                raise ValueError(f"label csv {path} line {line}: empty mid")
            if idx in rows:
                raise ValueError(f"label csv {path} line {line}: duplicate index {idx}")
            rows[idx] = (mid, (row["display_name"] or "").strip())
    if not rows:
        raise ValueError(f"label csv {path} has no classes")
    if sorted(rows) != list(range(len(rows))):
        raise ValueError(f"label csv {path}: indices must be 0..{len(rows) - 1} without gaps")
    mids = tuple(rows[i][0] for i in range(len(rows)))
    dup = sorted({m for m in mids if mids.count(m) > 1})
    if dup:
        raise ValueError(f"label csv {path}: duplicate mid(s) {dup}")
    return LabelSet(mids, tuple(rows[i][1] for i in range(len(rows))), path)


def write_label_csv(path, mids, names) -> None:
    """Write ``index,mid,display_name`` rows (names quoted where they hold commas)."""
    buf = io.StringIO(newline="")
    writer = csv.writer(buf)
    writer.writerow(_CSV_COLUMNS)
    writer.writerows((i, mid, name) for i, (mid, name) in enumerate(zip(mids, names)))
    atomic_write_text(buf.getvalue(), path)


def _parse(path) -> tuple[list, list]:
    """Datafile -> (entries, problems); problems are strings naming the entry."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        return [], [f"datafile not found: {path}"]
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        return [], [f"datafile {path} is not valid json: {err}"]
    if not isinstance(raw, dict) or not isinstance(raw.get("data"), list):
        return [], [f"datafile {path} must be a json object with a list under 'data'"]
    base = os.path.dirname(os.path.abspath(path))
    entries, problems = [], []
    for i, item in enumerate(raw["data"]):
        where = f"datafile {path} entry {i}"
        if not isinstance(item, dict):
            problems.append(f"{where}: must be an object, got {type(item).__name__}")
            continue
        wav, labels = item.get("wav"), item.get("labels")
        if not isinstance(wav, str) or not wav:
            problems.append(f"{where}: 'wav' must be a non-empty string, got {wav!r}")
            continue
        if not isinstance(labels, str):
            problems.append(f"{where} ({wav}): 'labels' must be a comma-separated string, "
                            f"got {labels!r}")
            continue
        mids = tuple(m.strip() for m in labels.split(",") if m.strip())
        if not mids:
            problems.append(f"{where} ({wav}): no labels")
            continue
        entries.append(Entry(os.path.normpath(os.path.join(base, os.path.expanduser(wav))), mids))
    return entries, problems


def read_datafile(path) -> list:
    """Read a datafile -> list of ``Entry``; one ``ValueError`` lists every malformed entry."""
    entries, problems = _parse(path)
    if problems:
        raise ValueError("\n".join(problems))
    if not entries:
        raise ValueError(f"datafile {os.fspath(path)} lists no clips")
    return entries


def write_datafile(path, items) -> None:
    """Write ``items`` (pairs of wav path, label ids) as a datafile; paths inside the json's
    folder are stored relative to it."""
    base = os.path.dirname(os.path.abspath(path))
    data = []
    for wav, labels in items:
        wav = os.path.abspath(wav)
        if os.path.commonpath([base, wav]) == base:
            wav = os.path.relpath(wav, base)
        data.append({"wav": wav, "labels": ",".join(labels)})
    atomic_write_json({"data": data}, path)


def _audio_problem(path, decode: bool):
    if not os.path.isfile(path):
        return f"audio file not found: {path}"
    if decode:
        from .audio import load_audio  # deferred: validation without decoding needs no torch
        from .fbank import SAMPLE_RATE
        try:
            samples, sr = load_audio(path).shape[1], SAMPLE_RATE
        except ValueError as err:
            return str(err)
    else:
        try:
            info = sf.info(path)
        except Exception as err:
            return f"cannot read audio file {path}: {err}"
        samples, sr = info.frames, info.samplerate
        if samples == 0:
            return f"audio file has no samples: {path}"
    if samples < int(sr * _FRAME_S):
        return (f"audio file too short: {samples} samples at {sr} Hz ({1000 * samples / sr:.1f} ms), "
                f"less than one {1000 * _FRAME_S:g} ms fbank frame: {path}")
    return None


def validate_datafile(datafile, label_csv, check_audio: str | bool = "header",
                      raise_on_error: bool = True) -> list:
    """Check every entry of ``datafile`` against ``label_csv`` and report all problems at once.

    ``check_audio``: ``"header"`` opens each file's header (fast), ``"decode"`` decodes every
    file fully (catches corrupt data), ``False`` skips audio; both audio checks report clips
    shorter than one 25 ms fbank frame. An empty data list is a problem. Returns the list of problem
    strings (empty when all is well); raises one ``ValueError`` listing them all when
    ``raise_on_error``.
    """
    if check_audio not in ("header", "decode", False):
        raise ValueError(f"check_audio must be 'header', 'decode' or False, got {check_audio!r}")
    labels = read_label_csv(label_csv)
    entries, problems = _parse(datafile)
    if not entries and not problems:
        problems.append(f"datafile {os.fspath(datafile)} lists no clips")
    for entry in entries:
        unknown = [m for m in entry.labels if m not in labels.index]
        if unknown:
            problems.append(f"{entry.wav}: unknown label(s) {unknown} (not in {labels.path})")
        if check_audio:
            problem = _audio_problem(entry.wav, decode=check_audio == "decode")
            if problem:
                problems.append(problem)
    if problems and raise_on_error:
        raise ValueError(f"{len(problems)} problem(s) in {os.fspath(datafile)}:\n"
                         + "\n".join(problems))
    return problems
