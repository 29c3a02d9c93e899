"""Embedded default dataset: multi-label 16 kHz clips of real instrument and drum samples.

Notes are rendered with ``tinysoundfont`` from the General-MIDI soundfont ``TimGM6mb.sf2`` that
ships inside the ``pretty_midi`` package, so nothing is downloaded and nothing is committed:
the same seed gives the same files on every machine. Each class carries its real AudioSet id
and display name (checked against AudioSet's ``class_labels_indices.csv``), so the folder is an
AudioSet-format dataset (``train.json``, ``eval.json``, ``class_labels_indices.csv``) that
every loader of ``dasslib.data`` reads.

Recipe (generator version 1):

- a note bank is rendered once per (class, split): up to ``NOTES_PER_BANK`` notes drawn from
  the class's programs (or drum kits), keys, velocities and hold lengths, each bank scaled so
  its median note peaks at 1;
- a clip holds 1-3 events of distinct classes at random times, each a 0.5-4 s phrase of notes
  from its class's bank (drums play on a steady random beat) at a random gain of -15..0 dB,
  over a white noise floor of -60..-45 dBFS; the sum is scaled down if it peaks above 0.9;
- train and eval never share a rendered note: melodic classes use disjoint key sets (eval
  keys are those with ``key % 3 == 0``) and disjoint velocities, drum classes use disjoint
  tunings (train: whole semitones -2..2, eval: half semitones -1.5..1.5) and velocities.

Usage: ``make_embedded_dataset(root, size="ci")`` or
``python -m dasslib.data.synth --root DIR --size ci``.
"""
import argparse
import importlib.util
import itertools
import json
import os
import re
from dataclasses import dataclass

import numpy as np
import soundfile as sf
from tqdm.auto import tqdm

from ..atomic import atomic_write, atomic_write_json
from .datafile import write_datafile, write_label_csv

__all__ = ["CLASSES", "SIZES", "GENERATOR_VERSION", "SynthClass", "note_specs", "render_banks",
           "play_phrase", "make_embedded_dataset", "main"]

GENERATOR_VERSION = 1
SAMPLE_RATE = 16000
SIZES = {"ci": (64, 32), "gpu": (4000, 1000)}
NOTES_PER_BANK = 24
SPLITS = ("train", "eval")
VELOCITIES = {"train": (60, 84, 108, 127), "eval": (72, 96, 120)}
DRUM_TUNINGS = {"train": (-2.0, -1.0, 0.0, 1.0, 2.0), "eval": (-1.5, -0.5, 0.5, 1.5)}
HOLD_SECONDS = (0.2, 0.4, 0.8, 1.6)
DRUM_HOLD_SECONDS = 0.05
RELEASE_SECONDS = {False: 1.0, True: 1.5}  # melodic, drums
# GM drum kits (bank 128): Standard, Room, Power, Electronic, TR-808, Jazz, Brush, Orchestra
DRUM_KITS = (0, 8, 16, 24, 25, 32, 40, 48)
_CLIP_NAME = re.compile(r"^\d{6}\.wav$")


@dataclass(frozen=True)
class SynthClass:
    """A class: AudioSet ``mid`` and ``name``, GM ``programs`` (bank 0) or drum kits
    (bank 128) when ``drums``, and the MIDI ``keys`` it plays."""
    mid: str
    name: str
    programs: tuple
    keys: tuple
    drums: bool = False


def _melodic(mid, name, programs, low, high):
    return SynthClass(mid, name, tuple(programs), tuple(range(low, high + 1)))


def _drum(mid, name, keys):
    return SynthClass(mid, name, DRUM_KITS, tuple(keys), drums=True)


