"""Embedded dataset: format, AudioSet ids, split disjointness, determinism, idempotence, CLI."""
import csv
import hashlib
import json
import os
import re
import subprocess
import sys

import numpy as np
import pretty_midi
import pytest
import soundfile as sf

from dasslib.data import read_datafile, read_label_csv, validate_datafile
from dasslib.data.synth import CLASSES, SIZES, _resolve_sizes, make_embedded_dataset, note_specs

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Rows copied from AudioSet's official class_labels_indices.csv (index = AudioSet index).
OFFICIAL = os.path.join(REPO_ROOT, "tests", "golden", "audioset_instrument_classes.csv")

# (GM program-name words, lowest key, highest key) of the melodic classes; GM percussion-name words of the drums
MELODIC = {"Piano": ("Piano", "A1", "C7"), "Harpsichord": ("Harpsichord", "F2", "F6"), "Organ": ("Organ", "C2", "C6"),
           "Accordion": ("Accordion", "F3", "F6"), "Harmonica": ("Harmonica", "C4", "C6"),
           "Guitar": ("Guitar", "E2", "C6"), "Banjo": ("Banjo", "C3", "C6"), "Harp": ("Harp", "C2", "C7"),
           "Violin, fiddle": ("Violin|Fiddle", "G3", "C7"), "Cello": ("Cello", "C2", "E5"),
           "Trumpet": ("Trumpet", "G3", "A#5"), "Trombone": ("Trombone", "E2", "C5"), "Saxophone": ("Sax", "G#2", "A5"),
           "Clarinet": ("Clarinet", "D3", "F6"), "Flute": ("Flute|Piccolo", "C4", "C7"),
           "Bagpipes": ("Bagpipe", "G3", "F5"),
           "Glockenspiel": ("Glockenspiel", "G5", "C8"), "Marimba, xylophone": ("Marimba|Xylophone", "C3", "C7"),
           "Bell": ("Bell", "C4", "C7"), "Timpani": ("Timpani", "C2", "C4")}
DRUMS = {"Bass drum": "Bass Drum", "Snare drum": "Snare", "Hi-hat": "Hi Hat", "Cymbal": "Cymbal",
         "Tambourine": "Tambourine", "Cowbell": "Cowbell"}


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
    """Also: each class plays General-MIDI programs of its instrument over a fixed range of keys (or GM
    percussion keys of its drum on the 8 GM drum kits); the ranges are part of generator version 1. The table
    is also read in a fresh interpreter, as an import builds it: this test runs first, and mutation testing
    attributes the import-time calls that build the table to it."""
    with open(OFFICIAL, newline="") as f:
        official = {row["mid"]: row["display_name"] for row in csv.DictReader(f)}
    assert len(CLASSES) == len(official) == 26
    for cls in CLASSES:
        assert official[cls.mid] == cls.name
    code = ("import json; from dasslib.data.synth import CLASSES; "
            "print(json.dumps([(c.mid, c.name, c.programs, c.keys, c.drums) for c in CLASSES]))")
    env = dict(os.environ, PYTHONPATH=REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO_ROOT,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    table = json.loads(result.stdout)
    assert {mid: name for mid, name, *_ in table} == official and len(table) == 26
    assert [name for _, name, *_ in table] == list(MELODIC) + list(DRUMS)
    for _, name, programs, keys, drums in table:
        if name in MELODIC:
            words, low, high = MELODIC[name]
            assert drums is False and programs
            assert all(re.search(words, pretty_midi.program_to_instrument_name(p)) for p in programs), name
            lo, hi = pretty_midi.note_name_to_number(low), pretty_midi.note_name_to_number(high)
            assert keys == list(range(lo, hi + 1)), name
        else:
            assert drums is True and programs == [0, 8, 16, 24, 25, 32, 40, 48]  # Standard ... Orchestra
            assert keys and all(DRUMS[name] in pretty_midi.note_number_to_drum_name(k) for k in keys), name

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


def test_soundfont_path_and_its_errors(monkeypatch, tmp_path):
    import importlib.util
    from types import SimpleNamespace

    import dasslib.data.synth as synth

    path = synth.soundfont_path()
    assert os.path.basename(path) == "TimGM6mb.sf2" and os.path.isfile(path)
    assert os.path.dirname(path) == os.path.dirname(importlib.util.find_spec("pretty_midi").origin)
    for spec in (None, SimpleNamespace(origin=None)):
        monkeypatch.setattr(importlib.util, "find_spec", lambda name, spec=spec: spec)
        with pytest.raises(ValueError, match=r"^the embedded dataset needs the pretty_midi package \(its soundfont\)$"):
            synth.soundfont_path()
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: SimpleNamespace(origin=str(tmp_path / "__init__.py")))
    with pytest.raises(ValueError) as err:
        synth.soundfont_path()
    assert str(err.value) == f"soundfont not found in the pretty_midi package: {tmp_path / 'TimGM6mb.sf2'}"


