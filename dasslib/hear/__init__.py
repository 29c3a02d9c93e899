"""HEAR 2021 API for dasslib encoders (SSAM, SSAST, DASS, AST, AuM).

The module the HEAR evaluation kit imports (``python -m heareval.embeddings.runner dasslib.hear``)::

    model = load_model("", name="ssam_tiny")                    # or a checkpoint path first
    scene = get_scene_embeddings(audio, model)                   # (n_sounds, scene_embedding_size)
    emb, ts = get_timestamp_embeddings(audio, model)             # (n_sounds, n, size), (n_sounds, n) ms

``audio``: float32 ``(n_sounds, n_samples)`` at 16 kHz, 25 ms to minutes, on any device (moved
to the model's). Outputs are float32 on the model's device. Per family (``D`` the token width):

* SSAM / SSAST (default): the official SSAM HEAR layout. Official log-mel (80 mels, per-clip
  standardisation), 200-frame (2 s) chunks, the last zero-padded; each chunk's patch tokens
  (CLS dropped) regrouped ``(f t) -> t (f d)`` as the official wrapper does, so steps are
  ``f_dim * D`` wide (5 x 192 = 960 for SSAM-Tiny at 80 mels and (4, 16) patches); steps that
  start in the padding are dropped; scene = mean of the steps. The official wrapper reads the
  time-major tokens as frequency-major, so its step ``k`` joins tokens of several time steps;
  ``layout="dasslib"`` groups each time step's tokens instead (time-aligned steps, same width).
  ``frontend="kaldi"`` uses the Kaldi fbank standardised per clip (notebook 02's features).
* AST / AuM: Kaldi fbank (``cfg.input_fdim`` mels, AudioSet normalisation as AST), chunks of
  ``cfg.input_tdim`` frames (the positional grid they were trained on), patch tokens without
  CLS (and AST's distillation token), each time step's tokens concatenated over frequency.
* DASS: Kaldi fbank (128 mels, AudioSet normalisation), whole clips (no positions), the last
  feature grid after the classifier's norm, pooled over frequency: one ``C``-wide step every
  32 frames (320 ms); scene = the mean (DASS's mean-pooled features).

Timestamps are the centres of the steps: the span of feature frames a step covers, on the front
end's frame times (official log-mel: frame ``j`` at ``10 j`` ms; Kaldi: ``10 j + 12.5`` ms). The
official SSAM wrapper reports the starts ``k * duration / n`` instead.
"""
import argparse
import re

import torch

from dasslib.models import create, load_official, read_state_dict
from dasslib.train.checkpoint import load_checkpoint

from .frontend import KaldiFbank, OfficialLogMel, standardize
from .model import FRONTENDS, LAYOUTS, MIN_SAMPLES, HearModel, check_audio, wrap

__all__ = ["load_model", "get_scene_embeddings", "get_timestamp_embeddings", "wrap", "HearModel",
           "check_audio", "standardize", "OfficialLogMel", "KaldiFbank", "LAYOUTS", "FRONTENDS",
           "MIN_SAMPLES", "load_weights"]

# classifier heads a checkpoint may hold; the HEAR encoders are built without them
_HEAD_KEYS = re.compile(r"(head|mlp_head\.1|classifier\.head)\.(weight|bias)")


def load_weights(encoder, path):
    """Load a dasslib checkpoint (a state dict, ``model_final.pt``, a training ``last.pt``) or an
    official one (``module.`` prefixes, the official SSAM ``{model, args, ...}`` file) into a
    head-less encoder; classifier-head keys are skipped, any other mismatch is a ValueError."""
    with torch.serialization.safe_globals([argparse.Namespace]):   # official SSAM files hold args
        state_dict = read_state_dict(load_checkpoint(path))
    report = load_official(encoder, state_dict, strict=False)
    extra = [k for k in report.unexpected if not _HEAD_KEYS.fullmatch(k)]
    if report.missing or report.mismatched or extra:
        raise ValueError(f"checkpoint {path} does not match {type(encoder).__name__}:\n{report}")
    return report


def load_model(model_file_path="", name="ssam_tiny", layout="official", frontend="default",
               chunk_frames="default", num_mel_bins=None, norm_stats=None, device=None,
               **overrides):
    """HEAR ``load_model``: the registry model ``name`` (config ``overrides`` as in
    :func:`dasslib.models.create`) without classifier head, weights from ``model_file_path``
    when given (random otherwise), in eval mode on ``device`` (CPU by default), wrapped by
    :func:`dasslib.hear.wrap` with the other options. Returns a :class:`HearModel`."""
    encoder = create(name, num_classes=0, **overrides)
    if model_file_path:
        load_weights(encoder, model_file_path)
    model = wrap(encoder, layout=layout, frontend=frontend, chunk_frames=chunk_frames,
                 num_mel_bins=num_mel_bins, norm_stats=norm_stats)
    return model.to(device or "cpu")


def get_scene_embeddings(audio, model):
    """``audio (n_sounds, n_samples)`` float32 16 kHz -> ``(n_sounds, scene_embedding_size)``."""
    return model.scene_embeddings(audio)


def get_timestamp_embeddings(audio, model):
    """``audio (n_sounds, n_samples)`` -> (``(n_sounds, n, timestamp_embedding_size)``,
    timestamps in ms ``(n_sounds, n)``, strictly increasing step centres)."""
    return model.timestamp_embeddings(audio)
