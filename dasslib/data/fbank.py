"""Kaldi log-mel filterbanks exactly as AST / DASS compute them, plus padding and normalization.

Frames are 25 ms (400 samples at 16 kHz) every ``frame_shift`` ms with Kaldi's
``snip_edges=True``, so a waveform of ``n`` samples gives ``1 + (n - 400) // 160`` frames at
16 kHz / 10 ms (998 frames for 10 s, padded to 1024 by AST).
"""
import torch
import torch.nn.functional as F
import torchaudio.compliance.kaldi as kaldi

from .frames import FRAME_SHIFT_MS

__all__ = ["AUDIOSET_MEAN", "AUDIOSET_STD", "SAMPLE_RATE", "num_frames", "pad_or_crop",
           "wav2fbank", "normalize_fbank"]

SAMPLE_RATE = 16000
AUDIOSET_MEAN = -4.2677393
AUDIOSET_STD = 4.5689974
FRAME_LENGTH_MS = 25.0


def num_frames(num_samples: int, sr: int = SAMPLE_RATE, frame_shift: float = FRAME_SHIFT_MS) -> int:
    """Number of fbank frames Kaldi (``snip_edges=True``) makes from ``num_samples`` samples."""
    window = int(sr * FRAME_LENGTH_MS / 1000)
    shift = int(sr * frame_shift / 1000)
    return 0 if num_samples < window else 1 + (num_samples - window) // shift


def pad_or_crop(fbank: torch.Tensor, target_length: int) -> torch.Tensor:
    """(T, F) -> (target_length, F): zero frames appended at the end, or the first frames kept."""
    if target_length is None or target_length < 1:
        raise ValueError(f"target_length must be a positive int, got {target_length!r}")
    missing = target_length - fbank.shape[0]
    if missing > 0:
        return F.pad(fbank, (0, 0, 0, missing))
    return fbank[:target_length]


def wav2fbank(waveform: torch.Tensor, sr: int = SAMPLE_RATE, num_mel_bins: int = 128,
              target_length: int | None = 1024, frame_shift: float = FRAME_SHIFT_MS) -> torch.Tensor:
    """Waveform ``(samples,)`` or ``(1, samples)`` -> log-mel fbank ``(T, num_mel_bins)`` float32.

    The waveform's mean is removed first (as AST does); ``T`` is ``target_length`` when given
    (zero-padded at the end or cropped), else ``num_frames(samples, sr, frame_shift)``.
    """
    if not isinstance(waveform, torch.Tensor):
        raise TypeError(f"waveform must be a torch.Tensor, got {type(waveform).__name__}")
    if waveform.dim() == 1:
        waveform = waveform.unsqueeze(0)
    if waveform.dim() != 2 or waveform.shape[0] != 1:
        raise ValueError(f"waveform must be (samples,) or (1, samples) mono, got shape "
                         f"{tuple(waveform.shape)}; downmix first (load_audio does)")
    if num_frames(waveform.shape[1], sr, frame_shift) < 1:
        raise ValueError(f"waveform has {waveform.shape[1]} samples, fewer than one "
                         f"{FRAME_LENGTH_MS:g} ms frame at {sr} Hz")
    if not torch.isfinite(waveform).all():
        raise ValueError("waveform contains NaN or infinite samples")
    waveform = waveform.float()
    waveform = waveform - waveform.mean()
    fbank = kaldi.fbank(waveform, htk_compat=True, sample_frequency=sr, use_energy=False,
                        window_type="hanning", num_mel_bins=num_mel_bins, dither=0.0,
                        frame_shift=frame_shift)
    return fbank if target_length is None else pad_or_crop(fbank, target_length)


def normalize_fbank(fbank: torch.Tensor, mean: float = AUDIOSET_MEAN,
                    std: float = AUDIOSET_STD) -> torch.Tensor:
    """AST normalization of any-shaped fbank: ``(fbank - mean) / (2 * std)``."""
    if not std > 0:
        raise ValueError(f"std must be positive, got {std!r}")
    return (fbank - mean) / (2 * std)
