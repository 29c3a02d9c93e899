"""What a benchmark measures: a labelled model factory and its input width.

A :class:`ModelSpec` is built from a registry name plus overrides (the model is created by
``dasslib.models.create`` only when the sweep needs it) or from any zero-argument factory,
so tiny test models and registry models go through the same code.
"""
from dataclasses import dataclass
from typing import Callable

from torch import nn

__all__ = ["ModelSpec", "model_spec", "as_spec", "default_specs", "count_tokens", "PAPER_MODELS"]

# The models of the efficiency study; AST names expand to one spec per attention kernel.
PAPER_MODELS = ("ast_small", "ast_base", "aum_small", "aum_base", "dass_small", "dass_medium",
                "ssam_tiny", "ssam_small", "ssam_base")
_MEL_BINS_BY_FAMILY = {"ssam": 80}   # SSAM takes (T, 80) fbanks; every other family 128
_DEFAULT_MEL_BINS = 128


@dataclass(frozen=True)
class ModelSpec:
    """label: the ``model`` column of result rows; factory() -> nn.Module mapping
    (B, T, mel_bins) -> (B, C); mel_bins: F of the random input fed to it."""
    label: str
    factory: Callable[[], nn.Module]
    mel_bins: int = _DEFAULT_MEL_BINS

    def __post_init__(self):
        if not isinstance(self.label, str) or not self.label:
            raise ValueError(f"ModelSpec label must be a non-empty string, got {self.label!r}")
        if not callable(self.factory):
            raise TypeError(f"ModelSpec {self.label!r}: factory must be callable, "
                            f"got {type(self.factory).__name__}")
        if not isinstance(self.mel_bins, int) or self.mel_bins < 1:
            raise ValueError(f"ModelSpec {self.label!r}: mel_bins must be a positive int, "
                             f"got {self.mel_bins!r}")


class _RegistryFactory:
    """Picklable, printable ``lambda: dasslib.models.create(name, **overrides)``."""

    def __init__(self, name, overrides):
        self.name, self.overrides = name, dict(overrides)

    def __call__(self):
        from dasslib import models  # imported on use: bench does not need the models to import
        return models.create(self.name, **self.overrides)

    def __repr__(self):
        args = "".join(f", {k}={v!r}" for k, v in self.overrides.items())
        return f"create({self.name!r}{args})"


def _default_label(name, overrides):
    parts = [name] + [v if isinstance(v, str) else f"{k}{v}" for k, v in overrides.items()]
    return "_".join(parts)


def model_spec(model, label=None, mel_bins=None, **overrides):
    """Spec from a registry name (``overrides`` go to ``create``) or a zero-argument factory.

    Default label: the name followed by each override's value, e.g.
    ``model_spec("ast_base", attn="sdpa").label == "ast_base_sdpa"``; for a factory its
    ``__name__``. Default mel_bins: 80 for ``ssam_*``, else 128.
    """
    if isinstance(model, str):
        if not model:
            raise ValueError("model name must be a non-empty string")
        family = model.split("_")[0]
        return ModelSpec(label or _default_label(model, overrides), _RegistryFactory(model, overrides),
                         mel_bins or _MEL_BINS_BY_FAMILY.get(family, _DEFAULT_MEL_BINS))
    if callable(model):
        if overrides:
            raise TypeError(f"overrides {sorted(overrides)} only apply to registry names, "
                            "not to a factory callable")
        name = label or getattr(model, "__name__", None)
        if not name or name == "<lambda>":
            raise ValueError("a factory without a usable __name__ needs label=...")
        return ModelSpec(name, model, mel_bins or _DEFAULT_MEL_BINS)
    raise TypeError(f"model must be a registry name or a zero-argument factory, "
                    f"got {type(model).__name__}")


def as_spec(obj):
    """A ModelSpec as is; a registry name or factory through :func:`model_spec`."""
    return obj if isinstance(obj, ModelSpec) else model_spec(obj)


def default_specs(names=PAPER_MODELS, ast_attn=("eager", "sdpa")):
    """Specs of the efficiency study: each ``ast_*`` once per attention kernel in
    ``ast_attn`` (labels ``ast_base_eager``, ``ast_base_sdpa``), every other name once."""
    if isinstance(names, str):
        names = (names,)
    specs = []
    for name in names:
        if name.startswith("ast_"):
            specs += [model_spec(name, attn=a) for a in ast_attn]
        else:
            specs.append(model_spec(name))
    return specs


def count_tokens(model, frames, mel_bins):
    """Tokens the model's sequence mixer sees for one (frames, mel_bins) input, or None.

    Models expose it as a method ``num_tokens(frames, mel_bins) -> int``; others give None.
    """
    fn = getattr(model, "num_tokens", None)
    return int(fn(frames, mel_bins)) if callable(fn) else None
