"""Training objectives: what the loop calls on a batch, which loss it takes, how evaluation is scored.

An objective provides

* ``module(model)``: the ``nn.Module`` the loop runs (and DDP wraps), ``forward(x) -> outputs``;
* ``loss(outputs, y, teacher_outputs) -> (loss, {name: detached scalar})``;
* ``eval_batch(outputs, y) -> {name: (B, ...) tensor}``, per-sample tensors gathered over the eval set;
* ``summarize(gathered) -> {metric: float}``;
* optionally ``metric_names``: the metrics ``summarize`` reports (``main_metric`` is checked against them
  before training; without it, at the first evaluation).

`ClassificationObjective` (supervised, with optional distillation) and `PretrainObjective` (SSAM's
masked reconstruction through ``model.forward_pretrain``) cover the three notebooks.
"""
from __future__ import annotations

import torch
from torch import nn

from .. import losses


def split_batch(batch):
    """``(x, y)`` from a ``(x, y, ...)`` tuple/list batch; ``(x, None)`` for a bare tensor or a 1-tuple."""
    if isinstance(batch, torch.Tensor):
        return batch, None
    if isinstance(batch, (tuple, list)) and batch:
        return batch[0], (batch[1] if len(batch) > 1 else None)
    raise TypeError(f"a batch must be a tensor or an (x, y, ...) tuple, got {type(batch).__name__}")


class ClassificationObjective:
    """Logits ``(B, C)`` from ``model(x)``; ``loss`` is a `dasslib.losses` name (``bce``, ``ce``, ``kd_kl``,
    ``kd_bce``). Evaluation: `dasslib.metrics.evaluate` on all eval logits plus ``eval_loss``, the
    loss without distillation (BCE for multi-label, CE for multi-class)."""

    def __init__(self, loss: str = "bce", task: str = "multilabel", kd_weight: float = 0.5,
                 kd_temperature: float = 1.0):
        if task not in ("multilabel", "multiclass"):
            raise ValueError(f"task must be 'multilabel' or 'multiclass', got {task!r}")
        if loss == "masked_mse":
            raise ValueError("masked_mse is the pretraining loss: use objective='pretrain'")
        self.task = task
        hard = "ce" if loss == "ce" or (loss.startswith("kd_") and task == "multiclass") else "bce"
        kd = dict(weight=kd_weight, temperature=kd_temperature, hard=hard) if loss.startswith("kd_") else {}
        self.loss_fn = losses.get_loss(loss, **kd)
        self.eval_loss_fn = losses.get_loss(hard)
        self.needs_teacher = losses.needs_teacher(self.loss_fn)
        # the evaluation metrics `summarize` returns (a TrainConfig.main_metric must be one of them)
        self.metric_names = ("eval_loss", "mAP", "mAUC", "d_prime") + (("acc",) if task == "multiclass" else ())

    def module(self, model: nn.Module) -> nn.Module:
        return model

    def loss(self, outputs, y, teacher_outputs=None):
        if y is None:
            raise ValueError("classification batches must be (x, y) pairs")
        if self.needs_teacher:
            if teacher_outputs is None:
                raise ValueError("a distillation loss needs a teacher model")
            parts = self.loss_fn.components(outputs, y, teacher_outputs)
            return parts["loss"], {"hard": parts["hard"].detach(), "distill": parts["distill"].detach()}
        if teacher_outputs is not None:
            raise ValueError("a teacher was given but the loss is not a distillation loss (kd_kl / kd_bce)")
        return self.loss_fn(outputs, y), {}

    def eval_batch(self, outputs, y) -> dict:
        return {"logits": outputs.detach().float(), "targets": y}

    def summarize(self, gathered: dict) -> dict:
        from ..metrics import evaluate

        logits, targets = gathered["logits"], gathered["targets"]
        out = {"eval_loss": float(self.eval_loss_fn(logits, targets.to(logits.device)))}
        if self.task == "multiclass" and targets.dim() == 2:
            targets = targets.argmax(dim=1)  # one-hot rows -> class indices
        metrics = evaluate(logits, targets, task=self.task)
        out.update({k: float(v) for k, v in metrics.items() if _is_scalar(v)})
        return out


class _ForwardPretrain(nn.Module):
    """Makes ``model.forward_pretrain`` the ``forward`` (DDP only synchronizes through ``forward``)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model.forward_pretrain(x)


def _unpack_pretrain(outputs):
    if isinstance(outputs, dict):
        return outputs["pred"], outputs["target"], outputs["mask"]
    if isinstance(outputs, (tuple, list)) and len(outputs) == 3:
        return tuple(outputs)
    raise TypeError("forward_pretrain must return (pred (B, N, P), target (B, N, P), mask (B, N) bool) "
                    "or a dict with those keys")


class PretrainObjective:
    """SSAM masked reconstruction: ``model.forward_pretrain(x) -> (pred, target, mask)``, loss = MSE of
    the reconstructions over ``patches`` ("all", as the official SSAM code, or "masked";
    `dasslib.losses.MaskedMSE`). Evaluation: ``eval_loss``, the same loss over the eval set."""

    needs_teacher = False
    metric_names = ("eval_loss",)

    def __init__(self, norm_target: bool = False, patches: str = "all"):
        self.loss_fn = losses.MaskedMSE(norm_target, patches)

    def module(self, model: nn.Module) -> nn.Module:
        if not callable(getattr(model, "forward_pretrain", None)):
            raise TypeError(f"{type(model).__name__} has no forward_pretrain(x) method for masked pretraining")
        return _ForwardPretrain(model)

    def loss(self, outputs, y=None, teacher_outputs=None):
        if teacher_outputs is not None:
            raise ValueError("masked pretraining takes no teacher")
        return self.loss_fn(*_unpack_pretrain(outputs)), {}

    def eval_batch(self, outputs, y=None) -> dict:
        pred, target, mask = _unpack_pretrain(outputs)
        scored = self.loss_fn.scored(mask)
        err = losses.masked_patch_errors(pred, target, scored, self.loss_fn.norm_target)
        return {"err": err.sum(dim=1), "count": scored.sum(dim=1).float()}

    def summarize(self, gathered: dict) -> dict:
        return {"eval_loss": float(gathered["err"].sum() / gathered["count"].sum().clamp_min(1))}


def _is_scalar(v) -> bool:
    return isinstance(v, (int, float)) or (hasattr(v, "ndim") and v.ndim == 0)


def build_objective(cfg, task: str = "multilabel"):
    """The objective a `TrainConfig` names (``cfg.objective``, ``cfg.loss``)."""
    if cfg.objective == "pretrain":
        if cfg.loss != "masked_mse":
            raise ValueError(f"objective='pretrain' trains with loss='masked_mse', got loss={cfg.loss!r}")
        return PretrainObjective(cfg.norm_target, cfg.recon_patches)
    return ClassificationObjective(cfg.loss, task, cfg.kd_weight, cfg.kd_temperature)
