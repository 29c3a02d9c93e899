"""VMamba's SS2D token mixer, forward type ``v05_noz`` (no z gate), channel-first.

x (B, C, H, W) -> in_proj (1x1) -> depthwise conv -> SiLU -> four scan orders (row-major,
column-major, both reversed) -> one grouped selective scan (state and output float32) ->
sum of the four back on the grid -> LayerNorm2d -> cast to the compute dtype -> out_proj (1x1).
Parameter names and shapes follow the official module (``x_proj_weight``, ``dt_projs_weight``,
``dt_projs_bias``, ``A_logs``, ``Ds``, ``in_proj``, ``conv2d``, ``out_norm``, ``out_proj``).
"""
import math

import torch
import torch.nn as nn

from dasslib.scans import selective_scan
from dasslib.scans.api import triton_kernels_run
from dasslib.scans.layouts import cross_merge_2d, cross_scan_2d

try:   # triton ships with CUDA builds of torch; without it the fused path is simply off
    from dasslib.scans.ss2d_merge import ss2d_merge_norm
    from dasslib.scans.triton_backend import ss2d_scan_dtproj, ss2d_scan_supported, ss2d_scan_triton
except ImportError:  # pragma: no cover
    ss2d_scan_supported = ss2d_scan_triton = ss2d_scan_dtproj = ss2d_merge_norm = None

from .layers import LayerNorm2d, Linear2d, TapConv2d, grad_flows
from .mamba_mixer import dt_bias_init, s4d_real_log

K = 4  # scan directions


