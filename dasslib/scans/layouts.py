"""Scan layouts built on :func:`selective_scan`.

- Unidirectional (Mamba / SSAM): :func:`selective_scan` itself.
- Bidirectional (AuM Fo-Bi, Vim / AuM Bi-Bi): :func:`bidirectional_selective_scan`.
- VMamba SS2D over a 2-D token grid: :func:`cross_scan_2d`, :func:`cross_merge_2d`
  and :func:`cross_selective_scan_2d` (scan of the four directions in one call).

Several directions are always folded into the channel axis of ONE selective-scan
call (B/C as groups), so each layout launches a single scan kernel. On the Triton backend,
Fo-Bi runs without flipped copies: the kernels scan the upper half of the channels right to
left over the same u, delta, z, B and C (``fobi_scan_triton``, layout "fobi"); Bi-Bi the same way
over the backward stream's own inputs in natural order (``bibi_scan_triton``, layout "bibi").
"""
import torch

from .api import resolve_backend, selective_scan

try:    # the Triton kernels (absent without triton)
    from .triton_backend import bibi_scan_supported, bibi_scan_triton, fobi_scan_supported, fobi_scan_triton
except ImportError:
    bibi_scan_supported = bibi_scan_triton = fobi_scan_supported = fobi_scan_triton = None

__all__ = ["selective_scan", "cross_scan_2d", "cross_merge_2d", "cross_selective_scan_2d",
           "bidirectional_selective_scan"]


def _check_grid(x, name="x"):
    if not torch.is_tensor(x) or x.dim() != 4:
        raise ValueError(f"{name} must be a 4-D tensor (B, C, H, W), got "
                         f"{tuple(x.shape) if torch.is_tensor(x) else type(x).__name__}")


def cross_scan_2d(x):
    """Unfold a grid into VMamba's four scan orders.

    x: (B, C, H, W) -> (B, 4, C, H*W) with k0 row-major (index h*W + w), k1 column-major
    (index w*H + h), k2 = k0 reversed, k3 = k1 reversed.
    """
    _check_grid(x)
    b, c, h, w = x.shape
    rows = x.flatten(2)                       # (B, C, L) index h*W + w
    cols = x.transpose(2, 3).flatten(2)       # (B, C, L) index w*H + h
    fwd = torch.stack([rows, cols], dim=1)    # (B, 2, C, L)
    return torch.cat([fwd, fwd.flip(-1)], dim=1)


def cross_merge_2d(y, H, W):
    """Inverse layout of :func:`cross_scan_2d`, summing the four directions.

    y: (B, 4, C, H*W) -> (B, C, H*W) in row-major order (un-flip, un-transpose, sum).
    """
    if not torch.is_tensor(y) or y.dim() != 4 or y.shape[1] != 4:
        raise ValueError(f"y must be (B, 4, C, H*W), got {tuple(y.shape) if torch.is_tensor(y) else type(y).__name__}")
    if y.shape[-1] != H * W:
        raise ValueError(f"y has length {y.shape[-1]} but H*W = {H}*{W} = {H * W}")
    b, _, c, L = y.shape
    y = y[:, 0:2] + y[:, 2:4].flip(-1)                                   # (B, 2, C, L)
    cols = y[:, 1].reshape(b, c, W, H).transpose(2, 3).reshape(b, c, L)  # back to h*W + w
    return y[:, 0] + cols


