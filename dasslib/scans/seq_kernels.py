"""Sequential ("seq") scan kernels: one thread per row, all N states in registers.

Time is walked in register tiles of 4 steps (a tuple of N (BD,) state vectors, BD = 32 rows per
warp). Per state and step the forward is just exp2 + 2 FMUL + 2 FFMA, against ~25 instructions
for the rows kernels' tile scan (``triton_kernels``) when N = 16; nothing crosses threads.

- ``_seq_fwd_kernel``: the forward. Sequences are cut into chunks for parallelism over L: PASS=1
  computes every chunk's end state from a zero start and its total decay, PASS=2 folds those into
  each chunk's start state and writes the output (one chunk: no pre-pass).
- ``_seq_bwd_kernel``: the backward after a forward (in any number of chunks) that stored the state
  after every tile of 4 steps (``STATES_T``: (n_tiles, N, rows), so a warp's 32 rows store and load one
  line per state). It walks the tiles right to left: recomputes the tile's states from the stored
  one, runs the adjoint ``lam_t = C_t dy_t + dA_{t+1} lam_{t+1}`` in the thread, and sums the
  time-varying dB / dC over groups of ``ROW_SUM`` of the warp's rows (all of one batch and B / C
  group) before one atomic add per group, step and state (``ROW_SUM = 1``: every row's).
"""
import triton
import triton.language as tl

from .triton_kernels import _SEQ_GENERIC, _bwd_tile_out, _delta_of, _row_d_dtb, _softplus


@triton.jit
def _cols4(x):
    """(R, 4) -> its 4 columns, each (R,) (in-thread when each thread owns a row)."""
    a, b = tl.split(tl.reshape(x, (x.shape[0], 2, 2)))
    c0, c2 = tl.split(a)
    c1, c3 = tl.split(b)
    return c0, c1, c2, c3


@triton.jit
def _widen(t):
    """bf16 t as fp32 by a shift of its bits into the high half (one integer op per value; Triton's
    conversion takes about 1.5)."""
    return (t.to(tl.uint16, bitcast=True).to(tl.uint32) << 16).to(tl.float32, bitcast=True)


@triton.jit
def _join4(c0, c1, c2, c3):
    """Inverse of :func:`_cols4`."""
    return tl.reshape(tl.join(tl.join(c0, c2), tl.join(c1, c3)), (c0.shape[0], 4))


@triton.jit
def _seq_pos(t0, rev, Lr, L, REV: tl.constexpr):
    """Positions (BD, 4) of scan steps t0..t0+3 of each row and their mask (position < L): the
    steps themselves, or Lr - 1 - step for a reversed row (rev = 1; Lr: L rounded up to 4, so a
    reversed row's tiles of 4 steps are the same aligned 4-position groups as a forward row's,
    the first one partly masked)."""
    steps = (t0 + tl.arange(0, 4))[None, :]
    pos = steps                  # (1, 4): the same positions for every row (contiguous)
    if REV:
        pos = tl.where(rev[:, None] != 0, Lr - 1 - steps, steps)
        # a prefetch past the last tile of a reversed row would read before the row
        return pos, (pos < L) & (pos >= 0)
    return pos, pos < L


@triton.jit
def _seq_load(t0, u_ptr, dt_ptr, z_ptr, urow, drow, rev, Lr, L, HAS_Z: tl.constexpr,
              REV: tl.constexpr):
    """Raw (delta, u, z) tiles (BD, 4) of scan steps t0..t0+3 (zeros past L); u read at the
    rows' source offsets urow, delta and z at drow."""
    pos, m = _seq_pos(t0, rev, Lr, L, REV)
    dtr = tl.load(dt_ptr + drow[:, None] + pos, mask=m, other=0.0).to(tl.float32)
    ut = tl.load(u_ptr + urow[:, None] + pos, mask=m, other=0.0).to(tl.float32)
    zt = ut
    if HAS_Z:
        zt = tl.load(z_ptr + drow[:, None] + pos, mask=m, other=0.0).to(tl.float32)
    return dtr, ut, zt