def test_renderer_without_tinysoundfont(monkeypatch):
    import dasslib.data.synth as synth

    monkeypatch.setitem(sys.modules, "tinysoundfont", None)  # import fails
    with pytest.raises(ImportError) as err:
        synth._Renderer()
    assert str(err.value) == ("the embedded dataset renders notes with tinysoundfont: "
                              "pip install --no-deps tinysoundfont")
    assert isinstance(err.value.__cause__, ImportError)


class _FakeSynth:
    """Stands in for tinysoundfont.Synth: records every call; ``generate(n)`` plays ``signal`` on (stereo
    channels 1.5x and 0.5x of it, so their mean is ``signal``), then silence."""

    def __init__(self, signal):
        self.signal, self.pos, self.calls = np.asarray(signal, np.float32), 0, []

    def program_select(self, *args, **kw):
        self.calls.append(("program_select", args, kw))

    def set_tuning(self, *args):
        self.calls.append(("set_tuning", args))

    def noteon(self, *args):
        self.calls.append(("noteon", args))

    def noteoff(self, *args):
        self.calls.append(("noteoff", args))

    def sounds_off(self):
        self.calls.append(("sounds_off",))

    def generate(self, n):
        self.calls.append(("generate", n))
        out = np.zeros(n, np.float32)
        part = self.signal[self.pos:self.pos + n]
        out[:len(part)] = part
        self.pos += n
        return np.stack([1.5 * out, 0.5 * out], axis=1).astype(np.float32).tobytes()


def _renderer(signal):
    import dasslib.data.synth as synth

    r = synth._Renderer.__new__(synth._Renderer)
    r.synth, r.sfid = _FakeSynth(signal), 7
    return r


def test_render_holds_releases_trims_and_fades_a_note():
    # 0.5 for 5000 samples, then 0.0008 (above 1e-3 of the peak) up to 6000, then 1e-3 of the peak exactly (not
    # above it: trimmed), then below it
    signal = np.concatenate([np.full(5000, 0.5), np.full(1000, 0.0008), np.full(500, 0.0005), np.full(2500, 0.0004)])
    r = _renderer(signal)
    note = r.render((5, 60, 100, 0.5, 0.2), drums=False)
    assert r.synth.calls == [("program_select", (0, 7, 0, 5), {"is_drums": False}), ("set_tuning", (0, 0.5)),
                             ("noteon", (0, 60, 100)), ("generate", 3200), ("noteoff", (0, 60)),
                             ("generate", 16000), ("sounds_off",), ("generate", 1600)]
    expected = np.concatenate([np.full(5000, 0.5), np.full(1000, 0.0008)]).astype(np.float32)
    expected[-80:] *= np.linspace(1.0, 0.0, 80, dtype=np.float32)  # 5 ms fade-out, in float32
    assert note.dtype == np.float32 and len(note) == 6000
    np.testing.assert_array_equal(note, expected)


def test_render_keeps_the_held_part_and_drops_silence():
    r = _renderer(np.full(1000, 0.25))  # a drum sounding 1000 samples, past its 0.05 s hold (800)
    note = r.render((16, 38, 90, -1.5, 0.05), drums=True)
    assert r.synth.calls[:4] == [("program_select", (0, 7, 128, 16), {"is_drums": True}), ("set_tuning", (0, -1.5)),
                                 ("noteon", (0, 38, 90)), ("generate", 800)]
    assert ("generate", 24000) in r.synth.calls  # a drum's 1.5 s release
    expected = np.full(1000, 0.25)
    expected[-80:] *= np.linspace(1.0, 0.0, 80)
    np.testing.assert_allclose(note, expected, rtol=1e-6, atol=0)
    short = _renderer(np.full(1000, 0.25)).render((0, 60, 100, 0.0, 0.2), drums=False)
    assert len(short) == 3200 and np.all(short[1000:] == 0)  # never shorter than the held part
    np.testing.assert_allclose(short[:1000], 0.25)
    assert len(_renderer(np.zeros(10)).render((0, 60, 100, 0.0, 0.2), drums=False)) == 0  # silent: nothing