def cross_selective_scan_2d(x, delta, A, B, C, D=None, delta_bias=None, delta_softplus=True,
                            backend="auto"):
    """VMamba SS2D core: cross-scan, one grouped selective scan, cross-merge.

    x: (B, C, H, W) scan input (u); delta: (B, 4, C, H*W) per direction (in each direction's
    own scan order, i.e. computed from cross_scan_2d(x)); A: (4*C, N); B, C: (B, 4, N, H*W);
    D, delta_bias: (4*C,) or None. Channel ``k*C + c`` of A/D/delta_bias belongs to direction k.
    Returns (B, C, H*W) in x's dtype (row-major, summed over the four directions); pass fp32
    x to keep VMamba's fp32 scan output.
    """
    _check_grid(x)
    b, c, h, w = x.shape
    L = h * w
    xs = cross_scan_2d(x).reshape(b, 4 * c, L)
    if delta.shape != (b, 4, c, L):
        raise ValueError(f"delta must be (B, 4, C, H*W) = {(b, 4, c, L)}, got {tuple(delta.shape)}")
    y = selective_scan(xs, delta.reshape(b, 4 * c, L), A, B, C, D=D, delta_bias=delta_bias,
                       delta_softplus=delta_softplus, backend=backend)
    return cross_merge_2d(y.reshape(b, 4, c, L), h, w)


def bidirectional_selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None,
                                 delta_softplus=False, *, A_b, u_b=None, delta_b=None, B_b=None,
                                 C_b=None, D_b=None, delta_bias_b=None, divide_out=False,
                                 backend="auto", in_place=True):
    """Forward scan plus a backward scan over the flipped sequence, summed (AuM / Vim).

    All tensors use the forward (natural) time order; the backward stream is flipped here,
    scanned, and flipped back. Shapes as :func:`selective_scan`: u, delta, z: (batch, dim, L);
    A, A_b: (dim, N); B, C (and B_b, C_b): (batch, G, N, L) or (dim, N); D, D_b, delta_bias,
    delta_bias_b: (dim,). Returns (batch, dim, L) in u's dtype.

    The two official variants (read from the AuM / Vim ``mamba_simple.py``):

    - **Fo-Bi** (AuM default, Vim ``bimamba_type="v1"``): one conv; the backward scan shares
      u (the conv output), delta, B, C, D and delta_bias with the forward one and owns only
      ``A_b`` (from ``A_b_log``). Call with ``A_b`` only; the other ``*_b`` stay None.
      Outputs are summed (``y_f + flip(y_b)``), no division.
    - **Bi-Bi** (Vim default, Vim ``bimamba_type="v2"``): the backward stream has its own
      conv1d_b (applied causally to the FLIPPED x), x_proj_b, dt_proj_b (its bias is
      ``delta_bias_b``), A_b_log and D_b. Pass all ``*_b`` tensors, in natural order: e.g.
      ``u_b = silu(conv1d_b(x.flip(-1))).flip(-1)``. Summed and, if ``divide_out``
      (Vim/AuM ``if_devide_out=True``), halved.

    In both the gate z is shared, flipped with x and applied to each direction before the
    sum: ``silu(z) * y_f + silu(z) * y_b``. ``*_b`` tensors left as None fall back to the
    forward ones. Both directions are folded into the channel axis of one scan call.
    ``in_place`` (on the Triton backend, time-varying B and C): the backward direction by index
    arithmetic in the kernels instead of flipped copies (Fo-Bi: :func:`fobi_scan_triton`; Bi-Bi:
    :func:`bibi_scan_triton` over the two streams stacked along channels, the gate applied to their
    sum); False keeps the copies.
    """
    if A_b is None:
        raise ValueError("A_b (the backward scan's A) is required")
    fo_bi = all(t is None for t in (u_b, delta_b, B_b, C_b, D_b, delta_bias_b))
    u_b = u if u_b is None else u_b
    delta_b = delta if delta_b is None else delta_b
    B_b = B if B_b is None else B_b
    C_b = C if C_b is None else C_b
    D_b = D if D_b is None else D_b
    delta_bias_b = delta_bias if delta_bias_b is None else delta_bias_b
    if (D is None) != (D_b is None) or (delta_bias is None) != (delta_bias_b is None):
        raise ValueError("D/D_b and delta_bias/delta_bias_b must be both given or both None")
    if u_b.shape != u.shape or delta_b.shape != delta.shape or A_b.shape != A.shape:
        raise ValueError("backward tensors u_b, delta_b, A_b must match u, delta, A in shape")
    dim = u.shape[1]
    if (in_place and all(t.dim() == 4 for t in (B, C, B_b, C_b))
            and resolve_backend(backend, u.device) == "triton"):
        # the backward direction by index arithmetic in the kernels (no flipped copies)
        if fo_bi:
            y = _fobi_in_place(u, delta, A, A_b, B, C, D, z, delta_bias, delta_softplus)
            out = None if y is None else y[:, :dim] + y[:, dim:]
        else:
            out = _bibi_in_place(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                                 u_b, delta_b, A_b, B_b, C_b, D_b, delta_bias_b)
        if out is not None:
            return out / 2 if divide_out else out

    def both(f, b, time_axis=True):
        return torch.cat([f, b.flip(-1) if time_axis else b], dim=0 if f.dim() == 1 else 1)

    def both_bc(f, b, name):
        if f.dim() != b.dim() or (f.dim() == 4 and f.shape[1] != b.shape[1]):
            raise ValueError(f"{name} and {name}_b must have the same layout")
        if f.dim() == 2:       # time-invariant (dim, N): stack along channels
            return torch.cat([f, b], dim=0)
        return torch.cat([f, b.flip(-1)], dim=1)  # (batch, 2G, N, L): G groups per direction

    y = selective_scan(
        both(u, u_b), both(delta, delta_b), torch.cat([A, A_b], dim=0),
        both_bc(B, B_b, "B"), both_bc(C, C_b, "C"),
        D=None if D is None else torch.cat([D, D_b]),
        z=None if z is None else both(z, z),
        delta_bias=None if delta_bias is None else torch.cat([delta_bias, delta_bias_b]),
        delta_softplus=delta_softplus, backend=backend)
    out = y[:, :dim] + y[:, dim:].flip(-1)
    return out / 2 if divide_out else out


