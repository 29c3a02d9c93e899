"""``AudioDataset``: an AST-style datafile -> ``(fbank (T, F), labels (C,))`` items.

Per item, as AST: load (16 kHz mono) -> [train: mixup with a uniformly drawn partner] ->
kaldi fbank padded/cropped to ``target_length`` -> [train: SpecAugment] -> normalize
``(x - mean) / (2 std)`` -> [train, ``noise``: fbank noise]. Augmentations only run when
``conf.train``. With ``conf.seed`` set, item ``i`` of epoch ``e`` draws all its randomness from
a generator seeded by ``(seed, e, i)``: call ``set_epoch(e)`` before each epoch's iterator
(with ``persistent_workers=True`` the workers keep the epoch they were started with).
"""
import os
import warnings
from dataclasses import dataclass, fields

import numpy as np
import torch

from .audio import load_audio
from .augment import fbank_noise, mixup_waveforms, sample_mixup_lambda, spec_augment
from .datafile import read_datafile, read_label_csv
from .fbank import AUDIOSET_MEAN, AUDIOSET_STD, SAMPLE_RATE, normalize_fbank, wav2fbank

__all__ = ["AudioConf", "AudioDataset"]

BAD_CLIPS = ("raise", "skip")


@dataclass(frozen=True)
class AudioConf:
    """Feature and augmentation settings (AST AudioSet training: ``freqm=48, timem=192,
    mixup=0.5, train=True``). ``mean=None`` or ``std=None`` skips normalization."""
    target_length: int = 1024
    num_mel_bins: int = 128
    freqm: int = 0
    timem: int = 0
    mixup: float = 0.0
    mean: float | None = AUDIOSET_MEAN
    std: float | None = AUDIOSET_STD
    train: bool = False
    noise: bool = False
    mixup_alpha: float = 10.0
    seed: int | None = None
    sample_rate: int = SAMPLE_RATE
    frame_shift: float = 10.0

    def __post_init__(self):
        for name in ("target_length", "num_mel_bins", "sample_rate"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"AudioConf.{name} must be a positive int, got {value!r}")
        for name in ("freqm", "timem"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"AudioConf.{name} must be an int >= 0, got {value!r}")
        if not 0.0 <= self.mixup <= 1.0:
            raise ValueError(f"AudioConf.mixup is a probability in [0, 1], got {self.mixup!r}")
        if self.std is not None and not self.std > 0:
            raise ValueError(f"AudioConf.std must be positive, got {self.std!r}")
        if self.seed is not None and (not isinstance(self.seed, int) or self.seed < 0):
            raise ValueError(f"AudioConf.seed must be None or an int >= 0, got {self.seed!r}")

    @classmethod
    def from_dict(cls, values: dict) -> "AudioConf":
        """Build from a dict (e.g. notebook parameters); unknown keys are a ``ValueError``."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown AudioConf field(s) {unknown}; known: {sorted(known)}")
        return cls(**values)


class AudioDataset(torch.utils.data.Dataset):
    """Items ``(fbank (target_length, num_mel_bins) float32, labels (C,) float32 multi-hot)``.

    Every label id of the datafile is checked against ``label_csv`` on construction; audio
    errors surface in ``__getitem__`` as a ``ValueError`` naming the item and its file
    (``bad_clips="raise"``), or, with ``bad_clips="skip"``, as a warning naming it, the item
    being replaced by the next one that loads (with its labels; the same one every epoch).
    Skipped items are marked in ``skipped_flags`` (a bool tensor in shared memory, so DataLoader
    workers mark them too; None unless skipping): `dasslib.train.fit` clears it each epoch and
    counts it into the history's ``skipped_clips`` column.
    """

    def __init__(self, datafile, label_csv, conf: AudioConf = AudioConf(), bad_clips: str = "raise"):
        if not isinstance(conf, AudioConf):
            raise TypeError(f"conf must be an AudioConf, got {type(conf).__name__}")
        if bad_clips not in BAD_CLIPS:
            raise ValueError(f"bad_clips must be one of {list(BAD_CLIPS)}, got {bad_clips!r}")
        self.bad_clips = bad_clips
        self._warned: set = set()  # items already reported (in this process)
        self.datafile = os.fspath(datafile)
        self.conf = conf
        self.labels = read_label_csv(label_csv)
        self.entries = read_datafile(self.datafile)
        self.skipped_flags = None
        if bad_clips == "skip":
            self.skipped_flags = torch.zeros(len(self.entries), dtype=torch.bool).share_memory_()
        unknown = [f"{mid!r} in {e.wav}" for e in self.entries for mid in e.labels
                   if mid not in self.labels.index]
        if unknown:
            more = f" (and {len(unknown) - 10} more)" if len(unknown) > 10 else ""
            raise ValueError(f"{self.datafile}: unknown label(s), not in {self.labels.path}: "
                             + "; ".join(unknown[:10]) + more)
        self.class_indices = [np.array([self.labels.index[m] for m in e.labels])
                              for e in self.entries]
        self.epoch = 0

    @property
    def skipped(self) -> set:
        """Items replaced since ``skipped_flags`` was last cleared (in any worker)."""
        flags = self.skipped_flags
        return set() if flags is None else set(flags.nonzero().flatten().tolist())

    @property
    def num_classes(self) -> int:
        return self.labels.num_classes

    def __len__(self) -> int:
        return len(self.entries)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose augmentations the seeded generators draw."""
        self.epoch = int(epoch)

    def target(self, index: int) -> torch.Tensor:
        """Multi-hot labels ``(C,)`` float32 of item ``index`` (no mixup)."""
        y = torch.zeros(self.num_classes)
        y[self.class_indices[index]] = 1.0
        return y

    def _rng(self, index: int) -> np.random.Generator:
        if self.conf.seed is None:
            return np.random.default_rng()
        return np.random.default_rng([self.conf.seed, self.epoch, index])

    def _waveform_and_target(self, index, rng):
        conf = self.conf
        wav = load_audio(self.entries[index].wav, conf.sample_rate)
        y = self.target(index)
        if conf.train and conf.mixup > 0 and rng.random() < conf.mixup:
            other = int(rng.integers(len(self)))
            lam = sample_mixup_lambda(rng, conf.mixup_alpha)
            wav = mixup_waveforms(wav, load_audio(self.entries[other].wav, conf.sample_rate), lam)
            y = lam * y + (1.0 - lam) * self.target(other)
        return wav, y

    def __getitem__(self, index: int):
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        index = index % len(self)
        if self.bad_clips == "raise":
            return self._item(index)
        for offset in range(len(self)):
            candidate = (index + offset) % len(self)
            try:
                return self._item(candidate)
            except ValueError as err:
                self.skipped_flags[candidate] = True
                if candidate not in self._warned:
                    self._warned.add(candidate)
                    warnings.warn(f"skipped: {err} (bad_clips='skip': replaced by the next item that loads)")
        raise ValueError(f"{self.datafile}: no item can be loaded")

    def _item(self, index: int):
        conf = self.conf
        rng = self._rng(index)
        try:
            wav, y = self._waveform_and_target(index, rng)
            fbank = wav2fbank(wav, conf.sample_rate, conf.num_mel_bins, conf.target_length,
                              conf.frame_shift)
        except Exception as err:
            path = self.entries[index].wav
            named = "" if path in str(err) else f" ({path})"
            raise ValueError(f"{self.datafile} item {index}{named}: {err}") from err
        if conf.train and (conf.freqm or conf.timem):
            fbank = spec_augment(fbank, conf.freqm, conf.timem,
                                 seed=None if conf.seed is None else int(rng.integers(2**62)))
        if conf.mean is not None and conf.std is not None:
            fbank = normalize_fbank(fbank, conf.mean, conf.std)
        if conf.train and conf.noise:
            gen = None
            if conf.seed is not None:
                gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
            fbank = fbank_noise(fbank, gen)
        return fbank.contiguous(), y
