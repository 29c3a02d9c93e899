"""Autograd wrapper and launch configuration of the Triton selective scan."""
import os
from dataclasses import dataclass, replace

import torch
import triton

from .args import check_scan_args
from .triton_kernels import _bwd_kernel, _fwd_kernel, _seq_fwd_kernel


@dataclass(frozen=True)
class TritonConfig:
    """How a scan is launched.

    fwd: "seq" (thread-per-row sequential kernel) or "scan" (tile-scan kernel).
    block_l: tile length of the tile-scan kernels; the forward stores the state every
    block_l steps for the backward. num_warps: warps of the tile-scan kernels.
    chained: one program per tile with a published carry (tile-scan kernels, long L).
    seq_warps: warps of the sequential kernel (32 rows each). n_chunks: chunks per row of the
    sequential kernel (> 1 adds a pre-pass that computes chunk end states). prefetch: how many
    4-step tiles of u/delta/z the sequential kernel loads ahead.
    """
    fwd: str = "seq"
    block_l: int = 64
    num_warps: int = 4
    chained: bool = False
    seq_warps: int = 1
    n_chunks: int = 1
    prefetch: int = 2


def pick_config(rows, L, N, device):
    """Default :class:`TritonConfig` for ``rows`` = batch*dim sequences of length L and state N.

    Aim: >= ~16 resident warps per SM. The sequential forward has ``rows / 32`` warps, so long
    sequences with few rows are cut into chunks; the tile-scan backward has ``rows`` programs,
    or ``rows * n_tiles`` when chained.
    """
    NP = triton.next_power_of_2(N)
    block_l = max(16, min(triton.next_power_of_2(L), 4096 // NP, 1024))
    n_tiles = triton.cdiv(L, block_l)
    num_warps = 4 if NP * block_l <= 2048 else 8
    if device.type != "cuda":
        return TritonConfig(block_l=block_l, num_warps=num_warps)
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    chained = rows < 8 * sms and n_tiles >= 4
    warps = triton.cdiv(rows, 32)
    want = 16 * sms
    n_chunks = 1
    if warps < want:
        n_chunks = max(1, min(triton.cdiv(want, warps), L // (4 * block_l)))
    return TritonConfig(block_l=block_l, num_warps=num_warps, chained=chained, n_chunks=n_chunks)


class _Launch:
    """Sizes and flags shared by the forward and backward launches of one call."""

    def __init__(self, u, B, C, N, cfg):
        self.batch, self.dim, self.L = u.shape
        self.rows = self.batch * self.dim
        self.N, self.NP, self.cfg = N, triton.next_power_of_2(N), cfg
        self.n_tiles = triton.cdiv(self.L, cfg.block_l)
        chunk = triton.cdiv(triton.cdiv(self.L, cfg.n_chunks), cfg.block_l) * cfg.block_l
        self.chunk_len, self.n_chunks = chunk, triton.cdiv(self.L, chunk)
        self.B_var, self.C_var = B.dim() == 4, C.dim() == 4
        self.G_B = B.shape[1] if self.B_var else 1
        self.G_C = C.shape[1] if self.C_var else 1

    def tile_grid(self):
        return (self.rows * self.n_tiles,) if self.cfg.chained else (self.rows,)

    def sync_buffers(self, device):
        """(flags, ticket) of chained launches (tiny dummies otherwise)."""
        n = self.rows * self.n_tiles if self.cfg.chained else 1
        return (torch.zeros(n, dtype=torch.int32, device=device),
                torch.zeros(1, dtype=torch.int32, device=device))

    def tile_meta(self):
        return dict(N=self.N, NP=self.NP, BLOCK_L=self.cfg.block_l, B_VARYING=self.B_var,
                    C_VARYING=self.C_var, CHAINED=self.cfg.chained, num_warps=self.cfg.num_warps)


def _interpreted():
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def _contig(t, dtype=None):
    if t is None:
        return None
    t = t.contiguous()
    return t if dtype is None else t.to(dtype)


def _forward(lc, u, delta, A32, B, C, D32, z, dtb32, h032, softplus, store_states):
    """Launch the forward; returns y and the (rows * n_tiles * NP) state buffer (or None)."""
    dev = u.device
    y = torch.empty_like(u)
    states = torch.empty(lc.rows * lc.n_tiles * lc.NP if store_states else 1,
                         dtype=torch.float32, device=dev)
    dummy = states
    opt = dict(D_ptr=D32 if D32 is not None else dummy, z_ptr=z if z is not None else u,
               dtb_ptr=dtb32 if dtb32 is not None else dummy,
               h0_ptr=h032 if h032 is not None else dummy)
    flags = dict(HAS_D=D32 is not None, HAS_Z=z is not None, HAS_DTB=dtb32 is not None,
                 SOFTPLUS=softplus, HAS_H0=h032 is not None, STORE_STATES=store_states,
                 FAST_LOG=not _interpreted())
    if lc.cfg.fwd == "scan":
        fl, ticket = lc.sync_buffers(dev)
        _fwd_kernel[lc.tile_grid()](u, delta, A32, B, C, y_ptr=y, states_ptr=states,
                                    flags_ptr=fl, ticket_ptr=ticket, dim=lc.dim, L=lc.L,
                                    n_tiles=lc.n_tiles, G_B=lc.G_B, G_C=lc.G_C,
                                    **opt, **flags, **lc.tile_meta())
        return y, states
    BD = 32 * lc.cfg.seq_warps
    n_sum = lc.rows * lc.n_chunks * lc.N if lc.n_chunks > 1 else 1
    chunkP = torch.empty(n_sum, dtype=torch.float32, device=dev)
    chunkS = torch.empty(n_sum, dtype=torch.float32, device=dev)
    common = dict(rows=lc.rows, dim=lc.dim, L=lc.L, chunk_len=lc.chunk_len, n_chunks=lc.n_chunks,
                  n_state_tiles=lc.n_tiles, G_B=lc.G_B, G_C=lc.G_C, N=lc.N, NP=lc.NP, BD=BD,
                  STATE_EVERY=lc.cfg.block_l, B_VARYING=lc.B_var, C_VARYING=lc.C_var,
                  PREFETCH=lc.cfg.prefetch, num_warps=lc.cfg.seq_warps)
    args = (u, delta, A32, B, C)
    rb = triton.cdiv(lc.rows, BD)
    if lc.n_chunks > 1:
        _seq_fwd_kernel[(rb, lc.n_chunks - 1)](*args, y_ptr=y, states_ptr=states,
                                               chunkP_ptr=chunkP, chunkS_ptr=chunkS,
                                               **opt, **common, **flags, PASS=1)
    _seq_fwd_kernel[(rb, lc.n_chunks)](*args, y_ptr=y, states_ptr=states, chunkP_ptr=chunkP,
                                       chunkS_ptr=chunkS, **opt, **common, **flags,
                                       PASS=2 if lc.n_chunks > 1 else 0)
    return y, states


class _SelectiveScanTriton(torch.autograd.Function):

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, h0, softplus, want_last, cfg):
        lc = _Launch(u, B, C, A.shape[1], cfg)
        u, delta, B, C, z = (_contig(t) for t in (u, delta, B, C, z))
        A32, D32, dtb32, h032 = (_contig(t, torch.float32) for t in (A, D, delta_bias, h0))
        need_grad = any(ctx.needs_input_grad[:9])
        store = need_grad or want_last or cfg.fwd == "scan"
        y, states = _forward(lc, u, delta, A32, B, C, D32, z, dtb32, h032, softplus, store)
        last = None
        if store:
            states = states.view(lc.batch, lc.dim, lc.n_tiles, lc.NP)
            last = states[:, :, -1, :lc.N].clone()
        ctx.save_for_backward(u, delta, A32, B, C, D32, z, dtb32, h032,
                              states if need_grad else None)
        ctx.lc, ctx.softplus = lc, softplus
        ctx.dtypes = (u.dtype, delta.dtype, A.dtype, B.dtype, C.dtype)
        ctx.set_materialize_grads(False)
        return y, last

    @staticmethod
    def backward(ctx, dy, dlast):
        u, delta, A32, B, C, D32, z, dtb32, h032, states = ctx.saved_tensors
        lc, dev = ctx.lc, u.device
        f32 = dict(dtype=torch.float32, device=dev)
        dy = torch.zeros_like(u) if dy is None else dy.contiguous()
        du, ddt = torch.empty(u.shape, **f32), torch.empty(u.shape, **f32)
        dz = torch.empty(u.shape, **f32) if z is not None else du
        dB = torch.zeros(B.shape if lc.B_var else (lc.rows, lc.N), **f32)
        dC = torch.zeros(C.shape if lc.C_var else (lc.rows, lc.N), **f32)
        dA = torch.zeros(lc.rows, lc.N, **f32)
        dD, ddtb = torch.zeros(lc.rows, **f32), torch.zeros(lc.rows, **f32)
        dh0 = torch.empty(lc.rows, lc.N, **f32)
        lam = torch.empty(lc.rows * lc.n_tiles * lc.NP, **f32) if lc.cfg.chained else dA
        flags, ticket = lc.sync_buffers(dev)
        dummy = dA
        _bwd_kernel[lc.tile_grid()](
            u, delta, A32, B, C, D32 if D32 is not None else dummy, z if z is not None else u,
            dtb32 if dtb32 is not None else dummy, h032 if h032 is not None else dummy, states,
            dy, dlast.contiguous() if dlast is not None else dummy,
            du, ddt, dz, dB, dC, dA, dD, ddtb, dh0, lam, flags, ticket,
            lc.dim, lc.L, lc.n_tiles, lc.G_B, lc.G_C,
            HAS_D=D32 is not None, HAS_Z=z is not None, HAS_DTB=dtb32 is not None,
            SOFTPLUS=ctx.softplus, HAS_H0=h032 is not None, HAS_DLAST=dlast is not None,
            FAST_LOG=not _interpreted(), **lc.tile_meta())
        ut, dtt, At, Bt, Ct = ctx.dtypes
        per_channel = (lambda g: g.view(lc.batch, lc.dim, *g.shape[1:]).sum(0))
        dB = dB.to(Bt) if lc.B_var else per_channel(dB).to(Bt)
        dC = dC.to(Ct) if lc.C_var else per_channel(dC).to(Ct)
        return (du.to(ut), ddt.to(dtt), per_channel(dA).to(At), dB, dC,
                per_channel(dD) if D32 is not None else None,
                dz.to(z.dtype) if z is not None else None,
                per_channel(ddtb) if dtb32 is not None else None,
                dh0.view(lc.batch, lc.dim, lc.N) if h032 is not None else None,
                None, None, None)


def selective_scan_triton(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                          return_last_state=False, initial_state=None, config=None, **overrides):
    """Fused Triton selective scan, forward and backward, on CUDA (or on the CPU under
    ``TRITON_INTERPRET=1``). Arguments and returns as :func:`dasslib.scans.selective_scan`.
    ``config`` (:class:`TritonConfig`) or keyword overrides of its fields replace the
    defaults of :func:`pick_config` (tests, tuning)."""
    s = check_scan_args(u, delta, A, B, C, D, z, delta_bias, initial_state)
    if u.device.type != "cuda" and not _interpreted():
        raise ValueError(f"backend 'triton' needs CUDA tensors (or TRITON_INTERPRET=1), got {u.device}")
    cfg = replace(config or pick_config(s.batch * s.dim, s.L, s.N, u.device), **overrides)
    if cfg.fwd not in ("seq", "scan"):
        raise ValueError(f"config.fwd must be 'seq' or 'scan', got {cfg.fwd!r}")
    if cfg.block_l < 4 or cfg.block_l & (cfg.block_l - 1):
        raise ValueError(f"config.block_l must be a power of two >= 4, got {cfg.block_l}")
    y, last = _SelectiveScanTriton.apply(u, delta, A, B, C, D, z, delta_bias, initial_state,
                                         bool(delta_softplus), bool(return_last_state), cfg)
    return (y, last) if return_last_state else y
