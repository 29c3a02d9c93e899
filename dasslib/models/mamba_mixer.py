"""The Mamba (S6) mixer used by AuM and SSAM, with Vim / AuM bidirectional variants.

(B, L, D) -> in_proj -> (x, z) -> causal depthwise conv1d -> SiLU -> x_proj (dt, B, C) ->
dt_proj -> selective scan (gated by SiLU(z)) -> out_proj -> (B, L, D).

``bimamba``:

- ``"none"`` (AuM Fo-Fo, plain Mamba, SSAM default): one forward scan.
- ``"fo_bi"`` (AuM Fo-Bi, Vim ``bimamba_type="v1"``): a second scan over the reversed
  sequence that shares the conv output, dt, B, C and D and owns only ``A_b_log``; summed.
- ``"bi_bi"`` (AuM Bi-Bi, Vim ``bimamba_type="v2"``): the backward stream has its own
  ``conv1d_b``, ``x_proj_b``, ``dt_proj_b``, ``A_b_log``, ``D_b``; summed and halved when
  ``divide_out`` (Vim / AuM ``if_devide_out=True``).

Parameter names follow mamba-ssm 1.1.1 as patched by Vim / AuM (``in_proj``, ``conv1d``,
``x_proj``, ``dt_proj``, ``A_log``, ``D``, ``out_proj`` and the ``*_b`` copies).
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from dasslib.scans import selective_scan
from dasslib.scans.layouts import bidirectional_selective_scan

from .layers import TapConv1d

BIMAMBA = ("none", "fo_bi", "bi_bi")


def s4d_real_log(d, n):
    """S4D-real init of A_log (d, n): log(1..n) for every channel (A = -exp(A_log))."""
    return torch.log(torch.arange(1, n + 1, dtype=torch.float32)).repeat(d, 1).contiguous()


def dt_bias_init(d, dt_min=1e-3, dt_max=0.1, floor=1e-4):
    """dt bias (d,) such that softplus(bias) is log-uniform in [dt_min, dt_max]."""
    dt = torch.exp(torch.rand(d) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
    dt = dt.clamp(min=floor)
    return dt + torch.log(-torch.expm1(-dt))      # inverse softplus


class MambaMixer(nn.Module):
    """Mamba mixer (B, L, d_model) -> (B, L, d_model).

    d_inner = expand * d_model; dt_rank "auto" = ceil(d_model / 16). ``in_place`` (attribute,
    default True): Fo-Bi's and Bi-Bi's backward direction by index arithmetic on the Triton scan;
    False keeps the flipped copies (benchmark comparisons). Bi-Bi's convolution of
    the reversed sequence always runs without flips (:meth:`TapConv1d.reversed_causal`).

    ``scan_pad`` (attribute): "compile" (default) pads the scan's sequence with zeros to a multiple
    of ``scan_align`` (16) when ``torch.compile`` traces the mixer, "always" in eager calls too,
    "never" not at all. Rows of an aligned length let the Triton kernels load 16-byte vectors (at
    AuM's L = 513 they load bf16 element by element: 24-32% more instructions, offline counts in
    docs/speed.md). Exact: u, z and so B, C, x_proj's dt are zero past L, so a forward row's outputs
    before L do not see the padding and a reversed row's state stays zero through it; gradients
    there are zero too. Not with ``attention_mask`` or ``return_state`` (whose last state is at L).
    """

    in_place = True
    scan_pad = "compile"
    scan_align = 16

    def __init__(self, d_model, d_state=16, d_conv=4, expand=2, dt_rank="auto", bimamba="none",
                 divide_out=True, conv_bias=True, bias=False, scan_backend="auto"):
        super().__init__()
        if bimamba not in BIMAMBA:
            raise ValueError(f"unknown bimamba {bimamba!r}; choose one of {BIMAMBA}")
        self.d_inner = d_inner = int(expand * d_model)
        self.d_state, self.d_conv = d_state, d_conv
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        self.bimamba, self.divide_out, self.scan_backend = bimamba, divide_out, scan_backend
        self.in_proj = nn.Linear(d_model, 2 * d_inner, bias=bias)
        self.conv1d, self.x_proj, self.dt_proj = self._ssm_inputs(conv_bias, init_dt=True)
        self.A_log = nn.Parameter(s4d_real_log(d_inner, d_state))
        self.D = nn.Parameter(torch.ones(d_inner))
        no_decay = [self.A_log, self.D]
        if bimamba != "none":
            self.A_b_log = nn.Parameter(s4d_real_log(d_inner, d_state))
            no_decay.append(self.A_b_log)
        if bimamba == "bi_bi":
            # official: the backward dt_proj keeps nn.Linear's default init (no dt init)
            self.conv1d_b, self.x_proj_b, self.dt_proj_b = self._ssm_inputs(conv_bias,
                                                                             init_dt=False)
            self.D_b = nn.Parameter(torch.ones(d_inner))
            no_decay.append(self.D_b)
        self.out_proj = nn.Linear(d_inner, d_model, bias=bias)
        for p in no_decay:
            p._no_weight_decay = True

    def _ssm_inputs(self, conv_bias, init_dt):
        d, r, n = self.d_inner, self.dt_rank, self.d_state
        conv = TapConv1d(d, d, self.d_conv, groups=d, padding=self.d_conv - 1, bias=conv_bias)
        x_proj = nn.Linear(d, r + 2 * n, bias=False)
        dt_proj = nn.Linear(r, d, bias=True)
        if init_dt:
            nn.init.uniform_(dt_proj.weight, -r ** -0.5, r ** -0.5)
            with torch.no_grad():
                dt_proj.bias.copy_(dt_bias_init(d))
            dt_proj.bias._no_reinit = True
        return conv, x_proj, dt_proj

    def _scan_padding(self, L, attention_mask, return_state):
        """Zeros to append to the scan's sequence of length L (see ``scan_pad``)."""
        if self.scan_pad not in ("compile", "always", "never"):
            raise ValueError(f"scan_pad must be 'compile', 'always' or 'never', got {self.scan_pad!r}")
        if self.scan_pad == "never" or attention_mask is not None or return_state:
            return 0
        if self.scan_pad == "compile" and not torch.compiler.is_compiling():
            return 0
        return -L % self.scan_align

    def _branch(self, x, conv, x_proj, dt_proj, reverse=False, mask=None, pad=0):
        """x (B, d_inner, L) -> u, dt (B, d_inner, L + pad), B, C (B, 1, N, L + pad), in natural
        order, zero past L. ``reverse``: the causal conv runs over the reversed sequence (Bi-Bi
        backward stream); ``mask`` (B, L): u is zeroed at padded positions."""
        L = x.shape[-1]
        u = F.silu(conv.reversed_causal(x) if reverse else conv(x)[..., :L])
        if mask is not None:
            u = u * mask[:, None, :].to(u.dtype)
        if pad:
            u = F.pad(u, (0, pad))
        x_dbl = torch.matmul(x_proj.weight, u)                          # (B, R + 2N, L)
        r, n = self.dt_rank, self.d_state
        dt = torch.matmul(dt_proj.weight, x_dbl[:, :r])                 # (B, d_inner, L)
        Bm = x_dbl[:, r:r + n].unsqueeze(1).contiguous()
        Cm = x_dbl[:, r + n:].unsqueeze(1).contiguous()
        return u, dt, Bm, Cm

    def forward(self, h, attention_mask=None, return_state=False):
        """h (B, L, d_model) -> (B, L, d_model).

        ``attention_mask`` (B, L) of 0/1 (one-direction mixers only): padded positions are zeroed
        before ``in_proj`` and after the conv, as transformers' Mamba does, so a left-padded row
        gives the same outputs as the row alone. ``return_state``: also return the recurrent
        state ``(conv_state (B, d_inner, d_conv), ssm_state (B, d_inner, d_state) float32)``
        that :meth:`step` continues from. ``in_proj`` is called as a module (adapters on it,
        e.g. LoRA, take effect)."""
        if (attention_mask is not None or return_state) and self.bimamba != "none":
            raise ValueError("attention_mask / return_state need a one-direction mixer "
                             f"(bimamba='none'), not {self.bimamba!r}")
        if attention_mask is not None:
            attention_mask = _check_mask(attention_mask, h)
            h = h * attention_mask[:, :, None].to(h.dtype)
        xz = self.in_proj(h).transpose(1, 2)                            # (B, 2 d_inner, L)
        x, z = xz.chunk(2, dim=1)
        L = x.shape[-1]
        pad = self._scan_padding(L, attention_mask, return_state)
        if pad:
            z = F.pad(z, (0, pad))
        u, dt, Bm, Cm = self._branch(x, self.conv1d, self.x_proj, self.dt_proj,
                                     mask=attention_mask, pad=pad)
        A = -torch.exp(self.A_log.float())
        kw = dict(D=self.D.float(), z=z, delta_bias=self.dt_proj.bias.float(),
                  delta_softplus=True, backend=self.scan_backend)
        state = None
        if self.bimamba == "none":
            y = selective_scan(u, dt, A, Bm, Cm, return_last_state=return_state, **kw)
            if return_state:
                y, ssm_state = y
                pad = max(0, self.d_conv - x.shape[-1])
                conv_state = F.pad(x[..., -self.d_conv:], (pad, 0))
                state = (conv_state, ssm_state)
        elif self.bimamba == "fo_bi":
            y = bidirectional_selective_scan(u, dt, A, Bm, Cm, A_b=-torch.exp(self.A_b_log.float()),
                                             in_place=self.in_place, **kw)
        else:
            u_b, dt_b, B_b, C_b = self._branch(x, self.conv1d_b, self.x_proj_b, self.dt_proj_b,
                                               reverse=True, pad=pad)
            y = bidirectional_selective_scan(
                u, dt, A, Bm, Cm, A_b=-torch.exp(self.A_b_log.float()), u_b=u_b, delta_b=dt_b,
                B_b=B_b, C_b=C_b, D_b=self.D_b.float(), delta_bias_b=self.dt_proj_b.bias.float(),
                divide_out=self.divide_out, in_place=self.in_place, **kw)
        if pad:
            y = y[..., :L]
        out = self.out_proj(y.transpose(1, 2))
        return (out, state) if return_state else out

    def step(self, h, state):
        """One recurrent step (one-direction mixers): h (B, d_model) and ``state`` from
        :meth:`forward` (``return_state=True``) or :meth:`step` -> (out (B, d_model), new state).
        Equal to running :meth:`forward` over the whole sequence, without re-scanning it."""
        if self.bimamba != "none":
            raise ValueError(f"step needs a one-direction mixer (bimamba='none'), not {self.bimamba!r}")
        if h.dim() != 2:
            raise ValueError(f"step takes one token per row (B, d_model), got shape {tuple(h.shape)}")
        conv_state, ssm_state = state
        x, z = self.in_proj(h).chunk(2, dim=-1)                          # (B, d_inner) each
        conv_state = torch.cat([conv_state[..., 1:], x[..., None].to(conv_state.dtype)], dim=-1)
        u = (conv_state * self.conv1d.weight[:, 0]).sum(-1)
        if self.conv1d.bias is not None:
            u = u + self.conv1d.bias
        u = F.silu(u)
        r, n = self.dt_rank, self.d_state
        x_dbl = self.x_proj(u)
        dt = F.softplus(F.linear(x_dbl[:, :r], self.dt_proj.weight).float()
                        + self.dt_proj.bias.float())                     # (B, d_inner)
        Bm, Cm = x_dbl[:, r:r + n].float(), x_dbl[:, r + n:].float()    # (B, N)
        A = -torch.exp(self.A_log.float())
        uf = u.float()
        ssm_state = torch.exp(dt[..., None] * A) * ssm_state + (dt * uf)[..., None] * Bm[:, None]
        y = (ssm_state * Cm[:, None]).sum(-1) + self.D.float() * uf
        y = (y * F.silu(z.float())).to(h.dtype)
        return self.out_proj(y), (conv_state, ssm_state)


def _check_mask(mask, h):
    """A (B, L) 0/1 mask for h (B, L, D); returns it as a float tensor on h's device."""
    if mask.shape != h.shape[:2]:
        raise ValueError(f"attention_mask must be (batch, length) = {tuple(h.shape[:2])}, "
                         f"got {tuple(mask.shape)}")
    return mask.to(device=h.device, dtype=torch.float32)
