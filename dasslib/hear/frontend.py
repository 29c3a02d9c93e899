"""Waveform -> log-mel front ends of the HEAR wrappers.

Both map float32 audio ``(B, N)`` at 16 kHz to features ``(B, T, F)`` (time x mel) and say where
their frames sit: frame ``j`` is centred at ``offset_ms + hop_ms * j``; ``pad_value`` is what
padding a clip with silence-like frames adds after the normalisation.
"""
import torch
import torch.nn as nn
import torchaudio

from dasslib.data.fbank import AUDIOSET_MEAN, AUDIOSET_STD, FRAME_LENGTH_MS, SAMPLE_RATE, normalize_fbank, wav2fbank

__all__ = ["standardize", "OfficialLogMel", "KaldiFbank", "NORMS"]

NORMS = ("clip", "dataset")


def standardize(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Per-clip standardisation of ``x (..., T, F)`` over its last two axes (unbiased std)."""
    mean = x.mean(dim=(-2, -1), keepdim=True)
    std = x.std(dim=(-2, -1), keepdim=True)
    return (x - mean) / (std + eps)


class OfficialLogMel(nn.Module):
    """The official SSAM front end: torchaudio ``MelSpectrogram`` (16 kHz, n_fft 400, hop 160,
    50-8000 Hz, 80 mels, power 2, centred frames), ``log(x + eps)`` with float32's eps, then
    :func:`standardize` per clip. ``(B, N)`` -> ``(B, 1 + N // 160, 80)``."""

    hop_ms, offset_ms, pad_value = 10.0, 0.0, 0.0

    def __init__(self, n_mels: int = 80, f_min: float = 50.0, f_max: float = 8000.0):
        super().__init__()
        self.n_mels = n_mels
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=SAMPLE_RATE, n_fft=400, win_length=400, hop_length=160, f_min=f_min,
            f_max=f_max, n_mels=n_mels, power=2.0)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        x = (self.mel(audio) + torch.finfo(torch.float32).eps).log()   # (B, n_mels, T)
        return standardize(x.transpose(1, 2))


class KaldiFbank(nn.Module):
    """AST's Kaldi fbank (:func:`dasslib.data.fbank.wav2fbank`: 25 ms Hanning frames every
    10 ms, ``snip_edges``), each clip on its own. ``norm="dataset"``: AST's
    ``(x - mean) / (2 * std)`` with the given dataset statistics (AudioSet's by default);
    ``norm="clip"``: :func:`standardize` per clip (notebook 02's SSAM features).
    ``(B, N)`` -> ``(B, 1 + (N - 400) // 160, num_mel_bins)``."""

    hop_ms, offset_ms = 10.0, FRAME_LENGTH_MS / 2

    def __init__(self, num_mel_bins: int = 128, norm: str = "dataset",
                 mean: float = AUDIOSET_MEAN, std: float = AUDIOSET_STD):
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"unknown norm {norm!r}; choose one of {NORMS}")
        self.n_mels, self.norm, self.mean, self.std = num_mel_bins, norm, mean, std
        # zero-padded raw fbank frames, as AST pads short clips before normalising
        self.pad_value = 0.0 if norm == "clip" else float(normalize_fbank(torch.zeros(()), mean, std))

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        x = torch.stack([wav2fbank(a, SAMPLE_RATE, self.n_mels, target_length=None) for a in audio])
        return standardize(x) if self.norm == "clip" else normalize_fbank(x, self.mean, self.std)
