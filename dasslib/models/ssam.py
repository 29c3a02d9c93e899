"""SSAM: self-supervised Audio Mamba (Yadav & Tan).

A :class:`~dasslib.models.masked.MaskedPatchModel` whose encoder is 12 residual Mamba blocks
(expand 3, d_state 24, d_conv 4; LayerNorm eps 1e-6, residual in fp32) and a final LayerNorm
``encoder_norm``. ``bimamba="bi_bi"`` swaps in Vim blocks (the paper's bidirectional ablation).
Keys: ``patch_embed.proj.*``, ``cls_token``, ``mask_token``, ``blocks.i.{norm,mixer}.*``,
``encoder_norm.*``, ``pred.{0,2}.*``, ``head.*`` (the official fixed ``pos_embed`` buffer is
recomputed for every input size instead of stored).
"""
from dataclasses import dataclass

import torch

from dasslib.scans import BACKENDS

from .mamba_encoder import init_mamba_weights, make_mamba_blocks, make_norm, run_mamba_blocks
from .mamba_mixer import BIMAMBA
from .masked import MaskedPatchModel, masked_config_check
from .registry import check_choice, register


@dataclass(frozen=True)
class SSAMConfig:
    """SSAM hyper-parameters (defaults: SSAM-Tiny, (4, 16) time x frequency patches)."""
    embed_dim: int = 192
    depth: int = 12
    patch_size: tuple = (4, 16)
    d_state: int = 24
    d_conv: int = 4
    expand: int = 3
    bimamba: str = "none"
    divide_out: bool = True
    rms_norm: bool = False
    norm_eps: float = 1e-6
    residual_in_fp32: bool = True
    drop_path: float = 0.0
    mask_ratio: float = 0.5
    pool: str = "mean"
    num_classes: int = 527
    scan_backend: str = "auto"

    def __post_init__(self):
        masked_config_check(self)
        check_choice("bimamba", self.bimamba, BIMAMBA)
        check_choice("scan_backend", self.scan_backend, BACKENDS)


class SSAM(MaskedPatchModel):
    """SSAM: forward(x (B, T, F)) -> logits; forward_pretrain / forward_features as the base."""

    official_prefixes = ("module.",)
    official_ignored = (r"pos_embed",)

    def __init__(self, cfg: SSAMConfig):
        super().__init__(cfg)
        rates = torch.linspace(0, cfg.drop_path, cfg.depth, device="cpu").tolist()
        self.blocks = make_mamba_blocks(
            cfg.depth, cfg.embed_dim, rates, rms_norm=cfg.rms_norm, norm_eps=cfg.norm_eps,
            residual_in_fp32=cfg.residual_in_fp32, d_state=cfg.d_state, d_conv=cfg.d_conv,
            expand=cfg.expand, bimamba=cfg.bimamba, divide_out=cfg.divide_out,
            scan_backend=cfg.scan_backend)
        self.encoder_norm = make_norm(cfg.embed_dim, False, cfg.norm_eps)
        init_mamba_weights(self, cfg.depth)

    def encode(self, x):
        """(B, 1 + N, D) -> (B, 1 + N, D)."""
        return run_mamba_blocks(self.blocks, x, self.encoder_norm)


_WIDTHS = {"tiny": 192, "small": 384, "base": 768}
for _name, _dim in _WIDTHS.items():
    register(f"ssam_{_name}", SSAM, SSAMConfig(embed_dim=_dim))
