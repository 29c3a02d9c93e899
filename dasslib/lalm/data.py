"""Audio question-answer items: OpenAQA / LTU json, and templated QA from clip labels.

An item is a :class:`QAItem` ``(audio, question, answer, task)``: ``audio`` is a wav path (or
the index of a clip of an AudioSet-format datafile); ``task`` is one of :data:`TASKS`.
Closed-ended tasks (LTU's stage 3) are :data:`CLOSED`; stage 4 adds the open-ended ones.

The templated generator covers classification, caption, yes/no and count questions from each
clip's labels. Event-time questions are not generated: the embedded dataset
(:mod:`dasslib.data.synth`) does not record when each event sounds.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dasslib.data.datafile import read_datafile, read_label_csv

__all__ = ["QAItem", "TASKS", "CLOSED", "CAPTION_PROMPT", "read_openaqa", "templated_qa",
           "stage_items", "caption_of", "NUMBERS"]

TASKS = ("classification", "caption", "yes_no", "count", "open")
CLOSED = ("classification", "caption", "yes_no", "count")
CAPTION_PROMPT = "Write an audio caption describing the sound."
NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_CLASSIFY_Q = ("Identify the sound events in the audio clip.", "What sound events can be heard?",
               "Classify the sounds in this recording.")
_OPEN_Q = ("What might a listener notice in this recording?",
           "Describe what is going on in this audio.")


@dataclass(frozen=True)
class QAItem:
    """One question about one clip: ``audio`` (wav path or clip index), ``labels`` (display
    names of the clip's classes, for evaluation; empty when unknown)."""
    audio: object
    question: str
    answer: str
    task: str
    labels: tuple = ()


def _join(names) -> str:
    names = list(names)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def caption_of(names) -> str:
    """The templated caption of a clip with classes ``names`` ("The sound of a and b.")."""
    return f"The sound of {_join([n.lower() for n in names])}."


def read_openaqa(path, audio_root=None) -> list:
    """Items of an OpenAQA / LTU json (a list of ``{"instruction", "output", "audio_id",
    ["input", "task", "dataset"]}``). ``audio_root``: relative ``audio_id`` paths resolve
    against it (default: the json's folder). Tasks of LTU's closed-ended sets (``cla_label``,
    ``cap``, ...) map to :data:`TASKS`; everything else counts as ``open``."""
    path = Path(path)
    data = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(data, dict) and "data" in data:
        data = data["data"]
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a list of QA items, got {type(data).__name__}")
    root = Path(audio_root) if audio_root is not None else path.parent
    items = []
    for i, d in enumerate(data):
        missing = [k for k in ("instruction", "output", "audio_id") if k not in d]
        if missing:
            raise ValueError(f"{path}: item {i} lacks {missing}")
        task = str(d.get("task", "open")).lower()
        if task.startswith("cla") or "label" in task:
            task = "classification"
        elif task.startswith("cap"):
            task = "caption"
        elif task not in TASKS:
            task = "open"
        q = d["instruction"] if not d.get("input") else f"{d['instruction']}\n{d['input']}"
        audio = d["audio_id"]
        audio = audio if os.path.isabs(audio) else str(root / audio)
        items.append(QAItem(audio, q, str(d["output"]), task))
    return items


def templated_qa(datafile, label_csv, seed: int = 0, tasks=TASKS, yes_no_per_clip: int = 2) -> list:
    """Templated QA items for every clip of an AudioSet-format datafile: ``audio`` is the
    clip's index in the datafile. Per clip: one classification, one caption, ``yes_no_per_clip``
    yes/no questions (half about a present class, half about an absent one), one count and one
    open-ended item (those of ``tasks``). Deterministic for a ``seed``."""
    bad = sorted(set(tasks) - set(TASKS))
    if bad:
        raise ValueError(f"unknown task(s) {bad}; choose from {TASKS}")
    labels = read_label_csv(label_csv)
    entries = read_datafile(datafile)
    rng = np.random.default_rng(seed)
    items = []
    for i, e in enumerate(entries):
        names = tuple(labels.names[labels.index[m]] for m in e.labels)
        low = [n.lower() for n in names]
        if "classification" in tasks:
            items.append(QAItem(i, _CLASSIFY_Q[rng.integers(len(_CLASSIFY_Q))], ", ".join(low),
                                "classification", names))
        if "caption" in tasks:
            items.append(QAItem(i, CAPTION_PROMPT, caption_of(names), "caption", names))
        if "yes_no" in tasks:
            absent = [n for n in labels.names if n not in names]
            for k in range(yes_no_per_clip):
                present = k % 2 == 0 or not absent
                pool = names if present else absent
                name = pool[rng.integers(len(pool))]
                items.append(QAItem(i, f"Is there {name.lower()} in the audio?",
                                    "Yes." if present else "No.", "yes_no", names))
        if "count" in tasks:
            items.append(QAItem(i, "How many different sound events are in the audio?",
                                f"{NUMBERS[len(names)].capitalize()}.", "count", names))
        if "open" in tasks:
            items.append(QAItem(i, _OPEN_Q[rng.integers(len(_OPEN_Q))],
                                f"A listener would hear {_join(low)}: {NUMBERS[len(names)]} "
                                f"distinct sound source{'s' if len(names) > 1 else ''}.", "open", names))
    return items


def stage_items(items, which: str) -> list:
    """The items a stage trains on: ``"classification"``, ``"closed"`` (:data:`CLOSED`) or
    ``"all"`` (closed + open-ended)."""
    keep = {"classification": ("classification",), "closed": CLOSED, "all": TASKS}
    if which not in keep:
        raise ValueError(f"which must be one of {sorted(keep)}, got {which!r}")
    return [it for it in items if it.task in keep[which]]
