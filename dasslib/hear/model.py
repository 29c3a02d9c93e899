"""The HEAR wrapper of a dasslib encoder: front end, per-family frame embeddings, chunking.

A family reads a feature chunk ``(b, T, F)`` into per-step embeddings ``(b, steps, width)``; step
``k`` starts at feature frame ``stride * k`` and covers ``span`` frames, so its timestamp is the
centre ``stride * k + (span - 1) / 2`` (DASS: ``span = 1``, the centre of the strided convs'
receptive field). Clips longer than ``chunk_frames`` are cut into chunks (the last one padded
with the front end's ``pad_value``), every chunk is encoded on its own, the steps are
concatenated over chunks and the steps that start in the padding are dropped (the official SSAM
wrapper's rule).
"""
import math

import torch
import torch.nn as nn

from dasslib.data.fbank import SAMPLE_RATE
from dasslib.models import AST, DASS, AuM
from dasslib.models.masked import MaskedPatchModel

from .frontend import KaldiFbank, OfficialLogMel

__all__ = ["HearModel", "wrap", "check_audio", "LAYOUTS", "FRONTENDS", "MIN_SAMPLES"]

LAYOUTS = ("official", "dasslib")
FRONTENDS = ("official", "kaldi")
MIN_SAMPLES = 400   # one 25 ms frame at 16 kHz
_DEFAULT = "default"


def check_audio(audio, sample_rate=None) -> torch.Tensor:
    """HEAR input -> ``(n_sounds, n_samples)`` float32; TypeError / ValueError naming the problem."""
    if sample_rate is not None and sample_rate != SAMPLE_RATE:
        raise ValueError(f"audio must be sampled at {SAMPLE_RATE} Hz, got {sample_rate}; resample "
                         "first (torchaudio.functional.resample)")
    if not isinstance(audio, torch.Tensor):
        raise TypeError(f"audio must be a torch.Tensor (n_sounds, n_samples), got "
                        f"{type(audio).__name__}")
    if audio.dtype != torch.float32:
        raise TypeError(f"audio must be float32 (HEAR API), got {audio.dtype}; convert with .float()")
    if audio.dim() == 1:
        audio = audio[None]
    if audio.dim() != 2:
        raise ValueError(f"audio must be (n_sounds, n_samples) or (n_samples,), got shape "
                         f"{tuple(audio.shape)}")
    if audio.shape[0] == 0 or audio.shape[1] == 0:
        raise ValueError(f"audio is empty: shape {tuple(audio.shape)}")
    if audio.shape[1] < MIN_SAMPLES:
        raise ValueError(f"audio has {audio.shape[1]} samples, fewer than one 25 ms frame "
                         f"({MIN_SAMPLES} samples at {SAMPLE_RATE} Hz)")
    if not torch.isfinite(audio).all():
        raise ValueError("audio contains NaN or infinite samples")
    return audio


# ------------------------------------------------------------------ families
def _time_steps(grid):
    """Patch grid (b, D, f, t) -> (b, t, f * D): each time step's tokens concatenated over f."""
    return grid.permute(0, 3, 2, 1).flatten(2)