# mids and display names as in AudioSet's class_labels_indices.csv; programs are 0-based GM.
CLASSES = (
    _melodic("/m/05r5c", "Piano", (0, 1, 2), 33, 96),
    _melodic("/m/03q5t", "Harpsichord", (6,), 41, 89),
    _melodic("/m/013y1f", "Organ", (16, 17, 18, 19, 20), 36, 84),
    _melodic("/m/0mkg", "Accordion", (21, 23), 53, 89),
    _melodic("/m/03qjg", "Harmonica", (22,), 60, 84),
    _melodic("/m/0342h", "Guitar", (24, 25, 26, 27), 40, 84),
    _melodic("/m/018j2", "Banjo", (105,), 48, 84),
    _melodic("/m/03m5k", "Harp", (46,), 36, 96),
    _melodic("/m/07y_7", "Violin, fiddle", (40, 110), 55, 96),
    _melodic("/m/01xqw", "Cello", (42,), 36, 76),
    _melodic("/m/07gql", "Trumpet", (56, 59), 55, 82),
    _melodic("/m/07c6l", "Trombone", (57,), 40, 72),
    _melodic("/m/06ncr", "Saxophone", (64, 65, 66, 67), 44, 81),
    _melodic("/m/01wy6", "Clarinet", (71,), 50, 89),
    _melodic("/m/0l14j_", "Flute", (72, 73), 60, 96),
    _melodic("/m/0192l", "Bagpipes", (109,), 55, 77),
    _melodic("/m/0dwtp", "Glockenspiel", (9,), 79, 108),
    _melodic("/m/0dwsp", "Marimba, xylophone", (12, 13), 48, 96),
    _melodic("/m/0395lw", "Bell", (14, 112), 60, 96),
    _melodic("/m/011k_j", "Timpani", (47,), 36, 60),
    _drum("/m/0bm02", "Bass drum", (35, 36)),
    _drum("/m/06rvn", "Snare drum", (38, 40)),
    _drum("/m/03qtq", "Hi-hat", (42, 44, 46)),
    _drum("/m/01qbl", "Cymbal", (49, 51, 52, 55, 57)),
    _drum("/m/07brj", "Tambourine", (54,)),
    _drum("/m/0239kh", "Cowbell", (56,)),
)


