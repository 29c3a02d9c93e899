"""Model registry: ``create(name, num_classes=527, **overrides)`` and ``list_models()``.

Each entry is a model class plus a default config dataclass; overrides replace config fields
(e.g. ``depths``, ``dims``, ``embed_dim``, ``depth``, ``scan_backend``, ``pooling``).
"""
import dataclasses
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

_MODELS = {}


def register(name: str, model_cls: type, config) -> None:
    """Register ``model_cls(config)`` under ``name``; ``config`` is a dataclass instance."""
    if name in _MODELS:
        raise ValueError(f"model {name!r} is already registered")
    if not dataclasses.is_dataclass(config):
        raise TypeError(f"config for {name!r} must be a dataclass instance")
    _MODELS[name] = (model_cls, config)


def check_choice(option, value, choices):
    """Raise ValueError unless ``value`` is one of ``choices`` (config validation)."""
    if value not in choices:
        raise ValueError(f"unknown {option} {value!r}; choose one of {tuple(choices)}")
    return value


def list_models() -> list[str]:
    """Sorted names accepted by :func:`create`."""
    return sorted(_MODELS)


def get_config(name: str, num_classes: int = 527, **overrides):
    """The config :func:`create` would build for ``name`` with these overrides."""
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    _, base = _MODELS[name]
    fields = {f.name for f in dataclasses.fields(base)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise TypeError(f"unknown option(s) {unknown} for model {name!r}; valid: {sorted(fields)}")
    return dataclasses.replace(base, num_classes=num_classes, **overrides)


def create(name: str, num_classes: int = 527, **overrides) -> "nn.Module":
    """Build the registered model ``name`` (randomly initialised)."""
    model_cls, _ = _MODELS.get(name, (None, None))
    cfg = get_config(name, num_classes=num_classes, **overrides)
    return model_cls(cfg)


def count_parameters(model, trainable_only: bool = False) -> int:
    """Number of parameter elements of ``model`` (only those with ``requires_grad`` when
    ``trainable_only``); shared parameters count once."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


__all__ = ["register", "create", "list_models", "get_config", "check_choice", "count_parameters"]
