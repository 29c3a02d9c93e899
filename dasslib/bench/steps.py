"""The two timed operations: an inference forward and a training step.

Both run under autocast at the benchmark's compute dtype: ``"auto"`` means bfloat16 on CUDA
(weights stay float32, as in mixed-precision training) and plain float32 on the CPU.
"""

import torch
import torch.nn.functional as F

from ..fast import compile_for_training, fast_forward, resolve_train_fast
from ..runtime import autocast

__all__ = ["MODES", "OPTIMIZERS", "resolve_dtype", "check_mode", "make_step"]

MODES = ("inference", "train")
OPTIMIZERS = {"adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}
_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def resolve_dtype(dtype, device):
    """``"auto"`` -> bfloat16 on CUDA, float32 elsewhere; else one of bfloat16/float16/float32."""
    if dtype == "auto":
        return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype) and dtype in _DTYPES.values():
        return dtype
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be 'auto' or one of {sorted(_DTYPES)}, got {dtype!r}")
    return _DTYPES[dtype]


def check_mode(mode):
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    return mode


def make_step(model, mode, x, dtype=torch.float32, optimizer="adamw", lr=1e-4, fast="off"):
    """Return ``step()`` running one operation of ``model`` on ``x`` (B, T, F).

    inference: eval mode, ``torch.inference_mode``, logits discarded.
    train: train mode, forward, BCE-with-logits against all-zero targets, backward, then
    ``optimizer`` (``"adamw"``, ``"sgd"`` or None for forward + backward only) steps and
    gradients are set to None. The optimizer is created here, so its state lives as long as
    the returned closure.
    fast: :mod:`dasslib.fast` mode ("off": eager; inference: compiled and, for small inputs,
    CUDA-graph replayed under "auto"; train: the model compiled, forward and backward; "graphs":
    also replayed as CUDA graphs, :func:`dasslib.fast.compile_for_training`). The first call
    compiles.
    """
    check_mode(mode)
    device = x.device
    if mode == "inference":
        model.eval()
        forward = fast_forward(model, fast, x)

        def step():
            with torch.inference_mode(), autocast(device, dtype):
                forward(x)
        return step

    if optimizer is not None and optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be None or one of {sorted(OPTIMIZERS)}, got {optimizer!r}")
    model.train()
    opt = OPTIMIZERS[optimizer](model.parameters(), lr=lr) if optimizer else None
    net = compile_for_training(model, fast, device)
    graphs = resolve_train_fast(fast, device) == "graphs"

    def step():
        if graphs:
            torch.compiler.cudagraph_mark_step_begin()
        with autocast(device, dtype):
            logits = net(x)
        loss = F.binary_cross_entropy_with_logits(logits.float(), torch.zeros_like(logits, dtype=torch.float32))
        loss.backward()
        if opt is not None:
            opt.step()
        model.zero_grad(set_to_none=True)
    return step
