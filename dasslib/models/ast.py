"""AST: Audio Spectrogram Transformer (Gong et al.), DeiT-distilled layout.

Input (B, T, F) -> (B, 1, F, T) -> 16x16 patches with strides (fstride, tstride) -> tokens in
f-major order (index f * t_dim + t) -> [cls, dist, patches] + positional embedding -> timm
Blocks -> LayerNorm -> (cls + dist) / 2 -> mlp_head (LayerNorm, Linear).

Positional embedding: ``"learned"`` (stored for the configured input_fdim x input_tdim grid and
resized to other grids, see :func:`dasslib.models.layers.resize_pos_grid`) or ``"sinusoidal"``
(a fixed table over the flattened positions 0 = cls, 1 = dist, 2 + f * t_dim + t; any length).
Keys equal the official checkpoint keys minus ``module.`` and ``v.``.
"""
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn as nn

from .interface import AudioClassifier, check_input
from .layers import POS_RESIZES, PatchEmbed, resize_pos_grid, sinusoid_table_1d, trunc_normal_, vit_init
from .registry import check_choice, register

POS_EMBEDS = ("learned", "sinusoidal")
ATTNS = ("sdpa", "eager")


@dataclass(frozen=True)
class ASTConfig:
    """AST hyper-parameters (defaults: AST-Base 384, fstride = tstride = 10, 128 x 1024)."""
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    patch_size: int = 16
    fstride: int = 10
    tstride: int = 10
    input_fdim: int = 128
    input_tdim: int = 1024
    pos_embed: str = "learned"
    pos_resize: str = "official"
    attn: str = "sdpa"
    drop_path: float = 0.0
    num_classes: int = 527

    def __post_init__(self):
        check_choice("pos_embed", self.pos_embed, POS_EMBEDS)
        check_choice("attn", self.attn, ATTNS)
        check_choice("pos_resize", self.pos_resize, POS_RESIZES)
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} is not divisible by num_heads "
                             f"{self.num_heads}")


def make_transformer_blocks(depth, dim, num_heads, mlp_ratio=4.0, drop_path=0.0, attn="sdpa"):
    """timm ViT Blocks (qkv bias, LayerNorm eps 1e-6); ``attn="eager"`` turns off SDPA."""
    from timm.models.vision_transformer import Block  # on first use: timm is slow to import

    check_choice("attn", attn, ATTNS)
    rates = torch.linspace(0, drop_path, depth, device="cpu").tolist()
    blocks = nn.ModuleList(
        Block(dim, num_heads, mlp_ratio=mlp_ratio, qkv_bias=True, drop_path=rates[i],
              norm_layer=partial(nn.LayerNorm, eps=1e-6)) for i in range(depth))
    for blk in blocks:
        blk.attn.fused_attn = attn == "sdpa"
    return blocks


class AST(AudioClassifier, nn.Module):
    """AST classifier: forward(x (B, T, F)) -> logits (B, num_classes); the classifier
    interface of :mod:`dasslib.models.interface` (features: the normalised tokens
    [cls, dist, patches]; pre-logits: ``mlp_head.0`` (LayerNorm) of (cls + dist) / 2)."""

    official_prefixes = ("module.", "v.")
    classifier_path = "mlp_head.1"

    def __init__(self, cfg: ASTConfig):
        super().__init__()
        self.cfg = cfg
        d, p = cfg.embed_dim, cfg.patch_size
        self.patch_embed = PatchEmbed(1, d, (p, p), (cfg.fstride, cfg.tstride))
        self.grid = self.patch_embed.grid(cfg.input_fdim, cfg.input_tdim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.dist_token = nn.Parameter(torch.zeros(1, 1, d))
        if cfg.pos_embed == "learned":
            self.pos_embed = nn.Parameter(torch.zeros(1, 2 + self.grid[0] * self.grid[1], d))
            trunc_normal_(self.pos_embed, std=0.02)
        self.blocks = make_transformer_blocks(cfg.depth, d, cfg.num_heads, cfg.mlp_ratio,
                                              cfg.drop_path, cfg.attn)
        self.norm = nn.LayerNorm(d, eps=1e-6)
        self.blocks.apply(vit_init)
        trunc_normal_(self.cls_token, std=0.02)
        trunc_normal_(self.dist_token, std=0.02)
        self.mlp_head = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, cfg.num_classes)
                                      if cfg.num_classes > 0 else nn.Identity())
        self._num_features = d
        self.frame_hop = cfg.tstride

    @property
    def official_ignored(self):
        """Official-checkpoint keys (after prefix stripping) this model does not use: DeiT's
        1000-class heads, and the fixed table when ``pos_embed="sinusoidal"``."""
        ignored = (r"head\..*", r"head_dist\..*")
        return ignored + ((r"pos_embed",) if self.cfg.pos_embed == "sinusoidal" else ())

    def position_table(self, grid, device):
        """Positional embedding (1, 2 + f*t, D) for a token grid (f, t)."""
        if self.cfg.pos_embed == "sinusoidal":
            n = 2 + grid[0] * grid[1]
            return sinusoid_table_1d(n, self.cfg.embed_dim, device=device)[None]
        pos = resize_pos_grid(self.pos_embed[:, 2:], self.grid, grid, self.cfg.pos_resize)
        return torch.cat([self.pos_embed[:, :2], pos], dim=1)

    def forward_features(self, x):
        """x (B, T, F) -> normalised tokens (B, 2 + f*t, D): cls, dist, then the patches in
        f-major order."""
        check_input(self, x)
        tokens, grid = self.patch_embed(x.unsqueeze(1).transpose(2, 3))
        b = tokens.shape[0]
        x = torch.cat([self.cls_token.expand(b, -1, -1), self.dist_token.expand(b, -1, -1),
                       tokens], dim=1)
        x = x + self.position_table(grid, x.device)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)

    def _pre_logits(self, tokens):
        return self.mlp_head[0]((tokens[:, 0] + tokens[:, 1]) / 2)

    def _to_grid(self, tokens, input_shape):
        f, t = self.patch_embed.grid(input_shape[2], input_shape[1])
        return tokens[:, 2:].transpose(1, 2).unflatten(2, (f, t))

    def _frame_pre_logits(self, grid):
        """Patch tokens averaged over frequency, through ``mlp_head.0`` -> (B, T', D)."""
        return self.mlp_head[0](grid.mean(dim=2).transpose(1, 2))

_SIZES = {"tiny": (192, 3), "small": (384, 6), "base": (768, 12)}
for _name, (_dim, _heads) in _SIZES.items():
    register(f"ast_{_name}", AST, ASTConfig(embed_dim=_dim, num_heads=_heads))
