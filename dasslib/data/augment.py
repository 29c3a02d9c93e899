"""Training augmentations of the AST recipe: waveform mixup, SpecAugment masks, fbank noise.

Each takes an explicit seed or generator so that a dataset can make them reproducible per item
and epoch; with ``seed=None`` they draw from torch's global generator as AST does.
"""
import contextlib

import numpy as np
import torch
import torch.nn.functional as F
import torchaudio.transforms as T

__all__ = ["sample_mixup_lambda", "mixup_waveforms", "spec_augment", "fbank_noise"]


def sample_mixup_lambda(rng: np.random.Generator, alpha: float = 10.0) -> float:
    """Mixing weight of the first clip, ``lambda ~ Beta(alpha, alpha)`` (AST: alpha = 10)."""
    return float(rng.beta(alpha, alpha))


def mixup_waveforms(w1: torch.Tensor, w2: torch.Tensor, lam: float) -> torch.Tensor:
    """Mix ``(1, n1)`` and ``(1, n2)`` mean-removed waveforms -> ``(1, n1)``, mean-removed.

    ``w2`` is zero-padded or cut to ``n1`` samples, then ``lam * w1 + (1 - lam) * w2``.
    """
    w1 = w1 - w1.mean()
    w2 = w2 - w2.mean()
    n1, n2 = w1.shape[-1], w2.shape[-1]
    w2 = F.pad(w2, (0, n1 - n2)) if n2 < n1 else w2[..., :n1]
    mixed = lam * w1 + (1.0 - lam) * w2
    return mixed - mixed.mean()


@contextlib.contextmanager
def _seeded(seed):
    """Run torch's global CPU generator from ``seed`` inside the block, restoring it after."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def spec_augment(fbank: torch.Tensor, freqm: int, timem: int, seed: int | None = None):
    """SpecAugment as AST applies it: ``(T, F)`` -> ``(T, F)`` with one frequency mask of up
    to ``freqm`` bins and one time mask of up to ``timem`` frames set to 0.

    The torchaudio masks run on the transposed ``(F, T)`` fbank; 0 disables a mask.
    """
    spec = fbank.transpose(0, 1)
    with _seeded(seed):
        if freqm:
            spec = T.FrequencyMasking(freqm)(spec)
        if timem:
            spec = T.TimeMasking(timem)(spec)
    return spec.transpose(0, 1)


def fbank_noise(fbank: torch.Tensor, generator: torch.Generator | None = None):
    """AST's optional noise augmentation of a normalized ``(T, F)`` fbank: add
    ``U(0,1) * s / 10`` with ``s ~ U(0,1)`` per clip, then roll time by -10..9 frames."""
    scale = torch.rand((), generator=generator) / 10
    noisy = fbank + torch.rand(fbank.shape, generator=generator) * scale
    shift = int(torch.randint(-10, 10, (), generator=generator))
    return torch.roll(noisy, shift, dims=0)
