"""Audio loading: soundfile read, downmix to mono, torchaudio resample to 16 kHz.

Any format libsndfile reads works (WAV, FLAC, OGG, MP3 with libsndfile >= 1.1). A WAV file cut
short inside its data chunk is read up to where it stops (libsndfile trusts the file size over
the header, as every WAV reader does); anything that cannot be decoded is a ``ValueError`` that
names the file.
"""
import os

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from .fbank import SAMPLE_RATE

__all__ = ["load_audio"]


def load_audio(path, target_sr: int = SAMPLE_RATE) -> torch.Tensor:
    """Read ``path`` -> ``(1, samples)`` float32 mono at ``target_sr`` Hz.

    Channels are averaged; other sample rates are resampled with
    ``torchaudio.functional.resample``. Raises ``ValueError`` naming the file when it is
    missing, not decodable, has no samples or holds non-finite samples.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"audio file not found: {path}")
    try:
        data, sr = sf.read(path, dtype="float32", always_2d=True)
    except Exception as err:  # libsndfile errors (format, decoding) and OS errors alike
        raise ValueError(f"cannot read audio file {path}: {err}") from err
    if data.shape[0] == 0:
        raise ValueError(f"audio file has no samples: {path}")
    if not np.isfinite(data).all():
        raise ValueError(f"audio file holds NaN or infinite samples: {path}")
    waveform = torch.from_numpy(data.mean(axis=1, dtype=np.float32)).unsqueeze(0)
    if sr != target_sr:
        waveform = AF.resample(waveform, orig_freq=sr, new_freq=target_sr)
    return waveform
