"""Building blocks shared by the model families.

- :class:`LayerNorm2d`, :class:`Linear2d`, :class:`Mlp2d`: channel-first (B, C, H, W) layers
  as VMamba uses them (Linear2d keeps ``nn.Linear``'s (out, in) weight so keys and shapes
  match the official checkpoints).
- :class:`PatchEmbed`: strided Conv2d patchifier returning tokens and their grid.
- :class:`TapConv1d`, :class:`TapConv2d`: convolutions with one input channel per output channel
  (DASS's stem, SS2D's and Mamba's depthwise convolutions) that compile as fusable kernel taps.
- :func:`sinusoid_table_1d` (AST's fixed table), :func:`sincos_table_2d` (MAE / SSAM table),
  :func:`resize_pos_grid` (learned grid embeddings resized to another grid).
- ``DropPath``, ``LayerNorm2d``, ``trunc_normal_``, ``lecun_normal_`` and the bilinear
  :func:`resize_pos_grid` modes are timm's (``timm.layers``), reached through functions that import timm on
  first use: importing timm (and torchvision under it) takes seconds, ``import dasslib.models`` need not.
"""
import itertools
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["DropPath", "trunc_normal_", "vit_init", "lecun_normal_", "LayerNorm2d", "Linear2d", "Mlp2d",
           "TapConv1d", "TapConv2d", "tap_conv",
           "PatchEmbed", "sinusoid_table_1d", "sincos_table_2d", "resize_pos_grid",
           "pad_sequential", "conv_out_size", "POS_RESIZES"]

POS_RESIZES = ("bilinear", "bilinear_aa", "official")


def _timm_layers():
    import timm.layers  # on first use (see the module docstring)

    return timm.layers


def DropPath(drop_prob: float = 0.0) -> nn.Module:  # noqa: N802 (builds timm's class)
    """``timm.layers.DropPath``: stochastic depth, drops a sample's residual branch with ``drop_prob``."""
    return _timm_layers().DropPath(drop_prob)


def LayerNorm2d(num_channels: int, eps: float = 1e-5) -> nn.Module:  # noqa: N802 (builds timm's class)
    """``timm.layers.LayerNorm2d``: LayerNorm over the channel axis of (B, C, H, W) (keys ``weight``,
    ``bias``); eps defaults to nn.LayerNorm's 1e-5, as VMamba / DASS use it (timm's default is 1e-6)."""
    return _timm_layers().LayerNorm2d(num_channels, eps=eps)


def trunc_normal_(tensor, mean=0.0, std=1.0, a=-2.0, b=2.0):
    """``timm.layers.trunc_normal_`` (in place; returns ``tensor``)."""
    return _timm_layers().trunc_normal_(tensor, mean=mean, std=std, a=a, b=b)


def lecun_normal_(tensor):
    """``timm.layers.lecun_normal_`` (in place; returns ``tensor``)."""
    return _timm_layers().lecun_normal_(tensor)


class Linear2d(nn.Linear):
    """Per-position linear map on (B, C_in, H, W) -> (B, C_out, H, W), applied as a 1x1 conv;
    the weight keeps ``nn.Linear``'s (C_out, C_in) shape."""

    def forward(self, x):
        return F.conv2d(x, self.weight[:, :, None, None], self.bias)


def _tap_form(conv) -> bool:
    """Whether ``conv`` (nn.Conv1d / nn.Conv2d) has a tap form: one input channel per output
    channel (one input channel overall, or depthwise), zero padding given as numbers, no dilation."""
    one_in = conv.in_channels == 1 or (conv.groups == conv.in_channels == conv.out_channels)
    return (one_in and conv.padding_mode == "zeros" and not isinstance(conv.padding, str)
            and all(d == 1 for d in conv.dilation))


class TapConvMixin:
    """An ``nn.Conv1d`` / ``nn.Conv2d`` (same parameters and keys) that, when traced by
    ``torch.compile`` and of tap form (one input channel, or depthwise), is written as a sum of
    its kernel taps over strided slices (:func:`tap_conv`): inductor then fuses it with what
    follows (bias, norm, activation) into one kernel, and its backward into a few fused
    reductions, instead of calling cuDNN (a generic kernel for C_in = 1; depthwise kernels whose
    weight gradient is slow). Eager calls keep the convolution. Under autocast the output takes
    the autocast dtype, as the convolution's does (the taps themselves are summed in the
    promoted dtype, fp32 for a bf16 input and fp32 weights: a difference of rounding)."""

    tap_form = True      # False: the compiled form keeps the convolution too (benchmark comparisons)

    def forward(self, x):
        return self._forward_with(x, self.weight)

    def _forward_with(self, x, weight):
        if not torch.compiler.is_compiling() or not self.tap_form or not _tap_form(self):
            return self._conv_forward(x, weight, self.bias)
        out = tap_conv(x, weight, self.bias, self.stride, self.padding)
        dev = x.device.type
        if torch.is_autocast_enabled(dev):
            out = out.to(torch.get_autocast_dtype(dev))
        return out


