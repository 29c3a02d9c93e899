"""DASS's first stem stage in one Triton kernel (inference): conv 3x3 stride 2 from the fbank's one
channel, LayerNorm over the channels, GELU.

In the compiled B=32 forward on the H100 (2026-12-07, docs/speed.md) this stage took about 0.43 ms:
cuDNN's convolution from one input channel ran a generic kernel (``implicit_convolve_sgemm``, 0.25 ms)
and inductor's LayerNorm + GELU over its (B, 48, 512, 64) output 0.19 ms, where the bytes (an 8 MB
fbank read, a 100 MB bf16 output written) need about 0.04 ms. Here a program reads the 3 x 3 input
taps of a run of output positions once, computes every output channel of them in registers (nine
FMAs each), normalises over the channels and writes the GELU in the output dtype: the convolution's
output never goes to memory. Written by hand because no library fuses a one-channel strided
convolution into a channel LayerNorm.

Rounding follows the eager path: under bf16 autocast the convolution reads bf16-rounded inputs and
weights and rounds its output to bf16; LayerNorm and GELU then run in fp32 (``round_bf16``).
"""
from typing import Optional

import torch
import triton
import triton.language as tl

from ..scans.launch_math import cdiv, next_power_of_2

__all__ = ["stem_conv_norm_gelu", "stem_conv_norm_gelu_reference", "stem_tiles", "launch_stem"]


@triton.jit
def _round_bf16(v):
    """fp32 -> the nearest bf16 (ties to even), kept in fp32, by bit arithmetic: the same on the GPU and
    under the interpreter (whose fp32 -> bf16 cast truncates). Finite values only."""
    bits = v.to(tl.uint32, bitcast=True)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return bits.to(tl.float32, bitcast=True)


@triton.jit
def _bias_norm_gelu_store(acc, c, cm, wo, cb, nw, nb, out, b, ho, Ho, Wo, eps, C: tl.constexpr,
                          ROUND_BF16: tl.constexpr, CH_AXIS: tl.constexpr):
    """Both kernels' end: the convolution sums ``acc`` (channels along CH_AXIS, BW positions along the
    other) plus the bias (the output rounded to bf16 under ROUND_BF16, as autocast's convolution does),
    LayerNorm over the channels in fp32, its affine, exact GELU, stored into (B, C, Ho, Wo) at row ho."""
    POS_AXIS: tl.constexpr = 1 - CH_AXIS
    bias = tl.load(cb + c, mask=cm, other=0.0).to(tl.float32)
    if ROUND_BF16:
        bias = _round_bf16(bias)
    y = acc + tl.expand_dims(bias, POS_AXIS)
    if ROUND_BF16:
        y = _round_bf16(y)
    chan = tl.expand_dims(cm, POS_AXIS)
    y = tl.where(chan, y, 0.0)
    mean = tl.sum(y, axis=CH_AXIS) / C
    yc = tl.where(chan, y - tl.expand_dims(mean, CH_AXIS), 0.0)
    var = tl.sum(yc * yc, axis=CH_AXIS) / C
    o = yc * tl.expand_dims(1.0 / tl.sqrt(var + eps), CH_AXIS)
    o = o * tl.expand_dims(tl.load(nw + c, mask=cm, other=0.0).to(tl.float32), POS_AXIS) \
        + tl.expand_dims(tl.load(nb + c, mask=cm, other=0.0).to(tl.float32), POS_AXIS)
    o = 0.5 * o * (1.0 + tl.erf(o * 0.7071067811865476))
    dst = (out + b * C * Ho * Wo + tl.expand_dims(c.to(tl.int64) * Ho * Wo, POS_AXIS)
           + ho * Wo + tl.expand_dims(wo, CH_AXIS))
    tl.store(dst, o.to(out.dtype.element_ty), mask=chan & tl.expand_dims(wo < Wo, CH_AXIS))


