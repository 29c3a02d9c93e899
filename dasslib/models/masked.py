"""Masked spectrogram-patch models (SSAM, and the SSAST baseline): shared patching, masking,
reconstruction head, feature extraction and linear classifier.

Input (B, T, F) log-mel (default 200 x 80) -> (B, 1, T, F) -> non-overlapping (pt, pf) patches
(default 4 x 16) in time-major order (index t * f_dim + f; T and F are cropped to multiples of
the patch) -> + fixed 2-D sin-cos table (first D/2 channels: frequency index, last D/2: time
index; the CLS slot gets zeros) -> CLS token prepended -> encoder (subclass) -> encoder_norm.

Pretraining (:meth:`forward_pretrain`): a random ``mask_ratio`` of patches (unstructured) is
replaced by the learnable ``mask_token`` (after the positional embedding was added, as the
official code does); ``pred`` (Linear, GELU, Linear) reconstructs every patch.
"""
import torch
import torch.nn as nn

from .interface import AudioClassifier
from .layers import PatchEmbed, sincos_table_2d

POOLS = ("mean", "cls")


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def kept_patches(n: int, ratio: float) -> int:
    """Patches left unmasked out of ``n`` at ``mask_ratio`` ``ratio``, by the official SSAM integer arithmetic
    ``int(n * (100 - ratio * 100) / 100)``: ``int(n * (1 - ratio))`` keeps one fewer where ``1 - ratio``
    rounds down (1 - 0.8 = 0.19999999999999996: 50 of 250 official, 49)."""
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"mask_ratio must be in [0, 1), got {ratio}")
    return int(n * (100 - ratio * 100) / 100)


def random_patch_mask(batch, n, ratio, generator=None, device=None):
    """Unstructured mask (batch, n) bool, True = masked: exactly n - `kept_patches`(n, ratio) patches
    per row, chosen uniformly (argsort of uniform noise, as the official code).
    ``generator`` (optional) draws the noise on its own device."""
    keep = kept_patches(n, ratio)
    noise_device = generator.device if generator is not None else device
    noise = torch.rand(batch, n, generator=generator, device=noise_device).to(device)
    order = torch.argsort(noise, dim=1)
    mask = torch.zeros(batch, n, dtype=torch.bool, device=device)
    return mask.scatter(1, order[:, keep:], True)


