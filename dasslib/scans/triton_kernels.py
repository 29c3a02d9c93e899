"""Triton kernels of the selective scan (forward and backward).

One program owns one row (= one (batch, channel) pair) and walks its sequence in tiles of
``BLOCK_L`` steps. A tile holds ``(NP, BLOCK_L)`` state elements in registers (NP = N rounded up
to a power of two); the recurrence inside a tile is ``tl.associative_scan`` over
``(decay, input)`` pairs, and the state carried between tiles is fixed up afterwards:
``h = h_local + cumdecay * carry``.

Two ways to order tiles (constexpr ``CHAINED``):

- ``CHAINED=False``: one program per row loops over all its tiles (carry in registers).
- ``CHAINED=True``: one program per tile, for rows too few to fill the GPU (long L). Each
  program takes a ticket from an atomic counter (so every tile it waits on was scheduled
  before it: no deadlock), does its local scan, then waits for the previous tile's published
  end state (acquire), publishes its own (release), and only then fixes up and stores.
  Only the few-cycle hop is serial; the exponentials and scans run in parallel.

The forward can store every tile's end state (``states``, row-major ``(rows, n_tiles, NP)``),
which the backward uses as its carry-in so it never re-runs the whole sequence.
The backward walks tiles in reverse, recomputes each tile's forward states from the stored
carry, and runs the adjoint recurrence ``lam_t = C_t dy_t + dA_{t+1} lam_{t+1}`` as a reverse
scan (``dA_{t+1}`` from a load of delta shifted by one step).
"""
import triton
import triton.language as tl
from triton.language.extra import libdevice

# Counts and flags that change with the sequence length or the layout (tile / chunk counts, B/C
# groups: 1 for Mamba, 2 for a folded bidirectional scan, 4 for SS2D; rows = batch * dim;
# store_states: training vs inference) are not specialized, so one compiled kernel serves them
# all: Triton would otherwise compile a kernel again for each new value that is 1 or a multiple of
# 16 where the last was not (the N = 24 backwards take tens of seconds each; on the H100 the
# 05_efficiency sweep of 2026-11-23 spent most of its time compiling per new length).
# L and dim keep Triton's divisibility specialization (aligned vector loads).
_ROWS_GENERIC = ["n_tiles", "chunk_tiles", "n_chunks", "G_B", "G_C"]
_TILE_GENERIC = ["n_tiles", "G_B", "G_C"]
_SEQ_GENERIC = ["rows", "n_chunks", "n_state_tiles", "G_B", "G_C", "store_states"]
# The rows kernels unroll the states up to this N (tuples of per-state carries in registers); above
# it they loop over the states with the carries in a scratch buffer (unrolled, N = 16 / 24 spilled:
# docs/speed.md). The launcher sizes the scratch and the tiles by the same rule.
UNROLL_MAX_N = tl.constexpr(4)


@triton.jit
def _combine(a1, b1, a2, b2):
    """(a1, b1) then (a2, b2) for h -> a h + b."""
    return a1 * a2, a2 * b1 + b2


@triton.jit
def _softplus(x, FAST_LOG: tl.constexpr):
    """log(1 + exp(x)) as torch (linear above 20). log1p(e) by its series for e < 0.1
    (error < 2e-8 relative), else log(1 + e); FAST_LOG uses the lg2.approx instruction
    (Triton's interpreter lacks it, so CPU runs use tl.log)."""
    e = tl.exp2(tl.minimum(x, 20.0) * 1.4426950408889634)
    w = 1.0 + e
    if FAST_LOG:
        lw = libdevice.fast_log2f(w) * 0.6931471805599453
    else:
        lw = tl.log(w)
    series = e * (1.0 - e * (0.5 - e * (1.0 / 3 - e * (0.25 - e * (0.2 - e * (1.0 / 6 - e / 7))))))
    sp = tl.where(e < 0.1, series, lw)
    return tl.where(x > 20.0, x, sp)


@triton.jit
def _delta_of(raw, dtb, m, HAS_DTB: tl.constexpr, SOFTPLUS: tl.constexpr, FAST_LOG: tl.constexpr):
    """(raw + delta_bias, delta) of a tile of raw delta (``dtb`` broadcast to it): softplus'ed if SOFTPLUS,
    zero where ``m`` is not (past L: decay 1 and no input, the states pass through)."""
    if HAS_DTB:
        raw = raw + dtb
    dt = raw
    if SOFTPLUS:
        dt = _softplus(raw, FAST_LOG)
    return raw, tl.where(m, dt, 0.0)


@triton.jit
def _load_delta(dt_ptr, row_off, t, mask_t, dtb, HAS_DTB: tl.constexpr, SOFTPLUS: tl.constexpr,
                FAST_LOG: tl.constexpr):
    """delta after bias and softplus; 0 outside the sequence (decay 1, no input)."""
    raw, dt = _delta_of(tl.load(dt_ptr + row_off + t, mask=mask_t, other=0.0).to(tl.float32), dtb, mask_t,
                        HAS_DTB, SOFTPLUS, FAST_LOG)
    return dt, raw


@triton.jit
def _bc_offsets(bi, g, di, offs_n, t, L, G, N, VARYING: tl.constexpr):
    """Offsets of a B/C tile: (NP, BLOCK_L) for (batch, G, N, L), (NP, 1) for (dim, N)."""
    if VARYING:
        base = (bi * G + g).to(tl.int64) * N * L
        return base + offs_n[:, None].to(tl.int64) * L + t[None, :]
    else:
        return (di * N + offs_n)[:, None]


@triton.jit
def _load_bc(ptr, offs, mask_n, mask_t, VARYING: tl.constexpr):
    if VARYING:
        m = mask_n[:, None] & mask_t[None, :]
    else:
        m = mask_n[:, None]
    return tl.load(ptr + offs, mask=m, other=0.0).to(tl.float32)


@triton.jit
def _take_ticket(ticket_ptr, n_parts, REVERSE: tl.constexpr):
    """(block, part) of a chained program: programs take tickets in the order they start, blocks
    (rows or row blocks) fastest, so the part a program waits on was scheduled one "row of
    tickets" earlier and is running or done. Parts count left to right, or right to left with
    REVERSE (the backward)."""
    ticket = tl.atomic_add(ticket_ptr, 1)
    n_blocks = tl.num_programs(0) // n_parts
    part = ticket // n_blocks
    if REVERSE:
        part = n_parts - 1 - part
    return ticket % n_blocks, part


@triton.jit
def _wait_flag(flags_ptr, slot):
    """Spin until ``slot``'s flag is set (acquire: its published stores are visible after)."""
    f = tl.atomic_add(flags_ptr + slot, 0, sem="acquire", scope="gpu")
    while f == 0:
        f = tl.atomic_add(flags_ptr + slot, 0, sem="acquire", scope="gpu")


@triton.jit
def _raise_flag(flags_ptr, slot):
    """Set ``slot``'s flag after every thread's stores (barrier, then release)."""
    tl.debug_barrier()
    tl.atomic_xchg(flags_ptr + slot, 1, sem="release", scope="gpu")


@triton.jit
def _wait_state(flags_ptr, states_ptr, slot, offs_n):
    """Spin until tile ``slot`` published its state, then read it (NP,)."""
    _wait_flag(flags_ptr, slot)
    return tl.load(states_ptr + slot * offs_n.shape[0] + offs_n, volatile=True)


@triton.jit
def _publish_state(flags_ptr, states_ptr, slot, offs_n, value):
    tl.store(states_ptr + slot * offs_n.shape[0] + offs_n, value)
    _raise_flag(flags_ptr, slot)


