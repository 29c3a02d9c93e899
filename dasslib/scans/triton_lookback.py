"""Single-pass Triton forward with decoupled look-back ("lookback"), for few rows and small N.

Few long rows (batch 1 x 768 channels of DASS at long inputs: 2^19 steps) give the "rows"
kernel too few programs to fill the GPU, and chaining its chunks serializes them; the "seq"
kernel's chunk pre-pass reads u and delta twice. Here every program owns BD rows over one chunk
of K tiles and reads each input once (the parallel-scan scheme of Merrill & Garland, "Single-pass
parallel prefix scan with decoupled look-back", 2016):

1. load all K tiles (the whole chunk: many loads in flight), scan them from a zero start,
   keeping per tile and state ``y_loc = D u + sum_n C_n h_loc`` and ``G_n = C_n * prod(dA)``
   (the decay from the chunk start) in registers;
2. publish the chunk's aggregate ``h -> P h + H`` per row and state (flag 1);
3. look back over the previous chunks of the same rows: combine aggregates until one has
   published its inclusive end state (flag 2), which gives this chunk's start state ``c``;
4. publish the inclusive end state ``P c + H`` (flag 2);
5. write ``y = (y_loc + sum_n G_n c_n) * silu(z)`` (and the states for the backward).

Programs take tickets in start order, row blocks fastest, so a program only waits on chunks
that started before it (no deadlock, also under the interpreter, which runs programs in turn).
The registers hold 2 + N values per tile element, so K * N is kept small (N <= 2 by default).
"""
import triton
import triton.language as tl

from .triton_kernels import (_combine, _row_block, _row_params, _rows_load, _softplus,
                             _take_ticket)

_LB_GENERIC = ["n_tiles", "n_chunks", "n_state_tiles", "G_B", "G_C", "store_states"]


@triton.jit
def _flag_value(flags_ptr, slot):
    """Spin until ``slot``'s flag is non-zero; return it (acquire)."""
    f = tl.atomic_add(flags_ptr + slot, 0, sem="acquire", scope="gpu")
    while f == 0:
        f = tl.atomic_add(flags_ptr + slot, 0, sem="acquire", scope="gpu")
    return f


@triton.jit
def _set_flag(flags_ptr, slot, value):
    """Set ``slot``'s flag to ``value`` after every thread's stores (barrier, then release)."""
    tl.debug_barrier()
    tl.atomic_xchg(flags_ptr + slot, value, sem="release", scope="gpu")


@triton.jit
def _look_back(flags_ptr, aggP_ptr, aggH_ptr, incl_ptr, rb, q, r, n_chunks,
               N: tl.constexpr, NP: tl.constexpr):
    """Start state (tuple of N (BD,) vectors) of chunk q > 0 of row block rb: walk back over the
    chunks before it, composing published aggregates, until one published its inclusive state."""
    accP = ()
    accH = ()
    start = ()
    for n in tl.static_range(N):
        accP = accP + (tl.full(r.shape, 1.0, tl.float32),)
        accH = accH + (tl.zeros(r.shape, tl.float32),)
        start = start + (tl.zeros(r.shape, tl.float32),)
    j = q - 1
    while j >= 0:
        f = _flag_value(flags_ptr, rb * n_chunks + j)
        base = (r * n_chunks + j) * NP
        if f == 2:
            new_start = ()
            for n in tl.static_range(N):
                s = tl.load(incl_ptr + base + n, volatile=True)
                new_start = new_start + (accP[n] * s + accH[n],)
            start = new_start
            j = -1
        else:
            newP = ()
            newH = ()
            for n in tl.static_range(N):
                p = tl.load(aggP_ptr + base + n, volatile=True)
                h = tl.load(aggH_ptr + base + n, volatile=True)
                newH = newH + (accP[n] * h + accH[n],)
                newP = newP + (accP[n] * p,)
            accP = newP
            accH = newH
            j = j - 1
    return start


