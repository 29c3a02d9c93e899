"""Babble noise for NIAH haystacks: synthetic speech-like talkers, or a mix of real recordings.

No speech corpus ships with this package, so :func:`synth_babble` builds a *synthetic,
speech-like* babble (it is not real speech): each talker is a source-filter voice,

- source: a Rosenberg glottal pulse train, differentiated (lip radiation), whose f0 follows a
  speech-like contour (talker base 115-210 Hz, phrase declination, slow syllable-rate
  drift, 1 % jitter; clamped to 100-250 Hz), plus a little aspiration noise;
- filter: five all-pole formant resonators; F1-F3 glide between vowel targets picked per
  syllable, F4/F5 fixed, all scaled by a talker vocal-tract factor; applied frame by frame in
  the STFT domain (512-point frames, hop 128), which makes the resonators time-varying;
- prosody: syllables of 1/6-1/3 s (3-6 Hz syllabic amplitude modulation), some with a
  fricative noise onset, grouped into phrases of 3-12 syllables separated by 0.15-0.7 s pauses.

Talkers start at random offsets, get random levels (+-3 dB) and are summed (30 of them by
default, as the paper's babble mixes 30 files). Real recordings can be used instead through
:func:`load_babble`. Both return a zero-mean, unit-RMS ``(1, samples)`` loop that the haystack
tiles.
"""
from pathlib import Path

import numpy as np
import torch

from .audio import load_audio

__all__ = ["synth_talker", "synth_babble", "load_babble"]

# (F1, F2, F3) in Hz of a few adult-male vowels (Peterson & Barney style averages).
_VOWELS = np.array([
    (730, 1090, 2440),   # a
    (270, 2290, 3010),   # i
    (300, 870, 2240),    # u
    (530, 1840, 2480),   # e
    (570, 840, 2410),    # o
    (660, 1720, 2410),   # ae
    (640, 1190, 2390),   # uh
    (390, 1990, 2550),   # ih
], dtype=np.float64)
_F45 = (3500.0, 4500.0)
_BANDWIDTHS = np.array([60.0, 90.0, 120.0, 175.0, 250.0])
_N_FFT, _HOP = 512, 128


def _timeline(n, sr, rng):
    """Syllables as (start, length, vowel, fricative_onset) tuples in samples, phrase-grouped."""
    syllables, phrases = [], []
    t = int(rng.uniform(0.0, min(1.0, n / (2 * sr))) * sr)  # talkers do not all start together
    while t < n:
        first = len(syllables)
        for _ in range(rng.integers(3, 13)):
            length = int(rng.uniform(1 / 6, 1 / 3) * sr)
            syllables.append((t, length, int(rng.integers(len(_VOWELS))), bool(rng.random() < 0.5)))
            t += length
        phrases.append((first, len(syllables)))
        t += int(rng.uniform(0.15, 0.7) * sr)
    return syllables, phrases


def _f0_contour(n, sr, syllables, phrases, base_f0, rng):
    """(n,) f0 in Hz: base * declination over each phrase * syllable-rate drift * jitter."""
    centers = np.array([s + length / 2 for s, length, _, _ in syllables])
    drift = np.interp(np.arange(n), centers, 1.0 + 0.08 * rng.standard_normal(len(centers)))
    decl = np.ones(n)
    for first, last in phrases:
        a = syllables[first][0]
        b = min(n, syllables[last - 1][0] + syllables[last - 1][1])
        if b > a:
            decl[a:b] = np.linspace(1.1, 0.9, b - a)
    jitter = 1.0 + 0.01 * rng.standard_normal(n)
    return np.clip(base_f0 * drift * decl * jitter, 100.0, 250.0)


def _glottal_source(f0, sr, rng):
    """(n,) differentiated Rosenberg pulses at instantaneous f0, plus aspiration noise."""
    phase = np.cumsum(f0 / sr) % 1.0
    open_, close = 0.4, 0.16
    pulse = np.where(phase < open_, 0.5 * (1 - np.cos(np.pi * phase / open_)), 0.0)
    closing = (phase >= open_) & (phase < open_ + close)
    pulse[closing] = np.cos(0.5 * np.pi * (phase[closing] - open_) / close)
    source = np.diff(pulse, prepend=0.0)
    return source + 0.02 * np.std(source) * rng.standard_normal(len(source)) * (pulse > 0)


def _formant_tracks(n_frames, hop, syllables, scale, rng):
    """(n_frames, 5) formant frequencies: F1-F3 glide between per-syllable vowel targets."""
    centers = np.array([s + length / 2 for s, length, _, _ in syllables]) / hop
    targets = _VOWELS[[v for _, _, v, _ in syllables]]
    targets = targets * (1 + 0.05 * rng.standard_normal(targets.shape))
    frames = np.arange(n_frames)
    f123 = np.stack([np.interp(frames, centers, targets[:, k]) for k in range(3)], axis=1)
    f45 = np.broadcast_to(np.array(_F45), (n_frames, 2))
    return np.concatenate([f123, f45], axis=1) * scale


