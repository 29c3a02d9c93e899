"""The classifier interface every model family shares (timm's conventions).

- ``forward_features(x (B, T, F))``: unpooled features, what the backbone emits (a grid
  (B, D, F', T') for DASS, the token sequence (B, L, D) with its prefix tokens for the others);
- ``forward_head(features, pre_logits=False)``: pooling (and the norm the head applies before
  its Linear) -> (B, D), then the Linear -> (B, num_classes); ``forward(x)`` is exactly
  ``forward_head(forward_features(x))``;
- ``forward_grid(x)``: the one token/grid output of every family, patch features on the
  (frequency, time) grid (B, D, F', T'), prefix tokens dropped;
- ``forward_frames(x, pre_logits=False)``: frame-level logits (B, T', num_classes), the grid
  pooled over frequency and put through the head; ``frame_rate`` frames per second of audio;
  ``frame_head(features, input_shape)`` gives them from features already computed;
- ``num_features`` (D), ``num_classes``, ``get_classifier()``, ``reset_classifier(n)``.

A family implements ``forward_features``, ``_pre_logits(features) -> (B, D)``,
``_to_grid(features, input_shape) -> (B, D, F', T')`` and ``frame_hop`` (fbank frames per
output frame), and names its final Linear in ``classifier_path``.
"""
import dataclasses

import torch.nn as nn

from ..data.frames import FRAMES_PER_SECOND
from .layers import trunc_normal_


class AudioClassifier:
    """Mixin for ``nn.Module`` classifiers of fbank input (B, T, F); see the module docstring."""

    classifier_path = "head"   # dotted path of the final Linear (or Identity when num_classes == 0)
    frame_hop = 1              # fbank frames per output frame of forward_frames

    # ------------------------------------------------------------- family hooks
    def _pre_logits(self, features):
        """features -> pooled embedding (B, D) (what the Linear sees)."""
        raise NotImplementedError

    def _to_grid(self, features, input_shape):
        """features of an input of shape (B, T, F) -> grid (B, D, F', T')."""
        raise NotImplementedError

    def _frame_pre_logits(self, grid):
        """grid (B, D, F', T') -> per-frame embedding (B, T', D): the mean over frequency."""
        return grid.mean(dim=2).transpose(1, 2)

    # ------------------------------------------------------------- the interface
    @property
    def num_features(self):
        """Width D of the pooled embedding the classifier reads."""
        return self._num_features

    @property
    def num_classes(self):
        return self.cfg.num_classes

    @property
    def frame_rate(self):
        """Frames per second of audio that :meth:`forward_frames` returns (100 fbank frames/s)."""
        return FRAMES_PER_SECOND / self.frame_hop

    def get_classifier(self):
        return self.get_submodule(self.classifier_path)

    def reset_classifier(self, num_classes, global_pool=None):
        """Replace the final Linear by a freshly initialised one with ``num_classes`` outputs
        (an Identity for 0); ``global_pool`` also sets the pooling (DASS, SSAM, SSAST)."""
        if not isinstance(num_classes, int) or num_classes < 0:
            raise ValueError(f"num_classes must be an int >= 0, got {num_classes!r}")
        if global_pool is not None:
            self._set_pool(global_pool)
        old = self.get_classifier()
        ref = next(old.parameters(), None)
        head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        if num_classes > 0:
            trunc_normal_(head.weight, std=0.02)
            nn.init.zeros_(head.bias)
            if ref is not None:
                head.to(device=ref.device, dtype=ref.dtype)
        parent, _, name = self.classifier_path.rpartition(".")
        setattr(self.get_submodule(parent) if parent else self, name, head)
        self.cfg = dataclasses.replace(self.cfg, num_classes=num_classes)

    def _set_pool(self, mode):
        raise ValueError(f"{type(self).__name__} has a fixed pooling; global_pool must be None")

    def forward_head(self, x, pre_logits=False):
        """features (from :meth:`forward_features`) -> logits (B, num_classes), or the pooled
        embedding (B, num_features) with ``pre_logits``."""
        x = self._pre_logits(x)
        return x if pre_logits else self.get_classifier()(x)

    def forward(self, x):
        """fbank (B, T, F) -> logits (B, num_classes)."""
        return self.forward_head(self.forward_features(x))

    def forward_grid(self, x):
        """fbank (B, T, F) -> patch features on the (frequency, time) grid (B, D, F', T')."""
        return self._to_grid(self.forward_features(x), x.shape)

    def forward_frames(self, x, pre_logits=False):
        """fbank (B, T, F) -> frame-level logits (B, T', num_classes) (or embeddings
        (B, T', num_features) with ``pre_logits``); output frame i starts at input frame
        ``i * frame_hop``, i.e. ``i / frame_rate`` seconds."""
        return self.frame_head(self.forward_features(x), x.shape, pre_logits)

    def frame_head(self, features, input_shape, pre_logits=False):
        """:meth:`forward_frames` from the features of an input of shape (B, T, F), so one
        forward gives both clip (:meth:`forward_head`) and frame outputs."""
        frames = self._frame_pre_logits(self._to_grid(features, input_shape))
        return frames if pre_logits else self.get_classifier()(frames)


def check_input(model, x):
    """Raise ValueError unless ``x`` is a (B, T, F) fbank batch."""
    if x.dim() != 3:
        raise ValueError(f"{type(model).__name__} expects (B, T, F) input, got shape {tuple(x.shape)}")


__all__ = ["AudioClassifier", "check_input"]