class _ScriptedRng:
    """Stands in for a numpy Generator: returns the scripted values in order, records every call."""

    def __init__(self, *values):
        self.values, self.calls = list(values), []

    def _next(self, name, args, kw):
        self.calls.append((name, args, kw))
        return self.values.pop(0)

    def integers(self, *args, **kw):
        return self._next("integers", args, kw)

    def uniform(self, *args, **kw):
        return self._next("uniform", args, kw)

    def choice(self, *args, **kw):
        return self._next("choice", args, kw)

    def standard_normal(self, *args, **kw):
        return self._next("standard_normal", args, kw)


def test_play_phrase_drums_on_a_steady_beat():
    from dasslib.data.synth import play_phrase

    clip = np.zeros(20000, np.float32)
    bank = [np.full(3000, 1.0, np.float32), np.full(6000, 2.0, np.float32)]
    rng = _ScriptedRng(120.0, 2, 1, 0)  # 120 bpm, halved: a note every 0.25 s (4000 samples)
    assert play_phrase(clip, bank, True, 1000, 9000, 0.5, rng) == 8000
    assert rng.calls == [("uniform", (80, 160), {}), ("choice", ((1, 2),), {}), ("integers", (2,), {}),
                         ("integers", (2,), {})]
    expected = np.zeros(20000)
    expected[1000:7000] += 1.0  # note 1 (2.0 x 0.5) at 1000
    expected[5000:8000] += 0.5  # note 0 at 5000; the next beat, 9000, is the end
    np.testing.assert_array_equal(clip, expected)


def test_play_phrase_melodic_notes_at_random_steps_cut_at_the_clip_end():
    from dasslib.data.synth import play_phrase

    clip = np.zeros(6000, np.float32)
    rng = _ScriptedRng(100.0, 1, 0, 0.0, 0, 0.2, 0, 0.6)  # steps 0 s (one sample), 0.2 s, 0.6 s
    assert play_phrase(clip, [np.ones(3000, np.float32)], False, 2000, 5500, 0.25, rng) == 6000
    assert [c[:2] for c in rng.calls[2:]] == [("integers", (1,)), ("uniform", (0.15, 0.6))] * 3
    expected = np.zeros(6000)
    expected[2000:5000] += 0.25
    expected[2001:5001] += 0.25
    expected[5201:6000] += 0.25  # 799 of the note's 3000 samples fit
    np.testing.assert_array_equal(clip, expected)


def test_add_event_draws_start_length_and_gain():
    from dasslib.data.synth import _add_event

    clip = np.zeros(20000, np.float32)
    # start 1000, 4 s (cut at the clip's end, 20000), -6 dB; drums every 0.5 s: 1000, 9000, 17000
    rng = _ScriptedRng(1000, 4.0, -6.0, 120.0, 1, 0, 0, 0)
    _add_event(clip, [np.ones(100, np.float32)], True, rng)
    assert [c[:2] for c in rng.calls[:3]] == [("integers", (0, 12000)), ("uniform", (0.5, 4.0)),
                                              ("uniform", (-15.0, 0.0))]
    assert not rng.values  # three notes, no more
    expected = np.zeros(20000)
    for t in (1000, 9000, 17000):
        expected[t:t + 100] = 10 ** (-6.0 / 20)
    np.testing.assert_allclose(clip, expected, rtol=1e-6)


