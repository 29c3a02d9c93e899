"""Peak-memory readout and out-of-memory recovery.

Peak memory is ``torch.cuda.max_memory_allocated`` since the last :func:`reset_peak`, so it
counts everything alive then (weights, input) plus the step's high-water mark. The CPU has no
equivalent counter: :func:`peak_memory_mb` returns NaN there.
"""
import gc
import math

import torch

__all__ = ["is_oom", "free_memory", "reset_peak", "peak_memory_mb"]

# Messages of allocation failures that do not raise torch.OutOfMemoryError
# (cuBLAS / cuDNN workspaces, the CPU allocator).
_OOM_MESSAGES = ("out of memory", "alloc_failed", "can't allocate memory")


def is_oom(exc):
    """True when ``exc`` is an allocation failure (CUDA or host), False for any other error."""
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    return isinstance(exc, RuntimeError) and any(m in str(exc).lower() for m in _OOM_MESSAGES)


def free_memory(device, model=None):
    """Drop gradients of ``model`` (a failed backward may leave some), collect garbage and
    return cached CUDA blocks. Call it outside the ``except`` block: the traceback keeps the
    failed step's tensors alive until that block ends."""
    if model is not None:
        model.zero_grad(set_to_none=True)
    gc.collect()
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()


def reset_peak(device):
    """Start a new peak-memory window (no-op on CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device):
    """MiB allocated at the high-water mark since :func:`reset_peak`; NaN on CPU."""
    if torch.device(device).type != "cuda":
        return math.nan
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) / 2**20