def _masked_frames(model, x, layout):
    # SSAM / SSAST tokens are time-major (t, f). The official wrapper reads them as (f t), so
    # its step k joins tokens of several time steps; "dasslib" groups each time step's tokens.
    steps = _time_steps(model.forward_grid(x))                # (b, t, f * D), time-major
    if layout == "dasslib":
        return steps
    b, t, fd = steps.shape
    d = model.cfg.embed_dim
    return steps.reshape(b, fd // d, t, d).transpose(1, 2).reshape(b, t, fd)


def _token_frames(model, x):
    return _time_steps(model.forward_grid(x))                 # AST / AuM: prefix tokens dropped


def _dass_frames(model, x):
    return model.forward_frames(x, pre_logits=True)          # classifier norm, mean over frequency


def _family(model, layout, n_mels):
    """-> (frames(model, x), stride, span, width, default chunk_frames) of an SSAM / SSAST, AST,
    AuM or DASS encoder."""
    if isinstance(model, MaskedPatchModel):
        pt, pf = model.patch
        return (lambda m, x: _masked_frames(m, x, layout), pt, pt,
                (n_mels // pf) * model.cfg.embed_dim, 200)
    if isinstance(model, (AST, AuM)):
        cfg = model.cfg
        fg = model.patch_embed.grid(n_mels, cfg.patch_size)[0]
        return _token_frames, cfg.tstride, cfg.patch_size, fg * cfg.embed_dim, cfg.input_tdim
    return _dass_frames, model.frame_hop, 1, model.cfg.dims[-1], None


# ------------------------------------------------------------------ wrapper
class HearModel(nn.Module):
    """A dasslib encoder behind the HEAR 2021 API (see :mod:`dasslib.hear`). Build with
    :func:`wrap`; ``.to(device)`` moves the encoder and the front end together."""

    sample_rate = SAMPLE_RATE

    def __init__(self, encoder, frontend, frames, stride, span, width, chunk_frames,
                 chunk_batch=64):
        super().__init__()
        self.encoder, self.frontend, self._frames = encoder.eval(), frontend, frames
        self.stride, self.span, self.chunk_frames = stride, span, chunk_frames
        self.chunk_batch = chunk_batch
        self.scene_embedding_size = self.timestamp_embedding_size = width

    @property
    def device(self):
        return next(self.encoder.parameters()).device

    def frame_embeddings(self, feats):
        """Features ``(B, T, F)`` -> (embeddings ``(B, n, width)`` in the encoder's dtype, centre
        of each step in feature frames ``(n,)`` float64)."""
        b, t, f = feats.shape
        chunk = self.chunk_frames or max(t, self.span)
        n = math.ceil(t / chunk)
        x = nn.functional.pad(feats, (0, 0, 0, n * chunk - t), value=self.frontend.pad_value)
        x = x.reshape(b * n, chunk, f)
        h = torch.cat([self._frames(self.encoder, part) for part in x.split(self.chunk_batch)])
        steps = h.shape[1]
        k = torch.arange(n * steps, dtype=torch.float64)
        start = (k // steps) * chunk + (k % steps) * self.stride
        keep = int((start < t).sum())                         # steps that start in the clip
        centre = start[:keep] + (self.span - 1) / 2
        return h.reshape(b, n * steps, -1)[:, :keep], centre

    def timestamp_embeddings(self, audio, sample_rate=None):
        """Audio ``(B, N)`` float32 -> (embeddings ``(B, n, width)`` float32, timestamps in ms
        ``(B, n)`` float32, the centres of the steps)."""
        audio = check_audio(audio, sample_rate).to(self.device)
        with torch.no_grad():
            h, centre = self.frame_embeddings(self.frontend(audio))
        ms = self.frontend.offset_ms + self.frontend.hop_ms * centre
        return h.float(), ms.float().to(h.device).repeat(h.shape[0], 1)

    def scene_embeddings(self, audio, sample_rate=None):
        """Audio ``(B, N)`` float32 -> ``(B, width)`` float32: the mean of the step embeddings."""
        return self.timestamp_embeddings(audio, sample_rate)[0].mean(dim=1)


def wrap(encoder, layout="official", frontend=_DEFAULT, chunk_frames=_DEFAULT,
         num_mel_bins=None, norm_stats=None, chunk_batch=64):
    """A dasslib encoder -> :class:`HearModel`.

    ``layout`` (SSAM / SSAST): ``"official"`` (the official wrapper's (f t) grouping) or
    ``"dasslib"`` (each time step's tokens). ``frontend``: SSAM / SSAST default ``"official"``
    (:class:`OfficialLogMel`), or ``"kaldi"`` (:class:`KaldiFbank`, standardised per clip:
    notebook 02's features); DASS / AST / AuM: ``"kaldi"`` with dataset normalisation
    (``norm_stats=(mean, std)``, AudioSet's by default). ``num_mel_bins``: default 80 for SSAM /
    SSAST, ``cfg.input_fdim`` for AST / AuM, 128 for DASS. ``chunk_frames``: default 200 (SSAM /
    SSAST), ``cfg.input_tdim`` (AST / AuM), whole clips (DASS); ``None`` = whole clips.
    ``chunk_batch``: chunks encoded per call."""
    if not isinstance(encoder, (MaskedPatchModel, AST, AuM, DASS)):
        raise TypeError(f"no HEAR wrapper for {type(encoder).__name__}; expected SSAM, SSAST, "
                        "DASS, AST or AuM")
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; choose one of {LAYOUTS}")
    masked = isinstance(encoder, MaskedPatchModel)
    frontend = ("official" if masked else "kaldi") if frontend == _DEFAULT else frontend
    if frontend not in FRONTENDS or (frontend == "official" and not masked):
        allowed = FRONTENDS if masked else ("kaldi",)
        raise ValueError(f"unknown frontend {frontend!r} for {type(encoder).__name__}; choose one "
                         f"of {allowed}")
    if num_mel_bins is None:
        num_mel_bins = 80 if masked else getattr(encoder.cfg, "input_fdim", 128)
    if frontend == "official":
        front = OfficialLogMel(num_mel_bins)
    elif masked:
        front = KaldiFbank(num_mel_bins, norm="clip")
    else:
        front = KaldiFbank(num_mel_bins, "dataset", *(norm_stats or ()))
    frames, stride, span, width, chunk = _family(encoder, layout, num_mel_bins)
    chunk = chunk if chunk_frames == _DEFAULT else chunk_frames
    if chunk is not None and chunk < span:
        raise ValueError(f"chunk_frames must be at least {span} frames (one step), got {chunk}")
    model = HearModel(encoder, front, frames, stride, span, width, chunk, chunk_batch)
    return model.to(next(encoder.parameters()).device)