def _formant_response(formants, sr):
    """(n_frames, n_fft // 2 + 1) complex response of the cascaded resonators (unit DC gain)."""
    z1 = np.exp(-1j * np.pi * np.arange(_N_FFT // 2 + 1) / (_N_FFT // 2))   # e^{-j w}
    r = np.exp(-np.pi * _BANDWIDTHS / sr)                                     # (5,)
    cos_t = np.cos(2 * np.pi * np.minimum(formants, 0.45 * sr) / sr)          # (frames, 5)
    h = np.ones((formants.shape[0], z1.shape[0]), dtype=np.complex128)
    for k in range(formants.shape[1]):
        a1 = (2 * r[k] * cos_t[:, k])[:, None]
        a2 = r[k] ** 2
        h *= (1 - a1 + a2) / (1 - a1 * z1 + a2 * z1 ** 2)
    return h


def _envelope(n, sr, syllables, rng):
    """(n,) syllabic amplitude envelope (half-sine per syllable) and the fricative-onset mask."""
    env, fric = np.zeros(n), np.zeros(n)
    for start, length, _, has_fricative in syllables:
        stop = min(n, start + length)
        if stop <= start:
            continue
        u = (np.arange(start, stop) - start) / length
        env[start:stop] = rng.uniform(0.5, 1.0) * np.sin(np.pi * u)
        if has_fricative:
            f_len = min(stop - start, int(rng.uniform(0.04, 0.09) * sr))
            fric[start:start + f_len] = np.hanning(f_len) * rng.uniform(0.1, 0.3)
    return env, fric


def synth_talker(duration_s, sr=16000, seed=0):
    """One synthetic speech-like talker: (samples,) float32 numpy array, zero mean, unit RMS."""
    rng = np.random.default_rng(seed)
    n = int(round(duration_s * sr))
    if n < _N_FFT:
        raise ValueError(f"duration_s must cover at least {_N_FFT} samples, got {duration_s}")
    base_f0 = rng.uniform(115.0, 210.0)
    scale = 0.9 + 0.25 * (base_f0 - 115.0) / 95.0 + 0.03 * rng.standard_normal()
    syllables, phrases = _timeline(n, sr, rng)
    source = _glottal_source(_f0_contour(n, sr, syllables, phrases, base_f0, rng), sr, rng)

    window = torch.hann_window(_N_FFT, dtype=torch.float64)
    spec = torch.stft(torch.from_numpy(source), _N_FFT, _HOP, window=window, return_complex=True)
    h = _formant_response(_formant_tracks(spec.shape[1], _HOP, syllables, scale, rng), sr)
    voiced = torch.istft(spec * torch.from_numpy(h.T), _N_FFT, _HOP, window=window, length=n).numpy()

    env, fric = _envelope(n, sr, syllables, rng)
    hiss = np.diff(rng.standard_normal(n + 1))                  # high-passed noise for fricatives
    voice = voiced * env / (np.std(voiced) + 1e-12) + hiss * fric
    voice -= voice.mean()
    return (voice / (np.sqrt(np.mean(voice ** 2)) + 1e-12)).astype(np.float32)


def _mix(tracks, gains_db):
    """Sum equal-length tracks at the given levels; return (1, samples) zero-mean unit RMS."""
    mix = np.zeros(len(tracks[0]), dtype=np.float64)
    for track, gain_db in zip(tracks, gains_db):
        mix += track * 10 ** (gain_db / 20)
    mix -= mix.mean()
    mix /= np.sqrt(np.mean(mix ** 2)) + 1e-12
    return torch.from_numpy(mix.astype(np.float32))[None]


def synth_babble(duration_s=60.0, sr=16000, n_talkers=30, seed=0):
    """Synthetic speech-like babble of ``n_talkers`` talkers: (1, samples) float32, zero mean,
    unit RMS, deterministic given ``seed``. Not real speech (see the module docstring)."""
    if not (isinstance(n_talkers, int) and n_talkers >= 1):
        raise ValueError(f"n_talkers must be a positive int, got {n_talkers!r}")
    seeds = np.random.SeedSequence(seed).spawn(n_talkers + 1)
    tracks = [synth_talker(duration_s, sr, s) for s in seeds[:-1]]
    return _mix(tracks, np.random.default_rng(seeds[-1]).uniform(-3.0, 3.0, n_talkers))


def load_babble(paths, sr=16000, seed=0):
    """Mix real babble recordings into one loop: (1, samples) float32, zero mean, unit RMS.

    paths: one path or a list. Each file is read mono at ``sr``, set to unit RMS, circularly
    shifted by a random offset (``seed``) and tiled to the longest file's length; the files are
    summed at equal levels.
    """
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    if not paths:
        raise ValueError("load_babble needs at least one path")
    rng = np.random.default_rng(seed)
    waves = []
    for path in paths:
        wave = load_audio(path, target_sr=sr)[0].numpy().astype(np.float64)
        wave -= wave.mean()
        rms = np.sqrt(np.mean(wave ** 2)) if wave.size else 0.0
        if rms == 0.0:
            raise ValueError(f"babble file {path} is empty or silent")
        waves.append(wave / rms)
    n = max(len(w) for w in waves)
    tracks = [np.resize(np.roll(w, rng.integers(len(w))), n) for w in waves]
    return _mix(tracks, np.zeros(len(tracks)))