@triton.jit(do_not_specialize=_TILE_GENERIC)
def _fwd_kernel(
    u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, dtb_ptr, h0_ptr,
    y_ptr, states_ptr, flags_ptr, ticket_ptr,
    dim, L, n_tiles, G_B, G_C,
    N: tl.constexpr, NP: tl.constexpr, BLOCK_L: tl.constexpr,
    B_VARYING: tl.constexpr, C_VARYING: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr,
    HAS_DTB: tl.constexpr, SOFTPLUS: tl.constexpr, HAS_H0: tl.constexpr,
    STORE_STATES: tl.constexpr, CHAINED: tl.constexpr, FAST_LOG: tl.constexpr,
):
    if CHAINED:
        row, k_first = _take_ticket(ticket_ptr, n_tiles, False)   # rows fastest: resident programs span many rows
        k_end = k_first + 1
    else:
        row = tl.program_id(0)
        k_first = 0
        k_end = n_tiles
    bi = row // dim
    di = row % dim
    row_off = row.to(tl.int64) * L
    offs_n = tl.arange(0, NP)
    mask_n = offs_n < N
    A2 = tl.load(A_ptr + di * N + offs_n, mask=mask_n, other=0.0) * 1.4426950408889634
    dtb = 0.0
    if HAS_DTB:
        dtb = tl.load(dtb_ptr + di)
    Dv = 0.0
    if HAS_D:
        Dv = tl.load(D_ptr + di)
    gB = di // (dim // G_B)
    gC = di // (dim // G_C)
    carry = tl.zeros((NP,), dtype=tl.float32)
    if HAS_H0:
        if k_first == 0:
            carry = tl.load(h0_ptr + row * N + offs_n, mask=mask_n, other=0.0)
    is_last = (tl.arange(0, BLOCK_L) == BLOCK_L - 1)[None, :]
    for k in range(k_first, k_end):
        t = k * BLOCK_L + tl.arange(0, BLOCK_L)
        mask_t = t < L
        u = tl.load(u_ptr + row_off + t, mask=mask_t, other=0.0).to(tl.float32)
        dt, _ = _load_delta(dt_ptr, row_off, t, mask_t, dtb, HAS_DTB, SOFTPLUS, FAST_LOG)
        Bt = _load_bc(B_ptr, _bc_offsets(bi, gB, di, offs_n, t, L, G_B, N, B_VARYING),
                      mask_n, mask_t, B_VARYING)
        dA = tl.exp2(dt[None, :] * A2[:, None])
        x = (dt * u)[None, :] * Bt
        acum, hloc = tl.associative_scan((dA, x), axis=1, combine_fn=_combine)
        # end state of the tile from a zero start; total decay = exp2(A2 * sum(dt))
        h_end = tl.sum(tl.where(is_last, hloc, 0.0), axis=1)
        a_end = tl.exp2(A2 * tl.sum(dt, axis=0))
        if CHAINED:
            if k > 0:
                carry = _wait_state(flags_ptr, states_ptr, row * n_tiles + k - 1, offs_n)
            _publish_state(flags_ptr, states_ptr, row * n_tiles + k, offs_n, a_end * carry + h_end)
        elif STORE_STATES:
            tl.store(states_ptr + (row * n_tiles + k) * NP + offs_n, a_end * carry + h_end)
        h = hloc + acum * carry[:, None]
        carry = a_end * carry + h_end
        Ct = _load_bc(C_ptr, _bc_offsets(bi, gC, di, offs_n, t, L, G_C, N, C_VARYING),
                      mask_n, mask_t, C_VARYING)
        y = tl.sum(h * Ct, axis=0)
        if HAS_D:
            y = y + Dv * u
        if HAS_Z:
            z = tl.load(z_ptr + row_off + t, mask=mask_t, other=0.0).to(tl.float32)
            y = y * (z * tl.sigmoid(z))
        tl.store(y_ptr + row_off + t, y, mask=mask_t)


@triton.jit(do_not_specialize=_TILE_GENERIC)
def _bwd_kernel(
    u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, dtb_ptr, h0_ptr, states_ptr,
    dy_ptr, dlast_ptr,
    du_ptr, ddt_ptr, dz_ptr, dB_ptr, dC_ptr, dA_ptr, dD_ptr, ddtb_ptr, dh0_ptr,
    lam_ptr, flags_ptr, ticket_ptr,
    dim, L, n_tiles, G_B, G_C,
    N: tl.constexpr, NP: tl.constexpr, BLOCK_L: tl.constexpr,
    B_VARYING: tl.constexpr, C_VARYING: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr,
    HAS_DTB: tl.constexpr, SOFTPLUS: tl.constexpr, HAS_H0: tl.constexpr,
    HAS_DLAST: tl.constexpr, CHAINED: tl.constexpr, FAST_LOG: tl.constexpr,
):
    """Gradients of one row. Per-row partial sums go to dA (rows, N), dD / ddtb (rows,),
    time-invariant dB / dC (rows, N); time-varying dB / dC are atomically added into
    (batch, G, N, L) float32 buffers."""
    if CHAINED:
        row, k_first = _take_ticket(ticket_ptr, n_tiles, True)
        count = 1
    else:
        row = tl.program_id(0)
        k_first = n_tiles - 1
        count = n_tiles
    bi = row // dim
    di = row % dim
    row_off = row.to(tl.int64) * L
    offs_n = tl.arange(0, NP)
    mask_n = offs_n < N
    A = tl.load(A_ptr + di * N + offs_n, mask=mask_n, other=0.0)
    A2 = A * 1.4426950408889634
    dtb = 0.0
    if HAS_DTB:
        dtb = tl.load(dtb_ptr + di)
    Dv = 0.0
    if HAS_D:
        Dv = tl.load(D_ptr + di)
    gB = di // (dim // G_B)
    gC = di // (dim // G_C)
    lam_carry = tl.zeros((NP,), dtype=tl.float32)   # lambda entering from the right
    if HAS_DLAST:
        if k_first == n_tiles - 1:
            lam_carry = tl.load(dlast_ptr + row * N + offs_n, mask=mask_n, other=0.0)
    dA_acc = tl.zeros((NP,), dtype=tl.float32)
    dB_acc = tl.zeros((NP,), dtype=tl.float32)
    dC_acc = tl.zeros((NP,), dtype=tl.float32)
    dD_acc = 0.0
    ddtb_acc = 0.0
    is_first = (tl.arange(0, BLOCK_L) == 0)[None, :]
    for j in range(0, count):
        k = k_first - j
        t = k * BLOCK_L + tl.arange(0, BLOCK_L)
        mask_t = t < L
        u = tl.load(u_ptr + row_off + t, mask=mask_t, other=0.0).to(tl.float32)
        dt, dt_raw = _load_delta(dt_ptr, row_off, t, mask_t, dtb, HAS_DTB, SOFTPLUS, FAST_LOG)
        dt_next, _ = _load_delta(dt_ptr, row_off, t + 1, t + 1 < L, dtb, HAS_DTB,
                                  SOFTPLUS, FAST_LOG)
        bofs = _bc_offsets(bi, gB, di, offs_n, t, L, G_B, N, B_VARYING)
        cofs = _bc_offsets(bi, gC, di, offs_n, t, L, G_C, N, C_VARYING)
        Bt = _load_bc(B_ptr, bofs, mask_n, mask_t, B_VARYING)
        Ct = _load_bc(C_ptr, cofs, mask_n, mask_t, C_VARYING)
        # forward states of this tile from the stored carry
        if k > 0:
            h_in = tl.load(states_ptr + (row * n_tiles + k - 1) * NP + offs_n, mask=mask_n, other=0.0)
        else:
            h_in = tl.zeros((NP,), dtype=tl.float32)
            if HAS_H0:
                h_in = tl.load(h0_ptr + row * N + offs_n, mask=mask_n, other=0.0)
        dA = tl.exp2(dt[None, :] * A2[:, None])
        dtu = dt * u
        x = dtu[None, :] * Bt
        acum, hloc = tl.associative_scan((dA, x), axis=1, combine_fn=_combine)
        h = hloc + acum * h_in[:, None]
        dy = tl.load(dy_ptr + row_off + t, mask=mask_t, other=0.0).to(tl.float32)
        if HAS_Z:
            z = tl.load(z_ptr + row_off + t, mask=mask_t, other=0.0).to(tl.float32)
            y = tl.sum(h * Ct, axis=0)
            if HAS_D:
                y = y + Dv * u
            sz = tl.sigmoid(z)
            tl.store(dz_ptr + row_off + t, dy * y * sz * (1.0 + z * (1.0 - sz)), mask=mask_t)
            dy = dy * z * sz
        # adjoint: lam_t = C_t dy_t + dA_{t+1} lam_{t+1}, scanned right to left
        # (dt_next is 0 past the end, so dA_next = 1 there and lam passes through unchanged)
        dA_next = tl.exp2(dt_next[None, :] * A2[:, None])
        ar, lam_loc = tl.associative_scan((dA_next, Ct * dy[None, :]), axis=1,
                                          combine_fn=_combine, reverse=True)
        lam_first = tl.sum(tl.where(is_first, lam_loc, 0.0), axis=1)
        ar_first = tl.exp2(A2 * tl.sum(dt_next, axis=0))
        if CHAINED:
            if k < n_tiles - 1:
                lam_carry = _wait_state(flags_ptr, lam_ptr, row * n_tiles + k + 1, offs_n)
            _publish_state(flags_ptr, lam_ptr, row * n_tiles + k, offs_n,
                           ar_first * lam_carry + lam_first)
        lam = lam_loc + ar * lam_carry[:, None]
        if k == 0:
            dA0 = tl.sum(tl.where(is_first, dA * lam, 0.0), axis=1)
            tl.store(dh0_ptr + row * N + offs_n, dA0, mask=mask_n)
        lam_carry = ar_first * lam_carry + lam_first
        # gradients; ga = dL/d(delta*A) = lam * dA * h_{t-1} = lam * (h - x)
        ga = lam * (h - x)
        lamB = tl.sum(lam * Bt, axis=0)
        ddt = tl.sum(ga * A[:, None], axis=0) + lamB * u
        du = lamB * dt
        if HAS_D:
            du = du + Dv * dy
            dD_acc += tl.sum(dy * u, axis=0)
        dA_acc += tl.sum(ga * dt[None, :], axis=1)
        dBx = lam * dtu[None, :]
        dCx = h * dy[None, :]
        if B_VARYING:
            tl.atomic_add(dB_ptr + bofs, dBx, mask=mask_n[:, None] & mask_t[None, :], sem="relaxed")
        else:
            dB_acc += tl.sum(dBx, axis=1)
        if C_VARYING:
            tl.atomic_add(dC_ptr + cofs, dCx, mask=mask_n[:, None] & mask_t[None, :], sem="relaxed")
        else:
            dC_acc += tl.sum(dCx, axis=1)
        if SOFTPLUS:
            ddt = ddt * tl.sigmoid(dt_raw)
        ddt = tl.where(mask_t, ddt, 0.0)
        ddtb_acc += tl.sum(ddt, axis=0)
        tl.store(du_ptr + row_off + t, du, mask=mask_t)
        tl.store(ddt_ptr + row_off + t, ddt, mask=mask_t)
    # per-program partials; CHAINED programs add theirs atomically
    if CHAINED:
        tl.atomic_add(dA_ptr + row * N + offs_n, dA_acc, mask=mask_n, sem="relaxed")
        if not B_VARYING:
            tl.atomic_add(dB_ptr + row * N + offs_n, dB_acc, mask=mask_n, sem="relaxed")
        if not C_VARYING:
            tl.atomic_add(dC_ptr + row * N + offs_n, dC_acc, mask=mask_n, sem="relaxed")
        if HAS_D:
            tl.atomic_add(dD_ptr + row, dD_acc, sem="relaxed")
        if HAS_DTB:
            tl.atomic_add(ddtb_ptr + row, ddtb_acc, sem="relaxed")
    else:
        tl.store(dA_ptr + row * N + offs_n, dA_acc, mask=mask_n)
        if not B_VARYING:
            tl.store(dB_ptr + row * N + offs_n, dB_acc, mask=mask_n)
        if not C_VARYING:
            tl.store(dC_ptr + row * N + offs_n, dC_acc, mask=mask_n)
        if HAS_D:
            tl.store(dD_ptr + row, dD_acc)
        if HAS_DTB:
            tl.store(ddtb_ptr + row, ddtb_acc)


