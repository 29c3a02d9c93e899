"""Pure-PyTorch selective scan: parallel over L, numerically stable, differentiable.

The linear recurrence ``h_t = a_t h_{t-1} + x_t`` (with ``a_t = exp(delta_t A)``,
``x_t = delta_t B_t u_t``) is solved in chunks of ``CHUNK`` steps: a short loop walks the steps of
all chunks at once (each step one ``addcmul`` on a (..., n_chunks) slice), the chunk end states
are combined by the same scan one level up (recursively), and each chunk's start state is folded
in through the within-chunk decay products (``cumprod``). Only products of decays are formed,
never ``exp(+cumsum)``, so nothing overflows however long L is or however negative ``delta*A``
gets (decays just underflow to 0). The work is a few passes over the (batch, dim, N, L) tensor
whatever L is (a Hillis-Steele scan makes log2 L passes and keeps every level for autograd).
The initial state enters as ``x_0 += a_0 h_init``.

Long sequences are cut into pieces of at most ``piece_elems`` state elements
(batch*dim*N*piece_len); the state is carried between pieces, and with autograd each piece
is checkpointed so memory stays at one piece's intermediates.
"""
import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from .args import check_scan_args

PIECE_ELEMS = 1 << 26   # 64 Mi state elements (256 MiB in fp32) per piece
CHUNK = 16              # steps per chunk of the two-level scan


def _sequential_scan(a, x):
    """Inclusive scan along the last axis, one step at a time (for short axes)."""
    hs = [x[..., 0]]
    for t in range(1, x.shape[-1]):
        hs.append(torch.addcmul(x[..., t], a[..., t], hs[-1]))
    return torch.stack(hs, dim=-1)


def _linear_scan(a, x, chunk=CHUNK):
    """Inclusive scan of h_t = a_t h_{t-1} + x_t along the last axis (h_{-1} = 0)."""
    L = x.shape[-1]
    if L <= chunk:
        return _sequential_scan(a, x)
    k = -(-L // chunk)
    pad = k * chunk - L
    if pad:     # a = 1, x = 0 past the end: the state passes through
        a = F.pad(a, (0, pad), value=1.0)
        x = F.pad(x, (0, pad))
    a = a.unflatten(-1, (k, chunk))
    x = x.unflatten(-1, (k, chunk))
    local = _sequential_scan(a, x)                                  # (..., k, chunk), each chunk from 0
    decay = torch.cumprod(a, dim=-1)                                # prod of a within the chunk
    ends = _linear_scan(decay[..., -1], local[..., -1], chunk)      # true end state of every chunk
    start = F.pad(ends[..., :-1], (1, 0))                           # state entering each chunk
    h = torch.addcmul(local, decay, start[..., None])
    return h.flatten(-2)[..., :L]


def _piece(u, dt, A, B, C, h0, groups_B, groups_C):
    """One piece: u, dt (batch, dim, L) in compute dtype (dt already biased/softplused);
    B, C (batch, G, N, L) or (dim, N); h0 (batch, dim, N) or None.
    Returns y without D/z (batch, dim, L) and the last state (batch, dim, N)."""
    b, d, L = u.shape

    def per_channel(M, g):  # -> broadcastable to (b, d, N, L)
        if g == 0:
            return M[None, :, :, None]
        return M.unsqueeze(2).expand(b, g, d // g, *M.shape[2:]).reshape(b, d, *M.shape[2:])

    Bc, Cc = per_channel(B, groups_B), per_channel(C, groups_C)
    a = torch.exp(dt[:, :, None, :] * A[None, :, :, None])            # (b, d, N, L)
    x = (dt * u)[:, :, None, :] * Bc                                   # (b, d, N, L)
    if h0 is not None:
        x = torch.cat([x[..., :1] + a[..., :1] * h0[..., None], x[..., 1:]], dim=-1)
    h = _linear_scan(a, x)
    y = (h * Cc).sum(2)
    return y, h[..., -1]


def selective_scan_torch(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                         return_last_state=False, initial_state=None, piece_elems=PIECE_ELEMS,
                         out_dtype=None):
    """Selective scan in plain PyTorch (any device). Same arguments and returns as
    :func:`dasslib.scans.selective_scan`; computes in float32 (float64 if u is float64)."""
    s = check_scan_args(u, delta, A, B, C, D, z, delta_bias, initial_state)
    cd = torch.float64 if u.dtype == torch.float64 else torch.float32
    x, dt, Af = u.to(cd), delta.to(cd), A.to(cd)
    if delta_bias is not None:
        dt = dt + delta_bias.to(cd)[None, :, None]
    if delta_softplus:
        dt = F.softplus(dt)
    Bf, Cf = B.to(cd), C.to(cd)
    h = None if initial_state is None else initial_state.to(cd)
    piece = max(1, piece_elems // max(1, s.batch * s.dim * s.N))
    ys = []
    for t0 in range(0, s.L, piece):
        sl = slice(t0, min(s.L, t0 + piece))
        Bp = Bf if s.groups_B == 0 else Bf[..., sl]
        Cp = Cf if s.groups_C == 0 else Cf[..., sl]
        args = (x[..., sl], dt[..., sl], Af, Bp, Cp, h, s.groups_B, s.groups_C)
        if piece < s.L and torch.is_grad_enabled():
            y, h = checkpoint(_piece, *args, use_reentrant=False)
        else:
            y, h = _piece(*args)
        ys.append(y)
    y = ys[0] if len(ys) == 1 else torch.cat(ys, dim=-1)
    if D is not None:
        y = y + D.to(cd)[None, :, None] * x
    if z is not None:
        y = y * F.silu(z.to(cd))
    y = y.to(out_dtype or u.dtype)
    if return_last_state:
        return y, h.to(torch.float32 if cd == torch.float32 else cd)
    return y
