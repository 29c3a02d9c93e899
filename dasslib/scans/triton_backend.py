"""Launch configuration of the Triton selective scan and its custom ops (forward, backward,
autograd), which torch.compile and CUDA graphs see as single opaque calls."""
import json
from dataclasses import asdict, dataclass, replace
from typing import List, Optional, Tuple

import torch

from .api import interpreted
from .args import check_scan_args
from .launch_math import cdiv, next_power_of_2
from .seq_kernels import _seq_bwd_kernel, _seq_fwd_kernel
from .triton_kernels import (
    UNROLL_MAX_N,
    _bwd_kernel,
    _fwd_kernel,
    _rows_bwd_kernel,
    _rows_fwd_kernel,
)

SEQ_BWD_ROWS = 32       # rows per program of the "seq" backward (one warp, a thread per row)
# pick_config's backward after the seq forward for many rows (AuM): 0 the rows backward; 1..32 the seq
# backward summing dB / dC over that many rows per atomic (docs/speed.md: not yet timed; benchmarks set it
# per label to time it against the rows backward in one run)
SEQ_BACKWARD = 0


@dataclass(frozen=True)
class TritonConfig:
    """How a scan is launched.

    fwd: "rows" (row-block tile-scan kernel), "seq" (thread-per-row sequential kernel) or
    "scan" (one-row tile-scan kernel).
    block_l: tile length of the "scan" backward and forward (the forward then stores the state
    every block_l steps for that backward). num_warps: warps of those tile kernels.
    chained: one program per tile with a published carry (tile-scan kernels, long L).
    seq_warps: warps of the sequential kernel (32 rows each). n_chunks: chunks per row of the
    sequential kernel (> 1 adds a pre-pass that computes chunk end states). prefetch: how many
    tiles of u/delta/z the "seq" (4-step tiles) and "rows" (rows_block tiles) kernels load ahead.
    rows: rows per program of the "rows" forward (reduced to a power of two dividing the rows of
    one B/C group); rows_block: the tile of the "rows" kernels (0: one 16-byte vector per lane,
    128 fp32 / 256 bf16 steps; when a backward follows 128 for N > 4 and 256 for N <= 4; at most
    block_l with the "scan" backward); rows_warps: its warps
    (<= rows keeps the scan inside a warp);
    rows_chunks: chunks per row, chained in ticket order (short programs, no idle last wave).
    bwd: "rows" (row-block backward, bwd_rows rows (half for 2-byte inputs with a given
    rows_block) in bwd_warps warps,
    bwd_chunks chained chunks, states stored every rows_block steps) or "scan" (one-row
    tile-scan backward, states every block_l steps; always used after the "scan" forward) or "seq"
    (after the "seq" forward with time-varying B / C, plain or "fobi" layout, channels per B / C group
    a multiple of 32; else "rows": a thread per row, states stored every 4 steps; bwd_row_sum (1, 2, 4,
    ..., 32): its time-varying dB / dC summed over groups of that many of a warp's rows (shuffles)
    before one atomic add per group and step);
    bwd_prefetch: 1 loads the next tile of the rows backward (u, delta, dy, z) while one is
    computed, 0 not; 2 (N = 1) also its B, C and stored state, which 1 loads inside the tile's
    recomputation (not yet timed; offline, sm_90, N = 1, 256-step tiles: bf16 158 registers and 1136
    instructions against 162 and 1072, fp32 219 registers against 168).
    seq_stages: Triton's ``num_stages`` (software pipelining of the loop's loads) for the
    "seq" kernel; 0 leaves Triton's default.
    seq_maxnreg: register cap of the "seq" kernels (ptxas ``maxnreg``; 0: no cap). The output
    pass needs ~210 registers uncapped, which allows only 8 one-warp programs per SM.
    rows_vec: 16-byte vectors per lane in a tile of the "rows" kernels when rows_block is 0
    (1: 128 fp32 / 256 bf16 steps; 4 keeps four times the bytes in flight per warp).
    bwd_maxnreg: register cap of the "rows" backward (ptxas ``maxnreg``; 0: no cap). Offline
    (sm_90, DASS's N = 1, 256-step tiles) it takes 162 registers in bf16 uncapped (12 one-warp
    programs per SM) and fits 128 without spills (16 per SM).
    seq_bc_prefetch: the "seq" kernel loads the next tile's time-varying B / C while one is
    computed (Nsight Compute put the output pass's stalls on those loads; offline, N = 16 bf16,
    it takes 255 registers: 8 one-warp programs per SM instead of 12).
    seq_widen: the "seq" forward widens bf16 B / C to fp32 by a shift of their bits (one integer op per
    value) instead of Triton's conversion (about 1.5; offline, sm_90, N = 16 bf16 L = 528: 734 instructions
    per 4-step tile against 794 (scripts.kernel_stats, loops), 182 registers against 168, i.e. 11 one-warp
    programs per SM instead of 12; 28 bytes of spills under ``seq_maxnreg=168``). Same values.
    seq_uniform: the "seq" forward takes each program's B / C group offsets and direction from its first
    row where all its rows share them (channels per B / C group a multiple of its rows), so a thread loads
    the B / C tiles once for the rows it holds; seq_thread_rows: rows per thread of the "seq" forward
    (1, 2 or 4; with seq_uniform they share every B / C load and conversion).
    bwd_spread: the "rows" backward runs its row blocks in an order with (batch, B group) fastest
    instead of channels fastest. In launch order the programs running at once are a group's
    channels side by side, and each adds its time-varying dB / dC into the same (N, L) row of its
    group (DASS: 192 channels per group); spread, about 1 / (batch x G) of them do. On by default where
    many rows run the rows kernels (pick_config). H100, dass shape, two hosts: fp32 6% and 14% faster; bf16
    15% faster on one and 28% slower on the other (bf16 varies more between runs than this).
    rows_carry_in_scan: the "rows" forward's carry enters each tile's scan at its first step and
    leaves as a masked sum (default), instead of being added after the scan times the cumulative
    decay and read with a gather (False; same values). The second form (78f5022) saved 24 of 656
    instructions in the plain layout offline but adds 96 to the 976 of SS2D's direction layout
    (sm_90, N = 1, bf16); on the H100 (2026-12-07) the plain layout timed even (0.339 / 0.340 ms
    fp32, 0.191 / 0.197 ms bf16 at the dass shape) and DASS-Small's rows forward took 1.95 ms per
    B=32 forward with it against 1.78 ms before it.
    """
    fwd: str = "rows"
    block_l: int = 64
    num_warps: int = 4
    chained: bool = False
    seq_warps: int = 1
    n_chunks: int = 1
    prefetch: int = 2
    rows: int = 4
    rows_block: int = 0
    rows_warps: int = 4
    rows_chunks: int = 1
    bwd: str = "rows"
    bwd_rows: int = 1
    bwd_warps: int = 1
    bwd_chunks: int = 1
    bwd_prefetch: int = 1
    seq_stages: int = 0
    seq_maxnreg: int = 0
    rows_vec: int = 1
    bwd_maxnreg: int = 0
    seq_bc_prefetch: bool = False
    seq_widen: bool = False
    seq_uniform: bool = False
    seq_thread_rows: int = 1
    rows_carry_in_scan: bool = True
    bwd_spread: bool = False
    bwd_row_sum: int = 32