@triton.jit
def _seq_bc_tile(ptr, base, n, L, cols, m):
    """Raw B or C tile (BD, 4) of state n at positions cols (rows' group offsets ``base``), zeros where
    not m."""
    return tl.load(ptr + base[:, None] + n * L + cols, mask=m, other=0.0)


@triton.jit
def _seq_load_bc(t0, B_ptr, C_ptr, bB, bC, rev, Lr, L, N: tl.constexpr, B_VARYING: tl.constexpr,
                 C_VARYING: tl.constexpr, OUTPUT: tl.constexpr, REV: tl.constexpr):
    """Raw (un-converted) B and C tiles (BD, 4) of scan steps t0..t0+3 for each state: two tuples
    of N tiles (empty where B / C is time-invariant, C also without OUTPUT); zeros past L."""
    cols, m = _seq_pos(t0, rev, Lr, L, REV)
    bts = ()
    cts = ()
    for n in tl.static_range(N):
        if B_VARYING:
            bts = bts + (_seq_bc_tile(B_ptr, bB, n, L, cols, m),)
        if C_VARYING:
            if OUTPUT:
                cts = cts + (_seq_bc_tile(C_ptr, bC, n, L, cols, m),)
    return bts, cts


@triton.jit
def _seq_bc_cols(ptr, base, n, L, cols, m, pre, inv, VARYING: tl.constexpr, PRE_BC: tl.constexpr,
                 WIDEN: tl.constexpr = False):
    """State n's B or C at a tile's 4 steps, each (BD,) in fp32: the time-varying tile (loaded here, or
    ``pre[n]`` loaded a tile ahead), else the rows' constant ``inv[n]``. WIDEN: bf16 widened by
    :func:`_widen`."""
    if VARYING:
        if PRE_BC:
            t = pre[n]
        else:
            t = _seq_bc_tile(ptr, base, n, L, cols, m)
        if WIDEN and t.dtype == tl.bfloat16:
            t = _widen(t)
        v0, v1, v2, v3 = _cols4(t.to(tl.float32))
    else:
        v0 = inv[n]
        v1 = v0
        v2 = v0
        v3 = v0
    return v0, v1, v2, v3


@triton.jit
def _seq_tile(t0, h, dtsum, dtr, ut, zt, B_ptr, C_ptr, y_ptr, row_off, rmask, bB, bC,
              A2, Binv, Cinv, dtb, Dv, L, N: tl.constexpr,
              B_VARYING: tl.constexpr, C_VARYING: tl.constexpr, HAS_D: tl.constexpr,
              HAS_Z: tl.constexpr, HAS_DTB: tl.constexpr, SOFTPLUS: tl.constexpr,
              FAST_LOG: tl.constexpr, OUTPUT: tl.constexpr, rev, Lr,
              REV: tl.constexpr, bts=(), cts=(), PRE_BC: tl.constexpr = False, WIDEN: tl.constexpr = False):
    """Advance the states h (tuple of N (BD,) vectors) over scan steps t0..t0+3 (positions from
    :func:`_seq_pos`) from the raw tiles (dtr, ut, zt) and, if OUTPUT, store y at the rows' own
    positions. Rows past the end were clamped to a real row by the caller and are masked at the
    store. PRE_BC: the B / C tiles were loaded ahead (``bts``, ``cts`` of :func:`_seq_load_bc`)."""
    cols, m = _seq_pos(t0, rev, Lr, L, REV)
    off = row_off[:, None] + cols
    if HAS_DTB:
        dtr = dtr + dtb[:, None]
    if SOFTPLUS:
        dtr = _softplus(dtr, FAST_LOG)
    dtr = tl.where(m, dtr, 0.0)
    d0, d1, d2, d3 = _cols4(dtr)
    e0, e1, e2, e3 = _cols4(dtr * ut)
    y0 = tl.zeros_like(d0)
    y1 = tl.zeros_like(d0)
    y2 = tl.zeros_like(d0)
    y3 = tl.zeros_like(d0)
    new_h = ()
    for n in tl.static_range(N):
        b0, b1, b2, b3 = _seq_bc_cols(B_ptr, bB, n, L, cols, m, bts, Binv, B_VARYING, PRE_BC, WIDEN)
        a = A2[n]
        hn0 = tl.exp2(d0 * a) * h[n] + e0 * b0
        hn1 = tl.exp2(d1 * a) * hn0 + e1 * b1
        hn2 = tl.exp2(d2 * a) * hn1 + e2 * b2
        hn3 = tl.exp2(d3 * a) * hn2 + e3 * b3
        new_h = new_h + (hn3,)
        if OUTPUT:
            c0, c1, c2, c3 = _seq_bc_cols(C_ptr, bC, n, L, cols, m, cts, Cinv, C_VARYING, PRE_BC, WIDEN)
            y0 += c0 * hn0
            y1 += c1 * hn1
            y2 += c2 * hn2
            y3 += c3 * hn3
    if OUTPUT:
        yt = _join4(y0, y1, y2, y3)
        if HAS_D:
            yt = yt + Dv[:, None] * ut
        if HAS_Z:
            yt = yt * (zt * tl.sigmoid(zt))
        tl.store(y_ptr + off, yt, mask=rmask[:, None] & m)
    else:
        dtsum += tl.sum(dtr, axis=1)
    return new_h, dtsum


