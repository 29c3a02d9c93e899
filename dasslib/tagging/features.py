"""Normalised fbank of a whole recording, computed in pieces for long ones.

Kaldi frames are independent once the waveform's mean is removed (each frame also removes its
own DC offset), so a long recording is cut into pieces of ``piece_seconds`` whose frames are
the one-shot frames (up to float rounding) and concatenated, with a progress bar.
"""
import torch
from tqdm.auto import tqdm

from ..data.fbank import fbank_frames, normalize_fbank, num_frames, wav2fbank

__all__ = ["recording_fbank"]


def recording_fbank(waveform, mean, std, num_mel_bins=128, piece_seconds=600.0, progress=False):
    """waveform (1, samples) at 16 kHz -> normalised fbank (T, num_mel_bins), T frames every 10 ms,
    on the waveform's device."""
    waveform = waveform - waveform.mean()
    total = num_frames(waveform.shape[-1])
    step = int(piece_seconds * 100)
    if total <= step:
        return normalize_fbank(wav2fbank(waveform, num_mel_bins=num_mel_bins, target_length=None), mean, std)
    pieces = []
    for first in tqdm(range(0, total, step), desc="fbank", unit="piece", leave=False, disable=not progress):
        last = min(total, first + step)
        pieces.append(fbank_frames(waveform, first, last, num_mel_bins=num_mel_bins))
    return normalize_fbank(torch.cat(pieces), mean, std)
