"""Package namespaces whose names are imported from their submodules on first use (PEP 562)."""
import importlib


def lazy_namespace(package: str, exports: dict) -> tuple:
    """``(__getattr__, __dir__, __all__)`` for ``package``: ``exports`` maps a submodule name to the names
    it provides; a name is imported from its submodule when first read, then cached in the package."""
    where = {name: module for module, names in exports.items() for name in names}
    namespace = importlib.import_module(package).__dict__

    def __getattr__(name):
        if name in where:
            value = getattr(importlib.import_module(f"{package}.{where[name]}"), name)
            namespace[name] = value
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__():
        return sorted(list(namespace) + list(where))

    return __getattr__, __dir__, sorted(where)
