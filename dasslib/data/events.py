"""Long recordings with known event times, rendered like the embedded dataset.

Events are phrases of notes from the embedded dataset's note banks (:mod:`dasslib.data.synth`,
the ``eval`` split's notes by default: keys, velocities and tunings no training clip uses), at
-15..0 dB over a -60..-45 dBFS white noise floor, like its clips. Onsets follow each other by
``onset_gap`` seconds (uniform), so events overlap; each phrase lasts ``event_seconds`` (uniform)
and its ground-truth end is where its last note stops sounding.
"""
import numpy as np
import pandas as pd

from .synth import CLASSES, SAMPLE_RATE, SPLITS, play_phrase, render_banks

__all__ = ["render_event_recording"]


def render_event_recording(seconds, seed=0, split="eval", event_seconds=(2.0, 6.0), onset_gap=(1.5, 5.0),
                           banks=None):
    """-> (waveform (samples,) float32 at 16 kHz, events DataFrame(mid, label, start_s, end_s)).

    banks: note banks from :func:`dasslib.data.synth.render_banks` (rendered from ``seed`` when
    None). The mix is scaled down when it peaks above 0.9, as the embedded clips are."""
    if not seconds >= 1.0:
        raise ValueError(f"seconds must be >= 1, got {seconds!r}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    banks = render_banks(seed) if banks is None else banks
    rng = np.random.default_rng([seed, 7])
    n = int(round(seconds * SAMPLE_RATE))
    audio = rng.standard_normal(n).astype(np.float32) * np.float32(10 ** (rng.uniform(-60.0, -45.0) / 20))
    rows, onset = [], rng.uniform(*onset_gap)
    while onset < seconds - 0.5:
        c = int(rng.integers(len(CLASSES)))
        start = int(onset * SAMPLE_RATE)
        end = min(n, start + int(rng.uniform(*event_seconds) * SAMPLE_RATE))
        gain = 10 ** (rng.uniform(-15.0, 0.0) / 20)
        stop = play_phrase(audio, banks[c, SPLITS.index(split)], CLASSES[c].drums, start, end, gain, rng)
        rows.append((CLASSES[c].mid, CLASSES[c].name, start / SAMPLE_RATE, stop / SAMPLE_RATE))
        onset += rng.uniform(*onset_gap)
    peak = np.abs(audio).max()
    if peak > 0.9:
        audio *= np.float32(0.9 / peak)
    return audio, pd.DataFrame(rows, columns=["mid", "label", "start_s", "end_s"])
