"""DASS: the VMamba-style 4-stage SS2D audio classifier (Bhati et al.).

Input (B, T, F) fbank -> (B, 1, F, T) image -> patch embed (/4) -> 4 stages of VSS blocks with
conv downsampling between them (sizes n -> ceil(n/2)) -> LayerNorm2d -> pooling -> Linear.
No positional embedding: any T (and F) works.

State-dict keys equal the official checkpoint keys minus their ``module.v.`` prefix
(``patch_embed.{0,2,5,7}``, ``layers.i.blocks.j.*``, ``layers.i.downsample.{1,3}``,
``classifier.{norm,head}``); :func:`dasslib.models.load_official` strips the prefix.
"""
from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn as nn

from dasslib.scans import BACKENDS
from dasslib.scans.api import triton_kernels_run

from .interface import AudioClassifier
from .layers import DropPath, LayerNorm2d, Mlp2d, TapConv2d, grad_flows, pad_sequential, vit_init
from .pooling import check_pooling, pool_grid
from .registry import check_choice, register
from .ss2d import SS2D


@dataclass(frozen=True)
class DASSConfig:
    """DASS hyper-parameters (defaults: DASS-Small)."""
    depths: tuple = (2, 2, 8, 2)
    dims: tuple = (96, 192, 384, 768)
    drop_path: float = 0.2
    d_state: int = 1
    ssm_ratio: float = 1.0
    dt_rank: object = "auto"
    d_conv: int = 3
    mlp_ratio: float = 4.0
    pooling: str = "mean"
    in_chans: int = 1
    num_classes: int = 527
    scan_backend: str = "auto"
    scan_fp32: bool = True
    fused_scan: bool = True   # inference: SS2D scans the grid in place (no cross-scan copies)
    fused_scan_train: bool = True   # the same in training (H100, B=12: faster, less memory)
    mlp_chunk_elems: int = 1 << 30

    def __post_init__(self):
        object.__setattr__(self, "depths", tuple(self.depths))
        object.__setattr__(self, "dims", tuple(self.dims))
        check_pooling(self.pooling)
        check_choice("scan_backend", self.scan_backend, BACKENDS)
        if len(self.depths) != len(self.dims) or not self.depths:
            raise ValueError(f"depths {self.depths} and dims {self.dims} must be non-empty and "
                             "of equal length")
        if self.dims[0] % 2:
            raise ValueError(f"dims[0] must be even (the stem's first conv has dims[0]/2 "
                             f"channels), got {self.dims[0]}")