def test_make_clip_mixes_its_classes_over_a_noise_floor_and_limits_the_peak():
    from dasslib.data.synth import _make_clip

    banks = {(c, 1): [np.full(4000, 2.0, np.float32)] if c == 3 else [np.ones(100, np.float32)]
             for c in range(len(CLASSES))}
    floor = np.full(16000, 0.5)
    rng = _ScriptedRng(2, np.array([20, 3]), floor, -50.0,
                       0, 0.5, 0.0, 120.0, 1, 0, 0.6,       # class 3 (Cello): at 0, 0 dB, one note
                       7000, 0.5, 0.0, 120.0, 1, 0)         # class 20 (Bass drum): at 7000, one beat
    clip, classes = _make_clip(banks, 1, 16000, rng)
    assert classes == [3, 20] and not CLASSES[3].drums and CLASSES[20].drums
    assert rng.calls[:4] == [("integers", (1, 4), {}), ("choice", (26,), {"size": 2, "replace": False}),
                             ("standard_normal", (16000,), {}), ("uniform", (-60.0, -45.0), {})]
    expected = floor * 10 ** (-50.0 / 20)
    expected[:4000] += 2.0
    expected[7000:7100] += 1.0
    expected *= 0.9 / expected.max()  # the peak, 2.0016, scaled down to 0.9
    assert clip.dtype == np.float32
    np.testing.assert_allclose(clip, expected, rtol=1e-6)
    quiet = {k: [0.1 * n for n in v] for k, v in banks.items()}
    clip, _ = _make_clip(quiet, 1, 16000, _ScriptedRng(1, np.array([3]), floor, -50.0, 0, 0.5, 0.0, 120.0, 1, 0, 0.6))
    assert clip.max() == pytest.approx(0.2 + 0.5 * 10 ** -2.5, rel=1e-6)  # below 0.9: left as it is



class _SpecRenderer:
    """Stands in for the soundfont: a note of ``key`` samples peaking at velocity / 100 (a 0.2 s hold doubles
    it); keys divisible by 5 render inaudibly (peak 5e-5), velocity 127 not at all."""

    def render(self, spec, drums):
        _, key, velocity, _, hold = spec
        if velocity == 127:
            return np.zeros(0, np.float32)
        peak = 5e-5 if key % 5 == 0 else velocity / 100 * (2 if hold == 0.2 else 1)
        return np.linspace(peak, 0.0, key, dtype=np.float32)


def test_render_banks_keeps_the_first_audible_notes_in_seeded_order(monkeypatch):
    import dasslib.data.synth as synth

    monkeypatch.setattr(synth, "_Renderer", _SpecRenderer)
    banks = synth.render_banks(5)
    assert sorted(banks) == [(c, s) for c in range(len(CLASSES)) for s in (0, 1)]
    for (c, s), bank in banks.items():
        specs = note_specs(CLASSES[c], ("train", "eval")[s])
        order = np.random.default_rng([5, c, s, 0]).permutation(len(specs))  # the bank's seeded order
        audible = [specs[i] for i in order if specs[i][1] % 5 and specs[i][2] != 127]
        chosen = audible[:24]
        assert len(bank) == len(chosen) and all(n.dtype == np.float32 for n in bank)
        peaks = [s[2] / 100 * (2 if s[4] == 0.2 else 1) for s in chosen]
        scale = 1 / float(np.median(peaks))
        for note, spec, peak in zip(bank, chosen, peaks):
            assert len(note) == spec[1] and note[0] == pytest.approx(peak * scale, rel=1e-6)


def test_render_banks_refuses_a_class_without_an_audible_note(monkeypatch):
    import dasslib.data.synth as synth

    class Silent:
        def render(self, spec, drums):
            return np.full(100, 1e-4, np.float32)  # at the threshold: not audible

    monkeypatch.setattr(synth, "_Renderer", Silent)
    with pytest.raises(ValueError, match=r"^soundfont rendered no audible note for Piano \(train\)$"):
        synth.render_banks(0)


