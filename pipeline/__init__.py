"""reelay: index large video corpora with deep learning on Ray."""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module


def lazy_exports(package: str, exports: dict[str, str]) -> Callable[[str], object]:
    """A package's `__getattr__` (PEP 562) that imports `name` from `package.<exports[name]>`
    on first use. Ray workers unpickle functions from these packages, and most of them must
    not pay for what the package's other modules import (torch, Ray Train)."""
    module = import_module(package)

    def __getattr__(name: str) -> object:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(f"{package}.{exports[name]}"), name)
        setattr(module, name, value)
        return value

    return __getattr__