@triton.jit
def _stem_kernel(x, w, cb, nw, nb, out, T, F, Ho, Wo, eps, st, sf,
                 C: tl.constexpr, BLOCK_C: tl.constexpr, BW: tl.constexpr, ROUND_BF16: tl.constexpr):
    """x: the fbank's (B, T, F) values at b * T * F + t * st + f * sf (st = F, sf = 1 as given; st = 1,
    sf = T for a (B, F, T) copy, which makes the taps' loads along wo two elements apart instead of 2F);
    output (B, C, Ho, Wo) with Ho along F, Wo along T (the stem's input is the fbank transposed,
    (B, 1, F, T)); a program: output row ho of batch b, BW positions along wo."""
    pid_w = tl.program_id(0)
    ho = tl.program_id(1)
    b = tl.program_id(2).to(tl.int64)
    c = tl.arange(0, BLOCK_C)
    wo = pid_w * BW + tl.arange(0, BW)
    cm = c < C
    acc = tl.zeros((BLOCK_C, BW), dtype=tl.float32)
    xb = x + b * T * F
    for i in tl.static_range(3):          # along F (the conv's height)
        f = 2 * ho - 1 + i
        for j in tl.static_range(3):      # along T (its width)
            t = 2 * wo - 1 + j
            m = (t >= 0) & (t < T) & (f >= 0) & (f < F)
            xv = tl.load(xb + t * st + f * sf, mask=m, other=0.0).to(tl.float32)
            wv = tl.load(w + c * 9 + i * 3 + j, mask=cm, other=0.0).to(tl.float32)
            if ROUND_BF16:
                xv = _round_bf16(xv)
                wv = _round_bf16(wv)
            acc += wv[:, None] * xv[None, :]
    _bias_norm_gelu_store(acc, c, cm, wo, cb, nw, nb, out, b, ho, Ho, Wo, eps, C, ROUND_BF16, 0)


@triton.jit
def _stem_dot_kernel(x, w, cb, nw, nb, out, T, F, Ho, Wo, eps, st, sf,
                     C: tl.constexpr, BLOCK_C: tl.constexpr, BW: tl.constexpr, ROUND_BF16: tl.constexpr):
    """The same as :func:`_stem_kernel` with the convolution as one matrix product on the tensor cores:
    the program's BW positions' nine taps (padded to 16) times the (16, BLOCK_C) weights. Under
    ROUND_BF16 the inputs are bf16 values already, so the product is the convolution's (exact products,
    fp32 sums in another order); in fp32 the product runs in IEEE fp32. The LayerNorm then reduces over
    the accumulator's columns (a few lanes of one warp) instead of across warps."""
    pid_w = tl.program_id(0)
    ho = tl.program_id(1)
    b = tl.program_id(2).to(tl.int64)
    c = tl.arange(0, BLOCK_C)
    k = tl.arange(0, 16)                  # tap i * 3 + j (i along F, j along T); 9 used
    wo = pid_w * BW + tl.arange(0, BW)
    cm = c < C
    f = 2 * ho - 1 + k // 3
    t = 2 * wo[:, None] - 1 + (k % 3)[None, :]
    m = (k < 9)[None, :] & (t >= 0) & (t < T) & ((f >= 0) & (f < F))[None, :] & (wo < Wo)[:, None]
    xv = tl.load(x + b * T * F + t * st + f[None, :] * sf, mask=m, other=0.0).to(tl.float32)
    wv = tl.load(w + c[None, :] * 9 + k[:, None], mask=(k < 9)[:, None] & cm[None, :], other=0.0).to(tl.float32)
    if ROUND_BF16:
        acc = tl.dot(_round_bf16(xv), _round_bf16(wv), input_precision="tf32")
    else:
        acc = tl.dot(xv, wv, input_precision="ieee")
    _bias_norm_gelu_store(acc, c, cm, wo, cb, nw, nb, out, b, ho, Ho, Wo, eps, C, ROUND_BF16, 1)


def _check(x, weight, conv_bias, norm_weight, norm_bias):
    if x.dim() != 3:
        raise ValueError(f"the stem kernel takes an fbank (B, T, F), got {tuple(x.shape)}")
    c = weight.shape[0]
    if tuple(weight.shape) != (c, 1, 3, 3):
        raise ValueError(f"the stem kernel needs a (C, 1, 3, 3) convolution weight, got {tuple(weight.shape)}")
    for name, t in (("conv bias", conv_bias), ("norm weight", norm_weight), ("norm bias", norm_bias)):
        if t is None or tuple(t.shape) != (c,):
            raise ValueError(f"the stem kernel needs a ({c},) {name}, got "
                             f"{None if t is None else tuple(t.shape)}")


@torch.library.custom_op("dasslib::stem_conv_norm_gelu", mutates_args=())
def _stem(x: torch.Tensor, weight: torch.Tensor, conv_bias: torch.Tensor, norm_weight: torch.Tensor,
          norm_bias: torch.Tensor, eps: float, round_bf16: bool, out_dtype: torch.dtype,
          tiles: Optional[list[int]] = None) -> torch.Tensor:
    _check(x, weight, conv_bias, norm_weight, norm_bias)
    B, T, F = x.shape
    c = weight.shape[0]
    Ho, Wo = (F + 1) // 2, (T + 1) // 2
    # Triton's interpreter rounds fp32 -> bf16 toward zero; off CUDA the kernel writes fp32 and torch
    # casts (to nearest, as the GPU's store does)
    kdt = out_dtype if x.device.type == "cuda" else torch.float32
    out = torch.empty((B, c, Ho, Wo), dtype=kdt, device=x.device)
    return launch_stem(x, weight, conv_bias, norm_weight, norm_bias, eps, round_bf16, out,
                       tiles=tiles).to(out_dtype)


