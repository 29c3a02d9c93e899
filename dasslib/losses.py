"""Training losses: BCE, cross-entropy, knowledge distillation (KL or BCE) and masked-patch MSE.

Every loss is an ``nn.Module`` registered by name (`get_loss`). All of them compute in
float32 whatever the autocast dtype of their inputs, and return a scalar tensor.

Knowledge distillation follows the official DASS code (AST teacher, ``dist_loss_type
kldiv``, T = 1)::

    loss = (1 - w) * BCEWithLogits(student, y) + w * KL,   w = 0.5
    KL   = kl_div(log_softmax(student), log_softmax(teacher / T), 'batchmean', log_target=True)

i.e. ``KL(softmax(teacher / T) || softmax(student))`` summed over classes and averaged
over the batch. Two consequences of copying it exactly:

* it is a softmax over all classes (527 for AudioSet), not per-class sigmoids, although
  both networks are trained as multi-label sigmoid classifiers: the student is pushed to
  match the teacher's *relative* logits across classes, and the teacher's absolute
  confidence per class does not enter;
* the temperature divides the teacher's logits only and there is no ``T**2`` factor
  (Hinton et al. scale both and multiply by ``T**2``); with the default T = 1 this makes
  no difference.

``kd_bce`` is the alternative the DASS paper and code mention: BCE-with-logits of the
student against the soft targets ``sigmoid(teacher / T)``, which keeps the per-class
multi-label view.
"""
from __future__ import annotations

import difflib

import torch
import torch.nn.functional as F
from torch import nn


def _check_logits(name: str, logits: torch.Tensor) -> None:
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"{name} must be a (B, C) tensor, got {shape}")


def _check_same_shape(a_name: str, a: torch.Tensor, b_name: str, b: torch.Tensor) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{a_name} {tuple(a.shape)} and {b_name} {tuple(b.shape)} must have the same shape")


class BCEWithLogits(nn.Module):
    """Multi-label BCE: ``logits (B, C)``, ``targets (B, C)`` in [0, 1] (multi-hot or mixed-up) -> scalar mean."""

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        _check_logits("logits", logits)
        _check_same_shape("logits", logits, "targets", targets)
        return F.binary_cross_entropy_with_logits(logits.float(), targets.float())


class CrossEntropy(nn.Module):
    """Single-label cross-entropy: ``logits (B, C)``; ``targets (B,)`` class indices or ``(B, C)`` class
    probabilities (one-hot, or mixed-up one-hot) -> scalar mean.

    Probability targets use the soft-target cross-entropy ``-sum_c y_c log softmax(z)_c``; for one-hot rows
    this equals the index form. (AST/DASS instead take ``argmax`` of the label rows, which differs only for
    mixed-up labels.)
    """

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        _check_logits("logits", logits)
        if targets.dim() == 1:
            if targets.shape[0] != logits.shape[0]:
                raise ValueError(f"targets {tuple(targets.shape)} must hold one class index per row of logits "
                                 f"{tuple(logits.shape)}")
            if targets.is_floating_point():
                raise TypeError(f"class-index targets must be integers, got {targets.dtype}")
            return F.cross_entropy(logits.float(), targets.long())
        _check_same_shape("logits", logits, "targets", targets)
        return F.cross_entropy(logits.float(), targets.float())


def kl_distillation(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                    temperature: float = 1.0) -> torch.Tensor:
    """DASS's distillation term: ``KL(softmax(teacher / T) || softmax(student))``, batch-mean, no ``T**2``.

    ``student_logits, teacher_logits: (B, C)`` -> scalar.
    """
    _check_logits("student_logits", student_logits)
    _check_same_shape("student_logits", student_logits, "teacher_logits", teacher_logits)
    log_p_student = F.log_softmax(student_logits.float(), dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    return F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)


def bce_distillation(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                     temperature: float = 1.0) -> torch.Tensor:
    """BCE-with-logits of the student against ``sigmoid(teacher / T)``: ``(B, C), (B, C)`` -> scalar mean."""
    _check_logits("student_logits", student_logits)
    _check_same_shape("student_logits", student_logits, "teacher_logits", teacher_logits)
    soft = torch.sigmoid(teacher_logits.float() / temperature)
    return F.binary_cross_entropy_with_logits(student_logits.float(), soft)


_DISTILL_TERMS = {"kl": kl_distillation, "bce": bce_distillation}
_HARD_LOSSES = {"bce": BCEWithLogits, "ce": CrossEntropy}


