"""Audio needle-in-a-haystack (NIAH): a 10 s needle fbank, unmodified, inside a longer haystack.

The model input is exactly ``total_frames(length_s) = round(100 * length_s)`` frames; the
haystack has ``total - needle_frames`` of them and the needle starts at
``insert_index(position, ...) = round(position * (total - needle_frames))``, so position 0
puts it first and position 1 last (the official code's ``int(total * position)`` overruns at
1.0). Haystack kinds:

- ``zeros``: zeros in the normalized fbank domain (as the official code);
- ``white``: Gaussian waveform noise;
- ``babble``: a babble loop (synthetic speech-like talkers by default, see
  :mod:`dasslib.data.babble`, or real recordings via ``babble_wav``) tiled from a random offset.

Noise is scaled on the waveform so that ``20 log10(rms(needle) / rms(noise)) = snr_db`` (rms of
the mean-removed needle waveform and of the mean-removed noise), then featurized with the
needle's pipeline (:func:`wav2fbank`, :func:`normalize_fbank`) in chunks whose sample ranges
overlap by one window minus one hop, so every frame sees the samples a single call would give it.
"""
import functools
import math
import numbers
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .audio import load_audio
from .babble import load_babble, synth_babble
from .fbank import AUDIOSET_MEAN, AUDIOSET_STD, FRAME_LENGTH_MS, SAMPLE_RATE, normalize_fbank, wav2fbank
from .frames import FRAME_SHIFT_MS, FRAMES_PER_SECOND

__all__ = ["FRAMES_PER_SECOND", "KINDS", "total_frames", "insert_index", "noise_num_samples",
           "make_needle", "haystack_noise", "build_haystack", "haystack_waveform", "NiahDataset",
           "DatasetNeedles"]

_FRAME_SHIFT_MS = FRAME_SHIFT_MS
KINDS = ("zeros", "white", "babble")
_WHITE_BLOCK_S = 1                # white noise is drawn in 1 s blocks, each from its own stream
_BABBLE_LOOP_S = 60.0             # length of the default synthetic babble loop


def total_frames(length_s):
    """Frames of a ``length_s``-second model input: ``round(100 * length_s)``."""
    if isinstance(length_s, bool) or not isinstance(length_s, numbers.Real) or not (
            math.isfinite(length_s) and length_s > 0):
        raise ValueError(f"length_s must be a positive number of seconds, got {length_s!r}")
    return int(round(length_s * FRAMES_PER_SECOND))


def _check_position(position):
    if isinstance(position, bool) or not isinstance(position, numbers.Real) or not 0 <= position <= 1:
        raise ValueError(f"position must be a number in [0, 1], got {position!r}")


def insert_index(position, total, needle_frames):
    """First frame of the needle: ``round(position * (total - needle_frames))`` (half up)."""
    _check_position(position)
    if total < needle_frames:
        raise ValueError(f"the input ({total} frames, {total / FRAMES_PER_SECOND:g} s) is shorter "
                         f"than the needle ({needle_frames} frames)")
    return int(math.floor(position * (total - needle_frames) + 0.5))


def _frame_geometry(sr):
    """(window, hop) in samples of the fbank frames at ``sr`` (Kaldi's rounding)."""
    return int(sr * FRAME_LENGTH_MS / 1000), int(sr * _FRAME_SHIFT_MS / 1000)


def noise_num_samples(frames, sr=SAMPLE_RATE):
    """Samples whose fbank has exactly ``frames`` frames (0 for 0 frames)."""
    window, hop = _frame_geometry(sr)
    return 0 if frames == 0 else window + hop * (frames - 1)


def make_needle(waveform, sr=SAMPLE_RATE, num_mel_bins=128, target_length=1024,
                mean=AUDIOSET_MEAN, std=AUDIOSET_STD):
    """Waveform (1, samples) -> (normalized fbank (target_length, num_mel_bins), waveform)."""
    fbank = wav2fbank(waveform, sr, num_mel_bins, target_length)
    return normalize_fbank(fbank, mean, std), waveform


def _seed_tuple(seed):
    seeds = (seed,) if isinstance(seed, numbers.Integral) else tuple(seed)
    if not seeds or any(isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 0
                        for s in seeds):
        raise ValueError(f"seed must be an int >= 0 or a tuple of them, got {seed!r}")
    return tuple(int(s) for s in seeds)


def _rms_of_needle(needle_wave):
    if needle_wave is None:
        raise ValueError("noise haystacks need needle_wave (the needle's waveform) to set the SNR")
    wave = torch.as_tensor(needle_wave).double().flatten()
    if wave.numel() == 0:
        raise ValueError("needle_wave is empty")
    rms = float((wave - wave.mean()).pow(2).mean().sqrt())
    if not rms > 0:
        raise ValueError("needle_wave is silent: the SNR is undefined")
    return rms