class TapConv1d(TapConvMixin, nn.Conv1d):
    """nn.Conv1d with a fusable compiled form (see :class:`TapConvMixin`): Mamba's depthwise
    causal convolution."""

    def reversed_causal(self, x):
        """x (B, C, L) -> (B, C, L): the causal convolution of the reversed sequence, in natural order,
        ``self(x.flip(-1))[..., :L].flip(-1)`` without the flips: out[t] = bias + sum_j w[K-1-j] x[t+j]
        (x zero past L), i.e. the flipped kernel's output at offset K - 1. For Mamba's convolution
        (stride 1, padding K - 1)."""
        k = self.kernel_size[0]
        if self.stride != (1,) or self.padding != (k - 1,):
            raise ValueError(f"reversed_causal needs stride 1 and padding kernel_size - 1 = {k - 1}, "
                             f"got stride {self.stride}, padding {self.padding}")
        L = x.shape[-1]
        return self._forward_with(x, self.weight.flip(-1))[..., k - 1:k - 1 + L]


class TapConv2d(TapConvMixin, nn.Conv2d):
    """nn.Conv2d with a fusable compiled form (see :class:`TapConvMixin`): DASS's stem (one input
    channel) and SS2D's depthwise convolution. The tap form is off by default here: in DASS-Small's
    compiled B=32 inference (H100, 2026-12-07) the stem's taps took 0.61 ms in one fused kernel
    against cuDNN's 0.25 ms, SS2D's 3x3 taps 0.74 ms against 0.29 ms, and the whole forward ran
    13.39 ms with cuDNN against 13.96 ms with taps (docs/speed.md); ``tap_form = True`` turns it on."""

    tap_form = False


def tap_conv(x, weight, bias, stride, padding):
    """F.conv1d / F.conv2d of a convolution with one input channel per output channel, as a
    weighted sum of the kernel's strided slices: x (B, 1 or C, *S) with weight (C, 1, *k) ->
    (B, C, *S'). ``stride`` and ``padding`` are tuples of one int per spatial axis."""
    nd = weight.dim() - 2
    c, k = weight.shape[0], weight.shape[2:]
    pad = []
    for p in reversed(padding):
        pad += [p, p]
    xp = F.pad(x, pad)
    size = [(xp.shape[2 + i] - k[i]) // stride[i] + 1 for i in range(nd)]
    shape = (1, c) + (1,) * nd
    out = None
    for taps in itertools.product(*(range(ki) for ki in k)):
        idx = (slice(None), slice(None)) + tuple(
            slice(t, t + stride[i] * (size[i] - 1) + 1, stride[i]) for i, t in enumerate(taps))
        tap = weight[(slice(None), 0) + taps].view(shape) * xp[idx]
        out = tap if out is None else out + tap
    if bias is not None:
        out = out + bias.view(shape)
    return out


class Mlp2d(nn.Module):
    """VMamba's channel-first MLP: fc1 -> GELU (exact) -> fc2 on (B, C, H, W).

    When the hidden activation would exceed ``chunk_elems`` elements, the (position-wise) MLP
    runs on slices of the last axis, so long inputs never materialise one huge hidden tensor
    (and each conv stays below 2**31 elements).
    """

    def __init__(self, dim, hidden, chunk_elems=1 << 30):
        super().__init__()
        self.fc1 = Linear2d(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = Linear2d(hidden, dim)
        self.chunk_elems = chunk_elems

    def _mlp(self, x):
        return self.fc2(self.act(self.fc1(x)))

    def forward(self, x):
        b, _, h, w = x.shape
        hidden = b * self.fc1.out_features * h * w
        if hidden <= self.chunk_elems:
            return self._mlp(x)
        step = math.ceil(w / math.ceil(hidden / self.chunk_elems))
        return torch.cat([self._mlp(x[..., i:i + step]) for i in range(0, w, step)], dim=-1)


def conv_out_size(n, kernel, stride, padding=0):
    """Output length of a convolution along one axis."""
    return (n + 2 * padding - kernel) // stride + 1


class PatchEmbed(nn.Module):
    """Conv2d patchifier: (B, C, H, W) -> tokens (B, h*w, D) in row-major (h, w) order,
    plus the grid (h, w). Key: ``proj.{weight,bias}``. (timm's PatchEmbed fixes the stride
    to the patch size and the input size at construction; AST needs overlapping patches and
    every model here takes any input size.)"""

    def __init__(self, in_chans, embed_dim, patch_size, stride):
        super().__init__()
        self.patch_size = tuple(patch_size)
        self.stride = tuple(stride)
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=self.patch_size, stride=self.stride)

    def grid(self, h, w):
        """Token grid for an (h, w) input."""
        return (conv_out_size(h, self.patch_size[0], self.stride[0]),
                conv_out_size(w, self.patch_size[1], self.stride[1]))

    def forward(self, x):
        if x.shape[-2] < self.patch_size[0] or x.shape[-1] < self.patch_size[1]:
            raise ValueError(f"input of size {tuple(x.shape[-2:])} is smaller than one patch "
                             f"{self.patch_size}")
        x = self.proj(x)
        grid = tuple(x.shape[-2:])
        return x.flatten(2).transpose(1, 2), grid


def sinusoid_table_1d(n, dim, base=1e4, device=None):
    """Transformer sinusoids (n, dim): even dims sin(p * w_i), odd dims cos(p * w_i),
    w_i = base ** (-2i / dim), positions p = 0..n-1 (the official AST 'sine' table)."""
    if dim % 2:
        raise ValueError(f"sinusoidal table needs an even dim, got {dim}")
    pos = torch.arange(n, dtype=torch.float32, device=device)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32, device=device)
                     * (-math.log(base) / dim))
    table = torch.empty(n, dim, device=device)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq)
    return table


