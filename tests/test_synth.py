"""Embedded dataset: format, AudioSet ids, split disjointness, determinism, idempotence, CLI."""
import csv
import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from dasslib.data import read_datafile, read_label_csv, validate_datafile
from dasslib.data.synth import CLASSES, SIZES, _resolve_sizes, make_embedded_dataset, note_specs

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Rows copied from AudioSet's official class_labels_indices.csv (index = AudioSet index).
OFFICIAL = os.path.join(REPO_ROOT, "tests", "golden", "audioset_instrument_classes.csv")


def digest(folder):
    """sha1 of every file under ``folder`` except meta.json, by relative path."""
    out = {}
    for dirpath, _, files in os.walk(folder):
        for name in files:
            if name != "meta.json":
                path = os.path.join(dirpath, name)
                with open(path, "rb") as f:
                    out[os.path.relpath(path, folder)] = hashlib.sha1(f.read()).hexdigest()
    return out


def test_classes_carry_official_audioset_ids_and_names():
    with open(OFFICIAL, newline="") as f:
        official = {row["mid"]: row["display_name"] for row in csv.DictReader(f)}
    assert len(CLASSES) == len(official) == 26
    for cls in CLASSES:
        assert official[cls.mid] == cls.name


def test_format_and_content(embedded):
    root = embedded["root"]
    labels = read_label_csv(embedded["label_csv"])
    assert labels.mids == tuple(c.mid for c in CLASSES)
    assert labels.names == tuple(c.name for c in CLASSES)
    meta = json.load(open(os.path.join(root, "meta.json")))
    assert (meta["seed"], meta["n_train"], meta["n_eval"], meta["version"]) == (0, 12, 6, 1)
    for split, n in (("train", 12), ("eval", 6)):
        raw = json.load(open(embedded[f"{split}_json"]))["data"]
        assert len(raw) == n
        assert all(not os.path.isabs(d["wav"]) and d["wav"].startswith(split + "/") for d in raw)
        assert validate_datafile(embedded[f"{split}_json"], embedded["label_csv"]) == []
        for entry in read_datafile(embedded[f"{split}_json"]):
            assert 1 <= len(entry.labels) <= 3 and len(set(entry.labels)) == len(entry.labels)
            info = sf.info(entry.wav)
            assert (info.samplerate, info.channels, info.frames) == (16000, 1, 160000)
            assert info.subtype == "PCM_16"
    audio, _ = sf.read(read_datafile(embedded["train_json"])[0].wav)
    assert 0.05 < np.abs(audio).max() <= 0.9 + 1e-4  # events present, never clipped
    assert np.sqrt(np.mean(audio[:1600] ** 2)) > 0  # the noise floor is never digital silence


def test_train_and_eval_never_share_a_rendered_note():
    for cls in CLASSES:
        train, evaluation = set(note_specs(cls, "train")), set(note_specs(cls, "eval"))
        assert train and evaluation and not train & evaluation
        if cls.drums:
            assert not {s[3] for s in train} & {s[3] for s in evaluation}  # tunings
        else:
            assert not {s[1] for s in train} & {s[1] for s in evaluation}  # keys
        assert not {s[2] for s in train} & {s[2] for s in evaluation}  # velocities
    with pytest.raises(ValueError, match="split"):
        note_specs(CLASSES[0], "test")


def test_same_seed_same_bytes_other_seed_other_audio(embedded, tmp_path):
    again = make_embedded_dataset(tmp_path / "again", 12, 6, seed=0, progress=False)
    assert digest(again["root"]) == digest(embedded["root"])
    other = make_embedded_dataset(tmp_path / "other", 2, 1, seed=1, clip_seconds=2.0,
                                  progress=False)
    first = sf.read(os.path.join(other["root"], "train", "000000.wav"))[0]
    reference = sf.read(os.path.join(embedded["root"], "train", "000000.wav"))[0][:32000]
    assert not np.array_equal(first, reference)


def test_complete_folder_is_left_alone(embedded):
    def mtimes():
        root = embedded["root"]
        return {p: os.stat(os.path.join(root, p)).st_mtime_ns for p in digest(root)}

    before = mtimes()
    assert make_embedded_dataset(embedded["root"], 12, 6, seed=0, progress=False) == embedded
    assert mtimes() == before


