"""dasslib: audio state-space models (DASS, AuM, SSAM), AST, and the notebooks' building blocks.

Importing the package is cheap and needs neither a GPU nor mamba-ssm; subpackages
(`dasslib.scans`, `dasslib.data`, `dasslib.models`, ...) are imported on first use.
"""
import importlib

__version__ = "0.1.0"
_SUBMODULES = ("scans", "data", "metrics", "models", "losses", "train", "bench", "notebook", "tagging")


def __getattr__(name):
    if name == "tag":   # the function; its package is dasslib.tagging
        return importlib.import_module("dasslib.tagging").tag
    if name in _SUBMODULES:
        return importlib.import_module(f"dasslib.{name}")
    raise AttributeError(f"module 'dasslib' has no attribute {name!r}")


__all__ = list(_SUBMODULES) + ["__version__", "tag"]
