"""Optimizer and per-step learning-rate scheduler built from a `TrainConfig`."""
from __future__ import annotations

import torch

from .schedules import build_schedule


def build_optimizer(model: torch.nn.Module, cfg) -> torch.optim.Optimizer:
    """Adam (AST/DASS: weight decay 5e-7 added to the gradient, betas (0.95, 0.999)) or AdamW
    (SSAM: decoupled weight decay 0.05) over the parameters that require gradients."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")
    cls = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
    return cls(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)


def build_lr_scheduler(optimizer: torch.optim.Optimizer, cfg, steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` stepped once per optimizer step: the lr of step ``s`` is ``cfg.lr * schedule(s)``."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, build_schedule(cfg, steps_per_epoch))