def test_note_specs_of_a_melodic_and_a_drum_class():
    harmonica = next(c for c in CLASSES if c.name == "Harmonica")  # program 22, keys C4 (60) .. C6 (84)
    specs = note_specs(harmonica, "eval")  # keys divisible by 3, eval velocities, untuned, every hold
    assert specs == [(22, k, v, 0.0, h) for k in range(60, 85, 3) for v in (72, 96, 120) for h in (0.2, 0.4, 0.8, 1.6)]
    train = note_specs(harmonica, "train")
    assert {s[1] for s in train} == {k for k in range(60, 85) if k % 3} and len(train) == 16 * 4 * 4
    assert {s[2:] for s in train} == {(v, 0.0, h) for v in (60, 84, 108, 127) for h in (0.2, 0.4, 0.8, 1.6)}
    tambourine = next(c for c in CLASSES if c.name == "Tambourine")
    kits = (0, 8, 16, 24, 25, 32, 40, 48)
    assert note_specs(tambourine, "train") == [(p, 54, v, t, 0.05) for p in kits for v in (60, 84, 108, 127)
                                               for t in (-2.0, -1.0, 0.0, 1.0, 2.0)]
    assert note_specs(tambourine, "eval") == [(p, 54, v, t, 0.05) for p in kits for v in (72, 96, 120)
                                              for t in (-1.5, -0.5, 0.5, 1.5)]
    with pytest.raises(ValueError, match=r"^split must be one of \('train', 'eval'\), got 'test'$"):
        note_specs(harmonica, "test")


def test_size_and_argument_messages(tmp_path):
    assert _resolve_sizes("ci", None, None) == (64, 32) and _resolve_sizes(None, 1, 1) == (1, 1)
    n_train, n_eval = _resolve_sizes(None, np.int64(3), np.int32(2))
    assert (n_train, n_eval) == (3, 2) and type(n_train) is int and type(n_eval) is int
    for args, message in (((None, 0, None), "n_train must be a positive int, got 0"),
                          ((None, True, None), "n_train must be a positive int, got True"),
                          ((None, 2.0, None), "n_train must be a positive int, got 2.0"),
                          ((None, None, 0), "n_eval must be a positive int, got 0"),
                          (("huge", None, None), "size must be one of ['ci', 'gpu'], got 'huge'")):
        with pytest.raises(ValueError) as err:
            _resolve_sizes(*args)
        assert str(err.value) == message
    for kwargs, message in ((dict(seed=-1), "seed must be an int >= 0, got -1"),
                            (dict(seed=1.0), "seed must be an int >= 0, got 1.0"),
                            (dict(clip_seconds=0.999), "clip_seconds must be >= 1.0, got 0.999"),
                            (dict(clip_seconds=float("nan")), "clip_seconds must be >= 1.0, got nan")):
        with pytest.raises(ValueError) as err:
            make_embedded_dataset(tmp_path / "x", 1, 1, progress=False, **kwargs)
        assert str(err.value) == message
    assert not (tmp_path / "x").exists()


@pytest.fixture
def tones(monkeypatch):
    """The embedded dataset rendered with `_ToneRenderer` (no soundfont: fast)."""
    import dasslib.data.synth as synth

    monkeypatch.setattr(synth, "_Renderer", _ToneRenderer)
    return synth


def test_meta_clips_and_labels_follow_the_seeded_recipe(tones, tmp_path):
    out = make_embedded_dataset(tmp_path / "ds", 3, 2, seed=np.int64(7), clip_seconds=1.0, progress=False)
    root = str(tmp_path / "ds")
    assert out == {"train_json": os.path.join(root, "train.json"), "eval_json": os.path.join(root, "eval.json"),
                   "label_csv": os.path.join(root, "class_labels_indices.csv"), "root": root}
    assert json.load(open(tmp_path / "ds" / "meta.json")) == {
        "generator": "dasslib.data.synth", "version": 1, "seed": 7, "n_train": 3, "n_eval": 2, "clip_seconds": 1.0,
        "sample_rate": 16000, "num_classes": 26, "soundfont": "TimGM6mb.sf2 (pretty_midi)"}
    banks = tones.render_banks(7)
    for s, split in enumerate(("train", "eval")):
        entries = read_datafile(out[f"{split}_json"])
        assert [os.path.basename(e.wav) for e in entries] == [f"{i:06d}.wav" for i in range(len(entries))]
        for i, entry in enumerate(entries):
            rng = np.random.default_rng([7, s, i, 1])  # clip i of split s: its own stream
            k = int(rng.integers(1, 4))
            classes = sorted(int(c) for c in rng.choice(26, size=k, replace=False))
            assert list(entry.labels) == [CLASSES[c].mid for c in classes]
            clip, _ = tones._make_clip(banks, s, 16000, np.random.default_rng([7, s, i, 1]))
            audio, sr = sf.read(entry.wav, dtype="float32")
            assert sr == 16000 and np.abs(audio - clip).max() <= 1 / 32768  # PCM_16 of the clip