# ---------------------------------------------------------------------------------------------
# Row-block forward ("rows"): one program owns BD rows (channels of one batch and one B/C group)
# and walks a chunk of their sequence in tiles of BLOCK_L steps. Tensors are (BD, BLOCK_L); with
# BLOCK_L = 32 lanes x one 16-byte vector and BD a multiple of num_warps, each warp owns whole
# rows, so the scan along L stays inside a warp (shuffles, no shared memory, no barrier).
# States are a static loop over n (a tuple of (BD,) carries); the carry enters the scan through
# the first step of the tile (x_0 += dA_0 * carry), so the scan result is the true state and the
# next carry is its last column. B/C tiles are loaded once per program for its BD rows (the
# BD copies of the address hit the same cache lines). PREFETCH issues the loads of the next
# tiles before tile k is computed. Every input element is read once, every output written once.
#
# CHUNKED (n_chunks > 1): the sequence is cut into n_chunks chunks, one program each, taken in
# ticket order (row blocks fastest), so a chunk's predecessor was scheduled one "row of tickets"
# earlier and has normally finished: the chunk prefetches its first tiles, waits for the
# predecessor's published end state (acquire), runs, and publishes its own (release). This does
# not add work; it makes the programs short, so the last wave of a grid of long programs does
# not leave most SMs idle (9216 rows of 8192 steps are ~2.2 waves of row blocks on an H100).
# ---------------------------------------------------------------------------------------------

