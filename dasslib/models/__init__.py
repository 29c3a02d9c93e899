"""Models: DASS, AST, AuM, SSAM and the SSAST baseline.

``create(name, num_classes=527, **overrides)`` builds a registered model (``list_models()``);
``load_official(model, path_or_state_dict)`` loads an official checkpoint with a key report.
Every classifier maps fbank ``(B, T, F)`` to logits ``(B, num_classes)``.
"""
from . import ast, aum, dass, ssam, ssast  # noqa: F401  (each registers its sizes)
from .ast import AST, ASTConfig
from .aum import AuM, AuMConfig
from .checkpoints import LoadReport, init_dass_from_vmamba, load_official, read_state_dict
from .dass import DASS, DASSConfig
from .registry import count_parameters, create, get_config, list_models
from .ssam import SSAM, SSAMConfig
from .ssast import SSAST, SSASTConfig

__all__ = ["create", "get_config", "list_models", "count_parameters", "load_official", "read_state_dict",
           "init_dass_from_vmamba", "LoadReport", "DASS", "DASSConfig", "AST", "ASTConfig",
           "AuM", "AuMConfig", "SSAM", "SSAMConfig", "SSAST", "SSASTConfig"]
