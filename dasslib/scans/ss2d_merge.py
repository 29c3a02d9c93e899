"""SS2D's cross-merge and out-norm in one Triton kernel (inference).

The in-place scan (:func:`dasslib.scans.triton_backend.ss2d_scan_triton`) leaves four
direction outputs ys (B, 4, D, L) at their source positions: k = 0, 2 row-major (index
h*W + w), k = 1, 3 column-major (index w*H + h). SS2D then needs
``LayerNorm over D of (ys0 + ys2) + columns-to-rows(ys1 + ys3)``, cast to the compute dtype.
Written in torch, inductor makes it a reduction over D at each position whose column loads run
across the tile's fast axis: 46-55% of copy bandwidth on the H100 (docs/speed.md). Here a program
owns a (BH x BW) block of grid positions and every channel: the row tensors load along w, the
column tensors along h (each coalesced; Triton converts the layouts in shared memory), the sum
and its mean / variance stay in registers, and the output is written once.
Written by hand because no library fuses a transposed sum into a channel LayerNorm.
"""
import torch
import triton
import triton.language as tl

from .launch_math import cdiv, next_power_of_2

__all__ = ["ss2d_merge_norm", "ss2d_merge_norm_reference", "merge_tiles", "launch_merge_norm"]


@triton.jit
def _merge_norm_kernel(ys, weight, bias, out, D, H, W, eps,
                       BLOCK_D: tl.constexpr, BH: tl.constexpr, BW: tl.constexpr, F64: tl.constexpr):
    tile = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    n_w = tl.cdiv(W, BW)
    h0 = (tile // n_w) * BH
    w0 = (tile % n_w) * BW
    L = H * W
    d = tl.arange(0, BLOCK_D)[:, None, None]
    hh = h0 + tl.arange(0, BH)[None, :, None]
    ww = w0 + tl.arange(0, BW)[None, None, :]
    m = (d < D) & (hh < H) & (ww < W)
    chan = d.to(tl.int64) * L
    rows = chan + hh * W + ww                       # row-major source positions (k = 0, 2)
    cols = chan + ww * H + hh                       # column-major source positions (k = 1, 3)
    base = ys + b * 4 * D * L
    # the eager order: (ys0 + ys2) + (ys1 + ys3); sums in fp32 (fp64 for fp64 ys), also for 2-byte ys
    acc: tl.constexpr = tl.float64 if F64 else tl.float32
    y = tl.load(base + rows, mask=m, other=0.0).to(acc) + tl.load(base + 2 * D * L + rows, mask=m, other=0.0).to(acc)
    y += tl.load(base + D * L + cols, mask=m, other=0.0).to(acc) \
        + tl.load(base + 3 * D * L + cols, mask=m, other=0.0).to(acc)
    mean = tl.sum(y, axis=0) / D
    yc = tl.where(m, y - mean[None], 0.0)
    var = tl.sum(yc * yc, axis=0) / D
    rstd = 1.0 / tl.sqrt(var + eps)
    dm = d < D
    wv = tl.load(weight + d, mask=dm, other=0.0).to(y.dtype)
    bv = tl.load(bias + d, mask=dm, other=0.0).to(y.dtype)
    o = yc * rstd[None] * wv + bv
    tl.store(out + b * D * L + rows, o.to(out.dtype.element_ty), mask=m)


def merge_tiles(D, H, W, elements=None, max_bw=8, ys_bytes=4):
    """(BLOCK_D, BH, BW, warps): every channel (D padded to a power of two) times a block of about
    ``elements // BLOCK_D`` grid positions, at most ``max_bw`` wide along w (8: one 32-byte sector of
    fp32) and the rest along h (the column tensors' fast axis); warps for about 32 fp32 per thread
    and tensor, 64 at D <= 128 (offline, sm_90, DASS-Small's four stages: 102-123 registers, no
    spills; 4 warps at D = 384 spill 5 KB). On the H100 (B=32, 2026-12-07, bench_merge --tune) 4
    warps beat 8 at D = 96 (0.219 / 0.235 ms) and 8 beat 16 at D = 384 (0.103 / 0.110 ms) and 768
    (0.065 / 0.066 ms). ``elements`` defaults to 8192, and to 16384 for 2-byte ys (``ys_bytes``) at
    D <= 128: with bf16 ys (bd63c0f) 0.169 against 0.186 ms at stage 1, even at stage 2."""
    block_d = next_power_of_2(D)
    if elements is None:
        elements = 16384 if ys_bytes == 2 and block_d <= 128 else 8192
    pos = max(4, elements // block_d)
    bw = min(next_power_of_2(W), max_bw, pos)
    bh = min(next_power_of_2(H), max(1, pos // bw))
    n = block_d * bh * bw
    warps = 4 if n < 4096 or block_d <= 128 else 8 if n <= 8192 else 16
    return block_d, bh, bw, warps


def launch_merge_norm(ys, weight, bias, eps, h, w, out, tiles=None):
    """Run the kernel into ``out`` (B, D, h, w); ``tiles``: (BLOCK_D, BH, BW, warps), default
    :func:`merge_tiles` (benchmarks time others)."""
    b, _, d, L = ys.shape
    block_d, bh, bw, warps = tiles or merge_tiles(d, h, w, ys_bytes=ys.element_size())
    grid = (cdiv(h, bh) * cdiv(w, bw), b)
    _merge_norm_kernel[grid](ys, weight.contiguous(), bias.contiguous(), out, d, h, w, float(eps),
                             BLOCK_D=block_d, BH=bh, BW=bw, F64=ys.dtype == torch.float64, num_warps=warps)
    return out


def _check(ys, weight, bias, h, w):
    if ys.dim() != 4 or ys.shape[1] != 4:
        raise ValueError(f"ys must be (batch, 4, d, L), got {tuple(ys.shape)}")
    b, _, d, L = ys.shape
    if h < 1 or w < 1 or h * w != L:
        raise ValueError(f"grid {h} x {w} does not hold L = {L} positions")
    if weight.shape != (d,) or bias.shape != (d,):
        raise ValueError(f"weight and bias must be ({d},), got {tuple(weight.shape)}, {tuple(bias.shape)}")


@torch.library.custom_op("dasslib::ss2d_merge_norm", mutates_args=())
def _merge_norm(ys: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float,
                h: int, w: int, out_dtype: torch.dtype) -> torch.Tensor:
    _check(ys, weight, bias, h, w)
    b, _, d, L = ys.shape
    ys = ys.contiguous()
    # Triton's interpreter rounds fp32 -> bf16 toward zero; off CUDA the kernel writes fp32 (fp64) and torch
    # casts (to nearest, as the GPU's store does)
    kdt = out_dtype if ys.device.type == "cuda" else (ys.dtype if ys.dtype == torch.float64 else torch.float32)
    out = torch.empty((b, d, h, w), dtype=kdt, device=ys.device)
    return launch_merge_norm(ys, weight, bias, eps, h, w, out).to(out_dtype)


@_merge_norm.register_fake
def _merge_norm_fake(ys, weight, bias, eps, h, w, out_dtype):
    _check(ys, weight, bias, h, w)
    return ys.new_empty((ys.shape[0], ys.shape[2], h, w), dtype=out_dtype)


def ss2d_merge_norm(ys, weight, bias, eps, h, w, out_dtype=None):
    """LayerNorm over channels of the cross-merged scan outputs, no gradients.

    ys: (B, 4, D, L = h*w) float32 / float64 (or bf16 / fp16, summed in fp32) from
    ``ss2d_scan_triton`` (directions 0, 2 at row-major, 1, 3 at column-major positions);
    weight, bias: (D,) -> (B, D, h, w) in
    ``out_dtype`` (default ys's dtype): ``LayerNorm2d(cross_merge(ys)).to(out_dtype)``.
    """
    return torch.ops.dasslib.ss2d_merge_norm(ys, weight, bias, float(eps), int(h), int(w),
                                             out_dtype or ys.dtype)


def ss2d_merge_norm_reference(ys, weight, bias, eps, h, w, out_dtype=None):
    """The same in torch (what SS2D computes without the kernel)."""
    b, _, d, L = ys.shape
    cols = (ys[:, 1] + ys[:, 3]).view(b, d, w, h).transpose(2, 3).reshape(b, d, L)
    y = (ys[:, 0] + ys[:, 2] + cols).view(b, d, h, w)
    y = torch.nn.functional.layer_norm(y.permute(0, 2, 3, 1), (d,), weight.to(y.dtype),
                                       bias.to(y.dtype), eps).permute(0, 3, 1, 2)
    return y.to(out_dtype or ys.dtype)
