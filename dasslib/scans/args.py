"""Argument checks shared by every selective-scan backend."""
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ScanShape:
    """Sizes of one selective-scan call: batch, dim (channels), L (length), N (state size),
    groups of B and C (0 = time-invariant ``(dim, N)``)."""
    batch: int
    dim: int
    L: int
    N: int
    groups_B: int
    groups_C: int


def _need(t, name, shape):
    if not torch.is_tensor(t):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if tuple(t.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(t.shape)}")
    if t.is_complex():
        raise TypeError(f"{name} must be real; complex scans are not supported")


def _groups(M, name, batch, dim, N, L):
    if not torch.is_tensor(M):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(M).__name__}")
    if M.dim() == 2:
        _need(M, name, (dim, N))
        return 0
    if M.dim() == 4 and M.shape[0] == batch and M.shape[2] == N and M.shape[3] == L:
        g = M.shape[1]
        if g < 1 or dim % g:
            raise ValueError(f"{name} has {g} groups, which must divide dim={dim}")
        _need(M, name, (batch, g, N, L))
        return g
    raise ValueError(f"{name} must be (batch, G, N, L) = ({batch}, G, {N}, {L}) or (dim, N) = "
                     f"({dim}, {N}), got {tuple(M.shape)}")


def check_scan_args(u, delta, A, B, C, D=None, z=None, delta_bias=None, initial_state=None):
    """Validate shapes/types of a selective-scan call and return its :class:`ScanShape`."""
    for name, t in (("u", u), ("delta", delta), ("A", A)):
        if not torch.is_tensor(t):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if u.dim() != 3:
        raise ValueError(f"u must be (batch, dim, L), got shape {tuple(u.shape)}")
    if not u.is_floating_point():
        raise TypeError(f"u must be floating point, got {u.dtype}")
    batch, dim, L = u.shape
    if L < 1:
        raise ValueError("u must have length L >= 1")
    _need(delta, "delta", (batch, dim, L))
    if A.dim() != 2 or A.shape[0] != dim:
        raise ValueError(f"A must be (dim, N) = ({dim}, N), got {tuple(A.shape)}")
    N = A.shape[1]
    _need(A, "A", (dim, N))
    gB = _groups(B, "B", batch, dim, N, L)
    gC = _groups(C, "C", batch, dim, N, L)
    if D is not None:
        _need(D, "D", (dim,))
    if z is not None:
        _need(z, "z", (batch, dim, L))
    if delta_bias is not None:
        _need(delta_bias, "delta_bias", (dim,))
    if initial_state is not None:
        _need(initial_state, "initial_state", (batch, dim, N))
    devs = {t.device for t in (u, delta, A, B, C, D, z, delta_bias, initial_state) if t is not None}
    if len(devs) > 1:
        raise ValueError(f"all scan tensors must be on one device, got {sorted(map(str, devs))}")
    return ScanShape(batch, dim, L, N, gB, gC)


def expand_bc(M, shape, dtype):
    """(batch, G, N, L) or (dim, N) -> (batch, dim, N, L) view/copy in ``dtype``."""
    M = M.to(dtype)
    if M.dim() == 2:
        return M[None, :, :, None].expand(shape.batch, shape.dim, shape.N, shape.L)
    g = M.shape[1]
    per = shape.dim // g
    return M[:, :, None].expand(shape.batch, g, per, shape.N, shape.L).reshape(
        shape.batch, shape.dim, shape.N, shape.L)