@triton.jit(do_not_specialize=_LB_GENERIC)
def _lookback_fwd_kernel(
    u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, dtb_ptr, h0_ptr,
    y_ptr, states_ptr, aggP_ptr, aggH_ptr, incl_ptr, flags_ptr, ticket_ptr,
    dim, L, n_tiles, n_state_tiles, n_chunks, G_B, G_C, store_states,
    N: tl.constexpr, NP: tl.constexpr, BD: tl.constexpr, BLOCK_L: tl.constexpr,
    K: tl.constexpr, STATE_EVERY: tl.constexpr,
    B_VARYING: tl.constexpr, C_VARYING: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr,
    HAS_DTB: tl.constexpr, SOFTPLUS: tl.constexpr, HAS_H0: tl.constexpr, FAST_LOG: tl.constexpr,
):
    """Forward of BD rows over chunk q (K tiles of BLOCK_L steps), see the module docstring.
    aggP / aggH / incl: (rows, n_chunks, NP) fp32; flags: (row blocks, n_chunks) int32 zeros.
    store_states writes the state after every STATE_EVERY tiles and after the last one."""
    rb, q = _take_ticket(ticket_ptr, n_chunks, False)
    rr, r, di, row_off, bB, bC = _row_block(rb, dim, L, G_B, G_C, N, BD)
    BC: tl.constexpr = (N == 1) and B_VARYING and C_VARYING
    t0 = tl.arange(0, BLOCK_L)
    zr = (rr * 0)[:, None]
    is_first = (t0 == 0)[None, :]
    is_last = (t0 == BLOCK_L - 1)[None, :]
    off0 = row_off[:, None] + t0[None, :]
    k_first = q * K
    raw = ()
    for i in tl.static_range(K):      # the whole chunk's loads are issued up front
        raw = raw + (_rows_load(k_first + i, n_tiles, u_ptr, dt_ptr, z_ptr, B_ptr, C_ptr, off0,
                                bB, bC, t0, zr, L, BLOCK_L, HAS_Z, BC),)
    A2, Binv, Cinv, Dv, dtb = _row_params(A_ptr, B_ptr, C_ptr, D_ptr, dtb_ptr, di,
                                          1.4426950408889634, N, B_VARYING, C_VARYING, HAS_D,
                                          HAS_DTB)
    # 1. the chunk from a zero start: per tile y_loc, G_n = C_n * decay since the chunk start, z,
    #    and per state the tile-end (decay, state) pair for the stored states
    hl = ()
    pl = ()
    for n in tl.static_range(N):
        hl = hl + (tl.zeros((BD,), tl.float32),)
        pl = pl + (tl.full((BD,), 1.0, tl.float32),)
    tiles = ()
    for i in tl.static_range(K):
        ut, dtr, zt, bt, ct = raw[i]
        t = (k_first + i) * BLOCK_L + t0
        m2 = (t < L)[None, :]
        t2 = t[None, :] + zr
        u = ut.to(tl.float32)
        dt = dtr.to(tl.float32)
        if HAS_DTB:
            dt = dt + dtb[:, None]
        if SOFTPLUS:
            dt = _softplus(dt, FAST_LOG)
        dt = tl.where(m2, dt, 0.0)      # decay 1 and no input past L
        du = dt * u
        y = tl.zeros((BD, BLOCK_L), dtype=tl.float32)
        if HAS_D:
            y = Dv[:, None] * u
        G = ()
        ends = ()
        new_hl = ()
        new_pl = ()
        for n in tl.static_range(N):
            if BC:
                Bn = bt.to(tl.float32)
            elif B_VARYING:
                Bn = tl.load(B_ptr + bB + n * L + t2, mask=m2, other=0.0).to(tl.float32)
            else:
                Bn = Binv[n][:, None]
            dA = tl.exp2(dt * A2[n][:, None])
            x = du * Bn
            x = tl.where(is_first, x + dA * hl[n][:, None], x)
            a, h = tl.associative_scan((dA, x), axis=1, combine_fn=_combine)
            if BC:
                Cn = ct.to(tl.float32)
            elif C_VARYING:
                Cn = tl.load(C_ptr + bC + n * L + t2, mask=m2, other=0.0).to(tl.float32)
            else:
                Cn = Cinv[n][:, None]
            y += h * Cn
            G = G + (Cn * (a * pl[n][:, None]),)
            h_end = tl.sum(tl.where(is_last, h, 0.0), axis=1)
            p_end = pl[n] * tl.sum(tl.where(is_last, a, 0.0), axis=1)
            ends = ends + ((p_end, h_end),)
            new_hl = new_hl + (h_end,)
            new_pl = new_pl + (p_end,)
        hl = new_hl
        pl = new_pl
        tiles = tiles + ((y, G, zt, ends),)
    # 2.-4. aggregate, look-back, inclusive state
    slot = rb * n_chunks + q
    cbase = (r * n_chunks + q) * NP
    start = ()
    for n in tl.static_range(N):
        start = start + (tl.zeros((BD,), dtype=tl.float32),)
    if q == 0:
        if HAS_H0:
            h0 = ()
            for n in tl.static_range(N):
                h0 = h0 + (tl.load(h0_ptr + r * N + n),)
            start = h0
    else:
        for n in tl.static_range(N):
            tl.store(aggP_ptr + cbase + n, pl[n])
            tl.store(aggH_ptr + cbase + n, hl[n])
        _set_flag(flags_ptr, slot, 1)
        start = _look_back(flags_ptr, aggP_ptr, aggH_ptr, incl_ptr, rb, q, r, n_chunks, N, NP)
    if q < n_chunks - 1:
        for n in tl.static_range(N):
            tl.store(incl_ptr + cbase + n, pl[n] * start[n] + hl[n])
        _set_flag(flags_ptr, slot, 2)
    # 5. outputs (and the true states at tile ends, for the backward)
    st_ptr = states_ptr + (r.to(tl.int64) * n_state_tiles * NP)
    for i in tl.static_range(K):
        y, G, zt, ends = tiles[i]
        k = k_first + i
        t = k * BLOCK_L + t0
        m2 = (t < L)[None, :]
        for n in tl.static_range(N):
            y += G[n] * start[n][:, None]
            if store_states != 0:
                if (((k + 1) % STATE_EVERY == 0) | (k == n_tiles - 1)) & (k < n_tiles):
                    p_end, h_end = ends[n]
                    tl.store(st_ptr + (k // STATE_EVERY) * NP + n, p_end * start[n] + h_end)
        if HAS_Z:
            z = zt.to(tl.float32)
            y = y * (z * tl.sigmoid(z))
        tl.store(y_ptr + off0 + k * BLOCK_L, y, mask=m2)