def note_specs(cls: SynthClass, split: str) -> list:
    """All notes a split may render for ``cls``: ``(program, key, velocity, tuning, hold_s)``."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if cls.drums:
        return list(itertools.product(cls.programs, cls.keys, VELOCITIES[split],
                                      DRUM_TUNINGS[split], (DRUM_HOLD_SECONDS,)))
    keys = [k for k in cls.keys if (k % 3 == 0) == (split == "eval")]
    return list(itertools.product(cls.programs, keys, VELOCITIES[split], (0.0,), HOLD_SECONDS))


def soundfont_path() -> str:
    """Path of ``TimGM6mb.sf2`` inside the installed ``pretty_midi`` package."""
    spec = importlib.util.find_spec("pretty_midi")
    if spec is None or spec.origin is None:
        raise ValueError("the embedded dataset needs the pretty_midi package (its soundfont)")
    path = os.path.join(os.path.dirname(spec.origin), "TimGM6mb.sf2")
    if not os.path.isfile(path):
        raise ValueError(f"soundfont not found in the pretty_midi package: {path}")
    return path


class _Renderer:
    """Renders single notes to mono float32 at 16 kHz with tinysoundfont."""

    def __init__(self):
        try:
            import tinysoundfont
        except ImportError as err:
            raise ImportError("the embedded dataset renders notes with tinysoundfont: "
                              "pip install --no-deps tinysoundfont") from err
        self.synth = tinysoundfont.Synth(samplerate=SAMPLE_RATE)
        self.sfid = self.synth.sfload(soundfont_path())

    def _generate(self, seconds):
        n = int(round(seconds * SAMPLE_RATE))
        return np.frombuffer(self.synth.generate(n), dtype=np.float32).reshape(n, 2).mean(axis=1)

    def render(self, spec, drums: bool) -> np.ndarray:
        """One note -> ``(samples,)``: held ``hold_s``, released, trailing silence trimmed."""
        program, key, velocity, tuning, hold = spec
        self.synth.program_select(0, self.sfid, 128 if drums else 0, program, is_drums=drums)
        self.synth.set_tuning(0, tuning)
        self.synth.noteon(0, key, velocity)
        held = self._generate(hold)
        self.synth.noteoff(0, key)
        note = np.concatenate([held, self._generate(RELEASE_SECONDS[drums])])
        self.synth.sounds_off()
        self._generate(0.1)  # let the quick fade-out of sounds_off finish before the next note
        loud = np.nonzero(np.abs(note) > 1e-3 * np.abs(note).max(initial=0.0))[0]
        if len(loud) == 0:
            return note[:0]
        note = note[: max(loud[-1] + 1, len(held))].copy()
        fade = min(len(note), SAMPLE_RATE // 200)  # 5 ms fade-out against clicks
        note[len(note) - fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
        return note


def render_banks(seed: int) -> dict:
    """``{(class_index, split): [notes]}``, each bank scaled so its median note peak is 1."""
    renderer, banks = _Renderer(), {}
    for c, cls in enumerate(CLASSES):
        for s, split in enumerate(SPLITS):
            specs = note_specs(cls, split)
            order = np.random.default_rng([seed, c, s, 0]).permutation(len(specs))
            notes = []
            for i in order:
                note = renderer.render(specs[i], cls.drums)
                if len(note) and np.abs(note).max() > 1e-4:
                    notes.append(note)
                if len(notes) == NOTES_PER_BANK:
                    break
            if not notes:
                raise ValueError(f"soundfont rendered no audible note for {cls.name} ({split})")
            scale = 1.0 / np.median([np.abs(n).max() for n in notes])
            banks[c, s] = [(n * scale).astype(np.float32) for n in notes]
    return banks


def _add_event(clip, bank, drums, rng):
    """Mix a 0.5-4 s phrase of notes from ``bank`` into ``clip`` (in place) at a random time."""
    n = len(clip)
    start = int(rng.integers(0, n - SAMPLE_RATE // 2))
    end = min(n, start + int(rng.uniform(0.5, 4.0) * SAMPLE_RATE))
    play_phrase(clip, bank, drums, start, end, 10 ** (rng.uniform(-15.0, 0.0) / 20), rng)


def play_phrase(clip, bank, drums, start, end, gain, rng):
    """Mix notes from ``bank`` into ``clip`` (in place), starting at sample ``start`` until
    ``end``, at ``gain``: drums on a steady random beat, melodic notes every 0.15-0.6 s. Returns
    the sample after the last one a note sounds in (notes ring on past ``end``)."""
    n = len(clip)
    beat = 60.0 / rng.uniform(80, 160) / rng.choice((1, 2))  # drums: steady beat
    t, last = start, start
    while t < end:
        note = bank[int(rng.integers(len(bank)))]
        m = min(len(note), n - t)
        clip[t:t + m] += gain * note[:m]
        last = max(last, t + m)
        step = beat if drums else rng.uniform(0.15, 0.6)
        t += max(1, int(step * SAMPLE_RATE))
    return last


def _make_clip(banks, split_index, n_samples, rng):
    """One clip ``(n_samples,)`` float32 and its sorted class indices."""
    k = int(rng.integers(1, 4))
    classes = sorted(int(c) for c in rng.choice(len(CLASSES), size=k, replace=False))
    clip = rng.standard_normal(n_samples).astype(np.float32)
    clip *= 10 ** (rng.uniform(-60.0, -45.0) / 20)
    for c in classes:
        _add_event(clip, banks[c, split_index], CLASSES[c].drums, rng)
    peak = np.abs(clip).max()
    if peak > 0.9:
        clip *= 0.9 / peak
    return clip, classes


def _paths(root):
    return {"root": root, "train_json": os.path.join(root, "train.json"),
            "eval_json": os.path.join(root, "eval.json"),
            "label_csv": os.path.join(root, "class_labels_indices.csv"),
            "meta": os.path.join(root, "meta.json")}


def _is_complete(paths, meta) -> bool:
    try:
        with open(paths["meta"], encoding="utf-8") as f:
            if json.load(f) != meta:
                return False
        for split in SPLITS:
            with open(paths[f"{split}_json"], encoding="utf-8") as f:
                data = json.load(f)["data"]
            if len(data) != meta[f"n_{split}"]:
                return False
            if not all(os.path.isfile(os.path.join(paths["root"], d["wav"])) for d in data):
                return False
        return os.path.isfile(paths["label_csv"])
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _resolve_sizes(size, n_train, n_eval):
    if size is not None and size not in SIZES:
        raise ValueError(f"size must be one of {sorted(SIZES)}, got {size!r}")
    default = SIZES[size or "ci"]
    n_train = default[0] if n_train is None else n_train
    n_eval = default[1] if n_eval is None else n_eval
    for name, n in (("n_train", n_train), ("n_eval", n_eval)):
        if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
            raise ValueError(f"{name} must be a positive int, got {n!r}")
    return int(n_train), int(n_eval)


def make_embedded_dataset(root, n_train: int | None = None, n_eval: int | None = None,
                          seed: int = 0, clip_seconds: float = 10.0, *, size: str | None = None,
                          progress: bool = True) -> dict:
    """Generate (or reuse) the embedded dataset in ``root``.

    Sizes come from ``size`` (``"ci"``: 64 train / 32 eval, ``"gpu"``: 4000 / 1000; default
    ``"ci"``) unless ``n_train`` / ``n_eval`` are given. A complete folder made with the same
    parameters is left untouched; anything else is regenerated (``root`` belongs to the
    generator: its ``train/`` and ``eval/`` clips are replaced). Returns
    ``dict(train_json=..., eval_json=..., label_csv=..., root=...)``.
    """
    n_train, n_eval = _resolve_sizes(size, n_train, n_eval)
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    if not clip_seconds >= 1.0:
        raise ValueError(f"clip_seconds must be >= 1.0, got {clip_seconds!r}")
    root = os.path.abspath(os.fspath(root))
    paths = _paths(root)
    meta = {"generator": "dasslib.data.synth", "version": GENERATOR_VERSION, "seed": int(seed),
            "n_train": n_train, "n_eval": n_eval, "clip_seconds": float(clip_seconds),
            "sample_rate": SAMPLE_RATE, "num_classes": len(CLASSES),
            "soundfont": "TimGM6mb.sf2 (pretty_midi)"}
    result = {k: paths[k] for k in ("train_json", "eval_json", "label_csv", "root")}
    if _is_complete(paths, meta):
        return result

    os.makedirs(root, exist_ok=True)
    if os.path.exists(paths["meta"]):
        os.remove(paths["meta"])  # the folder is incomplete until meta.json is written again
    banks = render_banks(int(seed))
    n_samples = int(round(clip_seconds * SAMPLE_RATE))
    counts = {"train": n_train, "eval": n_eval}
    with tqdm(total=n_train + n_eval, desc="embedded dataset", unit="clip",
              disable=not progress) as bar:
        for s, split in enumerate(SPLITS):
            folder = os.path.join(root, split)
            os.makedirs(folder, exist_ok=True)
            for name in os.listdir(folder):
                if _CLIP_NAME.match(name):
                    os.remove(os.path.join(folder, name))
            items = []
            for i in range(counts[split]):
                clip, classes = _make_clip(banks, s, n_samples,
                                           np.random.default_rng([int(seed), s, i, 1]))
                wav = os.path.join(folder, f"{i:06d}.wav")
                atomic_write(wav, lambda f: sf.write(f, clip, SAMPLE_RATE, subtype="PCM_16",
                                                     format="WAV"))
                items.append((wav, [CLASSES[c].mid for c in classes]))
                bar.update()
            write_datafile(paths[f"{split}_json"], items)
    write_label_csv(paths["label_csv"], [c.mid for c in CLASSES], [c.name for c in CLASSES])
    atomic_write_json(meta, paths["meta"])
    return result


def main(argv=None) -> dict:
    """CLI: ``python -m dasslib.data.synth --root DIR [--size ci|gpu] [--n-train N] ...``."""
    parser = argparse.ArgumentParser(prog="python -m dasslib.data.synth",
                                     description="Generate the embedded AudioSet-format dataset.")
    parser.add_argument("--root", required=True, help="output folder")
    parser.add_argument("--size", choices=sorted(SIZES), default=None,
                        help="named preset (default ci)")
    parser.add_argument("--n-train", type=int, default=None, help="train clips (overrides --size)")
    parser.add_argument("--n-eval", type=int, default=None, help="eval clips (overrides --size)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clip-seconds", type=float, default=10.0)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    out = make_embedded_dataset(args.root, args.n_train, args.n_eval, args.seed,
                                args.clip_seconds, size=args.size, progress=not args.quiet)
    print(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
