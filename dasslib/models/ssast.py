"""SSAST-style transformer baseline for the SSAM comparisons.

The same patching, masking, reconstruction head and features as SSAM
(:class:`~dasslib.models.masked.MaskedPatchModel`), with AST's timm transformer blocks
(qkv bias, LayerNorm eps 1e-6, MLP ratio 4) and a final LayerNorm ``encoder_norm``.
Sizes: Tiny 192 / 3 heads, Small 384 / 6, Base 768 / 12, depth 12.
"""
from dataclasses import dataclass

import torch

from .ast import ATTNS, make_transformer_blocks
from .masked import MaskedPatchModel, masked_config_check
from .registry import check_choice, register


@dataclass(frozen=True)
class SSASTConfig:
    """SSAST-baseline hyper-parameters (defaults: Tiny)."""
    embed_dim: int = 192
    depth: int = 12
    num_heads: int = 3
    mlp_ratio: float = 4.0
    patch_size: tuple = (4, 16)
    attn: str = "sdpa"
    drop_path: float = 0.0
    mask_ratio: float = 0.5
    pool: str = "mean"
    num_classes: int = 527

    def __post_init__(self):
        masked_config_check(self)
        check_choice("attn", self.attn, ATTNS)
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} is not divisible by num_heads "
                             f"{self.num_heads}")


class SSAST(MaskedPatchModel):
    """Transformer counterpart of :class:`~dasslib.models.ssam.SSAM`."""

    official_prefixes = ("module.",)
    official_ignored = (r"pos_embed",)

    def __init__(self, cfg: SSASTConfig):
        super().__init__(cfg)
        self.blocks = make_transformer_blocks(cfg.depth, cfg.embed_dim, cfg.num_heads,
                                              cfg.mlp_ratio, cfg.drop_path, cfg.attn)
        self.encoder_norm = torch.nn.LayerNorm(cfg.embed_dim, eps=1e-6)

    def encode(self, x):
        """(B, 1 + N, D) -> (B, 1 + N, D)."""
        for blk in self.blocks:
            x = blk(x)
        return self.encoder_norm(x)


_SIZES = {"tiny": (192, 3), "small": (384, 6), "base": (768, 12)}
for _name, (_dim, _heads) in _SIZES.items():
    register(f"ssast_{_name}", SSAST, SSASTConfig(embed_dim=_dim, num_heads=_heads))
