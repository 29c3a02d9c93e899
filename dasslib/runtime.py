"""Where and in what precision code runs: one home for device resolution and autocast.

- :func:`resolve_device`: "auto" (or None) -> CUDA when available, else the CPU; asking for CUDA
  where there is none is a clear error.
- :func:`autocast`: mixed precision for a device and a compute dtype, or nothing for float32 /
  None (the callers decide which dtype a device gets: inference and training use bf16 on CUDA
  and plain float32 on the CPU unless told otherwise); :func:`cuda_autocast`: inference's rule
  (autocast on CUDA only);
- :func:`model_device`: the device a model's call runs on (its parameters'), checked against a request;
  :func:`training_device`: a training process's device (its local rank's GPU under DDP);
- :func:`eval_mode`: a model in eval mode for a block, its previous mode restored after.
"""
from __future__ import annotations

import contextlib

import torch

__all__ = ["resolve_device", "model_device", "training_device", "autocast", "cuda_autocast", "eval_mode"]


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


def cuda_autocast(device: torch.device, dtype: torch.dtype | None):
    """Autocast on CUDA only (inference, ssLALM training, the benchmarks): ``dtype`` is ignored on other
    devices (the CPU runs float32)."""
    return autocast(device, dtype if torch.device(device).type == "cuda" else None)


@contextlib.contextmanager
def eval_mode(model):
    """``model`` in eval mode inside the block; its training flag restored after."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def model_device(model, device=None) -> torch.device:
    """The device ``model`` runs on: its parameters'; ``device``, when given, must agree with it
    (ValueError otherwise). A model without parameters runs on ``device`` (default CPU)."""
    param = next(model.parameters(), None)
    if device is None:
        return param.device if param is not None else torch.device("cpu")
    device = torch.device(device)
    if param is None:
        return device
    here = param.device
    if here.type != device.type or (device.index is not None and device.index != here.index):
        raise ValueError(f"the model is on {here} but device={device}: call model.to(device) first")
    return here


def training_device(device: str, local_rank: int | None = None) -> torch.device:
    """A training process's device for ``device`` ("auto" | "cpu" | "cuda"): under DDP (``local_rank`` given)
    its local rank's GPU, else the current GPU or the CPU."""
    if resolve_device(device).type == "cuda":
        return torch.device("cuda", local_rank if local_rank is not None else torch.cuda.current_device())
    return torch.device("cpu")
