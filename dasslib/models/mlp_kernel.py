"""VMamba's MLP half-block ``x + fc2(GELU(fc1(LayerNorm2d(x))))`` as one Triton kernel (inference, bf16 / fp16).

In DASS's first stages (96 / 192 channels on 8192 / 2048 positions at 10 s) the MLP's two GEMMs are small
next to its memory traffic: the norm, the 4x-wide hidden activation written by fc1, read and written again by
GELU and read by fc2, and the residual add move about 4.4 KB per position at stage 1 (C = 96), the GEMMs'
inputs and outputs a tenth of that. Here a program owns BP positions and every channel: it normalises them,
then for each BN-wide slice of the hidden layer computes fc1 + bias, rounds to the compute dtype as the eager
convolution does, applies the exact (erf) GELU, rounds again and accumulates fc2; the hidden activation never
leaves the SM. The residual stream is read once and written once.

Only for narrow layers: the fc2 accumulator holds BP x C fp32 values and each program reads both weight
matrices, so wide layers (C > 256) keep cuBLAS (:func:`mlp_kernel_supported`). Written by hand because no
library fuses a channel LayerNorm, two GEMMs and GELU over a channel-first tensor; checked against the
composite in float64 and bf16 (tests/test_mlp_kernel.py, tests/gpu).
"""
import torch
import triton
import triton.language as tl

__all__ = ["fused_mlp", "fused_mlp_reference", "mlp_kernel_supported", "mlp_tiles"]

MAX_C = 256      # padded channels the fc2 accumulator holds in registers


@triton.jit
def _mlp_kernel(x, ln_w, ln_b, w1, b1, w2, b2, out, C, HID, L, eps,
                CP: tl.constexpr, BP: tl.constexpr, BN: tl.constexpr, DOT_F32: tl.constexpr):
    pid = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    cdt = w1.dtype.element_ty                             # compute dtype: the weights' (bf16 / fp16)
    p = pid * BP + tl.arange(0, BP)
    c = tl.arange(0, CP)
    mp, mc = p < L, c < C
    m = mp[:, None] & mc[None, :]
    offs = b * C * L + c[None, :].to(tl.int64) * L + p[:, None]       # (BP, CP), channel-first
    xt = tl.load(x + offs, mask=m, other=0.0).to(tl.float32)
    mean = tl.sum(xt, axis=1) / C
    xc = tl.where(m, xt - mean[:, None], 0.0)
    rstd = 1.0 / tl.sqrt(tl.sum(xc * xc, axis=1) / C + eps)
    g = tl.load(ln_w + c, mask=mc, other=0.0).to(tl.float32)
    beta = tl.load(ln_b + c, mask=mc, other=0.0).to(tl.float32)
    xn = (xc * rstd[:, None] * g[None, :] + beta[None, :]).to(cdt)    # fc1's input, as autocast casts it
    acc = tl.zeros((BP, CP), dtype=tl.float32)
    for j in range(0, HID, BN):
        n = j + tl.arange(0, BN)
        mn = n < HID
        w1t = tl.load(w1 + n[None, :] * C + c[:, None], mask=mc[:, None] & mn[None, :], other=0.0)   # (CP, BN)
        if DOT_F32:   # Triton's interpreter multiplies bf16 as raw integers; fp32 holds bf16 products exactly
            h = tl.dot(xn.to(tl.float32), w1t.to(tl.float32), input_precision="ieee")
        else:
            h = tl.dot(xn, w1t)
        h = h + tl.load(b1 + n, mask=mn, other=0.0).to(tl.float32)[None, :]
        h = h.to(cdt).to(tl.float32)                                   # fc1's output dtype
        h = (0.5 * h * (1.0 + tl.math.erf(h * 0.7071067811865476))).to(cdt)   # exact GELU, output rounded
        w2t = tl.load(w2 + c[None, :] * HID + n[:, None], mask=mn[:, None] & mc[None, :], other=0.0)  # (BN, CP)
        if DOT_F32:
            acc = tl.dot(h.to(tl.float32), w2t.to(tl.float32), acc, input_precision="ieee")
        else:
            acc = tl.dot(h, w2t, acc)
    y = (acc + tl.load(b2 + c, mask=mc, other=0.0).to(tl.float32)[None, :]).to(cdt).to(tl.float32)
    # the residual read again (an L2 hit) rather than kept live through the loop: 64 registers at C = 96
    xr = tl.load(x + offs, mask=m, other=0.0, cache_modifier=".cg").to(tl.float32)
    tl.store(out + offs, (xr + y).to(out.dtype.element_ty), mask=m)