class VSSBlock(nn.Module):
    """x + DropPath(SS2D(LN(x))), then x + DropPath(MLP(LN(x))), on (B, C, H, W)."""

    def __init__(self, dim, drop_path, cfg):
        super().__init__()
        self.norm = LayerNorm2d(dim)
        self.op = SS2D(dim, d_state=cfg.d_state, ssm_ratio=cfg.ssm_ratio, dt_rank=cfg.dt_rank,
                       d_conv=cfg.d_conv, conv_bias=False, scan_backend=cfg.scan_backend,
                       scan_fp32=cfg.scan_fp32, fused_scan=cfg.fused_scan,
                       fused_scan_train=cfg.fused_scan_train)
        self.drop_path = DropPath(drop_path)
        self.norm2 = LayerNorm2d(dim)
        self.mlp = Mlp2d(dim, int(dim * cfg.mlp_ratio), chunk_elems=cfg.mlp_chunk_elems)

    def forward(self, x):
        x = x + self.drop_path(self.op(self.norm(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class Classifier(nn.Module):
    """LayerNorm2d -> pooling over the (F, T) grid -> Linear. Keys ``norm.*``, ``head.*``."""

    def __init__(self, dim, num_classes, pooling):
        super().__init__()
        self.norm = LayerNorm2d(dim)
        self.head = nn.Linear(dim, num_classes) if num_classes > 0 else nn.Identity()
        self.pooling = pooling

    def pre_logits(self, x):
        """grid (B, C, F, T) -> normalised, pooled (B, C)."""
        return pool_grid(self.norm(x), self.pooling)

    def forward(self, x):
        return self.head(self.pre_logits(x))


def _stem(in_chans, dim):
    # official "v2" patch embed: conv s2 -> LN -> GELU -> conv s2 -> LN (indices as saved)
    return pad_sequential({0: TapConv2d(in_chans, dim // 2, 3, stride=2, padding=1),
                           2: LayerNorm2d(dim // 2), 4: nn.GELU(),
                           5: nn.Conv2d(dim // 2, dim, 3, stride=2, padding=1),
                           7: LayerNorm2d(dim)}, 8)


def _downsample(dim, out_dim):
    # official "v3" downsampling: conv k3 s2 p1 -> LN
    return pad_sequential({1: nn.Conv2d(dim, out_dim, 3, stride=2, padding=1),
                           3: LayerNorm2d(out_dim)}, 4)


class DASS(AudioClassifier, nn.Module):
    """DASS classifier: forward(x (B, T, F)) -> logits (B, num_classes); the classifier
    interface of :mod:`dasslib.models.interface` (features: the last grid before the norm)."""

    official_prefixes = ("module.", "v.")
    official_ignored = ()
    classifier_path = "classifier.head"

    def __init__(self, cfg: DASSConfig):
        super().__init__()
        self.cfg = cfg
        self.patch_embed = _stem(cfg.in_chans, cfg.dims[0])
        rates = torch.linspace(0, cfg.drop_path, sum(cfg.depths), device="cpu").tolist()
        self.layers = nn.ModuleList()
        start = 0
        for i, (depth, dim) in enumerate(zip(cfg.depths, cfg.dims)):
            blocks = nn.Sequential(*[VSSBlock(dim, rates[start + j], cfg) for j in range(depth)])
            start += depth
            last = i == len(cfg.depths) - 1
            down = nn.Identity() if last else _downsample(dim, cfg.dims[i + 1])
            self.layers.append(nn.Sequential(OrderedDict(blocks=blocks, downsample=down)))
        self.classifier = Classifier(cfg.dims[-1], cfg.num_classes, cfg.pooling)
        self._num_features = cfg.dims[-1]
        self.frame_hop = 4 * 2 ** (len(cfg.dims) - 1)   # stem /4, then /2 per downsampling (ceil)
        self.apply(vit_init)  # Linear (incl. Linear2d: in_proj, out_proj, MLP, head) and LayerNorm

    @property
    def pooling(self):
        return self.classifier.pooling

    @pooling.setter
    def pooling(self, mode):
        self.classifier.pooling = check_pooling(mode)

    def _set_pool(self, mode):
        self.pooling = mode

    def forward_features(self, x):
        """x (B, T, F) -> final feature grid (B, C, ceil(F/32), ceil(T/32)) before the norm."""
        if x.dim() != 3:
            raise ValueError(f"DASS expects (B, T, F) input, got shape {tuple(x.shape)}")
        x = self._stem_forward(x)
        for layer in self.layers:
            x = layer(x)
        return x

    # inference: the stem's first stage (conv from the one input channel, LayerNorm, GELU) as one
    # Triton kernel (:mod:`dasslib.models.stem_kernel`) where the triton backend runs (CUDA or the
    # interpreter). H100, bf16, B=32 (2026-12-07, 2f4267d): eager forward 24.69 -> 22.98 ms, compiled
    # 11.38 -> 11.35 ms (inductor had fused most of it). False: the stem's own layers
    stem_kernel = True
    # the stem kernel's program shape, (BW, warps, transposed, dot) of stem_kernel.stem_tiles; None: its
    # default (benchmarks/bench_models.py labels time others)
    stem_tiles = None

    def _stem_kernel_dtype(self, x):
        """The kernel's output dtype when it applies to this call, else None: ``stem_kernel`` on,
        the triton backend on CUDA (or the interpreter), no gradients, one input channel, and
        autocast off or bf16."""
        if not self.stem_kernel or self.cfg.in_chans != 1:
            return None
        if not triton_kernels_run(self.cfg.scan_backend, x.device) or grad_flows(x, self.patch_embed):
            return None
        if not torch.is_autocast_enabled(x.device.type):
            return x.dtype
        return torch.bfloat16 if torch.get_autocast_dtype(x.device.type) == torch.bfloat16 else None

    def _stem_forward(self, x):
        """patch_embed of x (B, T, F) -> (B, dims[0], ceil(F/4), ceil(T/4))."""
        pe = self.patch_embed
        dtype = self._stem_kernel_dtype(x)
        if dtype is None:
            return pe(x.unsqueeze(1).transpose(2, 3))
        from .stem_kernel import stem_conv_norm_gelu
        y = stem_conv_norm_gelu(x, pe[0].weight, pe[0].bias, pe[2].weight, pe[2].bias, pe[2].eps,
                                round_bf16=torch.is_autocast_enabled(x.device.type), out_dtype=dtype,
                                tiles=self.stem_tiles)
        return pe[7](pe[5](y))

    def forward_features_lean(self, x, **chunks):
        """:meth:`forward_features` for very long inputs at a fraction of the memory (inference
        only): x an fbank (B, T, F) on any device, or a frame source such as
        :class:`dasslib.data.fbank.ChunkedFbank`; ``chunks``: ``chunk_elems`` / ``scan_elems`` of
        :func:`dasslib.models.dass_lean.lean_features`. -> grid (B, C, ceil(F/32), ceil(T/32))."""
        from .dass_lean import lean_features

        return lean_features(self, x, **chunks)

    def forward_lean(self, x, **chunks):
        """:meth:`forward` through :meth:`forward_features_lean`: x -> logits (B, num_classes)."""
        return self.forward_head(self.forward_features_lean(x, **chunks))

    def _pre_logits(self, grid):
        return self.classifier.pre_logits(grid)

    def _to_grid(self, grid, input_shape):
        return grid

    def _frame_pre_logits(self, grid):
        """The classifier norm on every cell, then the mean over frequency -> (B, T', C)."""
        return self.classifier.norm(grid).mean(dim=2).transpose(1, 2)


register("dass_small", DASS, DASSConfig(depths=(2, 2, 8, 2), drop_path=0.2))
register("dass_medium", DASS, DASSConfig(depths=(2, 2, 20, 2), drop_path=0.3))
