"""Step-by-step selective scan: the ground truth every backend is tested against."""
import torch
import torch.nn.functional as F

from .args import check_scan_args, expand_bc


def selective_scan_ref(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                       return_last_state=False, initial_state=None, compute_dtype=torch.float32):
    """Sequential scan with mamba-ssm semantics (a Python loop over L; for tests only).

    u, delta, z: (batch, dim, L); A: (dim, N); B, C: (batch, G, N, L) or (dim, N);
    D, delta_bias: (dim,); initial_state: (batch, dim, N).
    ``h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t``; ``y_t = C_t . h_t + D u_t``; ``y *= silu(z)``.
    Computes in ``compute_dtype`` (float64 for ground truth) and is differentiable.
    Returns y (u's dtype) or (y, last_state (batch, dim, N) in compute_dtype).
    """
    s = check_scan_args(u, delta, A, B, C, D, z, delta_bias, initial_state)
    cd = compute_dtype
    x, dt, A = u.to(cd), delta.to(cd), A.to(cd)
    if delta_bias is not None:
        dt = dt + delta_bias.to(cd)[None, :, None]
    if delta_softplus:
        dt = F.softplus(dt)
    Bx, Cx = expand_bc(B, s, cd), expand_bc(C, s, cd)
    h = x.new_zeros(s.batch, s.dim, s.N) if initial_state is None else initial_state.to(cd)
    ys = []
    for t in range(s.L):
        dt_t = dt[:, :, t, None]
        h = torch.exp(dt_t * A) * h + dt_t * Bx[..., t] * x[:, :, t, None]
        ys.append((h * Cx[..., t]).sum(-1))
    y = torch.stack(ys, dim=-1)
    if D is not None:
        y = y + D.to(cd)[None, :, None] * x
    if z is not None:
        y = y * F.silu(z.to(cd))
    y = y.to(u.dtype)
    return (y, h) if return_last_state else y
