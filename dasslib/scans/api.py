"""``selective_scan``: one entry point, several backends (see docs/scans.md)."""
import logging
import os

import torch

from .args import check_scan_args

log = logging.getLogger("dasslib.scans")
BACKENDS = ("auto", "torch", "triton", "mamba_ssm")
_logged = set()


def resolve_backend(backend: str, device: torch.device, need_initial_state: bool = False) -> str:
    """Pick the concrete backend for ``backend`` on ``device``: auto = triton on CUDA (our
    kernels are custom ops that torch.compile and CUDA graphs see through; mamba-ssm's kernel
    is used only when asked for by name), torch elsewhere. ``need_initial_state`` is kept for
    callers; every auto choice supports an initial state."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown scan backend {backend!r}; choose one of {BACKENDS}")
    if backend != "auto":
        return backend
    return "triton" if device.type == "cuda" else "torch"


def interpreted() -> bool:
    """Whether Triton runs its kernels in the interpreter (``TRITON_INTERPRET=1``: on the CPU)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def triton_kernels_run(backend: str, device: torch.device) -> bool:
    """Whether a module's Triton kernels apply here: ``backend`` resolves to "triton" and the device
    is CUDA, or the interpreter is on."""
    return resolve_backend(backend, device) == "triton" and (device.type == "cuda" or interpreted())


def selective_scan(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                   D: torch.Tensor | None = None, z: torch.Tensor | None = None,
                   delta_bias: torch.Tensor | None = None, delta_softplus: bool = False,
                   return_last_state: bool = False, backend: str = "auto",
                   initial_state: torch.Tensor | None = None,
                   out_dtype: torch.dtype | None = None) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Selective scan with mamba-ssm semantics.

    u, delta: (batch, dim, L); A: (dim, N); B, C: (batch, G, N, L) with G | dim (channel d uses
    group d // (dim // G)) or (dim, N) time-invariant; D, delta_bias: (dim,); z: (batch, dim, L)
    gate (y *= silu(z)); initial_state: (batch, dim, N) state before step 0 (default zeros).
    ZOH: h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t, y_t = C_t . h_t + D u_t.
    State and accumulation are float32. Returns y (u's dtype, or float32 with
    ``out_dtype=torch.float32``: the same as scanning u.float(), without the copy), or
    (y, last_state float32 (batch, dim, N)) when ``return_last_state``.
    backend: "torch" (chunked PyTorch, any device), "triton" (fused kernel, CUDA or
    TRITON_INTERPRET=1), "mamba_ssm" (the official CUDA kernel, if installed), or "auto".
    """
    check_scan_args(u, delta, A, B, C, D, z, delta_bias, initial_state)
    name = resolve_backend(backend, u.device, initial_state is not None)
    key = (backend, name, u.device.type, u.dtype)
    if key not in _logged and not torch.compiler.is_compiling():  # no logging inside a traced graph
        _logged.add(key)
        log.debug("selective_scan backend=%s -> %s on %s (%s)", backend, name, u.device, u.dtype)
    if out_dtype not in (None, u.dtype, torch.float32):
        raise ValueError(f"out_dtype must be None, u's dtype or torch.float32, got {out_dtype}")
    kw = dict(D=D, z=z, delta_bias=delta_bias, delta_softplus=delta_softplus,
              return_last_state=return_last_state, initial_state=initial_state,
              out_dtype=out_dtype)
    if name == "torch":
        from .torch_backend import selective_scan_torch
        return selective_scan_torch(u, delta, A, B, C, **kw)
    if name == "triton":
        from .triton_backend import selective_scan_triton
        return selective_scan_triton(u, delta, A, B, C, **kw)
    from .mamba_backend import selective_scan_mamba
    return selective_scan_mamba(u, delta, A, B, C, **kw)