def test_partial_or_different_folder_is_regenerated(tmp_path):
    root = tmp_path / "ds"
    out = make_embedded_dataset(root, 4, 2, clip_seconds=2.0, progress=False)
    reference = digest(root)
    os.remove(os.path.join(root, "train", "000003.wav"))  # partial: a clip is missing
    make_embedded_dataset(root, 4, 2, clip_seconds=2.0, progress=False)
    assert digest(root) == reference
    with open(out["eval_json"], "w") as f:  # partial: a datafile is corrupt
        f.write("{")
    make_embedded_dataset(root, 4, 2, clip_seconds=2.0, progress=False)
    assert digest(root) == reference
    make_embedded_dataset(root, 2, 1, clip_seconds=2.0, progress=False)  # other sizes
    assert sorted(os.listdir(root / "train")) == ["000000.wav", "000001.wav"]
    assert len(read_datafile(out["train_json"])) == 2
    assert json.load(open(root / "meta.json"))["n_train"] == 2


def test_sizes_and_argument_checks(tmp_path):
    assert SIZES["ci"] == (64, 32) and SIZES["gpu"] == (4000, 1000)
    assert _resolve_sizes(None, None, None) == (64, 32)
    assert _resolve_sizes("gpu", None, None) == (4000, 1000)
    assert _resolve_sizes("gpu", 10, None) == (10, 1000)
    with pytest.raises(ValueError, match="size must be one of"):
        make_embedded_dataset(tmp_path, size="huge")
    with pytest.raises(ValueError, match="n_train"):
        make_embedded_dataset(tmp_path, n_train=0)
    with pytest.raises(ValueError, match="clip_seconds"):
        make_embedded_dataset(tmp_path, 2, 1, clip_seconds=0.5)
    with pytest.raises(ValueError, match="seed"):
        make_embedded_dataset(tmp_path, 2, 1, seed=-1)
    assert os.listdir(tmp_path) == []  # nothing written on bad arguments


def test_cli(tmp_path):
    env = dict(os.environ, PYTHONPATH=REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    command = [sys.executable, "-m", "dasslib.data.synth", "--root", str(tmp_path / "cli"),
               "--n-train", "2", "--n-eval", "1", "--clip-seconds", "1", "--quiet"]
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO_ROOT,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert [e.labels for e in read_datafile(out["eval_json"])]
    assert sf.info(read_datafile(out["train_json"])[1].wav).frames == 16000


def _tone_hz(program, key, drums):
    """The frequency a fake note encodes: melodic classes differ by program, drum classes by key."""
    return 6000 + 50 * (key - 35) if drums else 100 + 50 * program


class _ToneRenderer:
    """Stands in for the soundfont: every note is a 0.2 s sine at `_tone_hz` of its spec (a whole number
    of cycles, so a note leaks nothing into the other 50 Hz-spaced frequencies)."""

    def render(self, spec, drums):
        t = np.arange(3200) / 16000
        return np.sin(2 * np.pi * _tone_hz(spec[0], spec[1], drums) * t).astype(np.float32)


def test_clip_audio_comes_from_its_labelled_classes_only(tmp_path, monkeypatch):
    """Property: the notes mixed into a clip are those of its labelled classes, and of no other class."""
    import dasslib.data.synth as synth

    monkeypatch.setattr(synth, "_Renderer", _ToneRenderer)
    paths = make_embedded_dataset(tmp_path, n_train=16, n_eval=8, clip_seconds=2.0, progress=False)
    freqs = {cls.mid: sorted({_tone_hz(p, k, cls.drums) for p in cls.programs for k in cls.keys})
             for cls in CLASSES}
    assert len({f for fs in freqs.values() for f in fs}) == sum(len(fs) for fs in freqs.values())  # disjoint
    heard_any = set()
    for split in ("train", "eval"):
        for entry in read_datafile(paths[f"{split}_json"]):
            audio, sr = sf.read(entry.wav)
            mag = np.abs(np.fft.rfft(audio))  # 0.5 Hz bins
            # a class sounds if one of its tones stands out: a note at the lowest gain (-15 dB) after the
            # clip's peak normalisation is > 100, leakage of cut-off notes and the noise floor < 15
            heard = {mid for mid, fs in freqs.items() if max(mag[int(f * len(audio) / sr)] for f in fs) > 40}
            assert heard == set(entry.labels), entry.wav
            heard_any |= heard
    assert len(heard_any) >= 15  # many classes are exercised, both melodic and drums
    assert heard_any & {c.mid for c in CLASSES if c.drums} and heard_any - {c.mid for c in CLASSES if c.drums}
