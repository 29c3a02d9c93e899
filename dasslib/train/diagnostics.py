"""Training-dynamics diagnostics: gradient norms and activation statistics per model stage.

``TrainConfig.diagnostics_every = k`` (0: off) adds to every epoch's history row:

- ``grad_norm`` and ``grad_norm/<stage>``: the L2 norm of the gradients (of the whole model, of each
  stage's parameters), measured after the backward of every k-th step (before clipping, unscaled)
  and averaged over the epoch's measured steps; ``grad_norm_max``: the largest whole-model norm;
- ``act_rms/<stage>``: the root mean square of each stage's output; ``act_shared/<stage>``: the share
  of its mean square that is the same for every clip of the batch (the clip mean's mean square over the
  mean square: near 1 when a large clip-independent component drowns what tells the clips apart, which a
  following LayerNorm then divides away, gradients included); and ``logit_std``: the standard
  deviation of the logits across clips (averaged over classes; near 0 when the model has collapsed
  to constant outputs), from one eager forward of a fixed evaluation batch at the epoch's end.

A stage is a top-level child of the model, and each entry of a top-level ``nn.ModuleList``
(``layers.0`` ... for DASS, ``blocks.0`` ... for AuM, SSAM and AST). They are observations: they do not
change training (the identity of a run ignores the option), and an epoch resumed from a mid-epoch
checkpoint averages the steps measured after the resumption.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

__all__ = ["stages", "grad_norms", "activation_stats", "EpochDiagnostics"]


def stages(model: nn.Module) -> dict[str, nn.Module]:
    """``{name: module}``: the model's top-level children, a ModuleList replaced by its entries."""
    out = {}
    for name, child in model.named_children():
        if isinstance(child, nn.ModuleList):
            for i, sub in enumerate(child):
                out[f"{name}.{i}"] = sub
        else:
            out[name] = child
    return out


def grad_norms(model: nn.Module, scale: float = 1.0) -> dict[str, float]:
    """``{"grad_norm": whole model, "grad_norm/<stage>": ...}`` of the current ``.grad``s divided by
    ``scale`` (a GradScaler's scale); stages without gradients are left out."""
    names, sums = [], []
    for name, module in stages(model).items():
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        if grads:
            names.append(name)
            sums.append(torch.stack([g.detach().float().pow(2).sum() for g in grads]).sum())
    sq = [v / scale ** 2 for v in torch.stack(sums).tolist()] if sums else []   # one device sync
    return {"grad_norm": math.sqrt(sum(sq)), **{f"grad_norm/{n}": math.sqrt(v) for n, v in zip(names, sq)}}


def activation_stats(model: nn.Module, x: torch.Tensor, autocast_ctx) -> dict[str, float]:
    """``{"act_rms/<stage>": ..., "act_shared/<stage>": ..., "logit_std": ...}`` of one eager forward of
    ``x`` in eval mode
    (no gradients; the model's mode is restored). Stage outputs that are tuples count their first
    tensor; ``logit_std`` needs the model's output to be (clips, classes) logits."""
    found = {}
    hooks = []

    def hook(name):
        def record(_module, _inputs, output):
            t = output[0] if isinstance(output, (tuple, list)) else output
            if torch.is_tensor(t) and t.is_floating_point():
                t = t.detach().float()
                ms = t.pow(2).mean()
                found[f"act_rms/{name}"] = float(ms.sqrt())
                if t.dim() and t.shape[0] > 1:      # (clips, ...): the clip-independent part's share
                    found[f"act_shared/{name}"] = float(t.mean(0).pow(2).mean() / ms.clamp_min(1e-30))
        return record

    for name, module in stages(model).items():
        hooks.append(module.register_forward_hook(hook(name)))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad(), autocast_ctx():
            out = model(x)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    if torch.is_tensor(out) and out.dim() == 2 and out.shape[0] > 1:
        found["logit_std"] = float(out.detach().float().std(dim=0).mean())
    return found


class EpochDiagnostics:
    """Per-epoch accumulator of :func:`grad_norms` (means over the measured steps, and the largest
    whole-model norm)."""

    def __init__(self, every: int):
        self.every = every
        self.reset()

    def reset(self):
        self.sums: dict[str, float] = {}
        self.count = 0
        self.max_norm = 0.0

    def due(self, step: int) -> bool:
        """Whether ``step`` (1-based global step) is measured."""
        return self.every > 0 and step % self.every == 0

    def add(self, norms: dict[str, float]):
        for k, v in norms.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.count += 1
        self.max_norm = max(self.max_norm, norms.get("grad_norm", 0.0))

    def row(self) -> dict[str, float]:
        """The epoch's history columns (empty when no step was measured)."""
        if not self.count:
            return {}
        out = {k: v / self.count for k, v in self.sums.items()}
        out["grad_norm_max"] = self.max_norm
        return out
