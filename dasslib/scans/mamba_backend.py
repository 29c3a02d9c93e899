"""The official mamba-ssm CUDA kernel, imported lazily (it is an optional dependency)."""


def selective_scan_mamba(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                         return_last_state=False, initial_state=None, out_dtype=None):
    """Run ``mamba_ssm.ops.selective_scan_interface.selective_scan_fn`` (CUDA tensors only).
    Same arguments/returns as :func:`dasslib.scans.selective_scan`, except that mamba-ssm
    has no ``initial_state``, and with ``out_dtype`` it scans u cast to that dtype (its kernel
    writes y in u's dtype)."""
    if initial_state is not None:
        raise ValueError("backend 'mamba_ssm' does not support initial_state; use 'triton' or 'torch'")
    if u.device.type != "cuda":
        raise ValueError(f"backend 'mamba_ssm' needs CUDA tensors, got device {u.device}")
    if out_dtype is not None:
        u = u.to(out_dtype)
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except Exception as e:  # not installed, or built against another torch/CUDA
        raise ValueError(f"backend 'mamba_ssm' is unavailable: {e}") from e
    out = selective_scan_fn(u, delta, A, B, C, D=D, z=z, delta_bias=delta_bias,
                            delta_softplus=delta_softplus, return_last_state=return_last_state)
    if return_last_state:
        y, last = out
        return y, last.float()
    return out