@triton.jit
def _row_block(rb, dim, L, G_B, G_C, N: tl.constexpr, BD: tl.constexpr):
    """Rows of row block ``rb`` (BD divides dim // G: one batch, one B/C group): local index rr,
    row r and channel di (BD,), the rows' offsets into u-like tensors (int64) and the offsets of
    their B and C groups."""
    row0 = rb * BD
    bi = row0 // dim
    d0 = row0 % dim
    rr = tl.arange(0, BD)
    r = row0 + rr
    di = d0 + rr
    row_off = r.to(tl.int64) * L
    bB = (bi * G_B + d0 // (dim // G_B)).to(tl.int64) * N * L
    bC = (bi * G_C + d0 // (dim // G_C)).to(tl.int64) * N * L
    return rr, r, di, row_off, bB, bC


@triton.jit
def _spread_block(rb, n_blocks, per_group):
    """The row block that launch-order block ``rb`` computes, (batch, B group) fastest: programs that run
    at the same time then belong to different groups, so fewer of them add into the same dB / dC
    addresses at once (in launch order a group's dim / G channels run side by side and add into one
    (N, L) row). A bijection of 0..n_blocks - 1; per_group = blocks per (batch, group)."""
    n_groups = n_blocks // per_group
    return (rb % n_groups) * per_group + rb // n_groups


@triton.jit
def _phys_tile(k, rev, n_tiles):
    """Where tile k of the scan order lies in memory: k, or n_tiles - 1 - k for a reversed row."""
    return k + rev * (n_tiles - 1 - 2 * k)


@triton.jit
def _tile_scan(dA, x, rev, REV_UPPER: tl.constexpr):
    """(cumulative decays, states from a zero carry) of a (BD, BLOCK) tile, in scan order."""
    if REV_UPPER:
        if rev != 0:
            a, h = tl.associative_scan((dA, x), axis=1, combine_fn=_combine, reverse=True)
        else:
            a, h = tl.associative_scan((dA, x), axis=1, combine_fn=_combine)
    else:
        a, h = tl.associative_scan((dA, x), axis=1, combine_fn=_combine)
    return a, h


@triton.jit
def _tile_states(dA, x, rev, REV_UPPER: tl.constexpr):
    """States h of a (BD, BLOCK) tile from decays dA and inputs x (the carry already in x's first
    step in scan order): a scan along the tile, right to left for a reversed row (rev = 1)."""
    _, h = _tile_scan(dA, x, rev, REV_UPPER)
    return h


@triton.jit
def _dir_layout(rb, dim, L, G_B, rr, t0, off0, BD: tl.constexpr, REV_UPPER: tl.constexpr,
                U_SRC: tl.constexpr):
    """(rev, offu0) of row block rb in a direction layout: rev = 1 when its group
    (direction) is in the upper half of the B groups and REV_UPPER (scanned right to left), else
    0; offu0: the rows' (BD, BLOCK) offsets into u, from source g % U_SRC of a (batch,
    U_SRC, dim // G_B, L) tensor when U_SRC > 0, else off0."""
    offu0 = off0
    rev = 0
    if REV_UPPER or U_SRC > 0:
        per = dim // G_B
        g = (rb * BD) % dim // per                      # the program's group (direction)
        if REV_UPPER:
            rev = (g >= G_B // 2).to(tl.int32)
        if U_SRC > 0:
            src = g % U_SRC
            urow = ((rb * BD) // dim * U_SRC + src) * per + (rb * BD) % per + rr
            offu0 = urow.to(tl.int64)[:, None] * L + t0[None, :]
    return rev, offu0


@triton.jit
def _shared_sources(rb, dim, L, G_B, G_C, N: tl.constexpr, BD: tl.constexpr, bB, bC, off0, offu0,
                    SHARED: tl.constexpr):
    """(bB, bC, offd0) of row block rb: with SHARED (the "fobi" layout: the upper half of the
    groups scans the same sources as the lower half, reversed), the B / C bases of source group
    g % (G / 2) of (batch, G / 2, N, L) tensors and delta / z read at the u-source offsets;
    otherwise unchanged (delta / z at the rows' own offsets off0)."""
    if SHARED:
        bi = (rb * BD) // dim
        gB = (rb * BD) % dim // (dim // G_B)
        gC = (rb * BD) % dim // (dim // G_C)
        bB = (bi * (G_B // 2) + gB % (G_B // 2)).to(tl.int64) * N * L
        bC = (bi * (G_C // 2) + gC % (G_C // 2)).to(tl.int64) * N * L
        return bB, bC, offu0
    return bB, bC, off0


@triton.jit
def _row_d_dtb(D_ptr, dtb_ptr, di, HAS_D: tl.constexpr, HAS_DTB: tl.constexpr):
    """D and delta_bias of the rows' channels ``di`` (BD,) (zeros when absent)."""
    dtb = tl.zeros(di.shape, dtype=tl.float32)
    if HAS_DTB:
        dtb = tl.load(dtb_ptr + di)
    Dv = tl.zeros(di.shape, dtype=tl.float32)
    if HAS_D:
        Dv = tl.load(D_ptr + di)
    return Dv, dtb


@triton.jit
def _row_params(A_ptr, D_ptr, dtb_ptr, di, a_scale, N: tl.constexpr, HAS_D: tl.constexpr,
                HAS_DTB: tl.constexpr):
    """Per-channel constants of the rows ``di`` (BD,): a tuple of N (BD,) vectors A * a_scale; D
    and delta_bias (zeros when absent)."""
    Dv, dtb = _row_d_dtb(D_ptr, dtb_ptr, di, HAS_D, HAS_DTB)
    A = ()
    for n in tl.static_range(N):
        A = A + (tl.load(A_ptr + di * N + n) * a_scale,)
    return A, Dv, dtb


@triton.jit
def _rows_bc(ptr, base, di, n, L, t2, m2, N: tl.constexpr, VARYING: tl.constexpr):
    """(BD, BLOCK) tile of state n's B or C: loaded at ``base + n * L + t2`` when time-varying
    (``base``: the rows' group), else the rows' per-channel values (di, n) as a column."""
    if VARYING:
        return tl.load(ptr + base + n * L + t2, mask=m2, other=0.0).to(tl.float32)
    else:
        return tl.load(ptr + di * N + n).to(tl.float32)[:, None]


@triton.jit
def _rows_load(k, k_end, u_ptr, dt_ptr, z_ptr, B_ptr, C_ptr, off0, bB, bC, t0, zr, L,
               BLOCK_L: tl.constexpr, HAS_Z: tl.constexpr, BC: tl.constexpr, offu0, rev, n_tiles,
               NO_DT: tl.constexpr = False):
    """Raw tiles (u, delta, z, B, C) of tile k, each (BD, BLOCK_L); zeros past L and for
    k >= k_end (prefetches past the chunk read nothing). B/C (of state 0, broadcast over the
    rows) only if BC, else placeholders. Reversed rows (rev = 1) read tile n_tiles - 1 - k
    (positions ascending inside it); u is read at offu0 (its rows may come from a source tensor
    of another layout), everything else at off0. NO_DT: no delta tile (a placeholder)."""
    kp = _phys_tile(k, rev, n_tiles)
    t = kp * BLOCK_L + t0
    m = ((t < L) & (k < k_end))[None, :]
    off = off0 + kp * BLOCK_L
    ut = tl.load(u_ptr + offu0 + kp * BLOCK_L, mask=m, other=0.0)
    dtr = ut
    if not NO_DT:
        dtr = tl.load(dt_ptr + off, mask=m, other=0.0)
    zt = ut
    if HAS_Z:
        zt = tl.load(z_ptr + off, mask=m, other=0.0)
    bt = ut
    ct = ut
    if BC:
        bt = tl.load(B_ptr + bB + t[None, :] + zr, mask=m, other=0.0)
        ct = tl.load(C_ptr + bC + t[None, :] + zr, mask=m, other=0.0)
    return ut, dtr, zt, bt, ct


@triton.jit
def _keep_state(st_ptr, k, n, c, n_tiles, store_states, STATE_EVERY: tl.constexpr, NP: tl.constexpr):
    """Store state n's carry c after tile k where the backward reads it (every STATE_EVERY tiles
    and after the last), when ``store_states``."""
    if store_states != 0:
        if ((k + 1) % STATE_EVERY == 0) | (k == n_tiles - 1):
            tl.store(st_ptr + ((k // STATE_EVERY) * NP + n), c[:, None])


@triton.jit
def _fwd_state(dt, du, Bn, A2n, carry_n, rev, REV_UPPER: tl.constexpr, CARRY_IN_SCAN: tl.constexpr = False):
    """One state's tile of the forward: states h (BD, BLOCK) from decays exp2(dt * A2n) and inputs
    du * Bn, the carry (BD,) entering before the first step in scan order; and the carry leaving
    from the last (BD,). CARRY_IN_SCAN (the launcher's default): the carry enters the scan at the
    first step and the carry-out is a masked sum over the tile. Otherwise the tile is scanned from a
    zero carry and the carry added after, times the cumulative decay, and the last step's state is
    read with one warp shuffle: fewer instructions in the plain layout (offline sm_90, DASS's N = 1:
    632 instead of 656 in bf16) but more in SS2D's direction layout (1072 instead of 976), where
    the model measured slower (TritonConfig.rows_carry_in_scan)."""
    dA = tl.exp2(dt * A2n[:, None])
    x = du * Bn
    if CARRY_IN_SCAN:
        t = tl.arange(0, x.shape[1])[None, :]
        x = tl.where(t == rev * (x.shape[1] - 1), x + dA * carry_n[:, None], x)
        h = _tile_states(dA, x, rev, REV_UPPER)
        return h, tl.sum(tl.where(t == (1 - rev) * (x.shape[1] - 1), h, 0.0), axis=1)
    decay, h = _tile_scan(dA, x, rev, REV_UPPER)
    h = h + decay * carry_n[:, None]
    last = (1 - rev) * (h.shape[1] - 1)                     # the last step in scan order
    out = tl.gather(h, tl.zeros((h.shape[0], 1), dtype=tl.int32) + last, axis=1)
    return h, tl.reshape(out, (h.shape[0],))


@triton.jit(do_not_specialize=_ROWS_GENERIC + ["n_state_tiles", "store_states", "dt_xr"])
def _rows_fwd_kernel(
    u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, dtb_ptr, h0_ptr, dtw_ptr,
    y_ptr, states_ptr, cstate_ptr, carry_ptr, flags_ptr, ticket_ptr,
    dim, L, n_tiles, n_state_tiles, chunk_tiles, n_chunks, G_B, G_C, store_states, dt_xr,
    N: tl.constexpr, NP: tl.constexpr, BD: tl.constexpr, BLOCK_L: tl.constexpr,
    STATE_EVERY: tl.constexpr,
    B_VARYING: tl.constexpr, C_VARYING: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr,
    HAS_DTB: tl.constexpr, SOFTPLUS: tl.constexpr, HAS_H0: tl.constexpr,
    FAST_LOG: tl.constexpr, PREFETCH: tl.constexpr, CHUNKED: tl.constexpr,
    REV_UPPER: tl.constexpr, U_SRC: tl.constexpr,
    SHARED: tl.constexpr = False, CARRY_IN_SCAN: tl.constexpr = False, DT_R: tl.constexpr = 0,
):
    """Forward of BD rows per program over one chunk of tiles (see the comment above).
    DT_R > 0 (SS2D inference: the dt projection inside the scan): dt_ptr is x_dbl (batch, G_B,
    dt_xr, L), whose first DT_R rows of each group are the low-rank dt inputs, and each row's
    delta is sum_j dtw[row channel, j] * x_dbl[group, j] (dtw: (dim, DT_R)), so the full-width
    delta is never written.
    Direction layouts (SS2D without materialised cross-scan copies; one chunk only):
    REV_UPPER scans the rows of the upper half of the B groups right to left (tiles walked
    from the last, each scanned in reverse; y written at the positions read); U_SRC > 0 reads
    u from (batch, U_SRC, dim // G_B, L): row (b, g, d) takes source g % U_SRC.
    store_states (runtime, one compiled kernel for inference and training) writes the state
    after every STATE_EVERY tiles and after the last one:
    (rows, n_state_tiles, NP), the layout the backward reads (its tiles are STATE_EVERY *
    BLOCK_L long). Chunk end states go to cstate (rows, n_chunks, NP)."""
    if CHUNKED:
        rb, q = _take_ticket(ticket_ptr, n_chunks, False)
    else:
        rb = tl.program_id(0)
        q = 0
    k_first = q * chunk_tiles
    k_end = tl.minimum(n_tiles, k_first + chunk_tiles)
    rr, r, di, row_off, bB, bC = _row_block(rb, dim, L, G_B, G_C, N, BD)
    BC: tl.constexpr = (N == 1) and B_VARYING and C_VARYING   # B/C of the only state in the ring
    t0 = tl.arange(0, BLOCK_L)
    zr = (rr * 0)[:, None]
    off0 = row_off[:, None] + t0[None, :]
    rev, offu0 = _dir_layout(rb, dim, L, G_B, rr, t0, off0, BD, REV_UPPER, U_SRC)
    # SHARED: delta and z read where u is, B / C from the shared source group (offd0 is what
    # _rows_load reads delta and z at; y is stored at the rows' own offsets off0)
    bB, bC, offd0 = _shared_sources(rb, dim, L, G_B, G_C, N, BD, bB, bC, off0, offu0, SHARED)
    st_ptr = states_ptr + (r.to(tl.int64) * n_state_tiles * NP)[:, None] + zr
    # software pipelining: the loads of the next PREFETCH tiles are in flight while tile k is
    # computed (a ring of raw tiles; tiles past the end are fully masked)
    ring = ()
    for i in tl.static_range(PREFETCH):
        ring = ring + (_rows_load(k_first + i, k_end, u_ptr, dt_ptr, z_ptr, B_ptr, C_ptr, offd0,
                                  bB, bC, t0, zr, L, BLOCK_L, HAS_Z, BC, offu0, rev, n_tiles, DT_R > 0),)
    A2, Dv, dtb = _row_params(A_ptr, D_ptr, dtb_ptr, di, 1.4426950408889634, N, HAS_D, HAS_DTB)
    bX = rb * 0
    wdt = ()
    if DT_R > 0:    # the rows' group in x_dbl, and their dt_proj weights (DT_R vectors of (BD,))
        bX = bB // N * dt_xr        # bB: the group's base in (batch, G_B, N, L); here rows dt_xr
        for j in tl.static_range(DT_R):
            wdt = wdt + (tl.load(dtw_ptr + di * DT_R + j).to(tl.float32),)
    if CHUNKED:
        if q > 0:   # spin until the previous chunk of these rows published its end state
            slot = rb * n_chunks + q - 1
            _wait_flag(flags_ptr, slot)
    # N > UNROLL_MAX_N: the states are a loop (not unrolled), their carries in the scratch carry_ptr (rows,
    # NP): only one state's tiles are live at a time (offline sm_90, N = 24 unrolled: 255
    # registers and 276 bytes of spills per thread)
    STATE_LOOP: tl.constexpr = N > UNROLL_MAX_N
    carry = ()
    for n in tl.static_range(N):
        c0 = tl.zeros((BD,), dtype=tl.float32)
        if HAS_H0:
            if q == 0:
                c0 = tl.load(h0_ptr + r * N + n)
        if CHUNKED:
            if q > 0:
                c0 = tl.load(cstate_ptr + (r * n_chunks + q - 1) * NP + n, volatile=True)
        if STATE_LOOP:
            tl.store(carry_ptr + r * NP + n, c0)
        else:
            carry = carry + (c0,)
    for k in range(k_first, k_end):
        kp = _phys_tile(k, rev, n_tiles)   # the tile's place in memory
        t = kp * BLOCK_L + t0
        m2 = (t < L)[None, :]
        t2 = t[None, :] + zr     # (BD, BLOCK_L) like u: same layout, no conversion
        if PREFETCH > 0:
            ut, dtr, zt, bt, ct = ring[0]
            rest = ()
            for i in tl.static_range(1, PREFETCH):
                rest = rest + (ring[i],)
            ring = rest + (_rows_load(k + PREFETCH, k_end, u_ptr, dt_ptr, z_ptr, B_ptr, C_ptr,
                                      offd0, bB, bC, t0, zr, L, BLOCK_L, HAS_Z, BC, offu0, rev,
                                      n_tiles, DT_R > 0),)
        else:
            ut, dtr, zt, bt, ct = _rows_load(k, k_end, u_ptr, dt_ptr, z_ptr, B_ptr, C_ptr, offd0,
                                             bB, bC, t0, zr, L, BLOCK_L, HAS_Z, BC, offu0, rev,
                                             n_tiles, DT_R > 0)
        u = ut.to(tl.float32)
        if DT_R > 0:    # delta = dt_proj(the group's DT_R low-rank rows), summed here
            dt = tl.zeros((BD, BLOCK_L), dtype=tl.float32)
            for j in tl.static_range(DT_R):
                xj = tl.load(dt_ptr + bX + j * L + t2, mask=m2, other=0.0).to(tl.float32)
                dt += wdt[j][:, None] * xj
        else:
            dt = dtr.to(tl.float32)
        _, dt = _delta_of(dt, dtb[:, None], m2, HAS_DTB, SOFTPLUS, FAST_LOG)
        du = dt * u
        y = tl.zeros((BD, BLOCK_L), dtype=tl.float32)
        if HAS_D:
            y = Dv[:, None] * u
        if STATE_LOOP:
            for ns in range(N):   # a loop variable apart from the unrolled loops' n
                A2n = tl.load(A_ptr + di * N + ns) * 1.4426950408889634
                h, c = _fwd_state(dt, du, _rows_bc(B_ptr, bB, di, ns, L, t2, m2, N, B_VARYING), A2n,
                                  tl.load(carry_ptr + r * NP + ns), rev, REV_UPPER, CARRY_IN_SCAN)
                tl.store(carry_ptr + r * NP + ns, c)
                _keep_state(st_ptr, k, ns, c, n_tiles, store_states, STATE_EVERY, NP)
                y += h * _rows_bc(C_ptr, bC, di, ns, L, t2, m2, N, C_VARYING)
        else:
            new_carry = ()
            for n in tl.static_range(N):
                if BC:   # the ring's tile of the only state
                    Bn = bt.to(tl.float32)
                else:
                    Bn = _rows_bc(B_ptr, bB, di, n, L, t2, m2, N, B_VARYING)
                h, c = _fwd_state(dt, du, Bn, A2[n], carry[n], rev, REV_UPPER, CARRY_IN_SCAN)
                new_carry = new_carry + (c,)
                _keep_state(st_ptr, k, n, c, n_tiles, store_states, STATE_EVERY, NP)
                if BC:
                    Cn = ct.to(tl.float32)
                else:
                    Cn = _rows_bc(C_ptr, bC, di, n, L, t2, m2, N, C_VARYING)
                y += h * Cn
            carry = new_carry
        if HAS_Z:
            z = zt.to(tl.float32)
            y = y * (z * tl.sigmoid(z))
        tl.store(y_ptr + off0 + kp * BLOCK_L, y, mask=m2)
    if CHUNKED:
        if q < n_chunks - 1:
            for n in tl.static_range(N):
                if STATE_LOOP:
                    tl.store(cstate_ptr + (r * n_chunks + q) * NP + n, tl.load(carry_ptr + r * NP + n))
                else:
                    tl.store(cstate_ptr + (r * n_chunks + q) * NP + n, carry[n])
            _raise_flag(flags_ptr, rb * n_chunks + q)


# ---------------------------------------------------------------------------------------------
# Row-block backward ("rows"): one program (normally one warp) owns BD rows of one batch and
# B/C group and walks a chunk of tiles from the last to the first. Per tile it recomputes the
# forward states from the stored state before the tile (the forward stores one per tile), and
# scans the adjoint lam_t = C_t dy_t + dA_{t+1} lam_{t+1} right to left. That recurrence couples
# step t with the decay of step t+1; instead of loading delta shifted by one step (and paying its
# softplus and exponentials twice), the scan carries each segment's first decay:
#   segment [i..j] = (G, M, F):  lam_i = G + M * dA_{j+1} * lam_{j+1},  F = dA_i,
# element t = (C_t dy_t, 1, dA_t). What crosses to the tile on the left is dA_first * lam_first
# (also dh0 at t = 0). With all BD rows in one thread, the time-varying dB/dC of the BD rows are
# summed in registers before the atomic add (BD times fewer atomics on the shared B/C rows).
# CHUNKED: chunks chained right to left in ticket order, like the forward.
# ---------------------------------------------------------------------------------------------

@triton.jit
def _adj_combine(G2, M2, F2, G1, M1, F1):
    """Reverse-scan combine: (G2, M2, F2) is the later segment, (G1, M1, F1) the earlier one."""
    m = M1 * F2
    return G1 + m * G2, m * M2, F1


@triton.jit
def _rows_bwd_load(k, k_first, u_ptr, dt_ptr, dy_ptr, z_ptr, off0, t0, L, BLOCK_L: tl.constexpr,
                   HAS_Z: tl.constexpr, offu0, rev, n_tiles, offd0):
    """Raw tiles (u, delta, dy, z) of tile k (in scan order: reversed rows read tile
    n_tiles - 1 - k); nothing is read for k < k_first (past the chunk). u is read at offu0,
    delta and z at offd0 (the u sources in the "fobi" layout), dy at the rows' own off0."""
    kp = _phys_tile(k, rev, n_tiles)
    t = kp * BLOCK_L + t0
    m = ((t < L) & (k >= k_first))[None, :]
    off = off0 + kp * BLOCK_L
    offd = offd0 + kp * BLOCK_L
    ut = tl.load(u_ptr + offu0 + kp * BLOCK_L, mask=m, other=0.0)
    rawt = tl.load(dt_ptr + offd, mask=m, other=0.0)
    dyt = tl.load(dy_ptr + off, mask=m, other=0.0)
    zt = ut
    if HAS_Z:
        zt = tl.load(z_ptr + offd, mask=m, other=0.0)
    return ut, rawt, dyt, zt


@triton.jit
def _rows_bwd_bc(k, k_first, B_ptr, C_ptr, bB, bC, di, states_ptr, h0_ptr, r, t0, L, BLOCK_L: tl.constexpr,
                 rev, n_tiles, N: tl.constexpr, NP: tl.constexpr, B_VARYING: tl.constexpr,
                 C_VARYING: tl.constexpr, HAS_H0: tl.constexpr, LOAD: tl.constexpr):
    """(B, C, state before the tile) of state 0 for tile k in scan order ((BD, BLOCK_L) tiles, (BD,)
    state; nothing read past the chunk, k < k_first); placeholders unless LOAD."""
    if LOAD:
        t2 = (_phys_tile(k, rev, n_tiles) * BLOCK_L + t0)[None, :]
        m2 = (t2 < L) & (k >= k_first)
        Bn = _rows_bc(B_ptr, bB, di, 0, L, t2, m2, N, B_VARYING)
        Cn = _rows_bc(C_ptr, bC, di, 0, L, t2, m2, N, C_VARYING)
        hn = _state_before(states_ptr, h0_ptr, r, tl.maximum(k, 0), 0, n_tiles, N, NP, HAS_H0)
    else:
        Bn = tl.zeros((1, BLOCK_L), dtype=tl.float32)
        Cn = Bn
        hn = tl.zeros((1,), dtype=tl.float32)
    return Bn, Cn, hn


@triton.jit
def _adjoint(g, dA, flip, ones, rev, REV_UPPER: tl.constexpr):
    """Adjoint lam (BD, BLOCK) of a tile: lam_t = g_t + dA_{t+1} lam_{t+1} in scan order (the carry
    from the next tile already in g's last step). A row scanned left to right runs its adjoint right
    to left: as a left-to-right scan over the tile reversed in the warp (one shuffle per register;
    Triton's reverse=True scan costs five), of (dA_{t+1}, g_t) pairs, the shift folded into the
    reversal's gather (the first reversed step's decay is never used). A reversed row's adjoint
    already runs left to right in memory: a scan of (g, 1, dA) triples that applies each segment's
    first decay when it is joined (no gather)."""
    if REV_UPPER:
        if rev != 0:
            lam, _, _ = tl.associative_scan((g, ones, dA), axis=1, combine_fn=_adj_combine)
            return lam
    nxt = (flip + 1) % g.shape[1]            # reversed step s reads dA at t + 1 = BLOCK - s
    _, lam = tl.associative_scan((tl.gather(dA, nxt, axis=1), tl.gather(g, flip, axis=1)), axis=1,
                                 combine_fn=_combine)
    return tl.gather(lam, flip, axis=1)


@triton.jit
def _put_sum(ptr, value, ATOMIC: tl.constexpr):
    """Store a per-row gradient sum, or add it atomically when several chunk programs share it."""
    if ATOMIC:
        tl.atomic_add(ptr, value, sem="relaxed")
    else:
        tl.store(ptr, value)


@triton.jit
def _rows_states(dt, du, Bn, An, h_in_n, is_first, rev, REV_UPPER: tl.constexpr):
    """One state's recomputed tile: decay dA = exp(dt A), input x = dt u B and states h (the
    carry h_in_n enters through the first step in scan order: the tile's last for a reversed
    row, which is scanned right to left), each (BD, BLOCK)."""
    dA = tl.exp2(dt * (An * 1.4426950408889634)[:, None])
    x = du * Bn
    xf = tl.where(is_first, x + dA * h_in_n[:, None], x)
    return dA, x, _tile_states(dA, xf, rev, REV_UPPER)


@triton.jit
def _state_before(states_ptr, h0_ptr, r, k, n, n_tiles, N: tl.constexpr, NP: tl.constexpr,
                  HAS_H0: tl.constexpr):
    """State n (BD,) of rows r before tile k: stored by the forward after tile k - 1, else h0 (or 0)."""
    if k > 0:
        hn = tl.load(states_ptr + (r * n_tiles + k - 1) * NP + n)
    else:
        hn = tl.zeros(r.shape, dtype=tl.float32)
        if HAS_H0:
            hn = tl.load(h0_ptr + r * N + n)
    return hn


@triton.jit
def _bwd_state(dt, du, dy, Bn, Cn, An, hn, nl_n, is_first, is_last, flip, ones, rev, k, n, r, t, L,
               bB, bC, dh0_ptr, dB_ptr, dC_ptr, N: tl.constexpr, B_VARYING: tl.constexpr,
               C_VARYING: tl.constexpr, REV_UPPER: tl.constexpr):
    """State n's part of a tile's backward. The carry nl_n (BD,) (dA * lam at the first step of
    the tile on the right) enters at the last step in scan order. Adds the time-varying dB / dC
    of the tile atomically and stores dh0 at the first tile. Returns the recomputed states h, the
    adjoint lam, ga = lam_t dA_t h_{t-1}, the dB / dC terms lam * du and h * dy (each (BD,
    BLOCK)) and c (BD,) = dA * lam at the first step, what crosses to the tile on the left."""
    dA, x, h = _rows_states(dt, du, Bn, An, hn, is_first, rev, REV_UPPER)
    g = Cn * dy
    g = tl.where(is_last, g + nl_n[:, None], g)
    lam = _adjoint(g, dA, flip, ones, rev, REV_UPPER)
    c = tl.sum(tl.where(is_first, dA * lam, 0.0), axis=1)
    if k == 0:
        tl.store(dh0_ptr + r * N + n, c)
    dBx = lam * du
    dCx = h * dy
    if B_VARYING:
        tl.atomic_add(dB_ptr + bB + n * L + t, tl.sum(dBx, axis=0), mask=t < L, sem="relaxed")
    if C_VARYING:
        tl.atomic_add(dC_ptr + bC + n * L + t, tl.sum(dCx, axis=0), mask=t < L, sem="relaxed")
    return h, lam, lam * (h - x), dBx, dCx, c


@triton.jit
def _bwd_tile_out(y, ddt, lamB, u, dt, raw, dy_out, dyg, z, sz, Dv, off, m, sm, du_ptr, ddt_ptr, dz_ptr,
                  HAS_D: tl.constexpr, HAS_Z: tl.constexpr, SOFTPLUS: tl.constexpr):
    """A backward tile's per-step outputs from its sums over the states: y (before D and the gate),
    ddt (lam dA h_{t-1} A, the decay part of ddelta), lamB (lam B); u, dt, raw (delta before the
    softplus), dy_out (dy as given), dyg (gated), z, sz = sigmoid(z). Stores dz, du and ddelta at
    ``off`` (mask ``sm``) and returns ddelta (zero where ``m`` is not), for the delta_bias sum."""
    if HAS_Z:
        if HAS_D:
            y += Dv[:, None] * u
        tl.store(dz_ptr + off, dy_out * y * sz * (1.0 + z * (1.0 - sz)), mask=sm)
    ddt += lamB * u
    dxu = lamB * dt
    if HAS_D:
        dxu += Dv[:, None] * dyg
    if SOFTPLUS:
        ddt = ddt * tl.sigmoid(raw)
    ddt = tl.where(m, ddt, 0.0)
    tl.store(du_ptr + off, dxu, mask=sm)
    tl.store(ddt_ptr + off, ddt, mask=sm)
    return ddt


@triton.jit(do_not_specialize=_ROWS_GENERIC)
def _rows_bwd_kernel(
    u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, dtb_ptr, h0_ptr, states_ptr,
    dy_ptr, dlast_ptr,
    du_ptr, ddt_ptr, dz_ptr, dB_ptr, dC_ptr, dA_ptr, dD_ptr, ddtb_ptr, dh0_ptr,
    cstate_ptr, nl_ptr, flags_ptr, ticket_ptr,
    dim, L, n_tiles, chunk_tiles, n_chunks, G_B, G_C,
    N: tl.constexpr, NP: tl.constexpr, BD: tl.constexpr, BLOCK_L: tl.constexpr,
    B_VARYING: tl.constexpr, C_VARYING: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr,
    HAS_DTB: tl.constexpr, SOFTPLUS: tl.constexpr, HAS_H0: tl.constexpr,
    HAS_DLAST: tl.constexpr, FAST_LOG: tl.constexpr, CHUNKED: tl.constexpr,
    PREFETCH: tl.constexpr, REV_UPPER: tl.constexpr, U_SRC: tl.constexpr,
    SHARED: tl.constexpr = False, PREFETCH_BC: tl.constexpr = False, SPREAD: tl.constexpr = False,
):
    """Gradients of BD rows over one chunk of tiles (see the comment above). states: the
    forward state after every tile, (rows, n_tiles, NP). Per-row sums go to dA (rows, N),
    dD / ddtb (rows,), time-invariant dB / dC (rows, N) (stored, or atomically added when
    CHUNKED); time-varying dB / dC are atomically added into (batch, G, N, L) float32 buffers.
    du / ddelta / dz are stored in their buffers' dtype. Direction layouts (REV_UPPER, U_SRC) as
    in the forward: tiles in scan order, reversed rows physically left to right (their adjoint
    runs left to right in memory, so it needs no reversal in the warp); du is stored per row
    (batch, dim, L) at the positions read, the caller sums the rows that share a source."""
    if CHUNKED:
        rb, q = _take_ticket(ticket_ptr, n_chunks, True)
    else:
        rb = tl.program_id(0)
        q = 0
    if SPREAD:
        rb = _spread_block(rb, tl.num_programs(0) // n_chunks, dim // (G_B * BD))
    k_first = q * chunk_tiles
    k_end = tl.minimum(n_tiles, k_first + chunk_tiles)
    rr, r, di, row_off, bB, bC = _row_block(rb, dim, L, G_B, G_C, N, BD)
    t0 = tl.arange(0, BLOCK_L)
    off0 = row_off[:, None] + t0[None, :]
    rev, offu0 = _dir_layout(rb, dim, L, G_B, rr, t0, off0, BD, REV_UPPER, U_SRC)
    bB, bC, offd0 = _shared_sources(rb, dim, L, G_B, G_C, N, BD, bB, bC, off0, offu0, SHARED)
    is_first = (t0 == rev * (BLOCK_L - 1))[None, :]        # first / last step in scan order
    is_last = (t0 == (1 - rev) * (BLOCK_L - 1))[None, :]
    A, Dv, dtb = _row_params(A_ptr, D_ptr, dtb_ptr, di, 1.0, N, HAS_D, HAS_DTB)
    if CHUNKED:
        if q < n_chunks - 1:   # spin until the chunk on the right published its carry
            slot = rb * n_chunks + q + 1
            _wait_flag(flags_ptr, slot)
    # N > UNROLL_MAX_N: the states are a loop (not unrolled), so only one state's tiles are live at a time
    # (offline sm_90, N = 16 unrolled: 255 registers and 600+ bytes of spills per thread). Its
    # carries go through memory: nl in the scratch nl_ptr (rows, NP), the per-row sums (dA,
    # time-invariant dB / dC) atomically into their zeroed outputs once per tile
    STATE_LOOP: tl.constexpr = N > UNROLL_MAX_N
    nl = ()     # dA * lam at the first step of the tile on the right (dlast past the end)
    for n in tl.static_range(N):
        c0 = tl.zeros((BD,), dtype=tl.float32)
        if HAS_DLAST:
            if q == n_chunks - 1:
                c0 = tl.load(dlast_ptr + r * N + n)
        if CHUNKED:
            if q < n_chunks - 1:
                c0 = tl.load(cstate_ptr + (r * n_chunks + q + 1) * NP + n, volatile=True)
        if STATE_LOOP:
            tl.store(nl_ptr + r * NP + n, c0)
        else:
            nl = nl + (c0,)
    zero2 = tl.zeros((BD, BLOCK_L), dtype=tl.float32)
    # unrolled states: per-state sums elementwise over the tiles, summed once at the end
    dA_acc = ()
    dBi_acc = ()
    dCi_acc = ()
    zero1 = tl.zeros((BD,), dtype=tl.float32)
    if not STATE_LOOP:
        for n in tl.static_range(N):
            dA_acc = dA_acc + (zero1,)
            if not B_VARYING:
                dBi_acc = dBi_acc + (zero1,)
            if not C_VARYING:
                dCi_acc = dCi_acc + (zero1,)
    dD_acc = zero1
    ddtb_acc = zero1
    ones = zero2 + 1.0
    flip = (BLOCK_L - 1 - t0)[None, :] + (rr * 0)[:, None]   # reversal of the tile
    # the raw tiles of the next (left) tile are loaded while this one is computed (PREFETCH)
    nxt = _rows_bwd_load(k_end - 1, k_first, u_ptr, dt_ptr, dy_ptr, z_ptr, off0, t0, L, BLOCK_L,
                         HAS_Z, offu0, rev, n_tiles, offd0)
    # PREFETCH_BC (N = 1, unrolled): B, C and the stored state of the next tile too, so that no load
    # of the tile's recomputation waits in the loop
    nbc = _rows_bwd_bc(k_end - 1, k_first, B_ptr, C_ptr, bB, bC, di, states_ptr, h0_ptr, r, t0, L,
                       BLOCK_L, rev, n_tiles, N, NP, B_VARYING, C_VARYING, HAS_H0, PREFETCH_BC)
    for j in range(0, k_end - k_first):
        k = k_end - 1 - j
        kp = _phys_tile(k, rev, n_tiles)   # the tile's place in memory
        t = kp * BLOCK_L + t0
        m2 = (t < L)[None, :]
        t2 = t[None, :]
        off = off0 + kp * BLOCK_L
        if PREFETCH:
            ut, rawt, dyt, zt = nxt
            nxt = _rows_bwd_load(k - 1, k_first, u_ptr, dt_ptr, dy_ptr, z_ptr, off0, t0, L,
                                 BLOCK_L, HAS_Z, offu0, rev, n_tiles, offd0)
        else:
            ut, rawt, dyt, zt = _rows_bwd_load(k, k_first, u_ptr, dt_ptr, dy_ptr, z_ptr, off0, t0,
                                               L, BLOCK_L, HAS_Z, offu0, rev, n_tiles, offd0)
        B0, C0, h00 = nbc
        if PREFETCH_BC:
            nbc = _rows_bwd_bc(k - 1, k_first, B_ptr, C_ptr, bB, bC, di, states_ptr, h0_ptr, r, t0, L,
                               BLOCK_L, rev, n_tiles, N, NP, B_VARYING, C_VARYING, HAS_H0, PREFETCH_BC)
        u = ut.to(tl.float32)
        dy = dyt.to(tl.float32)
        raw, dt = _delta_of(rawt.to(tl.float32), dtb[:, None], m2, HAS_DTB, SOFTPLUS, FAST_LOG)
        du = dt * u
        h_in = ()
        if PREFETCH_BC:
            h_in = (h00,)
        elif not STATE_LOOP:
            for n in tl.static_range(N):
                h_in = h_in + (_state_before(states_ptr, h0_ptr, r, k, n, n_tiles, N, NP, HAS_H0),)
        # the gate: the adjoint needs dy * silu(z) only; dz needs y before the gate, which the
        # state loop below sums on the way (h * C over the states), so dz is stored after it
        dy_out = dy
        z = zero2
        sz = zero2
        y = zero2
        if HAS_Z:
            z = zt.to(tl.float32)
            sz = tl.sigmoid(z)
            dy = dy * z * sz
        if HAS_D:
            dD_acc += tl.sum(dy * u, axis=1)
        lamB = zero2
        ddt = zero2
        if STATE_LOOP:
            for ns in range(N):   # a loop variable apart from the unrolled loops' n
                An = tl.load(A_ptr + di * N + ns)
                Bn = _rows_bc(B_ptr, bB, di, ns, L, t2, m2, N, B_VARYING)
                Cn = _rows_bc(C_ptr, bC, di, ns, L, t2, m2, N, C_VARYING)
                hn = _state_before(states_ptr, h0_ptr, r, k, ns, n_tiles, N, NP, HAS_H0)
                h, lam, ga, dBx, dCx, c = _bwd_state(
                    dt, du, dy, Bn, Cn, An, hn, tl.load(nl_ptr + r * NP + ns), is_first, is_last, flip,
                    ones, rev, k, ns, r, t, L, bB, bC, dh0_ptr, dB_ptr, dC_ptr, N, B_VARYING, C_VARYING,
                    REV_UPPER)
                tl.store(nl_ptr + r * NP + ns, c)
                if HAS_Z:
                    y += h * Cn
                lamB += lam * Bn
                ddt += ga * An[:, None]
                tl.atomic_add(dA_ptr + r * N + ns, tl.sum(ga * dt, axis=1), sem="relaxed")
                if not B_VARYING:
                    tl.atomic_add(dB_ptr + r * N + ns, tl.sum(dBx, axis=1), sem="relaxed")
                if not C_VARYING:
                    tl.atomic_add(dC_ptr + r * N + ns, tl.sum(dCx, axis=1), sem="relaxed")
        else:
            new_nl = ()
            new_dA = ()
            new_dBi = ()
            new_dCi = ()
            for n in tl.static_range(N):
                if PREFETCH_BC:
                    Bn = B0
                    Cn = C0
                else:
                    Bn = _rows_bc(B_ptr, bB, di, n, L, t2, m2, N, B_VARYING)
                    Cn = _rows_bc(C_ptr, bC, di, n, L, t2, m2, N, C_VARYING)
                h, lam, ga, dBx, dCx, c = _bwd_state(
                    dt, du, dy, Bn, Cn, A[n], h_in[n], nl[n], is_first, is_last, flip, ones, rev, k, n,
                    r, t, L, bB, bC, dh0_ptr, dB_ptr, dC_ptr, N, B_VARYING, C_VARYING, REV_UPPER)
                new_nl = new_nl + (c,)
                if HAS_Z:
                    y += h * Cn
                lamB += lam * Bn
                ddt += ga * A[n][:, None]
                new_dA = new_dA + (dA_acc[n] + tl.sum(ga * dt, axis=1),)
                if not B_VARYING:
                    new_dBi = new_dBi + (dBi_acc[n] + tl.sum(dBx, axis=1),)
                if not C_VARYING:
                    new_dCi = new_dCi + (dCi_acc[n] + tl.sum(dCx, axis=1),)
            nl = new_nl
            dA_acc = new_dA
            dBi_acc = new_dBi
            dCi_acc = new_dCi
        ddtb_acc += tl.sum(_bwd_tile_out(y, ddt, lamB, u, dt, raw, dy_out, dy, z, sz, Dv, off, m2, m2,
                                         du_ptr, ddt_ptr, dz_ptr, HAS_D, HAS_Z, SOFTPLUS), axis=1)
    # per-row sums; chunked programs add theirs atomically (the state loop added them per tile)
    if not STATE_LOOP:
        for n in tl.static_range(N):
            _put_sum(dA_ptr + r * N + n, dA_acc[n], CHUNKED)
            if not B_VARYING:
                _put_sum(dB_ptr + r * N + n, dBi_acc[n], CHUNKED)
            if not C_VARYING:
                _put_sum(dC_ptr + r * N + n, dCi_acc[n], CHUNKED)
    if HAS_D:
        _put_sum(dD_ptr + r, dD_acc, CHUNKED)
    if HAS_DTB:
        _put_sum(ddtb_ptr + r, ddtb_acc, CHUNKED)
    if CHUNKED:
        if q > 0:
            for n in tl.static_range(N):
                if STATE_LOOP:
                    tl.store(cstate_ptr + (r * n_chunks + q) * NP + n, tl.load(nl_ptr + r * NP + n))
                else:
                    tl.store(cstate_ptr + (r * n_chunks + q) * NP + n, nl[n])
            _raise_flag(flags_ptr, rb * n_chunks + q)