class _WhiteNoise:
    """Standard Gaussian samples with random access: 1 s block ``b`` comes from the stream
    ``(*seed, 0, b)``, so any sample range reads the same values however it is chunked."""

    def __init__(self, seed, sr):
        self.seed, self.block = seed, _WHITE_BLOCK_S * sr

    def read(self, start, stop):
        first, last = start // self.block, (stop - 1) // self.block
        blocks = [np.random.default_rng((*self.seed, 0, b)).standard_normal(self.block, dtype=np.float32)
                  for b in range(first, last + 1)]
        offset = start - first * self.block
        return np.concatenate(blocks)[offset:offset + stop - start]


class _LoopNoise:
    """A loop waveform tiled forever from a random start offset (stream ``(*seed, 1)``)."""

    def __init__(self, loop, seed):
        self.loop = loop
        self.offset = int(np.random.default_rng((*seed, 1)).integers(len(loop)))

    def read(self, start, stop):
        n = len(self.loop)
        begin = (self.offset + start) % n
        end = begin + stop - start
        loop = self.loop if end <= n else np.tile(self.loop, -(-end // n))
        return loop[begin:end]


@functools.lru_cache(maxsize=4)
def _default_babble(sr):
    return synth_babble(_BABBLE_LOOP_S, sr, n_talkers=30, seed=0)


@functools.lru_cache(maxsize=4)
def _babble_files(paths, sr):
    return load_babble(list(paths), sr)


def _babble_loop(babble_wav, sr):
    """(samples,) float32 numpy babble loop from None (synthetic), path(s) or a waveform."""
    if babble_wav is None:
        loop = _default_babble(sr)
    elif isinstance(babble_wav, (str, Path)):
        loop = _babble_files((str(babble_wav),), sr)
    elif isinstance(babble_wav, (torch.Tensor, np.ndarray)):
        loop = torch.as_tensor(babble_wav)
        if loop.dim() == 2 and loop.shape[0] == 1:
            loop = loop[0]
        if loop.dim() != 1 or loop.numel() == 0:
            raise ValueError(f"babble_wav waveform must be (samples,) or (1, samples), "
                             f"got {tuple(loop.shape)}")
    else:
        loop = _babble_files(tuple(str(p) for p in babble_wav), sr)
    return loop.flatten().float().numpy()


def _noise_source(kind, seed, sr, babble_wav):
    if kind == "white":
        return _WhiteNoise(seed, sr)
    return _LoopNoise(_babble_loop(babble_wav, sr), seed)


def _chunks(n, size):
    return ((a, min(n, a + size)) for a in range(0, n, size))


class _ScaledNoise:
    """Noise samples ``(raw - mean) * gain`` over [0, num_samples): mean-removed, then scaled
    so that its RMS is ``rms_needle / 10 ** (snr_db / 20)``. One streaming pass collects the
    statistics; :meth:`read` is elementwise, so any chunking gives the same samples."""

    def __init__(self, source, num_samples, rms_needle, snr_db, chunk):
        total, total_sq = 0.0, 0.0
        for a, b in _chunks(num_samples, chunk):
            part = source.read(a, b).astype(np.float64)
            total += part.sum()
            total_sq += np.dot(part, part)
        self.source = source
        self.mean = total / num_samples
        rms = math.sqrt(max(total_sq / num_samples - self.mean ** 2, 0.0))
        if not rms > 0:
            raise ValueError("the haystack noise is silent: cannot scale it to an SNR")
        self.gain = rms_needle / 10 ** (snr_db / 20) / rms

    def read(self, start, stop):
        raw = self.source.read(start, stop).astype(np.float64)
        return ((raw - self.mean) * self.gain).astype(np.float32)


def _check_kind(kind, snr_db):
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if kind == "zeros" and snr_db is not None:
        raise ValueError("snr_db only applies to noise haystacks, not kind='zeros'")
    if kind != "zeros" and (snr_db is None or isinstance(snr_db, bool)
                            or not isinstance(snr_db, numbers.Real) or not math.isfinite(snr_db)):
        raise ValueError(f"kind={kind!r} needs a finite snr_db (dB), got {snr_db!r}")


def _scaled_noise(kind, num_samples, needle_wave, snr_db, seed, sr, babble_wav, chunk):
    rms_needle = _rms_of_needle(needle_wave)
    source = _noise_source(kind, _seed_tuple(seed), sr, babble_wav)
    return _ScaledNoise(source, num_samples, rms_needle, snr_db, chunk)


def haystack_noise(kind, num_samples, needle_wave, snr_db, seed=0, sr=SAMPLE_RATE, babble_wav=None):
    """The noise waveform a ``kind`` haystack of ``num_samples`` samples is made of: (1, samples)
    float32, zero mean, at ``snr_db`` below the needle. Meant for inspection and short lengths;
    :func:`build_haystack` streams the same samples chunk by chunk."""
    _check_kind(kind, snr_db)
    if kind == "zeros":
        raise ValueError("kind='zeros' has no noise waveform")
    if isinstance(num_samples, bool) or not isinstance(num_samples, numbers.Integral) or num_samples < 1:
        raise ValueError(f"num_samples must be a positive int, got {num_samples!r}")
    noise = _scaled_noise(kind, num_samples, needle_wave, snr_db, seed, sr, babble_wav, 1 << 22)
    return torch.from_numpy(noise.read(0, num_samples))[None]


def _chunk_spans(frames, chunk_frames, sr):
    """(first frame, end frame, first sample, end sample) of each chunk of ``frames`` frames.
    Frame ``f`` covers samples [hop * f, hop * f + window), so consecutive sample ranges
    overlap by window - hop samples and each chunk yields exactly its frames."""
    window, hop = _frame_geometry(sr)
    return [(f0, f1, hop * f0, hop * (f1 - 1) + window) for f0, f1 in _chunks(frames, chunk_frames)]


def _fill_noise_frames(x, needle_start, needle_frames, noise, hay_frames, sr, mean, std, chunk_s,
                      fbank_device=None):
    """Write the haystack's ``hay_frames`` noise frames into x around the needle, chunk by chunk
    (fbank computed on ``fbank_device``: None = the CPU)."""
    chunk_frames = max(1, int(round(chunk_s * FRAMES_PER_SECOND)))
    for f0, f1, s0, s1 in _chunk_spans(hay_frames, chunk_frames, sr):
        wave = torch.from_numpy(noise.read(s0, s1)).to(fbank_device or "cpu")
        frames = normalize_fbank(wav2fbank(wave, sr, x.shape[1], target_length=None), mean, std)
        before = max(0, min(f1, needle_start) - f0)          # frames of this chunk before the needle
        x[f0:f0 + before] = frames[:before]
        x[f0 + before + needle_frames:f1 + needle_frames] = frames[before:]


def build_haystack(needle_fbank, needle_wave, length_s, position, kind="zeros", snr_db=None,
                   seed=0, sr=SAMPLE_RATE, mean=AUDIOSET_MEAN, std=AUDIOSET_STD, chunk_s=600,
                   babble_wav=None, fbank_device=None):
    """Insert ``needle_fbank`` (N, F), unmodified, into a ``kind`` haystack of ``length_s`` s.

    needle_wave: the needle's waveform ((samples,) or (1, samples); only its RMS is used; may be
    None for ``zeros``). seed: int or tuple of ints, selects the noise (white samples, babble
    offset). mean / std: the normalization the needle was made with. chunk_s: seconds of noise
    featurized per fbank call. babble_wav: None (synthetic babble), path(s) to recordings mixed
    by :func:`load_babble`, or a waveform loop; ignored by the other kinds. fbank_device: where
    the noise fbank is computed (None: the CPU; a CUDA device is faster on long haystacks; the
    result always lands in a CPU tensor).
    Returns (x (total_frames(length_s), F) float32, index of the needle's first frame).
    """
    if not isinstance(needle_fbank, torch.Tensor) or needle_fbank.dim() != 2:
        raise ValueError(f"needle_fbank must be a (frames, mel_bins) tensor, got "
                         f"{getattr(needle_fbank, 'shape', type(needle_fbank).__name__)}")
    _check_kind(kind, snr_db)
    if not (isinstance(chunk_s, numbers.Real) and chunk_s > 0):
        raise ValueError(f"chunk_s must be a positive number of seconds, got {chunk_s!r}")
    total = total_frames(length_s)
    needle_frames, mel_bins = needle_fbank.shape
    start = insert_index(position, total, needle_frames)
    hay_frames = total - needle_frames

    x = torch.empty(total, mel_bins, dtype=torch.float32)
    x[start:start + needle_frames] = needle_fbank
    if kind == "zeros" or hay_frames == 0:
        x[:start] = 0.0
        x[start + needle_frames:] = 0.0
        if kind != "zeros":
            _rms_of_needle(needle_wave)  # same argument check as with a haystack
        return x, start
    chunk = max(1, int(round(chunk_s * sr)))
    noise = _scaled_noise(kind, noise_num_samples(hay_frames, sr), needle_wave, snr_db, seed, sr,
                          babble_wav, chunk)
    _fill_noise_frames(x, start, needle_frames, noise, hay_frames, sr, mean, std, chunk_s,
                      fbank_device)
    return x, start


def haystack_waveform(needle_wave, length_s, position=0.5, kind="zeros", snr_db=None, seed=0,
                      sr=SAMPLE_RATE, babble_wav=None, needle_frames=1024):
    """The haystack as sound, for listening: (waveform (1, total_frames(length_s) * hop) float32,
    first sample of the needle).

    The samples are those :func:`build_haystack` featurizes with the same arguments (the needle
    at frame ``insert_index(position, ...)``, the noise of ``haystack_noise`` before and after it;
    ``needle_frames`` as the needle fbank's, 1024 by default), laid end to end on the waveform
    with hop = 10 ms. ``zeros`` is silence here: the model sees the all-zero normalized fbank,
    i.e. the dataset's mean frame, not the fbank of silence. The needle waveform is padded with
    silence (or cut) to its ``needle_frames`` hops."""
    _check_kind(kind, snr_db)
    wave = torch.as_tensor(needle_wave, dtype=torch.float32).flatten()
    total = total_frames(length_s)
    start = insert_index(position, total, needle_frames)
    _, hop = _frame_geometry(sr)
    needle = torch.zeros(needle_frames * hop)
    needle[:min(len(wave), len(needle))] = wave[:len(needle)]
    hay = (total - needle_frames) * hop
    if kind == "zeros" or hay == 0:
        noise = torch.zeros(hay)
    else:
        noise = haystack_noise(kind, noise_num_samples(total - needle_frames, sr), wave, snr_db, seed, sr,
                               babble_wav)[0, :hay]
    out = torch.cat([noise[:start * hop], needle, noise[start * hop:]])
    return out[None], start * hop


class DatasetNeedles(Sequence):
    """(fbank, waveform, labels) needles of an evaluation ``AudioDataset`` (no augmentation)."""

    def __init__(self, dataset):
        if dataset.conf.train:
            raise ValueError("needles must come from an evaluation dataset (conf.train=False): "
                             "augmentation would modify the needle")
        if dataset.conf.mean is None or dataset.conf.std is None:
            raise ValueError("needles must be normalized fbanks: the dataset's conf has no mean/std")
        if dataset.conf.frame_shift != _FRAME_SHIFT_MS:
            raise ValueError(f"NIAH inputs have {FRAMES_PER_SECOND} frames/s: the dataset's "
                             f"frame_shift must be {_FRAME_SHIFT_MS:g} ms, got {dataset.conf.frame_shift}")
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        fbank, labels = self.dataset[index]
        wave = load_audio(self.dataset.entries[index].wav, self.dataset.conf.sample_rate)
        return fbank, wave, labels


class NiahDataset(torch.utils.data.Dataset):
    """Needle ``i`` inside its own haystack: items (x (total_frames(length_s), F), labels).

    needles: a sequence of (needle_fbank (N, F) normalized, needle_wave or None, labels)
    triples (see :meth:`from_audio_dataset` for an ``AudioDataset``). Every haystack uses the
    same length, position, kind and SNR; item ``i``'s noise is seeded by ``(seed, i)``.
    Other arguments as :func:`build_haystack`.
    """

    def __init__(self, needles, length_s, position=0.5, kind="zeros", snr_db=None, seed=0,
                 sr=SAMPLE_RATE, mean=AUDIOSET_MEAN, std=AUDIOSET_STD, chunk_s=600, babble_wav=None,
                 fbank_device=None):
        _check_kind(kind, snr_db)
        total_frames(length_s)
        _check_position(position)
        self.needles = needles
        self.seed = _seed_tuple(seed)
        self.kwargs = dict(length_s=length_s, position=position, kind=kind, snr_db=snr_db, sr=sr,
                           mean=mean, std=std, chunk_s=chunk_s, fbank_device=fbank_device)
        # resolve the babble loop once, not per item
        loop = torch.from_numpy(_babble_loop(babble_wav, sr)) if kind == "babble" else None
        self.kwargs["babble_wav"] = loop

    @classmethod
    def from_audio_dataset(cls, dataset, length_s, **kwargs):
        """Needles from an evaluation ``AudioDataset``; sr, mean and std come from its conf."""
        conf = dataset.conf
        return cls(DatasetNeedles(dataset), length_s, sr=conf.sample_rate, mean=conf.mean,
                   std=conf.std, **kwargs)

    def __len__(self):
        return len(self.needles)

    def __getitem__(self, index):
        needle_fbank, needle_wave, labels = self.needles[index]
        x, _ = build_haystack(needle_fbank, needle_wave, seed=(*self.seed, index), **self.kwargs)
        return x, labels