def stem_tiles(C, Wo):
    """(BW, warps[, transposed[, dot]]): output positions along time per program and its warps; transposed
    (benchmarks): the kernel reads a (B, F, T) copy of the fbank, made first; dot: the convolution as a
    matrix product on the tensor cores (:func:`_stem_dot_kernel`).

    Default: the dot form, 64 positions x every channel in 4 warps. H100, bf16, B=32, 10 s, DASS-Small's
    48 channels (3819f87, ``benchmarks/bench_stem.py --tune``): 0.152 ms per call against 0.522 ms for the
    first form's 128 positions x 8 warps (the choice until then) and 0.486 ms for inductor's compiled
    layers. That form's nine tap loads per position are 1 KB apart in the (B, T, F) fbank, so each warp
    load touches a cache line per position; its best tiles (32 x 1 warp) took 0.178 ms."""
    bw = 64 if Wo >= 64 else max(16, next_power_of_2(Wo))
    return bw, 4, False, True


def launch_stem(x, weight, conv_bias, norm_weight, norm_bias, eps, round_bf16, out, tiles=None):
    """Run the kernel on x (B, T, F) into ``out`` (B, C, ceil(F/2), ceil(T/2)); ``tiles`` (BW, warps[,
    transposed[, dot]]), default :func:`stem_tiles` (benchmarks time others)."""
    B, T, F = x.shape
    c, (_, _, Ho, Wo) = weight.shape[0], out.shape
    bw, warps, *rest = tiles or stem_tiles(c, Wo)
    transposed, dot = (list(rest) + [False, False])[:2]
    if transposed:
        x, st, sf = x.transpose(1, 2).contiguous(), 1, T
    else:
        x, st, sf = x.contiguous(), F, 1
    kernel = _stem_dot_kernel if dot else _stem_kernel
    block_c = next_power_of_2(c)
    if dot:   # a matrix product's sides: at least 16 (the padded channels are masked)
        if bw < 16:
            raise ValueError(f"the stem kernel's dot form needs at least 16 positions per program, got {bw}")
        block_c = max(16, block_c)
    kernel[(cdiv(Wo, bw), Ho, B)](
        x, weight.contiguous(), conv_bias.contiguous(), norm_weight.contiguous(),
        norm_bias.contiguous(), out, T, F, Ho, Wo, float(eps), st, sf, C=c, BLOCK_C=block_c,
        BW=bw, ROUND_BF16=bool(round_bf16), num_warps=warps)
    return out


@_stem.register_fake
def _stem_fake(x, weight, conv_bias, norm_weight, norm_bias, eps, round_bf16, out_dtype, tiles=None):
    _check(x, weight, conv_bias, norm_weight, norm_bias)
    B, T, F = x.shape
    return x.new_empty((B, weight.shape[0], (F + 1) // 2, (T + 1) // 2), dtype=out_dtype)


def stem_conv_norm_gelu(x, weight, conv_bias, norm_weight, norm_bias, eps, round_bf16=False, out_dtype=None,
                        tiles=None):
    """GELU(LayerNorm2d(conv3x3_s2_p1(x (B, T, F) as (B, 1, F, T)))) -> (B, C, ceil(F/2), ceil(T/2)) in
    ``out_dtype`` (default x's dtype); no gradients. ``round_bf16``: the convolution's inputs and output
    rounded to bf16, as under bf16 autocast; ``tiles``: see :func:`stem_tiles` (None: its choice)."""
    return torch.ops.dasslib.stem_conv_norm_gelu(x, weight, conv_bias, norm_weight, norm_bias, float(eps),
                                                 bool(round_bf16), out_dtype or x.dtype,
                                                 None if tiles is None else [int(v) for v in tiles])


def stem_conv_norm_gelu_reference(x, weight, conv_bias, norm_weight, norm_bias, eps, round_bf16=False,
                                  out_dtype=None):
    """The same in torch, as DASS's ``patch_embed[0:5]`` computes it (``round_bf16``: as under bf16 autocast)."""
    xi = x.unsqueeze(1).transpose(2, 3)
    if round_bf16:
        y = torch.nn.functional.conv2d(xi.bfloat16(), weight.bfloat16(), conv_bias.bfloat16(), 2, 1).float()
    else:
        y = torch.nn.functional.conv2d(xi, weight.to(x.dtype), conv_bias.to(x.dtype), 2, 1)
    y = torch.nn.functional.layer_norm(y.permute(0, 2, 3, 1), (weight.shape[0],), norm_weight.to(y.dtype),
                                       norm_bias.to(y.dtype), eps).permute(0, 3, 1, 2)
    return torch.nn.functional.gelu(y).to(out_dtype or x.dtype)
