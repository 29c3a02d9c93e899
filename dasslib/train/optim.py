"""Optimizer and per-step learning-rate scheduler built from a `TrainConfig`."""
from __future__ import annotations

import torch

from .schedules import build_schedule

_TOKEN_NAMES = ("pos_embed", "cls_token", "dist_token", "mask_token")


def no_decay_names(model: torch.nn.Module) -> set[str]:
    """Names of the parameters exempt from weight decay besides biases and 1-D tensors: those
    flagged ``p._no_weight_decay`` (Mamba's A_log and D), position embeddings and tokens (timm /
    MAE ``no_weight_decay()``), and whatever the model's own ``no_weight_decay()`` returns."""
    own = set(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else set()
    return {name for name, p in model.named_parameters()
            if getattr(p, "_no_weight_decay", False) or name.rsplit(".", 1)[-1] in _TOKEN_NAMES
            or name in own}


def param_groups(model: torch.nn.Module, cfg) -> list[dict]:
    """Optimizer parameter groups of the trainable parameters.

    ``cfg.decay_exempt``: "none" decays every parameter (the official AST / DASS code:
    ``Adam(trainables, weight_decay=5e-7)``); "standard" exempts biases, norm weights (1-D) and
    :func:`no_decay_names` (MAE / SSAM, Mamba); "auto" is "none" for Adam and "standard" for AdamW.
    Groups come from timm's ``param_groups_weight_decay``.
    """
    from timm.optim import param_groups_weight_decay  # imported here: only training needs it

    mode = cfg.decay_exempt
    if mode == "auto":
        mode = "none" if cfg.optimizer == "adam" else "standard"
    if mode == "none":
        return [{"params": [p for p in model.parameters() if p.requires_grad], "weight_decay": cfg.weight_decay}]
    return param_groups_weight_decay(model, cfg.weight_decay, no_weight_decay_list=no_decay_names(model))


def build_optimizer(model: torch.nn.Module, cfg) -> torch.optim.Optimizer:
    """Adam (AST/DASS: weight decay 5e-7 added to the gradient, betas (0.95, 0.999)) or AdamW
    (SSAM: decoupled weight decay 0.05) over the parameters that require gradients, in the
    groups of :func:`param_groups`."""
    groups = [g for g in param_groups(model, cfg) if g["params"]]
    if not groups:
        raise ValueError("the model has no trainable parameters")
    cls = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
    return cls(groups, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)


def build_lr_scheduler(optimizer: torch.optim.Optimizer, cfg,
                       steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` stepped once per optimizer step: the lr of step ``s`` is ``cfg.lr * schedule(s)``."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, build_schedule(cfg, steps_per_epoch))