def mlp_tiles(C):
    """(CP, BP, BN, warps, stages) for C channels: every channel (padded to a power of two) times BP
    positions, the hidden layer in BN-wide slices (weights pipelined over ``stages``); the fc2
    accumulator (BP x CP fp32) is 64 values per thread. Offline (sm_90a, bf16): C = 96 and 192 compile
    to wgmma with 234 / 246 registers, no spills, 96 / 160 KB of shared memory (one program per SM)."""
    cp = max(16, triton.next_power_of_2(C))
    bp = max(16, min(128, 16384 // cp))
    return cp, bp, 64, 8, 2


def mlp_kernel_supported(C, dtype):
    """Whether :func:`fused_mlp` runs C channels in compute dtype ``dtype`` (bf16 / fp16, C <= 256)."""
    return dtype in (torch.bfloat16, torch.float16) and C <= MAX_C


def _check(x, ln_w, ln_b, w1, b1, w2, b2):
    if x.dim() != 4:
        raise ValueError(f"x must be (batch, C, H, W), got {tuple(x.shape)}")
    C, hid = x.shape[1], w1.shape[0]
    shapes = [(ln_w, (C,)), (ln_b, (C,)), (w1, (hid, C)), (b1, (hid,)), (w2, (C, hid)), (b2, (C,))]
    if any(t.shape != s for t, s in shapes):
        raise ValueError(f"MLP parameters do not fit {C} channels and {hid} hidden: "
                         f"{[tuple(t.shape) for t, _ in shapes]}")
    if w1.dtype != w2.dtype or w1.dtype not in (torch.bfloat16, torch.float16) or C > MAX_C:
        raise ValueError(f"fused_mlp needs bf16 / fp16 weights and C <= {MAX_C}, got {w1.dtype}, C = {C}")


@torch.library.custom_op("dasslib::vss_mlp", mutates_args=())
def _vss_mlp(x: torch.Tensor, ln_w: torch.Tensor, ln_b: torch.Tensor, eps: float, w1: torch.Tensor,
             b1: torch.Tensor, w2: torch.Tensor, b2: torch.Tensor) -> torch.Tensor:
    _check(x, ln_w, ln_b, w1, b1, w2, b2)
    bsz, C, h, w = x.shape
    x = x.contiguous()
    out = torch.empty_like(x, memory_format=torch.contiguous_format)
    cp, bp, bn, warps, stages = mlp_tiles(C)
    grid = (triton.cdiv(h * w, bp), bsz)
    _mlp_kernel[grid](x, ln_w.contiguous(), ln_b.contiguous(), w1.contiguous(), b1.contiguous(),
                      w2.contiguous(), b2.contiguous(), out, C, w1.shape[0], h * w, float(eps),
                      CP=cp, BP=bp, BN=bn, DOT_F32=x.device.type != "cuda", num_warps=warps,
                      num_stages=stages)
    return out


@_vss_mlp.register_fake
def _vss_mlp_fake(x, ln_w, ln_b, eps, w1, b1, w2, b2):
    _check(x, ln_w, ln_b, w1, b1, w2, b2)
    return torch.empty_like(x, memory_format=torch.contiguous_format)


def fused_mlp(x, norm, fc1, fc2, dtype):
    """``x + fc2(GELU(fc1(norm(x))))`` for x (B, C, H, W) with fc1 / fc2 run in ``dtype`` (the
    autocast dtype, bf16 / fp16) as autocast runs them; no gradients. norm: LayerNorm2d; fc1, fc2:
    Linear2d (weights (hidden, C) and (C, hidden))."""
    return torch.ops.dasslib.vss_mlp(x, norm.weight, norm.bias, float(norm.eps),
                                     fc1.weight.to(dtype), fc1.bias.to(dtype),
                                     fc2.weight.to(dtype), fc2.bias.to(dtype))


def fused_mlp_reference(x, ln_w, ln_b, eps, w1, b1, w2, b2):
    """The same in torch, with the kernel's casts: LayerNorm in fp32, fc1 / fc2 in w1's dtype."""
    cdt = w1.dtype
    xf = x.float()
    xn = torch.nn.functional.layer_norm(xf.permute(0, 2, 3, 1), (x.shape[1],), ln_w.float(), ln_b.float(), eps)
    xn = xn.to(cdt)
    h = (xn.float() @ w1.float().t() + b1.float()).to(cdt)
    h = torch.nn.functional.gelu(h.float()).to(cdt)
    y = (h.float() @ w2.float().t() + b2.float()).to(cdt)
    return (xf + y.float().permute(0, 3, 1, 2)).to(x.dtype)
