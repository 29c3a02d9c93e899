"""Peak-memory readout and out-of-memory recovery.

Peak memory is ``torch.cuda.max_memory_allocated`` since the last :func:`reset_peak`, so it
counts everything alive then (weights, input) plus the step's high-water mark. The CPU has no
equivalent counter: :func:`peak_memory_mb` returns NaN there.
"""
import gc
import math

import torch

__all__ = ["is_oom", "free_memory", "call_or_oom", "reset_peak", "peak_memory_mb", "limit_memory", "memory_limit_gib"]

_LIMITS = {}        # CUDA device index -> GiB the caching allocator is capped at

# Messages of allocation failures that do not raise torch.OutOfMemoryError
# (cuBLAS / cuDNN workspaces, the CPU allocator).
_OOM_MESSAGES = ("out of memory", "alloc_failed", "can't allocate memory", "cannot allocate memory",
                 "not enough memory")


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


def call_or_oom(call, device, oom=is_oom, *, model=None):
    """``(call(), False)``, or ``(None, True)`` when it raised an error ``oom(err)`` accepts (out of memory),
    after :func:`free_memory` (of ``device``, and the gradients of ``model`` when given), which runs outside
    the ``except`` block: its traceback would keep the failed call's tensors alive. Any other error
    propagates."""
    try:
        return call(), False
    except Exception as err:
        if not oom(err):
            raise
    free_memory(device, model)
    return None, True


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


def limit_memory(device, gib):
    """Cap what PyTorch's CUDA allocator may take on ``device`` at ``gib`` GiB
    (``torch.cuda.set_per_process_memory_fraction``), so that a larger card measures what fits on a
    smaller one: 78.5 on an H200 (141 GB) stands for an 80 GB H100, whose allocator gets its 79.2 GiB
    less the CUDA context. Allocations past the cap fail as out-of-memory, as on the smaller card.
    ``gib=None`` removes the cap. Returns the cap (GiB) or None; :func:`memory_limit_gib` reads it
    back (sweep and capacity tables name it in their ``device`` column)."""
    device = torch.device(device)
    if gib is None:
        if device.type == "cuda" and _LIMITS.pop(_index(device), None) is not None:
            torch.cuda.set_per_process_memory_fraction(1.0, _index(device))
        return None
    if isinstance(gib, bool) or not isinstance(gib, (int, float)) or not math.isfinite(gib) or gib <= 0:
        raise ValueError(f"memory limit must be a positive number of GiB, got {gib!r}")
    if device.type != "cuda":
        raise ValueError(f"a memory limit needs a CUDA device, got {device}")
    total = torch.cuda.get_device_properties(device).total_memory / 2**30
    if gib > total:
        raise ValueError(f"memory limit {gib:g} GiB exceeds the {total:.1f} GiB of "
                         f"{torch.cuda.get_device_name(device)}")
    torch.cuda.set_per_process_memory_fraction(gib / total, _index(device))
    _LIMITS[_index(device)] = float(gib)
    return float(gib)


def memory_limit_gib(device):
    """The cap set by :func:`limit_memory` on ``device``, or None."""
    device = torch.device(device)
    return _LIMITS.get(_index(device)) if device.type == "cuda" else None


def _index(device):
    return device.index if device.index is not None else torch.cuda.current_device()