def _fobi_in_place(u, delta, A, A_b, B, C, D, z, delta_bias, softplus):
    """Fo-Bi with the backward direction by index arithmetic in the Triton kernels (layout "fobi":
    no flipped copies): (batch, 2 d, L), or None where that path does not run (no triton, or a
    kernel choice without it, e.g. few rows in training)."""
    if fobi_scan_triton is None:
        return None
    need_grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (u, delta, A, A_b, B, C, D, z, delta_bias))
    if not fobi_scan_supported(A.shape[1], 2 * u.shape[0] * u.shape[1], u.device, need_grad):
        return None
    return fobi_scan_triton(u, delta, A, A_b, B, C, D=D, z=z, delta_bias=delta_bias, delta_softplus=softplus)


def _bibi_in_place(u, delta, A, B, C, D, z, delta_bias, softplus, u_b, delta_b, A_b, B_b, C_b, D_b,
                   delta_bias_b):
    """Bi-Bi's summed output (batch, d, L) from one "bibi" scan of the two streams stacked along
    channels, in natural order (the kernels run the upper half right to left), or None where that
    path does not run. The gate is applied once to the sum: silu(z) * y_f + silu(z) * y_b."""
    if bibi_scan_triton is None or B.shape[1] != B_b.shape[1] or C.shape[1] != C_b.shape[1]:
        return None
    tensors = (u, delta, A, B, C, D, delta_bias, u_b, delta_b, A_b, B_b, C_b, D_b, delta_bias_b)
    need_grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)
    if not bibi_scan_supported(A.shape[1], 2 * u.shape[0] * u.shape[1], u.device, need_grad):
        return None
    cat = lambda f, b, axis: None if f is None else torch.cat([f, b], axis)   # noqa: E731
    y = bibi_scan_triton(cat(u, u_b, 1), cat(delta, delta_b, 1), cat(A, A_b, 0), cat(B, B_b, 1),
                         cat(C, C_b, 1), D=cat(D, D_b, 0), delta_bias=cat(delta_bias, delta_bias_b, 0),
                         delta_softplus=softplus)
    dim = u.shape[1]
    out = y[:, :dim].float() + y[:, dim:]
    if z is not None:
        out = out * torch.nn.functional.silu(z.float())
    return out.to(y.dtype)