def test_incomplete_folders_are_regenerated(tones, tmp_path):
    root = tmp_path / "ds"
    make_embedded_dataset(root, 2, 1, clip_seconds=1.0, progress=False)
    reference = digest(root)
    (root / "train" / "keep.txt").write_text("mine")
    (root / "train" / "0000001.wav").write_bytes(b"not a clip of the generator")

    def damaged(change):
        change()
        make_embedded_dataset(root, 2, 1, clip_seconds=1.0, progress=False)
        return {k: v for k, v in digest(root).items() if k not in ("train/keep.txt", "train/0000001.wav")}

    assert damaged(lambda: (root / "class_labels_indices.csv").unlink()) == reference
    assert damaged(lambda: (root / "train.json").write_text('{"wrong": []}')) == reference
    assert damaged(lambda: (root / "train.json").write_text('{"data": 5}')) == reference
    assert damaged(lambda: (root / "eval.json").write_text('{"data": []}')) == reference
    assert damaged(lambda: (root / "meta.json").write_text("[]")) == reference
    assert damaged(lambda: (root / "meta.json").unlink()) == reference
    assert (root / "train" / "keep.txt").read_text() == "mine" and (root / "train" / "0000001.wav").exists()
    (root / "eval" / "000000.wav").unlink()  # with 1 eval clip, none is left: regenerated too
    assert damaged(lambda: None) == reference


def test_progress_bar(tones, tmp_path, capsys):
    make_embedded_dataset(tmp_path / "a", 1, 1, clip_seconds=1.0, progress=False)
    assert "embedded dataset" not in capsys.readouterr().err
    make_embedded_dataset(tmp_path / "b", 2, 1, clip_seconds=1.0)  # the defaults: a bar, seed 0
    bar = capsys.readouterr().err
    assert "embedded dataset: 100%" in bar and "| 3/3 [" in bar  # 3 clips
    assert re.search(r"[0-9.?]+(clip/s|s/clip)\]", bar)  # the rate in clips
    assert json.load(open(tmp_path / "b" / "meta.json"))["seed"] == 0


def test_main_arguments(tones, tmp_path, monkeypatch, capsys):
    out = tones.main(["--root", str(tmp_path / "cli"), "--n-train", "2", "--n-eval", "1", "--seed", "3",
                      "--clip-seconds", "1.5", "--quiet"])
    printed = capsys.readouterr().out
    assert json.loads(printed) == out and out["root"] == str(tmp_path / "cli")
    assert printed.splitlines()[:2] == ["{", f' "train_json": {json.dumps(out["train_json"])},']  # one key a line
    meta = json.load(open(tmp_path / "cli" / "meta.json"))
    assert (meta["n_train"], meta["n_eval"], meta["seed"], meta["clip_seconds"]) == (2, 1, 3, 1.5)
    calls = []
    monkeypatch.setattr(tones, "make_embedded_dataset", lambda *a, **k: calls.append((a, k)) or {})
    tones.main(["--root", "r"])
    tones.main(["--root", "r", "--size", "gpu"])
    assert calls == [(("r", None, None, 0, 10.0), dict(size=None, progress=True)),
                     (("r", None, None, 0, 10.0), dict(size="gpu", progress=True))]
    with pytest.raises(SystemExit) as stop:
        tones.main(["--n-train", "2"])
    assert stop.value.code == 2 and "the following arguments are required: --root" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        tones.main(["--root", "r", "--size", "huge"])
    assert "invalid choice: 'huge' (choose from ci, gpu)" in capsys.readouterr().err.replace("'ci', 'gpu'", "ci, gpu")
    with pytest.raises(SystemExit) as stop:
        tones.main(["--help"])
    assert stop.value.code == 0
    usage = capsys.readouterr().out
    assert "\n\nGenerate the embedded AudioSet-format dataset.\n\n" in usage
    text = " ".join(usage.split())
    assert text.startswith("usage: python -m dasslib.data.synth ")
    for words in ("Generate the embedded AudioSet-format dataset.", "--root ROOT output folder",
                  "--size {ci,gpu} named preset (default ci)", "--n-train N_TRAIN train clips (overrides --size)",
                  "--n-eval N_EVAL eval clips (overrides --size)", "--quiet no progress bar"):
        assert words in text
