"""Selective scans (placeholder: a plain sequential reference until the real backends land)."""
import torch
import torch.nn.functional as F


def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None,
                   delta_softplus=False, return_last_state=False, backend="auto"):
    """Sequential reference scan with mamba-ssm semantics; see docs/design.md."""
    dtype_in = u.dtype
    u, delta, A = u.float(), delta.float(), A.float()
    bsz, dim, L = u.shape
    if delta_bias is not None:
        delta = delta + delta_bias.float()[None, :, None]
    if delta_softplus:
        delta = F.softplus(delta)

    def expand(M):
        M = M.float()
        if M.dim() == 2:  # (dim, N) time-invariant
            return M[None, :, :, None].expand(bsz, dim, M.shape[1], L)
        g = M.shape[1]
        return M.repeat_interleave(dim // g, dim=1)  # (b, dim, N, L)

    Bx, Cx = expand(B), expand(C)
    h = u.new_zeros(bsz, dim, A.shape[1])
    ys = []
    for t in range(L):
        h = torch.exp(delta[:, :, t, None] * A) * h + delta[:, :, t, None] * Bx[..., t] * u[:, :, t, None]
        ys.append((h * Cx[..., t]).sum(-1))
    y = torch.stack(ys, dim=-1)
    if D is not None:
        y = y + D.float()[None, :, None] * u
    if z is not None:
        y = y * F.silu(z.float())
    y = y.to(dtype_in)
    return (y, h) if return_last_state else y