class KDLoss(nn.Module):
    """``(1 - weight) * hard(student, targets) + weight * distill(student, teacher)``.

    ``distill``: ``"kl"`` (DASS default, see the module docstring) or ``"bce"``; ``hard``: ``"bce"``
    (multi-label) or ``"ce"``. ``student_logits, teacher_logits: (B, C)``; ``targets`` as for the hard loss.
    """

    needs_teacher = True

    def __init__(self, distill: str = "kl", weight: float = 0.5, temperature: float = 1.0, hard: str = "bce"):
        super().__init__()
        if distill not in _DISTILL_TERMS:
            raise ValueError(f"distill must be one of {sorted(_DISTILL_TERMS)}, got {distill!r}")
        if hard not in _HARD_LOSSES:
            raise ValueError(f"hard must be one of {sorted(_HARD_LOSSES)}, got {hard!r}")
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"weight must lie in [0, 1], got {weight}")
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.distill, self.weight, self.temperature = distill, float(weight), float(temperature)
        self.hard = _HARD_LOSSES[hard]()

    def components(self, student_logits: torch.Tensor, targets: torch.Tensor, teacher_logits: torch.Tensor) -> dict:
        """The loss and its two terms: ``{"loss", "hard", "distill"}`` (scalar tensors)."""
        if teacher_logits is None:
            raise ValueError("a distillation loss needs teacher_logits")
        hard = self.hard(student_logits, targets)
        distill = _DISTILL_TERMS[self.distill](student_logits, teacher_logits, self.temperature)
        return {"loss": (1.0 - self.weight) * hard + self.weight * distill, "hard": hard, "distill": distill}

    def forward(self, student_logits: torch.Tensor, targets: torch.Tensor,
                teacher_logits: torch.Tensor) -> torch.Tensor:
        return self.components(student_logits, targets, teacher_logits)["loss"]


def masked_patch_errors(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                        norm_target: bool = False) -> torch.Tensor:
    """Per-patch squared error averaged over patch values, zero where not masked.

    ``pred, target: (B, N, P)`` (N patches of P values), ``mask: (B, N)`` bool (True = masked) -> ``(B, N)`` float32.
    ``norm_target`` normalizes each target patch to zero mean and unit variance first (as MAE's option).
    """
    if pred.dim() != 3:
        raise ValueError(f"pred must be (B, N, P), got {tuple(pred.shape)}")
    _check_same_shape("pred", pred, "target", target)
    if mask.shape != pred.shape[:2]:
        raise ValueError(f"mask {tuple(mask.shape)} must be (B, N) = {tuple(pred.shape[:2])}")
    if mask.dtype != torch.bool:
        raise TypeError(f"mask must be a bool tensor, got {mask.dtype}")
    target = target.float()
    if norm_target:
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + 1e-6).sqrt()
    err = (pred.float() - target).pow(2).mean(dim=-1)
    return err.masked_fill(~mask, 0.0)


RECON_PATCHES = ("all", "masked")


class MaskedMSE(nn.Module):
    """SSAM's reconstruction loss: MSE between the input patches and their reconstructions.

    ``pred, target: (B, N, P)``, ``mask: (B, N)`` bool -> scalar: mean over the scored patches of
    the mean squared error over their P values. ``patches``: ``"masked"`` scores the masked
    patches only (MAE / SSAST style); ``"all"`` scores every patch, as the official SSAM code
    does (its ``forward`` returns no mask, so ``mae_loss`` averages over all patches; the paper's
    Sec. 2.2 likewise compares all input patches with their reconstructions).
    ``norm_target`` (off by default, as official) normalizes each target patch.
    """

    def __init__(self, norm_target: bool = False, patches: str = "masked"):
        super().__init__()
        if patches not in RECON_PATCHES:
            raise ValueError(f"patches must be one of {RECON_PATCHES}, got {patches!r}")
        self.norm_target = bool(norm_target)
        self.patches = patches

    def scored(self, mask: torch.Tensor) -> torch.Tensor:
        """(B, N) bool: the patches the loss averages over."""
        return mask if self.patches == "masked" else torch.ones_like(mask)

    def forward(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        scored = self.scored(mask)   # masked_patch_errors checks its dtype and shape
        err = masked_patch_errors(pred, target, scored, self.norm_target)
        n = scored.sum()
        if n.item() == 0:
            raise ValueError("mask selects no patch: the masked MSE is undefined")
        return err.sum() / n


_REGISTRY = {
    "bce": BCEWithLogits,
    "ce": CrossEntropy,
    "kd_kl": lambda **kw: KDLoss(distill="kl", **kw),
    "kd_bce": lambda **kw: KDLoss(distill="bce", **kw),
    "masked_mse": MaskedMSE,
}


def list_losses() -> list[str]:
    """Registered loss names."""
    return sorted(_REGISTRY)


def get_loss(name: str, **kwargs) -> nn.Module:
    """Build a loss by name: ``"bce" | "ce" | "kd_kl" | "kd_bce" | "masked_mse"``; kwargs go to its constructor."""
    if name not in _REGISTRY:
        close = difflib.get_close_matches(str(name), _REGISTRY, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown loss {name!r}{hint}; choose one of {list_losses()}")
    return _REGISTRY[name](**kwargs)


def needs_teacher(loss: nn.Module) -> bool:
    """Whether a loss object takes teacher logits (the distillation losses)."""
    return bool(getattr(loss, "needs_teacher", False))
