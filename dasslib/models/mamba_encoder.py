"""Residual Mamba blocks as Vim / AuM / SSAM stack them (add -> norm -> mixer).

Each block receives the previous mixer output and the running residual:
``residual = residual + drop_path(hidden)``; ``hidden = mixer(norm(residual))``. After the last
block ``final_norm(residual + drop_path(hidden))`` gives the encoder output. The residual stream
is kept in float32 (``residual_in_fp32``), as in the official models.
"""
import math
from functools import partial

import torch
import torch.nn as nn

from .layers import DropPath
from .mamba_mixer import MambaMixer


def make_norm(dim, rms_norm, eps):
    """RMSNorm (key ``weight``) or LayerNorm (``weight``, ``bias``) over the last axis."""
    return nn.RMSNorm(dim, eps=eps) if rms_norm else nn.LayerNorm(dim, eps=eps)


class MambaBlock(nn.Module):
    """norm + Mamba mixer with a pre-norm residual; keys ``norm.*``, ``mixer.*``."""

    def __init__(self, dim, mixer, norm, drop_path=0.0, residual_in_fp32=True):
        super().__init__()
        self.mixer = mixer
        self.norm = norm
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.residual_in_fp32 = residual_in_fp32

    def forward(self, hidden, residual=None):
        """hidden, residual (B, L, D) -> (mixer output, updated residual)."""
        residual = hidden if residual is None else residual + self.drop_path(hidden)
        hidden = self.mixer(self.norm(residual.to(self.norm.weight.dtype)))
        if self.residual_in_fp32:
            residual = residual.float()
        return hidden, residual


def make_mamba_blocks(depth, dim, drop_paths, *, rms_norm, norm_eps, residual_in_fp32=True,
                      **mixer_kw):
    """nn.ModuleList of ``depth`` MambaBlocks; ``drop_paths`` gives each block's rate."""
    return nn.ModuleList(
        MambaBlock(dim, MambaMixer(dim, **mixer_kw), make_norm(dim, rms_norm, norm_eps),
                   drop_path=drop_paths[i], residual_in_fp32=residual_in_fp32)
        for i in range(depth))


def run_mamba_blocks(blocks, x, final_norm, final_drop_path=None):
    """x (B, L, D) through ``blocks`` then ``final_norm(residual + hidden)`` -> (B, L, D)."""
    hidden, residual = x, None
    for blk in blocks:
        hidden, residual = blk(hidden, residual)
    if residual is not None:
        hidden = residual + (final_drop_path(hidden) if final_drop_path is not None else hidden)
    return final_norm(hidden.to(final_norm.weight.dtype))


def _init_module(module, n_layer):
    if isinstance(module, nn.Linear) and module.bias is not None:
        if not getattr(module.bias, "_no_reinit", False):
            nn.init.zeros_(module.bias)
    if isinstance(module, MambaMixer):
        # GPT-2 style: out_proj re-drawn with the default Linear init, scaled by 1/sqrt(n_layer)
        nn.init.kaiming_uniform_(module.out_proj.weight, a=math.sqrt(5))
        with torch.no_grad():
            module.out_proj.weight /= math.sqrt(n_layer)


def init_mamba_weights(model, n_layer):
    """The official Mamba init pass (``_init_weights`` of Vim / AuM / SSAM) over ``model``:
    zero every Linear bias except dt_proj's, rescale each mixer's out_proj by 1/sqrt(n_layer)."""
    model.apply(partial(_init_module, n_layer=n_layer))


__all__ = ["MambaBlock", "make_norm", "make_mamba_blocks", "run_mamba_blocks", "init_mamba_weights"]