class MaskedPatchModel(AudioClassifier, nn.Module):
    """Base class; subclasses set ``self.blocks``/``self.encoder_norm`` and implement
    :meth:`encode` ((B, 1 + N, D) -> (B, 1 + N, D), final norm included). The classifier
    interface of :mod:`dasslib.models.interface` (features: the encoded [CLS, patches]
    sequence; pre-logits: patch mean or CLS, ``pool``), except :meth:`forward_frames`."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        d = cfg.embed_dim
        self.patch = _pair(cfg.patch_size)
        if d % 4:
            raise ValueError(f"embed_dim must be divisible by 4 (2-D sin-cos table), got {d}")
        self.patch_embed = PatchEmbed(1, d, self.patch, self.patch)
        nn.init.xavier_uniform_(self.patch_embed.proj.weight)
        nn.init.zeros_(self.patch_embed.proj.bias)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d).normal_(std=0.02))
        self.mask_token = nn.Parameter(torch.zeros(1, 1, d).normal_(std=0.02))
        self.pred = nn.Sequential(nn.Linear(d, d), nn.GELU(),
                                  nn.Linear(d, self.patch[0] * self.patch[1]))
        self.head = nn.Linear(d, cfg.num_classes) if cfg.num_classes > 0 else nn.Identity()
        self._num_features = d
        self.frame_hop = self.patch[0]
        self.pool = cfg.pool

    def _set_pool(self, mode):
        if mode not in POOLS:
            raise ValueError(f"unknown pool {mode!r}; choose one of {POOLS}")
        self.pool = mode

    def encode(self, x):
        raise NotImplementedError

    def _crop(self, x):
        if x.dim() != 3:
            raise ValueError(f"{type(self).__name__} expects (B, T, F) input, got shape "
                             f"{tuple(x.shape)}")
        pt, pf = self.patch
        t, f = (x.shape[1] // pt) * pt, (x.shape[2] // pf) * pf
        if t == 0 or f == 0:
            raise ValueError(f"input {tuple(x.shape[1:])} (T, F) is smaller than one patch "
                             f"{self.patch}")
        return x[:, :t, :f]

    def patchify(self, x):
        """x (B, T, F) -> patch targets (B, N, pt * pf), time-major patches, each flattened
        (time within patch, frequency within patch)."""
        x = self._crop(x)
        (pt, pf), b = self.patch, x.shape[0]
        tg, fg = x.shape[1] // pt, x.shape[2] // pf
        x = x.reshape(b, tg, pt, fg, pf).permute(0, 1, 3, 2, 4)
        return x.reshape(b, tg * fg, pt * pf)

    def embed(self, x):
        """x (B, T, F) -> patch tokens + positions (B, N, D), CLS token + position (B, 1, D),
        grid (t_dim, f_dim)."""
        tokens, grid = self.patch_embed(self._crop(x).unsqueeze(1))
        pos = sincos_table_2d(grid[0], grid[1], self.cfg.embed_dim, device=tokens.device)
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)   # the CLS slot's position is 0
        return tokens + pos, cls, grid

    def forward_pretrain(self, x, mask_ratio=None, generator=None):
        """Masked reconstruction. Returns dict(pred (B, N, P), target (B, N, P),
        mask (B, N) bool, True where the patch was masked); P = pt * pf; target keeps the
        input dtype (pred follows autocast)."""
        ratio = self.cfg.mask_ratio if mask_ratio is None else mask_ratio
        target = self.patchify(x)
        tokens, cls, _ = self.embed(x)
        b, n, _ = tokens.shape
        mask = random_patch_mask(b, n, ratio, generator=generator, device=tokens.device)
        tokens = torch.where(mask[..., None], self.mask_token.to(tokens.dtype), tokens)
        h = self.encode(torch.cat([cls.to(tokens.dtype), tokens], dim=1))
        pred = self.pred(h[:, 1:])
        return dict(pred=pred, target=target, mask=mask)

    def forward_features(self, x):
        """x (B, T, F) -> encoded tokens (B, 1 + N, D) without masking: CLS, then the patches
        in time-major order."""
        tokens, cls, _ = self.embed(x)
        return self.encode(torch.cat([cls.to(tokens.dtype), tokens], dim=1))

    def _pre_logits(self, h):
        """Mean of the patch tokens (``pool="mean"``) or the CLS token (``pool="cls"``)."""
        return h[:, 1:].mean(dim=1) if self.pool == "mean" else h[:, 0]

    def _to_grid(self, h, input_shape):
        tg, fg = input_shape[1] // self.patch[0], input_shape[2] // self.patch[1]
        return h[:, 1:].transpose(1, 2).unflatten(2, (tg, fg)).transpose(2, 3)

    def forward_frames(self, x):
        """x (B, T, F) -> per-time-step embeddings (B, t_dim, f_dim * D): the patch tokens of
        each time step concatenated over frequency (the HEAR timestamp-embedding layout; unlike
        the other families' frame logits), ``frame_rate`` steps per second."""
        grid = self.forward_grid(x)                                   # (B, D, f, t)
        return grid.permute(0, 3, 2, 1).flatten(2)

def masked_config_check(cfg):
    """Shared validation for SSAM / SSAST configs."""
    if cfg.pool not in POOLS:
        raise ValueError(f"unknown pool {cfg.pool!r}; choose one of {POOLS}")
    object.__setattr__(cfg, "patch_size", _pair(cfg.patch_size))
    if not 0.0 <= cfg.mask_ratio < 1.0:
        raise ValueError(f"mask_ratio must be in [0, 1), got {cfg.mask_ratio}")
    if any(p < 1 for p in _pair(cfg.patch_size)):
        raise ValueError(f"patch_size must be positive, got {cfg.patch_size}")