class SS2D(nn.Module):
    """SS2D mixer on (B, C, H, W) -> (B, C, H, W).

    d_inner = ssm_ratio * dim; dt_rank "auto" = ceil(dim / 16); d_state N. ``scan_fp32``
    (official) feeds the scan float32 input so its output is float32; False keeps the compute
    dtype (bf16 under autocast), about a quarter less peak memory on long inputs.
    ``fused_scan``: in inference with the triton backend, scan the grid in place
    (:func:`dasslib.scans.triton_backend.ss2d_scan_triton`) instead of materialising the four
    cross-scan copies; same outputs up to rounding (tests/test_scan_triton.py).
    ``fused_scan_train``: the same when gradients are needed (rows backward with the direction
    layout; tested against the float64 reference and the materialised path; faster and lighter
    than the copies in the measured training step, docs/speed.md).
    ``merge_kernel`` (attribute, default True): in inference on the fused path, the cross-merge
    and out_norm run as one Triton kernel (:func:`dasslib.scans.ss2d_merge.ss2d_merge_norm`)
    that reads each direction along its own fast axis; False leaves them to torch / inductor.
    When compiled, only grids of at least ``merge_kernel_min_positions`` (4096) positions take the
    kernel. On the H100 (B=32, 2026-12-07) with fp32 ys it beat inductor's kernel at DASS's stages 1-2
    (8192 and 2048 positions: 0.235 / 0.302 and 0.140 / 0.166 ms) and lost at stage 3 (512: 0.110 /
    0.088 ms), even at stage 4 (128); with the bf16 ys of ``y_fp32_inference=False`` (bd63c0f) it
    leads only at stage 1 (0.169 / 0.205 ms) and loses at stage 2 (0.118 / 0.099) and 3 (0.088 / 0.055).
    A chunked form with taller position tiles (channels looped) was no better at stage 3 (0.080 ms)
    and cost DASS-Small 0.18 ms (docs/speed.md). Eager (no inductor) always takes the kernel.
    ``y_fp32_inference`` (attribute, default False): in inference on the fused path the scan writes its
    output y in u's dtype (bf16 under autocast) rather than ``scan_fp32``'s fp32; the four directions
    are still summed and normalised in fp32 (the merge kernel; inductor's kernel at small grids).
    Half of the largest byte item left, y (B, 4D, L) written and read back (about 2.1 GB per
    DASS-Small B=32 forward). H100, B=32 (2026-12-07, 2f4267d): DASS-Small 11.38 -> 11.18 ms; its bf16
    logits' distance to the fp32 eager model's 6.47e-3 against 6.51e-3 relative. fp32 inputs and
    training are unchanged; True gives the official fp32 y.
    ``dtproj_in_scan`` (attribute, default True): in inference on the fused
    path the scan computes delta from x_proj's low-rank rows itself
    (:func:`dasslib.scans.triton_backend.ss2d_scan_dtproj`), so the (B, 4D, L) delta is neither
    written by the dt_proj GEMM nor read back (about 2.1 GB per DASS-Small B=32 forward); delta
    is then summed in fp32 instead of rounded to the compute dtype. Only for dt_rank <=
    ``dtproj_max_rank`` (12: DASS's first two stages, where delta's bytes are largest): offline
    (sm_90, bf16, N = 1) the rows forward grows from 976 SASS instructions to 1112 at rank 6, 1280 at
    12, 1632 at 24 and 2208 (255 registers) at 48. On the H100 (bf16, B=32, 2026-12-07) it took
    DASS-Small's compiled forward from 11.80 to 11.41 ms (docs/speed.md).
    """

    merge_kernel = True
    y_fp32_inference = False
    merge_kernel_min_positions = 4096
    dtproj_in_scan = True
    dtproj_max_rank = 12

    def __init__(self, dim, d_state=1, ssm_ratio=1.0, dt_rank="auto", d_conv=3, conv_bias=False,
                 scan_backend="auto", scan_fp32=True, fused_scan=True, fused_scan_train=True):
        super().__init__()
        self.fused_scan, self.fused_scan_train = fused_scan, fused_scan_train
        d_inner = int(ssm_ratio * dim)
        self.d_state = d_state
        self.dt_rank = math.ceil(dim / 16) if dt_rank == "auto" else int(dt_rank)
        self.scan_backend, self.scan_fp32 = scan_backend, scan_fp32
        self.in_proj = Linear2d(dim, d_inner, bias=False)
        self.act = nn.SiLU()
        self.conv2d = TapConv2d(d_inner, d_inner, d_conv, padding=(d_conv - 1) // 2,
                                 groups=d_inner, bias=conv_bias)
        r, n = self.dt_rank, d_state
        # per-direction x_proj (nn.Linear default init), stacked: (K, R + 2N, d_inner)
        xb, db = d_inner ** -0.5, r ** -0.5
        self.x_proj_weight = nn.Parameter(torch.empty(K, r + 2 * n, d_inner).uniform_(-xb, xb))
        self.dt_projs_weight = nn.Parameter(torch.empty(K, d_inner, r).uniform_(-db, db))
        self.dt_projs_bias = nn.Parameter(dt_bias_init(K * d_inner).view(K, d_inner))
        self.A_logs = nn.Parameter(s4d_real_log(K * d_inner, n))
        self.Ds = nn.Parameter(torch.ones(K * d_inner))
        self.out_norm = LayerNorm2d(d_inner)
        self.out_proj = Linear2d(d_inner, dim, bias=False)
        for p in (self.A_logs, self.Ds):
            p._no_weight_decay = True

    def _needs_grad(self, u):
        """Whether gradients flow through this call: enabled, and u or a parameter requires them
        (the merge kernel and the in-scan dt projection have no backward)."""
        return grad_flows(u, self)

    def _fused_ok(self, u):
        """Whether the four scans can read the grid in place (:func:`ss2d_scan_triton`): the
        triton backend, the 'rows' kernels, and ``fused_scan`` (inference) or
        ``fused_scan_train`` (when gradients are needed)."""
        if ss2d_scan_triton is None or not triton_kernels_run(self.scan_backend, u.device):
            return False
        grad = self._needs_grad(u)
        if not (self.fused_scan_train if grad else self.fused_scan):
            return False
        return ss2d_scan_supported(self.d_state, u.shape[0] * K * u.shape[1], u.device, grad)

    def _projections(self, x_dbl):
        """x_proj outputs (B, 4, R + 2N, L) -> delta (B, 4D, L) through each direction's dt_proj,
        and B, C (B, 4, N, L) contiguous (group k = direction k)."""
        b, _, _, L = x_dbl.shape
        dts, Bs, Cs = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=2)
        dts = torch.einsum("bkrl,kdr->bkdl", dts, self.dt_projs_weight).reshape(b, -1, L)
        return dts, Bs.contiguous(), Cs.contiguous()

    def direction_inputs(self, xs):
        """Scan inputs from u in the four scan orders, xs (B, 4, D, L) -> delta (B, 4D, L),
        B, C (B, 4, N, L) (each direction's x_proj, then its dt_proj)."""
        return self._projections(torch.einsum("bkdl,kcd->bkcl", xs, self.x_proj_weight))

    def scan_params(self, dtype):
        """(A (4D, N), scan keywords D, delta_bias, delta_softplus, out_dtype) for u of ``dtype``:
        the scan's parameters in fp32, or in ``dtype`` where that is wider (float64); out_dtype
        fp32 (or wider) with ``scan_fp32``, else None (u's dtype)."""
        sdt = torch.promote_types(dtype, torch.float32)
        A = -torch.exp(self.A_logs.to(sdt))
        return A, dict(D=self.Ds.to(sdt), delta_bias=self.dt_projs_bias.to(sdt).view(-1),
                       delta_softplus=True, out_dtype=sdt if self.scan_fp32 else None)

    def scan_input(self, x):
        """u = SiLU(depthwise conv(in_proj(x))): (B, C, H, W) -> (B, D, H, W), compute dtype."""
        return self.act(self.conv2d(self.in_proj(x)))

    def output(self, y, dtype):
        """Summed scan outputs y (B, D, H, W) -> out_proj(out_norm(y) cast to ``dtype``) (B, C, H, W)."""
        return self.out_proj(self.out_norm(y).to(dtype))

    def forward(self, x):
        u = self.scan_input(x)                                    # (B, D, H, W), compute dtype
        b, d, h, w = u.shape
        dtype, L = u.dtype, h * w
        # fused path: the scan reads u in its dtype and writes y in fp32, as the official fp32
        # u (a cast of the same values) would, without the copy
        A, kw = self.scan_params(dtype)
        sdt = kw["D"].dtype
        if self._fused_ok(u):
            # rows and columns of the grid once; each direction's projections at its source
            # positions; the scan walks k >= 2 backwards in place (no flips, no 4x copy)
            u2 = torch.stack([u.flatten(2), u.transpose(2, 3).flatten(2)], dim=1)  # (B, 2, D, L)
            del u
            wx = self.x_proj_weight.view(2, 2, -1, d)              # [k // 2, k % 2]
            x_dbl = torch.einsum("bsdl,jscd->bjscl", u2, wx).reshape(b, K, -1, L)
            grad = self._needs_grad(u2)
            if not (grad or self.y_fp32_inference):
                kw["out_dtype"] = None                             # y in u's dtype (fp32 for fp32 u)
            if self.dtproj_in_scan and self.dt_rank <= self.dtproj_max_rank and not grad:
                r, n = self.dt_rank, self.d_state
                Bs, Cs = x_dbl[:, :, r:r + n].contiguous(), x_dbl[:, :, r + n:].contiguous()
                ys = ss2d_scan_dtproj(u2, x_dbl, self.dt_projs_weight.to(u2.dtype), A, Bs, Cs, **kw)
            else:
                dts, Bs, Cs = self._projections(x_dbl)
                ys = ss2d_scan_triton(u2, dts, A, Bs, Cs, **kw)
                del dts
            del u2, x_dbl, Bs, Cs
            ys = ys.view(b, K, d, L)
            if self.merge_kernel and not grad and (L >= self.merge_kernel_min_positions
                                                   or not torch.compiler.is_compiling()):
                n = self.out_norm
                return self.out_proj(ss2d_merge_norm(ys, n.weight, n.bias, n.eps, h, w, dtype))
            cols = (ys[:, 1] + ys[:, 3]).view(b, d, w, h).transpose(2, 3).reshape(b, d, L)
            y = ys[:, 0] + ys[:, 2] + cols                        # (B, D, L) row-major
            del ys
        else:
            xs = cross_scan_2d(u)                                 # (B, 4, D, L)
            del u
            dts, Bs, Cs = self.direction_inputs(xs)
            us = xs.reshape(b, K * d, L)
            del xs
            if self.scan_fp32:
                # the official fp32 copy: with bf16 u and an fp32 output instead, the compiled
                # training step measured slower on the H100 (2026-12-06, B=12: 192 vs 260
                # clips/s; cause not established, the bf16 backward's tiles are twice as long)
                us, kw["out_dtype"] = us.to(sdt), None
            ys = selective_scan(us, dts, A, Bs, Cs, backend=self.scan_backend, **kw)  # (B, 4D, L)
            del us, dts, Bs, Cs
            y = cross_merge_2d(ys.view(b, K, d, L), h, w)         # (B, D, L)
            del ys
        return self.output(y.view(b, d, h, w), dtype)