@triton.jit
def _state_slot(r, k, n, rows, n_state_tiles, N: tl.constexpr, NP: tl.constexpr, STATES_T: tl.constexpr):
    """Offset of state n of rows r after state tile k: (rows, n_state_tiles, NP) as the rows backward
    reads it, or (n_state_tiles, N, rows) (STATES_T: a warp's rows in one line) for the seq backward."""
    r64 = r.to(tl.int64)            # (n_tiles * N * rows can pass 2^31 at long inputs)
    if STATES_T:
        off = (r64 * 0 + (k * N + n)) * rows + r64
    else:
        off = (r64 * n_state_tiles + k) * NP + n
    return off


@triton.jit
def _store_states(states_ptr, r, rmask, k, n_state_tiles, h, N: tl.constexpr, NP: tl.constexpr, rows,
                  STATES_T: tl.constexpr):
    for n in tl.static_range(N):
        tl.store(states_ptr + _state_slot(r, k, n, rows, n_state_tiles, N, NP, STATES_T), h[n], mask=rmask)


@triton.jit
def _seq_groups(rc, dim, L, G_B, G_C, N: tl.constexpr, REV_UPPER: tl.constexpr, SHARED: tl.constexpr):
    """(bB, bC, rev) of rows rc: their B / C group offsets and 1 for a reversed row (shapes of rc)."""
    bi = rc // dim
    di = rc % dim
    gB = di // (dim // G_B)
    gC = di // (dim // G_C)
    rev = tl.zeros(rc.shape, dtype=tl.int32)
    if REV_UPPER:
        rev = (gB >= G_B // 2).to(tl.int32)
    if SHARED:
        bB = (bi * (G_B // 2) + gB % (G_B // 2)).to(tl.int64) * N * L
        bC = (bi * (G_C // 2) + gC % (G_C // 2)).to(tl.int64) * N * L
    else:
        bB = (bi * G_B + gB).to(tl.int64) * N * L
        bC = (bi * G_C + gC).to(tl.int64) * N * L
    return bB, bC, rev


@triton.jit
def _seq_rows(pid, rows, dim, L, G_B, G_C, N: tl.constexpr, BD: tl.constexpr, REV_UPPER: tl.constexpr,
              U_SRC: tl.constexpr, SHARED: tl.constexpr, UNIFORM: tl.constexpr = False):
    """The BD rows of program ``pid``: (r, rmask, rc (clamped to a real row: loads need no row mask),
    channel di, the rows' own offsets row_off, their B / C group offsets bB / bC, rev (1 for a
    reversed row), the offsets urow of u and drow of delta / z, Lr) in the direction layouts of the
    forward's docstring (Lr: L rounded up to 4 when rows are reversed, else L). UNIFORM: the program's
    rows share batch, B / C groups and direction (the caller checks it), so bB, bC and rev are (1,):
    B / C tiles are then loaded once per thread whatever the rows it holds."""
    r = pid * BD + tl.arange(0, BD)
    rmask = r < rows
    rc = tl.minimum(r, rows - 1)
    bi = rc // dim
    di = rc % dim
    row_off = rc.to(tl.int64) * L
    urow = row_off
    drow = row_off
    Lr = L
    if REV_UPPER:
        Lr = (L + 3) // 4 * 4
    if U_SRC > 0:
        per = dim // G_B
        urow = ((bi * U_SRC + (di // per) % U_SRC) * per + di % per).to(tl.int64) * L
        if SHARED:
            drow = urow
    gr = rc
    if UNIFORM:
        gr = tl.minimum(pid * BD + tl.arange(0, 1), rows - 1)
    bB, bC, rev = _seq_groups(gr, dim, L, G_B, G_C, N, REV_UPPER, SHARED)
    return r, rmask, rc, di, row_off, bB, bC, rev, urow, drow, Lr


@triton.jit(do_not_specialize=_SEQ_GENERIC)
def _seq_fwd_kernel(
    u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, dtb_ptr, h0_ptr,
    y_ptr, states_ptr, chunkP_ptr, chunkS_ptr,
    rows, dim, L, chunk_len, n_chunks, n_state_tiles, G_B, G_C, store_states,
    N: tl.constexpr, NP: tl.constexpr, BD: tl.constexpr, STATE_EVERY: tl.constexpr,
    B_VARYING: tl.constexpr, C_VARYING: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr,
    HAS_DTB: tl.constexpr, SOFTPLUS: tl.constexpr, HAS_H0: tl.constexpr,
    PASS: tl.constexpr, FAST_LOG: tl.constexpr,
    PREFETCH: tl.constexpr, REV_UPPER: tl.constexpr = False, U_SRC: tl.constexpr = 0,
    SHARED: tl.constexpr = False, BC_PREFETCH: tl.constexpr = False, STATES_T: tl.constexpr = False,
    WIDEN: tl.constexpr = False, UNIFORM: tl.constexpr = False,
):
    """Sequential forward, one thread per row, BD rows per program, chunk q = program_id(1).
    PASS 1: chunk summaries only (end state from zero, chunkS; decay product, chunkP);
    PASS 2: output pass, chunk q starts from h0 folded through the summaries of chunks < q.
    Direction layouts as the rows kernels': REV_UPPER scans the rows of the upper half of the B
    groups right to left (y at the positions read; states stored by tiles in scan order, the
    first tile being the last in memory), U_SRC > 0 reads u from (batch, U_SRC, dim // G_B, L),
    SHARED ("fobi") also delta and z there and B / C from (batch, G / 2, N, L). BC_PREFETCH: the
    time-varying B / C tiles of the next 4 steps are loaded while a tile is computed (their load
    latency was the output pass's main stall; costs 2 N registers per array in bf16). WIDEN: bf16 B / C
    widened by a shift of their bits (:func:`_widen`). UNIFORM: the program's rows share batch, B / C
    groups and direction (:func:`_seq_rows`); with BD = 64 per warp a thread holds two rows that share its
    B / C tiles."""
    q = tl.program_id(1)
    r, rmask, rc, di, row_off, bB, bC, rev, urow, drow, Lr = _seq_rows(
        tl.program_id(0), rows, dim, L, G_B, G_C, N, BD, REV_UPPER, U_SRC, SHARED, UNIFORM)
    Dv, dtb = _row_d_dtb(D_ptr, dtb_ptr, di, HAS_D, HAS_DTB)
    A2 = ()
    h = ()
    Binv = ()
    Cinv = ()
    for n in tl.static_range(N):
        A2 = A2 + (tl.load(A_ptr + di * N + n) * 1.4426950408889634,)
        hn = tl.zeros((BD,), dtype=tl.float32)
        if HAS_H0:
            if PASS != 1:
                hn = tl.load(h0_ptr + rc * N + n)
        h = h + (hn,)
        if not B_VARYING:
            Binv = Binv + (tl.load(B_ptr + di * N + n).to(tl.float32),)
        if not C_VARYING:
            Cinv = Cinv + (tl.load(C_ptr + di * N + n).to(tl.float32),)
    if PASS == 2:   # start state of chunk q from the summaries of chunks < q
        for p in range(0, q):
            new_h = ()
            for n in tl.static_range(N):
                cidx = (rc * n_chunks + p) * N + n
                new_h = new_h + (tl.load(chunkP_ptr + cidx) * h[n] + tl.load(chunkS_ptr + cidx),)
            h = new_h
    dtsum = tl.zeros((BD,), dtype=tl.float32)
    t_start = q * chunk_len
    t_end = tl.minimum(Lr, t_start + chunk_len)
    # software pipelining: the loads of the next PREFETCH tiles are in flight while tile t0 is
    # computed (a ring of raw tiles; reads past the chunk stay inside the row or are masked)
    ring = ()
    for i in tl.static_range(PREFETCH):
        ring = ring + (_seq_load(t_start + 4 * i, u_ptr, dt_ptr, z_ptr, urow, drow, rev, Lr, L, HAS_Z,
                                 REV_UPPER),)
    # every tile masked (one instance of the tile code: compiles much faster for large N; the
    # masks are predicates, past L delta is 0 so the states pass through)
    bc = ((), ())
    if BC_PREFETCH:
        bc = _seq_load_bc(t_start, B_ptr, C_ptr, bB, bC, rev, Lr, L, N, B_VARYING, C_VARYING,
                          PASS != 1, REV_UPPER)
    for t0 in range(t_start, t_end, 4):
        dtr, ut, zt = ring[0]
        rest = ()
        for i in tl.static_range(1, PREFETCH):
            rest = rest + (ring[i],)
        ring = rest + (_seq_load(t0 + 4 * PREFETCH, u_ptr, dt_ptr, z_ptr, urow, drow, rev, Lr, L, HAS_Z,
                                 REV_UPPER),)
        bts, cts = bc
        if BC_PREFETCH:
            bc = _seq_load_bc(t0 + 4, B_ptr, C_ptr, bB, bC, rev, Lr, L, N, B_VARYING, C_VARYING,
                              PASS != 1, REV_UPPER)
        h, dtsum = _seq_tile(t0, h, dtsum, dtr, ut, zt, B_ptr, C_ptr, y_ptr, row_off, rmask,
                             bB, bC, A2, Binv, Cinv, dtb, Dv, L, N, B_VARYING, C_VARYING, HAS_D,
                             HAS_Z, HAS_DTB, SOFTPLUS, FAST_LOG, PASS != 1, rev, Lr, REV_UPPER,
                             bts, cts, BC_PREFETCH, WIDEN)
        if store_states != 0:
            if REV_UPPER:
                # a reversed row keeps the state after the 4-position group whose lowest position
                # starts a state tile, at that tile's place in scan order
                lo = Lr - 4 - t0
                keep = tl.where(rev != 0, lo % STATE_EVERY == 0,
                                ((t0 + 4) % STATE_EVERY == 0) | (t0 + 4 >= L))
                idx = tl.where(rev != 0, n_state_tiles - 1 - lo // STATE_EVERY, t0 // STATE_EVERY)
                _store_states(states_ptr, rc, rmask & keep, idx, n_state_tiles, h, N, NP, rows, STATES_T)
            elif ((t0 + 4) % STATE_EVERY == 0) | (t0 + 4 >= L):
                _store_states(states_ptr, rc, rmask, t0 // STATE_EVERY, n_state_tiles, h, N, NP, rows,
                              STATES_T)
    if PASS == 1:
        for n in tl.static_range(N):
            cidx = (rc * n_chunks + q) * N + n
            tl.store(chunkS_ptr + cidx, h[n], mask=rmask)
            tl.store(chunkP_ptr + cidx, tl.exp2(A2[n] * dtsum), mask=rmask)


@triton.jit
def _seq_state_before(states_ptr, h0_ptr, rc, k, n, rows, n_tiles, N: tl.constexpr, NP: tl.constexpr,
                      HAS_H0: tl.constexpr):
    """State n (BD,) of rows rc before tile k: stored by the forward after tile k - 1 ((n_tiles, N, rows)),
    else the initial state (or zeros)."""
    if k > 0:
        hp = tl.load(states_ptr + _state_slot(rc, k - 1, n, rows, n_tiles, N, NP, True))
    elif HAS_H0:
        hp = tl.load(h0_ptr + rc * N + n)
    else:
        hp = tl.zeros(rc.shape, dtype=tl.float32)
    return hp


@triton.jit
def _row_sum_add(ptr, base, n, L, pos, m, vals, rmask, ROW_SUM: tl.constexpr):
    """Add the (BD, 4) terms ``vals`` of state n into a (batch, G, N, L) gradient at ``pos`` ((1, 4): the
    program's rows share the group offset ``base`` (1,) and the positions, see ``UNIFORM`` of
    :func:`_seq_rows`): summed over groups of ROW_SUM rows first (shuffles: log2(ROW_SUM) rounds per
    value), then one atomic per group and step."""
    vals = tl.where(rmask[:, None], vals, 0.0)
    BD: tl.constexpr = vals.shape[0]
    if ROW_SUM > 1:
        vals = tl.sum(tl.reshape(vals, (BD // ROW_SUM, ROW_SUM, 4)), axis=1)            # (BD / ROW_SUM, 4)
    p = tl.broadcast_to(ptr + base[:, None] + n * L + pos, vals.shape)
    tl.atomic_add(p, vals, mask=tl.broadcast_to(m, vals.shape), sem="relaxed")


@triton.jit
def _seq_bwd_state(a, hp, cn, d0, d1, d2, d3, e0, e1, e2, e3, g0, g1, g2, g3, B_ptr, C_ptr, bB, bC, n, L, pos, m,
                   dB_ptr, dC_ptr, rmask, dd, lb, y, ROW_SUM: tl.constexpr):
    """State n's part of a tile of 4 steps (delta, delta u, gated dy: each (BD,) per step; a = A_n log2(e)):
    recomputes h_t from the stored state hp, runs the adjoint from the carry cn, adds dB / dC. Returns the
    new carry dA_0 lam_0, the tile's dA_n sum, and the (BD, 4) sums over the states dd, lb, y with this
    state's lam_t dA_t h_{t-1} A_n (for ddelta), lam_t B_t (du, ddelta) and h_t C_t (y, for dz) added."""
    b0, b1, b2, b3 = _cols4(_seq_bc_tile(B_ptr, bB, n, L, pos, m).to(tl.float32))
    c0, c1, c2, c3 = _cols4(_seq_bc_tile(C_ptr, bC, n, L, pos, m).to(tl.float32))
    p0 = tl.exp2(d0 * a)
    p1 = tl.exp2(d1 * a)
    p2 = tl.exp2(d2 * a)
    p3 = tl.exp2(d3 * a)
    x0 = e0 * b0
    x1 = e1 * b1
    x2 = e2 * b2
    x3 = e3 * b3
    h0 = p0 * hp + x0
    h1 = p1 * h0 + x1
    h2 = p2 * h1 + x2
    h3 = p3 * h2 + x3
    l3 = c3 * g3 + cn
    l2 = c2 * g2 + p3 * l3
    l1 = c1 * g1 + p2 * l2
    l0 = c0 * g0 + p1 * l1
    # lam_t dA_t h_{t-1} = lam_t (h_t - x_t)
    ga0 = l0 * (h0 - x0)
    ga1 = l1 * (h1 - x1)
    ga2 = l2 * (h2 - x2)
    ga3 = l3 * (h3 - x3)
    An = a * 0.6931471805599453
    _row_sum_add(dB_ptr, bB, n, L, pos, m, _join4(l0 * e0, l1 * e1, l2 * e2, l3 * e3), rmask, ROW_SUM)
    _row_sum_add(dC_ptr, bC, n, L, pos, m, _join4(h0 * g0, h1 * g1, h2 * g2, h3 * g3), rmask, ROW_SUM)
    return (p0 * l0, ga0 * d0 + ga1 * d1 + ga2 * d2 + ga3 * d3,
            dd + _join4(ga0, ga1, ga2, ga3) * An[:, None], lb + _join4(l0 * b0, l1 * b1, l2 * b2, l3 * b3),
            y + _join4(h0 * c0, h1 * c1, h2 * c2, h3 * c3))


@triton.jit(do_not_specialize=["rows", "n_tiles", "G_B", "G_C"])
def _seq_bwd_kernel(
    u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, dtb_ptr, h0_ptr, states_ptr, dy_ptr, dlast_ptr,
    du_ptr, ddt_ptr, dz_ptr, dB_ptr, dC_ptr, dA_ptr, dD_ptr, ddtb_ptr, dh0_ptr, carry_ptr,
    rows, dim, L, n_tiles, G_B, G_C,
    N: tl.constexpr, NP: tl.constexpr, BD: tl.constexpr,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_DTB: tl.constexpr, SOFTPLUS: tl.constexpr,
    HAS_H0: tl.constexpr, HAS_DLAST: tl.constexpr, FAST_LOG: tl.constexpr, REV_UPPER: tl.constexpr,
    U_SRC: tl.constexpr, SHARED: tl.constexpr, ROW_SUM: tl.constexpr, STATE_LOOP: tl.constexpr,
):
    """Gradients of BD rows (one thread each) with time-varying B and C. A: (N, dim) (transposed, so that
    a warp's rows read one line per state); ``states``: the forward's state after every tile of 4 scan
    steps, (n_tiles, N, rows). Tiles are walked right to left in scan order; per tile and state n the
    states h_t are recomputed from the stored one, the adjoint lam_t = C_t dy_t + dA_{t+1} lam_{t+1}
    enters from the tile on the right through the carry dA_{t+1} lam_{t+1}, and
        ddelta_t += lam_t (A dA_t h_{t-1} + u_t B_t),   du_t += lam_t delta_t B_t,
        dA += lam_t dA_t h_{t-1} delta_t,   dB_t += lam_t delta_t u_t,   dC_t += h_t dy_t
    with dy gated (dy silu(z)); dz from y before the gate (summed over the states on the way).
    du / ddelta / dz are stored per row at the positions read (a direction layout's caller sums
    the rows that share a source); dA is accumulated in (N, rows), dD / ddelta_bias per row; dB / dC
    are added atomically into (batch, G, N, L) float32 buffers (the sources' groups with SHARED). The
    program's rows must share batch and B / C group (the launcher checks). STATE_LOOP (large N): the
    states are a loop, not unrolled, their carries in the scratch carry_ptr (N, rows) and dA in place,
    so only one state's tiles are live at a time (unrolled, N = 16 spilled: 255 registers offline)."""
    r, rmask, rc, di, row_off, bB, bC, rev, urow, drow, Lr = _seq_rows(
        tl.program_id(0), rows, dim, L, G_B, G_C, N, BD, REV_UPPER, U_SRC, SHARED, True)
    Dv, dtb = _row_d_dtb(D_ptr, dtb_ptr, di, HAS_D, HAS_DTB)
    zero = tl.zeros((BD,), dtype=tl.float32)
    A2 = ()
    carry = ()       # dA_{t+1} lam_{t+1} at the first step of the tile on the right
    dA_acc = ()
    for n in tl.static_range(N):
        c0 = zero
        if HAS_DLAST:       # the last state's gradient enters the adjoint at the last step
            c0 = tl.load(dlast_ptr + rc * N + n)
        if STATE_LOOP:
            tl.store(carry_ptr + n * rows + rc, c0, mask=rmask)
        else:
            A2 = A2 + (tl.load(A_ptr + n * dim + di) * 1.4426950408889634,)
            carry = carry + (c0,)
            dA_acc = dA_acc + (zero,)
    dD_acc = zero
    ddtb_acc = zero
    for j in range(0, n_tiles):
        k = n_tiles - 1 - j
        t0 = 4 * k
        pos, m = _seq_pos(t0, rev, Lr, L, REV_UPPER)
        dtr, ut, zt = _seq_load(t0, u_ptr, dt_ptr, z_ptr, urow, drow, rev, Lr, L, HAS_Z, REV_UPPER)
        off = row_off[:, None] + pos
        dyt = tl.load(dy_ptr + off, mask=m, other=0.0).to(tl.float32)
        raw, dt = _delta_of(dtr, dtb[:, None], m, HAS_DTB, SOFTPLUS, FAST_LOG)
        dtu = dt * ut
        dyg = dyt
        sz = dyt
        if HAS_Z:
            sz = tl.sigmoid(zt)
            dyg = dyt * zt * sz
        if HAS_D:
            dD_acc += tl.sum(dyg * ut, axis=1)
        d0, d1, d2, d3 = _cols4(dt)
        e0, e1, e2, e3 = _cols4(dtu)
        g0, g1, g2, g3 = _cols4(dyg)
        dd = tl.zeros_like(dt)     # per step, summed over the states: lam dA h_{t-1} A, lam B, h C
        lb = dd
        y = dd
        if STATE_LOOP:
            for ns in range(N):
                hp = _seq_state_before(states_ptr, h0_ptr, rc, k, ns, rows, n_tiles, N, NP, HAS_H0)
                a = tl.load(A_ptr + ns * dim + di) * 1.4426950408889634
                cn, dAn, dd, lb, y = _seq_bwd_state(
                    a, hp, tl.load(carry_ptr + ns * rows + rc), d0, d1, d2, d3, e0, e1, e2, e3, g0, g1, g2, g3,
                    B_ptr, C_ptr, bB, bC, ns, L, pos, m, dB_ptr, dC_ptr, rmask, dd, lb, y, ROW_SUM)
                tl.store(carry_ptr + ns * rows + rc, cn, mask=rmask)
                tl.store(dA_ptr + ns * rows + rc, tl.load(dA_ptr + ns * rows + rc) + dAn, mask=rmask)
        else:
            new_carry = ()
            new_dA = ()
            for n in tl.static_range(N):
                hp = _seq_state_before(states_ptr, h0_ptr, rc, k, n, rows, n_tiles, N, NP, HAS_H0)
                cn, dAn, dd, lb, y = _seq_bwd_state(
                    A2[n], hp, carry[n], d0, d1, d2, d3, e0, e1, e2, e3, g0, g1, g2, g3,
                    B_ptr, C_ptr, bB, bC, n, L, pos, m, dB_ptr, dC_ptr, rmask, dd, lb, y, ROW_SUM)
                new_carry = new_carry + (cn,)
                new_dA = new_dA + (dA_acc[n] + dAn,)
            carry = new_carry
            dA_acc = new_dA
        ddtb_acc += tl.sum(_bwd_tile_out(y, dd, lb, ut, dt, raw, dyt, dyg, zt, sz, Dv, off, m, m & rmask[:, None],
                                         du_ptr, ddt_ptr, dz_ptr, HAS_D, HAS_Z, SOFTPLUS), axis=1)
    for n in tl.static_range(N):
        if not STATE_LOOP:
            tl.store(dA_ptr + n * rows + rc, dA_acc[n], mask=rmask)
        if HAS_H0:      # dA_0 lam_0: the initial state's gradient
            if STATE_LOOP:
                tl.store(dh0_ptr + rc * N + n, tl.load(carry_ptr + n * rows + rc), mask=rmask)
            else:
                tl.store(dh0_ptr + rc * N + n, carry[n], mask=rmask)
    if HAS_D:
        tl.store(dD_ptr + rc, dD_acc, mask=rmask)
    if HAS_DTB:
        tl.store(ddtb_ptr + rc, ddtb_acc, mask=rmask)
