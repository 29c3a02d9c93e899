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

    d_inner = expand * d_model; dt_rank "auto" = ceil(d_model / 16).
    """

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
        conv = nn.Conv1d(d, d, self.d_conv, groups=d, padding=self.d_conv - 1, bias=conv_bias)
        x_proj = nn.Linear(d, r + 2 * n, bias=False)
        dt_proj = nn.Linear(r, d, bias=True)
        if init_dt:
            nn.init.uniform_(dt_proj.weight, -r ** -0.5, r ** -0.5)
            with torch.no_grad():
                dt_proj.bias.copy_(dt_bias_init(d))
            dt_proj.bias._no_reinit = True
        return conv, x_proj, dt_proj

    def _branch(self, x, conv, x_proj, dt_proj, reverse=False):
        """x (B, d_inner, L) -> u, dt (B, d_inner, L), B, C (B, 1, N, L), in natural order.
        ``reverse``: the causal conv runs over the reversed sequence (Bi-Bi backward stream)."""
        L = x.shape[-1]
        if reverse:
            x = x.flip(-1)
        u = F.silu(conv(x)[..., :L])
        if reverse:
            u = u.flip(-1)
        x_dbl = torch.matmul(x_proj.weight, u)                          # (B, R + 2N, L)
        r, n = self.dt_rank, self.d_state
        dt = torch.matmul(dt_proj.weight, x_dbl[:, :r])                 # (B, d_inner, L)
        Bm = x_dbl[:, r:r + n].unsqueeze(1).contiguous()
        Cm = x_dbl[:, r + n:].unsqueeze(1).contiguous()
        return u, dt, Bm, Cm

    def forward(self, h):
        xz = torch.matmul(self.in_proj.weight, h.transpose(1, 2))       # (B, 2 d_inner, L)
        if self.in_proj.bias is not None:
            xz = xz + self.in_proj.bias[:, None].to(xz.dtype)
        x, z = xz.chunk(2, dim=1)
        u, dt, Bm, Cm = self._branch(x, self.conv1d, self.x_proj, self.dt_proj)
        A = -torch.exp(self.A_log.float())
        kw = dict(D=self.D.float(), z=z, delta_bias=self.dt_proj.bias.float(),
                  delta_softplus=True, backend=self.scan_backend)
        if self.bimamba == "none":
            y = selective_scan(u, dt, A, Bm, Cm, **kw)
        elif self.bimamba == "fo_bi":
            y = bidirectional_selective_scan(u, dt, A, Bm, Cm, A_b=-torch.exp(self.A_b_log.float()),
                                             **kw)
        else:
            u_b, dt_b, B_b, C_b = self._branch(x, self.conv1d_b, self.x_proj_b, self.dt_proj_b,
                                               reverse=True)
            y = bidirectional_selective_scan(
                u, dt, A, Bm, Cm, A_b=-torch.exp(self.A_b_log.float()), u_b=u_b, delta_b=dt_b,
                B_b=B_b, C_b=C_b, D_b=self.D_b.float(), delta_bias_b=self.dt_proj_b.bias.float(),
                divide_out=self.divide_out, **kw)
        return self.out_proj(y.transpose(1, 2))