def pick_config(rows, L, N, device, sms=None):
    """Default :class:`TritonConfig` for ``rows`` = batch*dim sequences of length L and state N.

    Forward, by regime (see docs/scans.md):

    - many rows (>= 16 per SM, e.g. DASS 12x768 or AuM 12x1536): "rows", 4 rows per program
      (a warp each; they share the B/C loads), tiles of one 16-byte vector per lane, the next
      tiles prefetched (2 ahead for N <= 2, 1 for larger N to keep registers low), one chunk
      per row (chained chunks, ``rows_chunks``, measured no faster on the H100); but for
      4 < N <= 16 (AuM, Mamba) "seq" in one chunk, a thread per row (2.5x faster at AuM-Base's
      B=32 scan on the H100).
    - few rows, N <= 2 (DASS at long inputs, batch 1): "rows" in one chunk with tiles of 4
      vectors per lane, fewer rows per program until >= 2 programs per SM.
    - few rows, larger N (batch 1 x 768 channels, N 16): "seq" (a thread per row, all N states
      in registers) with the sequence cut into chunks so that ~16 warps per SM run: a pre-pass
      computes the chunk end states, the output pass starts each chunk from the folded ones.

    Backward: "rows" (one row per one-warp program): in one chunk for many rows, in chained chunks
    for few rows with N <= 2 (DASS at long inputs); the "scan" tile kernel for few rows with
    larger N (chained over tiles when rows < 8 x SMs).
    ``sms`` (streaming multiprocessors) is read from the device; pass it to get the CUDA
    choice on another device (tests). On the CPU (interpreter) without ``sms``: plain "rows".
    On CUDA the tile lengths do not depend on L (short inputs run masked tiles), so a model's
    kernels compile once for all input lengths, not once per power of two below the tile.
    """
    NP = next_power_of_2(N)
    block_l = max(16, min(4096 // NP, 1024))
    if sms is None and device.type != "cuda":     # interpreter: no longer tiles than the sequence
        block_l = max(16, min(next_power_of_2(L), block_l))
    n_tiles = cdiv(L, block_l)
    num_warps = 4 if NP * block_l <= 2048 else 8
    base = dict(block_l=block_l, num_warps=num_warps)
    bwd_rows = 1      # one row per one-warp program: ~100 registers, ~20 warps per SM
    if sms is None:
        if device.type != "cuda":
            return TritonConfig(**base, prefetch=2 if N <= 2 else 1, bwd_rows=bwd_rows)
        sms = torch.cuda.get_device_properties(device).multi_processor_count
    if rows >= 16 * sms and 4 < N <= 16:
        # large state, many rows (AuM, SSAM-like N 16): the sequential forward, a thread per row
        # with its states in registers (~8 instructions per state-step against ~31 for the rows
        # tile scan), one chunk; the rows backward (states stored every rows tile). H100, AuM-Base
        # Fo-Bi at B=32 (32 x 3072 x 513, N 16): forward 0.92 ms against 2.31 ms for "rows" (bf16),
        # 1.06 vs 2.50 (fp32); forward+backward 8.48 vs 10.05 ms (results/gpu/scan_state_loop)
        if SEQ_BACKWARD:
            return TritonConfig(fwd="seq", seq_warps=1, n_chunks=1, prefetch=1, bwd="seq",
                                bwd_row_sum=SEQ_BACKWARD, **base)
        return TritonConfig(fwd="seq", seq_warps=1, n_chunks=1, prefetch=1, bwd="rows",
                            bwd_rows=bwd_rows, bwd_warps=1, bwd_chunks=1, **base)
    if rows >= 16 * sms:
        # forward: ~8 programs of 4 warps per SM at a time, >= 8 waves of them; backward: up to
        # 32 one-warp programs per SM, >= 8 waves
        # forward: one chunk: on the H100 (results/gpu/scan_bench.log) 4 chained chunks were no
        # faster in fp32 (0.561 vs 0.554 ms) and slower in bf16 (0.578 vs 0.340 ms) at DASS 12x768x8192
        # backward: one chunk per row, row blocks (batch, B group)-fastest (bwd_spread). H100, dass shape
        # 12 x 768 x 8192, forward+backward (3819f87, results/gpu/model_speed/scan_tune_dass_bwd_*): bf16
        # 1.420 ms against 1.677 in launch order and 2.276 with 4 chained chunks (the choice until then);
        # fp32 1.681 against 1.789 and 1.754. Another host (002c82d): fp32 1.814 against 2.117 in launch
        # order, bf16 2.041 against 1.597. SS2D's direction layouts ran one chunk already.
        chunks = 1
        return TritonConfig(fwd="rows", prefetch=2 if N <= 2 else 1, rows=4, rows_warps=4,
                            rows_chunks=chunks, bwd="rows", bwd_rows=bwd_rows, bwd_warps=1,
                            bwd_chunks=1, bwd_spread=True, **base)
    chained = rows < 8 * sms and n_tiles >= 4
    if NP <= 2:
        # few rows, small state (DASS at long inputs: 768 rows of 2^19 steps, N 1): the rows
        # forward, one chunk per row block (every input read once), tiles of 4 vectors per lane
        # (4x the bytes in flight per warp) and rows per program halved until there are >= 2
        # programs per SM (H100, results/gpu/scan_fewrows: 768 rows 2.13 ms = 76% of copy with
        # 2 rows per program, 384 rows 5.31 ms = 61% with 1; "seq" with 88 chunks 8.51 ms)
        # Backward: the rows kernel (a warp per row, 256-step tiles) in chained chunks of >= 8 tiles, at most
        # 64 per row (a row's chunks run one after another, its rows side by side). H100, dass_long
        # 1 x 768 x 524288 forward+backward (results/gpu/model_speed/scan_vs_mamba_2026-12-07_2290ff1.*):
        # 64 chunks 6.83 ms fp32 / 5.48 ms bf16, 16 chunks 6.84 / 5.71, against 8.32 / 8.67 with the tile
        # kernel ("scan", chained tiles), the choice until then, and mamba-ssm's 7.59 / 5.92
        bd = 4
        while bd > 1 and rows // bd < 2 * sms:
            bd //= 2
        bwd_chunks = max(1, min(64, cdiv(L, 256) // 8))
        return TritonConfig(fwd="rows", rows=bd, rows_warps=bd, rows_vec=4, prefetch=1,
                            bwd="rows", bwd_rows=1, bwd_warps=1, bwd_chunks=bwd_chunks,
                            chained=chained, **base)
    warps = cdiv(rows, 32)
    want = 16 * sms
    n_chunks = 1
    if warps < want:
        n_chunks = max(1, min(cdiv(want, warps), L // (4 * block_l)))
    return TritonConfig(fwd="seq", chained=chained, n_chunks=n_chunks, prefetch=2, bwd="scan",
                        **base)


def rows_per_program(want, dim, G_B, G_C):
    """Largest power of two <= want dividing dim and the channels of one B/C group (G = 0:
    time-invariant B/C, no constraint), so that a program's rows share batch and group."""
    bd = 1
    while bd * 2 <= want and all(dim % (bd * 2) == 0 and (g == 0 or (dim // g) % (bd * 2) == 0)
                                 for g in (G_B, G_C)):
        bd *= 2
    return bd


class _Launch:
    """Sizes and flags shared by the forward and backward launches of one call."""

    def __init__(self, u, B, C, N, cfg, shape=None, layout="", training=False):
        # shape: (batch, dim, L) of the scan when u is a source of another shape (layout "ss2d")
        self.batch, self.dim, self.L = u.shape if shape is None else shape
        # layout "ss2d": SS2D's direction layout
        # layout "fobi": AuM's Fo-Bi, the scan of (batch, 2 d, L) whose upper half scans the same
        # u, delta, z, B, C (sources of (batch, d, L) / (batch, G, N, L)) right to left
        # layout "bibi": Vim / AuM's Bi-Bi, the scan of (batch, 2 d, L) whose upper half (its own
        # rows of u, delta, z and its own B / C groups, in natural order) runs right to left
        self.layout = layout
        ss2d = layout == "ss2d"
        self.shared = layout == "fobi"
        if layout not in ("", "ss2d", "fobi", "bibi"):
            raise ValueError(f"unknown scan layout {layout!r}")
        self.rev_upper = bool(layout)
        self.rows = self.batch * self.dim
        self.N, self.NP, self.cfg = N, next_power_of_2(N), cfg
        self.B_var, self.C_var = B.dim() == 4, C.dim() == 4
        if layout in ("fobi", "bibi") and not (self.B_var and self.C_var):
            raise ValueError(f"the {layout!r} layout needs time-varying B and C (batch, G, N, L)")
        if layout == "bibi" and (B.shape[1] % 2 or C.shape[1] % 2):
            raise ValueError("the 'bibi' layout needs B / C with an even number of groups (both directions')")
        # u sources: ss2d's rows and columns; fobi's G groups of (batch, d, L), which both
        # directions' groups g and g + G read
        self.u_src = 2 if ss2d else (B.shape[1] if self.shared else 0)
        self.G_B = B.shape[1] * (2 if self.shared else 1) if self.B_var else 1
        self.G_C = C.shape[1] * (2 if self.shared else 1) if self.C_var else 1
        gB, gC = (self.G_B if self.B_var else 0), (self.G_C if self.C_var else 0)
        self.bwd = "scan" if cfg.fwd == "scan" else cfg.bwd
        if self.bwd == "seq" and not self._seq_bwd_runs(cfg, layout):
            self.bwd = "rows"
        # the seq backward reads the states as (n_tiles, N, rows): a warp's rows in one line
        self.states_t = self.bwd == "seq"
        # tile of the "rows" kernels: rows_vec 16-byte vectors per lane (under the interpreter,
        # at most the padded length). With a backward to follow (``training``: the forward that
        # stores states, and the backward) the tile is 4 steps per lane for N > 4 and 8 for
        # N <= 4, whatever the dtype. N > 4: the rows backward holds a state's tiles in registers
        # (offline sm_90, unrolled states: N=16 1084 bytes of spills per thread at 8 steps per
        # lane, 608 at 4). N <= 4: H100, DASS 12 x 768 x 8192 forward+backward at 256-step tiles
        # 1.20 ms fp32 / 1.59 ms bf16, at 128 1.50 / 1.68 ms (results/gpu/scan_state_loop)
        self.state_loop = N > UNROLL_MAX_N.value   # the rows kernels loop over the states (scratch carries)
        steps = 16 // u.element_size()
        if training:
            steps = min(steps, 4) if self.state_loop else max(steps, 8)
        # the rows backward's tile is one vector per lane (rows_vec is the forward's, for inference)
        vec = 1 if training and self.bwd == "rows" else cfg.rows_vec
        rb = next_power_of_2(cfg.rows_block or 32 * vec * max(1, steps))
        if u.device.type != "cuda":
            rb = min(rb, max(16, next_power_of_2(self.L)))
        if self.bwd == "scan":
            rb = min(rb, cfg.block_l)
        self.rows_block = rb
        self.rows_tiles = cdiv(self.L, rb)
        # the forward stores the state after every state_block steps, for the backward
        self.state_block = {"rows": rb, "seq": 4}.get(self.bwd, cfg.block_l)
        self.n_tiles = cdiv(self.L, self.state_block)
        chunk = cdiv(cdiv(self.L, cfg.n_chunks), cfg.block_l) * cfg.block_l
        self.chunk_len, self.n_chunks = chunk, cdiv(self.L, chunk)
        self.BD = rows_per_program(cfg.rows, self.dim, gB, gC)
        # direction layouts run every row in one chunk (chained chunks follow ticket order)
        self.chunk_tiles = cdiv(self.rows_tiles, 1 if layout else cfg.rows_chunks)
        self.rows_chunks = cdiv(self.rows_tiles, self.chunk_tiles)
        # bwd_rows is meant for 4-step tiles per lane; a given rows_block with 2-byte inputs is
        # taken as twice the tile, so half the rows
        wide = cfg.rows_block and u.element_size() < 4
        self.bwd_BD = rows_per_program(max(1, cfg.bwd_rows // 2 if wide else cfg.bwd_rows),
                                       self.dim, gB, gC)
        self.bwd_chunk_tiles = cdiv(self.rows_tiles, 1 if layout else cfg.bwd_chunks)
        self.bwd_chunks = cdiv(self.rows_tiles, self.bwd_chunk_tiles)

    def _seq_bwd_runs(self, cfg, layout):
        """Whether the "seq" backward takes this call: after the "seq" forward, time-varying B / C, the
        plain, "fobi" or "bibi" layout, and whole warps of rows of one batch and B / C group."""
        return (cfg.fwd == "seq" and self.B_var and self.C_var and layout in ("", "fobi", "bibi")
                and all((self.dim // g) % SEQ_BWD_ROWS == 0 for g in (1, self.G_B, self.G_C)))

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


def _contig(t, dtype=None):
    if t is None:
        return None
    t = t.contiguous()
    return t if dtype is None else t.to(dtype)


def _forward(lc, u, delta, A32, B, C, D32, z, dtb32, h032, softplus, store_states, y_dtype, dt_proj=None):
    """Launch the forward; returns y (batch, dim, L) in ``y_dtype`` and the
    (rows * n_tiles * NP) state buffer (or None). ``dt_proj`` (rows forward only): (weight
    (dim, R), R, rows per group of ``delta``), delta then being x_dbl (batch, G_B, rows, L)
    whose first R rows per group the kernel projects (:func:`ss2d_scan_dtproj`)."""
    dev = u.device
    y = torch.empty((lc.batch, lc.dim, lc.L), dtype=y_dtype, device=dev)
    states = torch.empty(lc.rows * lc.n_tiles * (lc.N if lc.states_t else lc.NP) if store_states else 1,
                         dtype=torch.float32, device=dev)
    dummy = states
    opt = dict(D_ptr=D32 if D32 is not None else dummy, z_ptr=z if z is not None else u,
               dtb_ptr=dtb32 if dtb32 is not None else dummy,
               h0_ptr=h032 if h032 is not None else dummy)
    flags = dict(HAS_D=D32 is not None, HAS_Z=z is not None, HAS_DTB=dtb32 is not None,
                 SOFTPLUS=softplus, HAS_H0=h032 is not None, FAST_LOG=not interpreted())
    if lc.cfg.fwd == "rows":
        nq = lc.rows_chunks
        cstate = torch.empty(lc.rows * nq * lc.NP if nq > 1 else 1, dtype=torch.float32, device=dev)
        fl = torch.zeros(lc.rows // lc.BD * nq if nq > 1 else 1, dtype=torch.int32, device=dev)
        ticket = torch.zeros(1, dtype=torch.int32, device=dev)
        # the carry per row and state when the kernel loops over states
        carry = torch.empty(lc.rows * lc.NP if lc.state_loop else 1, dtype=torch.float32, device=dev)
        dtw, R, xr = dt_proj if dt_proj is not None else (dummy, 0, 0)
        _rows_fwd_kernel[(lc.rows // lc.BD * nq,)](
            u, delta, A32, B, C, dtw_ptr=dtw, dt_xr=xr, DT_R=R,
            y_ptr=y, states_ptr=states, cstate_ptr=cstate, carry_ptr=carry,
            flags_ptr=fl,
            ticket_ptr=ticket, dim=lc.dim, L=lc.L, n_tiles=lc.rows_tiles, n_state_tiles=lc.n_tiles,
            chunk_tiles=lc.chunk_tiles, n_chunks=nq, G_B=lc.G_B, G_C=lc.G_C,
            store_states=int(store_states), N=lc.N, NP=lc.NP,
            BD=lc.BD, BLOCK_L=lc.rows_block, STATE_EVERY=lc.state_block // lc.rows_block,
            B_VARYING=lc.B_var, C_VARYING=lc.C_var, PREFETCH=lc.cfg.prefetch, CHUNKED=nq > 1,
            REV_UPPER=lc.rev_upper, U_SRC=lc.u_src, SHARED=lc.shared,
            CARRY_IN_SCAN=bool(lc.cfg.rows_carry_in_scan), num_warps=min(lc.cfg.rows_warps, lc.BD), **opt, **flags)
        return y, states
    if lc.cfg.fwd == "scan":
        fl, ticket = lc.sync_buffers(dev)
        _fwd_kernel[lc.tile_grid()](u, delta, A32, B, C, y_ptr=y, states_ptr=states,
                                    flags_ptr=fl, ticket_ptr=ticket, dim=lc.dim, L=lc.L,
                                    n_tiles=lc.n_tiles, G_B=lc.G_B, G_C=lc.G_C,
                                    STORE_STATES=store_states, **opt, **flags, **lc.tile_meta())
        return y, states
    BD = 32 * lc.cfg.seq_warps * lc.cfg.seq_thread_rows
    uniform = bool(lc.cfg.seq_uniform) and all(
        (lc.dim // g) % BD == 0 for g in (lc.G_B if lc.B_var else 1, lc.G_C if lc.C_var else 1))
    n_sum = lc.rows * lc.n_chunks * lc.N if lc.n_chunks > 1 else 1
    chunkP = torch.empty(n_sum, dtype=torch.float32, device=dev)
    chunkS = torch.empty(n_sum, dtype=torch.float32, device=dev)
    common = dict(rows=lc.rows, dim=lc.dim, L=lc.L, chunk_len=lc.chunk_len, n_chunks=lc.n_chunks,
                  n_state_tiles=lc.n_tiles, G_B=lc.G_B, G_C=lc.G_C, N=lc.N, NP=lc.NP, BD=BD,
                  STATE_EVERY=lc.state_block, B_VARYING=lc.B_var, C_VARYING=lc.C_var,
                  PREFETCH=max(1, lc.cfg.prefetch), REV_UPPER=lc.rev_upper, U_SRC=lc.u_src,
                  SHARED=lc.shared, BC_PREFETCH=bool(lc.cfg.seq_bc_prefetch), WIDEN=bool(lc.cfg.seq_widen),
                  UNIFORM=uniform, STATES_T=lc.states_t,
                  num_warps=lc.cfg.seq_warps)
    if lc.cfg.seq_stages:
        common["num_stages"] = lc.cfg.seq_stages
    if lc.cfg.seq_maxnreg and not interpreted():
        common["maxnreg"] = lc.cfg.seq_maxnreg
    args = (u, delta, A32, B, C)
    rb = cdiv(lc.rows, BD)
    if lc.n_chunks > 1:
        _seq_fwd_kernel[(rb, lc.n_chunks - 1)](*args, y_ptr=y, states_ptr=states,
                                               chunkP_ptr=chunkP, chunkS_ptr=chunkS,
                                               store_states=0, **opt, **common, **flags, PASS=1)
    # the output pass (PASS 2) starts chunk q from the summaries of chunks < q: none for one chunk,
    # so one compiled kernel serves every n_chunks (a separate one-chunk variant would compile
    # again when a length crosses the chunking threshold)
    _seq_fwd_kernel[(rb, lc.n_chunks)](*args, y_ptr=y, states_ptr=states, chunkP_ptr=chunkP,
                                       chunkS_ptr=chunkS, store_states=int(store_states),
                                       **opt, **common, **flags, PASS=2)
    return y, states


def _backward(lc, u, delta, A32, B, C, D32, z, dtb32, h032, states, dy, dlast, softplus, dtypes):
    """Launch the backward; returns (du, ddelta, dA, dB, dC, dD, dz, ddelta_bias, dh0) in the
    inputs' dtypes (``dtypes``: those of u, delta, A, B, C), None where an input was None."""
    dev = u.device
    f32 = dict(dtype=torch.float32, device=dev)
    ut, dtt, At, Bt, Ct = dtypes
    rows_bwd = lc.bwd in ("rows", "seq")
    if lc.layout and not rows_bwd:
        raise ValueError(f"the {lc.layout!r} layout's backward runs on the rows kernel, not "
                         f"{lc.bwd!r}")
    shape = (lc.batch, lc.dim, lc.L)
    # the rows backward stores du / ddelta / dz in their final dtype; the scan one in fp32;
    # du of rows that share a source (ss2d, fobi: u_src > 0, summed below) in fp32
    # ("fobi": delta and z are shared sources too, their rows summed the same way)
    du = torch.empty(shape, dtype=ut if rows_bwd and not lc.u_src else torch.float32, device=dev)
    ddt = torch.empty(shape, dtype=dtt if rows_bwd and not lc.shared else torch.float32, device=dev)
    dz = (torch.empty(shape, dtype=z.dtype if rows_bwd and not lc.shared else torch.float32, device=dev)
          if z is not None else du)
    dB = torch.zeros(B.shape if lc.B_var else (lc.rows, lc.N), **f32)
    dC = torch.zeros(C.shape if lc.C_var else (lc.rows, lc.N), **f32)
    # (the seq backward writes dA as (N, rows): a warp's rows in one line per state)
    dA = torch.zeros(lc.N, lc.rows, **f32).t() if lc.bwd == "seq" else torch.zeros(lc.rows, lc.N, **f32)
    dD, ddtb = torch.zeros(lc.rows, **f32), torch.zeros(lc.rows, **f32)
    dh0 = torch.empty(lc.rows, lc.N, **f32)
    dummy = dA
    opt = (D32 if D32 is not None else dummy, z if z is not None else u,
           dtb32 if dtb32 is not None else dummy, h032 if h032 is not None else dummy, states,
           dy, dlast if dlast is not None else dummy,
           du, ddt, dz, dB, dC, dA, dD, ddtb, dh0)
    flags_ = dict(HAS_D=D32 is not None, HAS_Z=z is not None, HAS_DTB=dtb32 is not None,
                  SOFTPLUS=softplus, HAS_H0=h032 is not None, HAS_DLAST=dlast is not None,
                  FAST_LOG=not interpreted())
    if lc.bwd == "seq":
        # A read as (N, dim): a warp's rows read one line per state
        carry = torch.empty(lc.N * lc.rows if lc.state_loop else 1, **f32)
        _seq_bwd_kernel[(lc.rows // SEQ_BWD_ROWS,)](
            u, delta, A32.t().contiguous(), B, C, *opt, carry,
            lc.rows, lc.dim, lc.L, lc.n_tiles, lc.G_B, lc.G_C,
            N=lc.N, NP=lc.NP, BD=SEQ_BWD_ROWS, REV_UPPER=lc.rev_upper, U_SRC=lc.u_src, SHARED=lc.shared,
            ROW_SUM=lc.cfg.bwd_row_sum, STATE_LOOP=lc.state_loop, num_warps=1, **flags_,
            **(dict(maxnreg=lc.cfg.bwd_maxnreg) if lc.cfg.bwd_maxnreg and not interpreted() else {}))
    elif rows_bwd:
        nq = lc.bwd_chunks
        cstate = torch.empty(lc.rows * nq * lc.NP if nq > 1 else 1, **f32)
        # the adjoint carry per row and state when the kernel loops over states
        nl = torch.empty(lc.rows * lc.NP if lc.state_loop else 1, **f32)
        fl = torch.zeros(lc.rows // lc.bwd_BD * nq if nq > 1 else 1, dtype=torch.int32,
                         device=dev)
        ticket = torch.zeros(1, dtype=torch.int32, device=dev)
        _rows_bwd_kernel[(lc.rows // lc.bwd_BD * nq,)](
            u, delta, A32, B, C, *opt, cstate, nl, fl, ticket,
            lc.dim, lc.L, lc.rows_tiles, lc.bwd_chunk_tiles, nq, lc.G_B, lc.G_C,
            N=lc.N, NP=lc.NP, BD=lc.bwd_BD, BLOCK_L=lc.rows_block, B_VARYING=lc.B_var,
            C_VARYING=lc.C_var, CHUNKED=nq > 1, PREFETCH=bool(lc.cfg.bwd_prefetch),
            PREFETCH_BC=lc.cfg.bwd_prefetch >= 2 and lc.N == 1, SPREAD=lc.cfg.bwd_spread,
            REV_UPPER=lc.rev_upper, U_SRC=lc.u_src, SHARED=lc.shared,
            num_warps=min(lc.cfg.bwd_warps, lc.bwd_BD), **flags_,
            **(dict(maxnreg=lc.cfg.bwd_maxnreg) if lc.cfg.bwd_maxnreg and not interpreted() else {}))
    else:
        lam = torch.empty(lc.rows * lc.n_tiles * lc.NP, **f32) if lc.cfg.chained else dA
        flags, ticket = lc.sync_buffers(dev)
        _bwd_kernel[lc.tile_grid()](
            u, delta, A32, B, C, *opt, lam, flags, ticket,
            lc.dim, lc.L, lc.n_tiles, lc.G_B, lc.G_C, **flags_, **lc.tile_meta())
    if lc.shared:   # fobi: both directions read the same u, delta, z
        def halves(g):
            g = g.view(lc.batch, 2, lc.dim // 2, lc.L)
            return g[:, 0] + g[:, 1]
        du, ddt = halves(du), halves(ddt)
        if z is not None:
            dz = halves(dz)
    elif lc.u_src:   # ss2d: directions k and k + 2 read the same source k
        du = du.view(lc.batch, 4, lc.dim // 4, lc.L)
        du = du[:, :2] + du[:, 2:]
    def per_channel(g):
        return (g.view(lc.batch, lc.dim, *g.shape[1:]).sum(0))
    dB = dB.to(Bt) if lc.B_var else per_channel(dB).to(Bt)
    dC = dC.to(Ct) if lc.C_var else per_channel(dC).to(Ct)
    return (du.to(ut), ddt.to(dtt), per_channel(dA).to(At), dB, dC,
            per_channel(dD) if D32 is not None else None,
            dz.to(z.dtype) if z is not None else None,
            per_channel(ddtb) if dtb32 is not None else None,
            dh0.view(lc.batch, lc.dim, lc.N) if h032 is not None else None)


# --- the scan as PyTorch custom ops -------------------------------------------------------
# ``dasslib::selective_scan_fwd`` / ``_bwd`` are opaque to torch.compile (shapes come from the
# fake implementations below), so a compiled model traces through the scan without a graph
# break and CUDA graphs capture it. The launch config travels as a JSON string ("" = the
# default of :func:`pick_config` for the shapes and device); absent optional tensors come back
# from the backward op as empty tensors.

def _config_of(config, shape, A, device):
    """The call's TritonConfig: ``config`` (JSON) or the default for a (batch, dim, L) scan."""
    if config:
        return TritonConfig(**json.loads(config))
    return pick_config(shape[0] * shape[1], shape[2], A.shape[1], device)


def _stores(cfg, store_states):
    return bool(store_states) or cfg.fwd == "scan"


def _states_shape(lc):
    if lc.states_t:
        return (lc.n_tiles, lc.N, lc.batch, lc.dim)
    return (lc.batch, lc.dim, lc.n_tiles, lc.NP)


def _last_state(states, N, transposed):
    """(batch, dim, N) state after the last step, from a states buffer of :func:`_states_shape`."""
    if transposed:
        return states[-1, :N].permute(1, 2, 0)
    return states[:, :, -1, :N]


def _launch_of(u, delta, A, B, C, config, layout, training):
    """(config, _Launch) of one call; the scan's shape is delta's ((batch, dim, L));
    ``training``: a forward that stores states for the backward, or the backward."""
    shape = tuple(delta.shape)
    if layout == "fobi":       # A (2 d, N): both directions' channels over (batch, d, L) sources
        shape = (shape[0], A.shape[0], shape[2])
    cfg = _config_of(config, shape, A, delta.device)
    lc = _Launch(u, B, C, A.shape[1], cfg, shape=shape, layout=layout, training=training)
    return cfg, lc


def _scan_fwd_impl(u, delta, A, B, C, D, z, delta_bias, h0, softplus, store_states, config, y_fp32=False,
                   layout=""):
    """-> (y (batch, dim, L) in u's dtype (float32 if ``y_fp32``), states fp32
    (batch, dim, n_tiles, NP), or (n_tiles, N, batch, dim) when the "seq" backward follows: the state
    after every state tile, for the backward; shape (0,) when not stored). layout "ss2d": u is
    (batch, 2, dim // 4, L), see :func:`ss2d_scan_triton`."""
    cfg, lc = _launch_of(u, delta, A, B, C, config, layout, store_states)
    u, delta, B, C, z = (_contig(t) for t in (u, delta, B, C, z))
    A32, D32, dtb32, h032 = (_contig(t, torch.float32) for t in (A, D, delta_bias, h0))
    store = _stores(cfg, store_states)
    y, states = _forward(lc, u, delta, A32, B, C, D32, z, dtb32, h032, softplus, store,
                         torch.float32 if y_fp32 else u.dtype)
    return y, (states.view(_states_shape(lc)) if store else states.new_empty(0))


@torch.library.custom_op("dasslib::selective_scan_fwd", mutates_args=())
def _scan_fwd(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
              C: torch.Tensor, D: Optional[torch.Tensor], z: Optional[torch.Tensor],
              delta_bias: Optional[torch.Tensor], h0: Optional[torch.Tensor], softplus: bool,
              store_states: bool, config: str, y_fp32: bool = False,
              layout: str = "") -> Tuple[torch.Tensor, torch.Tensor]:
    """:func:`_scan_fwd_impl` as a custom op (what torch.compile traces)."""
    return _scan_fwd_impl(u, delta, A, B, C, D, z, delta_bias, h0, softplus, store_states, config, y_fp32,
                          layout)


@_scan_fwd.register_fake
def _scan_fwd_fake(u, delta, A, B, C, D, z, delta_bias, h0, softplus, store_states, config,
                   y_fp32=False, layout=""):
    cfg, lc = _launch_of(u, delta, A, B, C, config, layout, store_states)
    shape = _states_shape(lc) if _stores(cfg, store_states) else (0,)
    return (torch.empty((lc.batch, lc.dim, lc.L), dtype=torch.float32 if y_fp32 else u.dtype,
                        device=u.device),
            torch.empty(shape, dtype=torch.float32, device=u.device))


def _scan_bwd_impl(u, delta, A, B, C, D, z, delta_bias, h0, states, dy, dlast, softplus, config, layout=""):
    """-> [du, ddelta, dA, dB, dC, dD, dz, ddelta_bias, dh0], each like its input ((0,) where
    the input is None)."""
    cfg, lc = _launch_of(u, delta, A, B, C, config, layout, True)
    dtypes = (u.dtype, delta.dtype, A.dtype, B.dtype, C.dtype)
    u, delta, B, C, z, dy, dlast = (_contig(t) for t in (u, delta, B, C, z, dy, dlast))
    A32, D32, dtb32, h032 = (_contig(t, torch.float32) for t in (A, D, delta_bias, h0))
    grads = _backward(lc, u, delta, A32, B, C, D32, z, dtb32, h032,
                      states.view(-1), dy, dlast, softplus, dtypes)
    return [g if g is not None else u.new_empty(0) for g in grads]


@torch.library.custom_op("dasslib::selective_scan_bwd", mutates_args=())
def _scan_bwd(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
              C: torch.Tensor, D: Optional[torch.Tensor], z: Optional[torch.Tensor],
              delta_bias: Optional[torch.Tensor], h0: Optional[torch.Tensor],
              states: torch.Tensor, dy: torch.Tensor, dlast: Optional[torch.Tensor],
              softplus: bool, config: str, layout: str = "") -> List[torch.Tensor]:
    """:func:`_scan_bwd_impl` as a custom op."""
    return _scan_bwd_impl(u, delta, A, B, C, D, z, delta_bias, h0, states, dy, dlast, softplus, config, layout)


@_scan_bwd.register_fake
def _scan_bwd_fake(u, delta, A, B, C, D, z, delta_bias, h0, states, dy, dlast, softplus, config,
                   layout=""):
    return [torch.empty_like(t, memory_format=torch.contiguous_format) if t is not None
            else u.new_empty(0) for t in (u, delta, A, B, C, D, z, delta_bias, h0)]


def _scan_setup(ctx, inputs, output):
    u, delta, A, B, C, D, z, delta_bias, h0, softplus, _store, config = inputs[:12]
    layout = inputs[13] if len(inputs) > 13 else ""
    ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, h0, output[1])
    ctx.softplus, ctx.config, ctx.layout = softplus, config, layout
    ctx.traced = True


def _scan_grad(ctx, dy, dstates):
    u, delta, A, B, C, D, z, delta_bias, h0, states = ctx.saved_tensors
    if states.numel() == 0:
        raise RuntimeError("the scan's forward ran without storing states for the backward "
                           "(gradients were off when it ran)")
    N = A.shape[1]
    dlast = None
    if dstates is not None:
        _, lc = _launch_of(u, delta, A, B, C, ctx.config, ctx.layout, True)
        dlast = _last_state(dstates, N, lc.states_t)
    if dy is None:      # y of (batch, dim, L): A has a row per channel (u may be a source)
        dy = u.new_zeros(delta.shape[0], A.shape[0], delta.shape[-1])
    bwd = torch.ops.dasslib.selective_scan_bwd if ctx.traced else _scan_bwd_impl
    g = bwd(u, delta, A, B, C, D, z, delta_bias, h0, states, dy, dlast, ctx.softplus, ctx.config, ctx.layout)
    given = (D, z, delta_bias, h0)
    return (*g[:5], *(gi if t is not None else None for gi, t in zip(g[5:], given)),
            None, None, None, None, None)


torch.library.register_autograd("dasslib::selective_scan_fwd", _scan_grad,
                                setup_context=_scan_setup)


class _EagerScan(torch.autograd.Function):
    """The custom op's forward and backward outside torch.compile, without the custom op's dispatch: the
    same implementations and the same autograd rule (:func:`_scan_setup`, :func:`_scan_grad`). The
    dispatch of the two custom ops cost about 0.25 ms per forward+backward on the host (CPU, kernels stubbed
    out: 0.47 ms in all), which an eager call pays on top of its kernels."""

    @staticmethod
    def forward(ctx, *inputs):
        out = _scan_fwd_impl(*inputs)
        _scan_setup(ctx, inputs, out)
        ctx.traced = False
        ctx.set_materialize_grads(False)    # an unused output's gradient stays None, as the custom op's
        return out

    @staticmethod
    def backward(ctx, dy, dstates):
        return _scan_grad(ctx, dy, dstates)


def _scan_op(*inputs):
    """(y, states) of the scan: the custom op under torch.compile (it traces the op), else
    :class:`_EagerScan` (same kernels, less host work per call)."""
    if torch.compiler.is_compiling():
        return torch.ops.dasslib.selective_scan_fwd(*inputs)
    return _EagerScan.apply(*inputs)


def _device_check(name, t):
    """A ValueError naming ``name`` unless t is on CUDA or the interpreter is on."""
    if t.device.type != "cuda" and not interpreted():
        raise ValueError(f"{name} needs CUDA tensors (or TRITON_INTERPRET=1), got {t.device}")


def _y_fp32(u, out_dtype):
    if out_dtype not in (None, u.dtype, torch.float32):
        raise ValueError(f"out_dtype must be None, the input's dtype or torch.float32, got {out_dtype}")
    return out_dtype == torch.float32 and u.dtype != torch.float32


def selective_scan_triton(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                          return_last_state=False, initial_state=None, config=None,
                          out_dtype=None, **overrides):
    """Fused Triton selective scan, forward and backward, on CUDA (or on the CPU under
    ``TRITON_INTERPRET=1``). Arguments and returns as :func:`dasslib.scans.selective_scan`.
    ``config`` (:class:`TritonConfig`) or keyword overrides of its fields replace the
    defaults of :func:`pick_config` (tests, tuning)."""
    s = check_scan_args(u, delta, A, B, C, D, z, delta_bias, initial_state)
    y_fp32 = _y_fp32(u, out_dtype)
    _device_check("backend 'triton'", u)
    cfg = replace(config or pick_config(s.batch * s.dim, s.L, s.N, u.device), **overrides)
    if cfg.fwd not in ("rows", "seq", "scan"):
        raise ValueError(f"config.fwd must be 'rows', 'seq' or 'scan', got {cfg.fwd!r}")
    if cfg.block_l < 4 or cfg.block_l & (cfg.block_l - 1):
        raise ValueError(f"config.block_l must be a power of two >= 4, got {cfg.block_l}")
    if cfg.bwd not in ("rows", "scan", "seq"):
        raise ValueError(f"config.bwd must be 'rows', 'scan' or 'seq', got {cfg.bwd!r}")
    if cfg.bwd_row_sum not in (1, 2, 4, 8, 16, 32):
        raise ValueError(f"config.bwd_row_sum must be a power of two up to 32, got {cfg.bwd_row_sum}")
    if cfg.seq_thread_rows not in (1, 2, 4):
        raise ValueError(f"config.seq_thread_rows must be 1, 2 or 4, got {cfg.seq_thread_rows}")
    if min(cfg.rows, cfg.rows_warps, cfg.rows_chunks, cfg.n_chunks, cfg.seq_warps, cfg.bwd_rows,
           cfg.bwd_warps, cfg.bwd_chunks, cfg.rows_vec) < 1 or min(cfg.prefetch, cfg.rows_block,
                                                     cfg.bwd_prefetch, cfg.seq_maxnreg,
                                                     cfg.bwd_maxnreg) < 0:
        raise ValueError(f"bad counts in {cfg}")
    need_grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (u, delta, A, B, C, D, z, delta_bias, initial_state))
    spec = json.dumps(asdict(cfg)) if (config is not None or overrides) else ""
    y, states = _scan_op(
        u, delta, A, B, C, D, z, delta_bias, initial_state, bool(delta_softplus),
        need_grad or bool(return_last_state), spec, y_fp32, "")
    if not return_last_state:
        return y
    _, lc = _launch_of(u, delta, A, B, C, spec, "", True)
    return y, _last_state(states, s.N, lc.states_t).clone()


def ss2d_scan_triton(u2, delta, A, B, C, D=None, delta_bias=None, delta_softplus=True,
                     out_dtype=None):
    """The four SS2D scans without materialised cross-scan copies.

    u2: (batch, 2, d, L): the grid's rows (source 0, index h*W + w) and columns (source 1,
    index w*H + h). Direction k in 0..3 scans source k % 2, forwards for k < 2 and backwards
    (right to left) for k >= 2, as VMamba's cross-scan orders k0 rows, k1 columns, k2 and k3
    their reverses. delta: (batch, 4*d, L), B, C: (batch, 4, N, L), each direction's values at
    its SOURCE positions (not flipped); A: (4*d, N); D, delta_bias: (4*d,).
    Returns y (batch, 4*d, L) at the source positions, in u2's dtype (float32 with
    ``out_dtype=torch.float32``): cross-merge is then y0 + y2 + columns-to-rows(y1 + y3).
    Differentiable where the rows backward runs (many rows; :func:`ss2d_scan_supported`).
    """
    b, _, d, L = _ss2d_u2_check("ss2d_scan_triton", u2)
    s = check_scan_args(delta, delta, A, B, C, D, None, delta_bias)
    if (s.batch, s.dim, s.L) != (b, 4 * d, L) or s.groups_B != 4 or s.groups_C != 4:
        raise ValueError(f"ss2d scan needs delta (batch, 4*d, L) = {(b, 4 * d, L)} and B, C with "
                         f"4 groups, got delta {tuple(delta.shape)}, B {tuple(B.shape)}, "
                         f"C {tuple(C.shape)}")
    need_grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad
                                                for t in (u2, delta, A, B, C, D, delta_bias))
    _ss2d_config("ss2d_scan_triton", (s.batch, s.dim, s.L), A, u2.device, need_grad)
    y, _ = _scan_op(u2, delta, A, B, C, D, None, delta_bias, None, bool(delta_softplus), need_grad, "",
                    _y_fp32(u2, out_dtype), "ss2d")
    return y


def _ss2d_u2_check(name, u2):
    """(batch, 2, d, L) of u2, on CUDA or under the interpreter, else a ValueError naming ``name``."""
    if u2.dim() != 4 or u2.shape[1] != 2:
        raise ValueError(f"u2 must be (batch, 2, d, L), got {tuple(u2.shape)}")
    _device_check(name, u2)
    return tuple(u2.shape)


def _ss2d_config(name, shape, A, device, backward):
    """The default config of a (batch, 4 d, L) SS2D scan; a ValueError naming ``name`` unless it runs on
    the 'rows' kernels (the direction layout's), with ``backward`` the rows backward too."""
    cfg = _config_of("", shape, A, device)
    if not _layout_runs("ss2d", cfg, backward):
        raise ValueError(f"{name} runs on the 'rows' kernels; N={A.shape[1]} at {shape[0] * shape[1]} "
                         f"rows picks forward {cfg.fwd!r}, backward {cfg.bwd!r}")
    return cfg


def _dtproj_check(u2, x_dbl, dt_weight, B, C):
    b, _, d, L = _ss2d_u2_check("ss2d_scan_dtproj", u2)
    N = B.shape[2] if B.dim() == 4 else -1
    if x_dbl.dim() != 4 or x_dbl.shape[0] != b or x_dbl.shape[1] != 4 or x_dbl.shape[3] != L:
        raise ValueError(f"x_dbl must be (batch, 4, R + 2N, L) = ({b}, 4, R + 2N, {L}), got {tuple(x_dbl.shape)}")
    if dt_weight.dim() != 3 or dt_weight.shape[:2] != (4, d) or dt_weight.shape[2] + 2 * N != x_dbl.shape[2]:
        raise ValueError(f"dt_weight must be (4, {d}, R) with R + 2N = {x_dbl.shape[2]} rows of x_dbl, "
                         f"got {tuple(dt_weight.shape)} (N = {N})")
    if B.shape != (b, 4, N, L) or C.shape != (b, 4, N, L):
        raise ValueError(f"B and C must be ({b}, 4, N, {L}), got {tuple(B.shape)}, {tuple(C.shape)}")
    return b, d, L, dt_weight.shape[2]


@torch.library.custom_op("dasslib::ss2d_scan_dtproj", mutates_args=())
def _ss2d_dtproj(u2: torch.Tensor, x_dbl: torch.Tensor, dt_weight: torch.Tensor, A: torch.Tensor,
                 B: torch.Tensor, C: torch.Tensor, D: Optional[torch.Tensor], delta_bias: Optional[torch.Tensor],
                 softplus: bool, y_fp32: bool) -> torch.Tensor:
    b, d, L, R = _dtproj_check(u2, x_dbl, dt_weight, B, C)
    shape = (b, 4 * d, L)
    cfg = _ss2d_config("ss2d_scan_dtproj", shape, A, u2.device, False)
    lc = _Launch(u2, B, C, A.shape[1], cfg, shape=shape, layout="ss2d", training=False)
    u2, x_dbl, B, C = (_contig(t) for t in (u2, x_dbl, B, C))
    A32, D32, dtb32 = (_contig(t, torch.float32) for t in (A, D, delta_bias))
    w = dt_weight.reshape(4 * d, R).contiguous()
    y, _ = _forward(lc, u2, x_dbl, A32, B, C, D32, None, dtb32, None, softplus, False,
                    torch.float32 if y_fp32 else u2.dtype, dt_proj=(w, R, x_dbl.shape[2]))
    return y


@_ss2d_dtproj.register_fake
def _ss2d_dtproj_fake(u2, x_dbl, dt_weight, A, B, C, D, delta_bias, softplus, y_fp32):
    b, d, L, _ = _dtproj_check(u2, x_dbl, dt_weight, B, C)
    return u2.new_empty((b, 4 * d, L), dtype=torch.float32 if y_fp32 else u2.dtype)


def ss2d_scan_dtproj(u2, x_dbl, dt_weight, A, B, C, D=None, delta_bias=None, delta_softplus=True,
                     out_dtype=None):
    """:func:`ss2d_scan_triton` with each direction's dt projection inside the scan (inference).

    x_dbl: (batch, 4, R + 2N, L), the four directions' x_proj outputs at their source positions
    (rows [:R] the dt inputs; B, C: (batch, 4, N, L), its other rows, given apart);
    dt_weight: (4, d, R) (``dt_projs_weight``, in the compute dtype as the materialised projection
    would use it). delta = einsum("bkrl,kdr->bkdl", x_dbl[:, :, :R], dt_weight) is summed in fp32
    per tile and never written; otherwise the same as ``ss2d_scan_triton(u2, delta, ...)`` (no
    rounding of delta to the compute dtype). No gradients."""
    _ss2d_u2_check("ss2d_scan_dtproj", u2)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad
                                       for t in (u2, x_dbl, dt_weight, A, B, C, D, delta_bias)):
        raise ValueError("ss2d_scan_dtproj has no backward: call it without gradients "
                         "(torch.no_grad / inference_mode)")
    return torch.ops.dasslib.ss2d_scan_dtproj(u2, x_dbl, dt_weight, A, B, C, D, delta_bias,
                                              bool(delta_softplus), _y_fp32(u2, out_dtype))


def ss2d_scan_supported(N, rows, device, backward=False):
    """Whether :func:`ss2d_scan_triton` runs for state size N and batch*4*d rows on device
    (with ``backward``: also its gradients, which need the rows backward: many rows)."""
    return _layout_runs("ss2d", pick_config(rows, 1024, N, device), backward)


# the forward kernels that have each direction layout (every layout's backward is the rows one)
_LAYOUT_FORWARDS = {"ss2d": ("rows",), "fobi": ("rows", "seq"), "bibi": ("rows", "seq")}


def _layout_runs(layout, cfg, backward):
    """Whether config cfg runs direction layout "ss2d" / "fobi" / "bibi" (with ``backward``: also its
    gradients)."""
    return cfg.fwd in _LAYOUT_FORWARDS[layout] and (not backward or cfg.bwd in ("rows", "seq"))


def fobi_scan_triton(u, delta, A, A_b, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                     out_dtype=None):
    """AuM's Fo-Bi scan (Vim ``bimamba_type="v1"``) without flipped copies.

    u, delta, z: (batch, d, L); B, C: (batch, G, N, L); A, A_b: (d, N); D, delta_bias: (d,), shared
    by both directions. One launch scans 2 d rows: rows [:d] forwards with A, rows [d:] the same
    inputs right to left with A_b (index arithmetic in the kernels, layout "fobi"). Returns y
    (batch, 2 d, L), both halves at the natural positions (each gated by silu(z)), in u's dtype
    (float32 with ``out_dtype=torch.float32``): Fo-Bi's output is ``y[:, :d] + y[:, d:]``, equal
    to ``y_f + flip(scan(flip(inputs)))`` of :func:`dasslib.scans.bidirectional_selective_scan`.
    Differentiable where the rows backward runs (:func:`fobi_scan_supported`)."""
    s = check_scan_args(u, delta, A, B, C, D, z, delta_bias)
    if A_b.shape != A.shape:
        raise ValueError(f"A_b must match A's shape {tuple(A.shape)}, got {tuple(A_b.shape)}")
    if B.dim() != 4 or C.dim() != 4:
        raise ValueError("fobi_scan_triton needs time-varying B and C (batch, G, N, L)")
    _device_check("fobi_scan_triton", u)
    A2 = torch.cat([A, A_b])
    D2 = None if D is None else torch.cat([D, D])
    dtb2 = None if delta_bias is None else torch.cat([delta_bias, delta_bias])
    return _direction_layout_scan("fobi", 2 * s.batch * s.dim, s, (u, delta, A2, B, C, D2, z, dtb2),
                                  (A_b, D, delta_bias), delta_softplus, out_dtype)


def _direction_layout_scan(layout, rows, s, inputs, more, softplus, out_dtype):
    """y of the direction layout ``layout`` ("fobi" / "bibi") over ``inputs`` (u, delta, A, B, C, D, z,
    delta_bias as the kernels take them; ``more``: other tensors that may need gradients), ``rows`` scanned
    rows; a ValueError where the default config for those rows has no such layout."""
    u = inputs[0]
    need_grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (*inputs, *more))
    cfg = pick_config(rows, s.L, s.N, u.device)
    if not _layout_runs(layout, cfg, need_grad):
        raise ValueError(f"{layout}_scan_triton runs on the 'rows' / 'seq' forward and the 'rows' / 'seq' "
                         f"backward; N={s.N} at {rows} rows picks forward {cfg.fwd!r}, backward {cfg.bwd!r}")
    y, _ = _scan_op(*inputs, None, bool(softplus), need_grad, "", _y_fp32(u, out_dtype), layout)
    return y


def fobi_scan_supported(N, rows, device, backward=False):
    """Whether :func:`fobi_scan_triton` runs for state size N and batch * 2 d rows on device."""
    return _layout_runs("fobi", pick_config(rows, 1024, N, device), backward)


def bibi_scan_triton(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                     out_dtype=None):
    """Vim / AuM's Bi-Bi scan without flipped copies.

    u, delta, z: (batch, 2 d, L); B, C: (batch, 2 G, N, L); A: (2 d, N); D, delta_bias: (2 d,). Rows
    [:d] (B / C groups [:G]) scan left to right, rows [d:] (groups [G:]) right to left over their own
    inputs, all given in natural order (index arithmetic in the kernels, layout "bibi"). Returns y
    (batch, 2 d, L) at the natural positions, in u's dtype (float32 with ``out_dtype=torch.float32``):
    ``y[:, d:]`` equals ``flip(scan(flip(inputs[:, d:])))``. Differentiable where
    :func:`bibi_scan_supported` says so."""
    s = check_scan_args(u, delta, A, B, C, D, z, delta_bias)
    if B.dim() != 4 or C.dim() != 4 or B.shape[1] % 2 or C.shape[1] % 2 or s.dim % 2:
        raise ValueError("bibi_scan_triton needs an even number of channels and time-varying B and C "
                         f"(batch, 2 G, N, L), got dim {s.dim}, B {tuple(B.shape)}, C {tuple(C.shape)}")
    _device_check("bibi_scan_triton", u)
    return _direction_layout_scan("bibi", s.batch * s.dim, s, (u, delta, A, B, C, D, z, delta_bias), (),
                                  delta_softplus, out_dtype)


def bibi_scan_supported(N, rows, device, backward=False):
    """Whether :func:`bibi_scan_triton` runs for state size N and batch * 2 d rows on device."""
    return _layout_runs("bibi", pick_config(rows, 1024, N, device), backward)
