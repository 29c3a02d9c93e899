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
           "wav2fbank", "normalize_fbank", "fbank_frames", "ChunkedFbank"]

SAMPLE_RATE = 16000
AUDIOSET_MEAN = -4.2677393
AUDIOSET_STD = 4.5689974
FRAME_LENGTH_MS = 25.0


def _frame_sizes(sr: int, frame_shift: float) -> tuple[int, int]:
    """(window, shift) of one Kaldi frame, in samples."""
    return int(sr * FRAME_LENGTH_MS / 1000), int(sr * frame_shift / 1000)


def num_frames(num_samples: int, sr: int = SAMPLE_RATE, frame_shift: float = FRAME_SHIFT_MS) -> int:
    """Number of fbank frames Kaldi (``snip_edges=True``) makes from ``num_samples`` samples."""
    window, shift = _frame_sizes(sr, frame_shift)
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


def fbank_frames(waveform: torch.Tensor, start: int, stop: int, sr: int = SAMPLE_RATE,
                 num_mel_bins: int = 128, frame_shift: float = FRAME_SHIFT_MS, device=None) -> torch.Tensor:
    """Frames [start, stop) of ``wav2fbank(waveform, target_length=None)`` from only the samples
    they cover (``start * shift`` to ``(stop - 1) * shift + window``): (stop - start, num_mel_bins).

    Kaldi frames (``snip_edges=True``) are independent: each removes its own DC offset before
    pre-emphasis and windowing, and no per-utterance mean is subtracted (``subtract_mean=False``),
    so the piece's own mean removal changes nothing but rounding: pass a waveform whose mean is
    already removed to get the whole-waveform frames up to float rounding. ``device``: where the
    samples are moved and the frames computed (None: the waveform's device)."""
    if not (0 <= start < stop <= num_frames(waveform.shape[-1], sr, frame_shift)):
        raise ValueError(f"frames [{start}, {stop}) are not within the waveform's "
                         f"{num_frames(waveform.shape[-1], sr, frame_shift)} frames")
    window, shift = _frame_sizes(sr, frame_shift)
    piece = waveform[..., start * shift:(stop - 1) * shift + window]
    return wav2fbank(piece if device is None else piece.to(device), sr, num_mel_bins, None, frame_shift)


class ChunkedFbank:
    """The normalised fbank of one long waveform as a frame source: ``frames(start, stop)`` ->
    (1, stop - start, num_mel_bins) float32 on ``device``, computed there from the samples those
    frames cover; the whole fbank is never held (the lean DASS path reads it chunk by chunk).

    waveform (samples,) or (1, samples) at ``sr``, anywhere (host memory is fine: each piece is
    moved to ``device``); its mean is removed once, as :func:`wav2fbank` does; frames equal
    ``normalize_fbank(wav2fbank(waveform, target_length=None), mean, std)`` up to float rounding
    (``mean=None``: not normalised). ``num_frames``, ``num_mel_bins``, ``batch_size`` (1)."""

    batch_size = 1

    def __init__(self, waveform, mean=AUDIOSET_MEAN, std=AUDIOSET_STD, num_mel_bins=128, sr=SAMPLE_RATE,
                 device=None, frame_shift=FRAME_SHIFT_MS):
        if not isinstance(waveform, torch.Tensor):
            raise TypeError(f"waveform must be a torch.Tensor, got {type(waveform).__name__}")
        if waveform.dim() == 2 and waveform.shape[0] == 1:
            waveform = waveform[0]
        if waveform.dim() != 1:
            raise ValueError(f"waveform must be (samples,) or (1, samples) mono, got shape {tuple(waveform.shape)}")
        self.num_frames = num_frames(waveform.shape[0], sr, frame_shift)
        if self.num_frames < 1:
            raise ValueError(f"waveform has {waveform.shape[0]} samples, fewer than one "
                             f"{FRAME_LENGTH_MS:g} ms frame at {sr} Hz")
        if not torch.isfinite(waveform).all():
            raise ValueError("waveform contains NaN or infinite samples")
        if mean is not None and not std > 0:
            raise ValueError(f"std must be positive, got {std!r}")
        waveform = waveform.float()
        self.waveform = waveform - waveform.mean()
        self.mean, self.std, self.num_mel_bins, self.sr, self.frame_shift = mean, std, num_mel_bins, sr, frame_shift
        self.device = torch.device(device) if device is not None else waveform.device

    def __len__(self):
        return self.num_frames

    def frames(self, start, stop):
        """Frames [start, stop) -> (1, stop - start, num_mel_bins) float32 on ``device``."""
        fb = fbank_frames(self.waveform, start, stop, self.sr, self.num_mel_bins, self.frame_shift, self.device)
        return (fb if self.mean is None else normalize_fbank(fb, self.mean, self.std))[None]