def _sincos_halves(dim, pos):
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float32, device=pos.device)
                            / (dim / 2))
    out = pos.reshape(-1, 1).float() * omega
    return torch.cat([torch.sin(out), torch.cos(out)], dim=1)


def sincos_table_2d(rows, cols, dim, device=None):
    """MAE-style 2-D sin-cos table (rows*cols, dim), row-major (index r*cols + c).
    The first dim/2 channels encode the column index, the last dim/2 the row index; each half
    is [sin(p w_i), cos(p w_i)] with w_i = 1e4 ** (-i / (dim/4))."""
    if dim % 4:
        raise ValueError(f"2-D sin-cos table needs dim divisible by 4, got {dim}")
    r = torch.arange(rows, device=device).repeat_interleave(cols)
    c = torch.arange(cols, device=device).repeat(rows)
    return torch.cat([_sincos_halves(dim // 2, c), _sincos_halves(dim // 2, r)], dim=1)


def resize_pos_grid(pos, old_grid, new_grid, mode="bilinear"):
    """Resize a grid of embeddings pos (1, f*t, D) laid out f-major to ``new_grid``.

    mode "bilinear": bilinear interpolation (align_corners=False); "bilinear_aa": the same
    with antialiasing (AuM / FlexiViT resampling); "official": the official AST rule for each
    axis, time first: crop from the middle when the new size is smaller, bilinear when larger.
    Returns (1, f'*t', D).
    """
    (f0, t0), (f1, t1) = tuple(old_grid), tuple(new_grid)
    if (f0, t0) == (f1, t1):
        return pos
    d = pos.shape[-1]
    grid = pos.reshape(1, f0, t0, d).permute(0, 3, 1, 2)
    if mode in ("bilinear", "bilinear_aa"):   # timm's resampling of a (1, H*W, D) table, H-major as ours
        return _timm_layers().resample_abs_pos_embed(pos, (f1, t1), (f0, t0), num_prefix_tokens=0,
                                                     interpolation="bilinear",
                                                     antialias=mode == "bilinear_aa").to(pos.dtype)
    if mode == "official":
        if t1 < t0:
            s = t0 // 2 - t1 // 2
            grid = grid[..., s:s + t1]
        else:
            grid = F.interpolate(grid, size=(f0, t1), mode="bilinear", align_corners=False)
        if f1 < f0:
            s = f0 // 2 - f1 // 2
            grid = grid[:, :, s:s + f1]
        elif f1 > f0:
            grid = F.interpolate(grid, size=(f1, t1), mode="bilinear", align_corners=False)
    else:
        raise ValueError(f"unknown pos_resize mode {mode!r}; choose one of {POS_RESIZES}")
    return grid.permute(0, 2, 3, 1).reshape(1, f1 * t1, d)


def grad_flows(x, module) -> bool:
    """Whether gradients flow through a call of ``module`` on ``x``: enabled, and x or one of the
    module's parameters requires them (what inference-only kernels, which have no backward, check)."""
    return torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in module.parameters()))


def pad_sequential(modules, length):
    """nn.Sequential of ``length`` entries with ``modules`` ({index: module}) at their indices
    and nn.Identity elsewhere: keeps an official checkpoint's numeric keys (e.g. VMamba's
    patch_embed.0/.2/.5/.7) where the official model had parameter-free placeholders."""
    return nn.Sequential(*[modules.get(i, nn.Identity()) for i in range(length)])


def vit_init(m):
    """timm ViT init: Linear trunc_normal(0.02) and zero bias; LayerNorm ones / zeros."""
    if isinstance(m, nn.Linear):
        trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
