"""AuM: Audio Mamba (Erol et al.), bidirectional Mamba over spectrogram patches.

Input (B, T, F) -> (B, 1, F, T) -> 16x16 patches (strides configurable) -> tokens in f-major
order -> + learned positional embedding (the CLS slot is entry 0 of the table) -> CLS token
inserted at the head (0), middle (N // 2) or tail (N) -> 24 residual Mamba blocks (RMSNorm,
residual in fp32) -> final RMSNorm ``norm_f`` -> the CLS token (or the token mean when there is
no CLS token) -> Linear ``head``.

Block variants (``bimamba``): ``"none"`` = Fo-Fo, ``"fo_bi"`` = Fo-Bi (default), ``"bi_bi"``.
Other input lengths resize the positional grid (bilinear with antialiasing, as the official
FlexiPosEmbed resampling). Keys follow the official AudioMamba: ``patch_embed.proj.*``,
``cls_token``, ``pos_embed.pos_embed``, ``layers.i.{norm,mixer}.*``, ``norm_f.weight``, ``head.*``.
"""
from dataclasses import dataclass

import torch
import torch.nn as nn

from dasslib.scans import BACKENDS

from .interface import AudioClassifier, check_input
from .layers import POS_RESIZES, DropPath, PatchEmbed, lecun_normal_, resize_pos_grid, trunc_normal_
from .mamba_encoder import init_mamba_weights, make_mamba_blocks, make_norm, run_mamba_blocks
from .mamba_mixer import BIMAMBA
from .registry import check_choice, register

CLS_POSITIONS = ("head", "mid", "tail", "none")


@dataclass(frozen=True)
class AuMConfig:
    """AuM hyper-parameters (defaults: AuM-Base, Fo-Bi, middle CLS, 16x16 patches, 128 x 1024)."""
    embed_dim: int = 768
    depth: int = 24
    patch_size: int = 16
    fstride: int = 16
    tstride: int = 16
    input_fdim: int = 128
    input_tdim: int = 1024
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    bimamba: str = "fo_bi"
    divide_out: bool = True
    cls_position: str = "mid"
    rms_norm: bool = True
    norm_eps: float = 1e-5
    residual_in_fp32: bool = True
    drop_path: float = 0.0
    pos_resize: str = "bilinear_aa"
    num_classes: int = 527
    scan_backend: str = "auto"

    def __post_init__(self):
        check_choice("bimamba", self.bimamba, BIMAMBA)
        check_choice("pos_resize", self.pos_resize, POS_RESIZES)
        check_choice("cls_position", self.cls_position, CLS_POSITIONS)
        check_choice("scan_backend", self.scan_backend, BACKENDS)


class GridPosEmbed(nn.Module):
    """Learned table ``pos_embed`` (1, n_prefix + f*t, D) for a (f, t) grid, resizable."""

    def __init__(self, n_prefix, grid, dim, resize_mode):
        super().__init__()
        self.n_prefix, self.grid, self.resize_mode = n_prefix, tuple(grid), resize_mode
        self.pos_embed = nn.Parameter(torch.zeros(1, n_prefix + grid[0] * grid[1], dim))
        trunc_normal_(self.pos_embed, std=0.02)

    def forward(self, grid):
        """-> (prefix (1, n_prefix, D), patches (1, f*t, D)) for ``grid``."""
        k = self.n_prefix
        return self.pos_embed[:, :k], resize_pos_grid(self.pos_embed[:, k:], self.grid, grid,
                                                      self.resize_mode)


class AuM(AudioClassifier, nn.Module):
    """AuM classifier: forward(x (B, T, F)) -> logits (B, num_classes); the classifier
    interface of :mod:`dasslib.models.interface` (features: the normalised sequence of patch
    tokens with the CLS token at :meth:`cls_index`)."""

    official_prefixes = ("module.",)
    official_ignored = ()

    def __init__(self, cfg: AuMConfig):
        super().__init__()
        self.cfg = cfg
        d, p = cfg.embed_dim, cfg.patch_size
        self.has_cls = cfg.cls_position != "none"
        if self.has_cls:
            self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.head = nn.Linear(d, cfg.num_classes) if cfg.num_classes > 0 else nn.Identity()
        self._num_features = d
        self.frame_hop = cfg.tstride
        rates = torch.linspace(0, cfg.drop_path, cfg.depth, device="cpu").tolist()
        # official: block i gets rate [0] + rates, i.e. rates shifted by one block
        self.layers = make_mamba_blocks(
            cfg.depth, d, [0.0] + rates, rms_norm=cfg.rms_norm, norm_eps=cfg.norm_eps,
            residual_in_fp32=cfg.residual_in_fp32, d_state=cfg.d_state, d_conv=cfg.d_conv,
            expand=cfg.expand, bimamba=cfg.bimamba, divide_out=cfg.divide_out,
            scan_backend=cfg.scan_backend)
        self.norm_f = make_norm(d, cfg.rms_norm, cfg.norm_eps)
        self.drop_path = DropPath(cfg.drop_path) if cfg.drop_path > 0 else nn.Identity()
        if isinstance(self.head, nn.Linear):
            trunc_normal_(self.head.weight, std=0.02)
        if self.has_cls:
            trunc_normal_(self.cls_token, std=0.02)
        init_mamba_weights(self, cfg.depth)
        # created after the Mamba init pass, as in the official model
        self.patch_embed = PatchEmbed(1, d, (p, p), (cfg.fstride, cfg.tstride))
        lecun_normal_(self.patch_embed.proj.weight)
        nn.init.zeros_(self.patch_embed.proj.bias)
        grid = self.patch_embed.grid(cfg.input_fdim, cfg.input_tdim)
        self.pos_embed = GridPosEmbed(int(self.has_cls), grid, d, cfg.pos_resize)

    def cls_index(self, n_patches):
        """Index of the CLS token in a sequence of ``n_patches`` patches (+1 CLS)."""
        return {"head": 0, "mid": n_patches // 2, "tail": n_patches, "none": None}[
            self.cfg.cls_position]

    def forward_features(self, x):
        """x (B, T, F) -> normalised tokens (B, f*t (+1 CLS), D), patches in f-major order."""
        check_input(self, x)
        tokens, grid = self.patch_embed(x.unsqueeze(1).transpose(2, 3))
        pos_prefix, pos = self.pos_embed(grid)
        tokens = tokens + pos
        if self.has_cls:
            i = self.cls_index(tokens.shape[1])
            cls = (self.cls_token + pos_prefix).expand(tokens.shape[0], -1, -1).to(tokens.dtype)
            tokens = torch.cat([tokens[:, :i], cls, tokens[:, i:]], dim=1)
        return run_mamba_blocks(self.layers, tokens, self.norm_f, self.drop_path)

    def _pre_logits(self, h):
        """The CLS token (B, D), or the token mean without one."""
        return h[:, self.cls_index(h.shape[1] - 1)] if self.has_cls else h.mean(dim=1)

    def _to_grid(self, h, input_shape):
        f, t = self.patch_embed.grid(input_shape[2], input_shape[1])
        if self.has_cls:
            i = self.cls_index(f * t)
            h = torch.cat([h[:, :i], h[:, i + 1:]], dim=1)
        return h.transpose(1, 2).unflatten(2, (f, t))

_WIDTHS = {"tiny": 192, "small": 384, "base": 768}
for _name, _dim in _WIDTHS.items():
    register(f"aum_{_name}", AuM, AuMConfig(embed_dim=_dim))
