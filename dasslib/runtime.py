"""Where and in what precision code runs: one home for device resolution and autocast.

- :func:`resolve_device`: "auto" (or None) -> CUDA when available, else the CPU; asking for CUDA
  where there is none is a clear error.
- :func:`autocast`: mixed precision for a device and a compute dtype, or nothing for float32 /
  None (the callers decide which dtype a device gets: inference and training use bf16 on CUDA
  and plain float32 on the CPU unless told otherwise).
"""
from __future__ import annotations

import contextlib

import torch

__all__ = ["resolve_device", "autocast"]


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` / None -> ``cuda`` when available, else ``cpu``; otherwise ``torch.device(device)``
    (``"cuda"`` without CUDA raises ValueError)."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={str(device)!r} but CUDA is not available")
    return device


def autocast(device: str | torch.device, dtype: torch.dtype | None):
    """``torch.autocast`` on ``device``'s type at ``dtype``; a null context for None or float32."""
    if dtype is None or dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)
