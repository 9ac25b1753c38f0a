"""Name -> builder registries for frame encoders and temporal heads (torchvision style)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, TypeVar

# torch is imported only when a builder is needed: CPU stages that just validate a ModelConfig
# (plan, decode, listing) stay free of torch and torchvision.
Builder = Callable[..., Any]
F = TypeVar("F", bound=Builder)

BUILTIN_ENCODERS = frozenset(
    {"small_cnn", "resnet18", "resnet50", "mobilenet_v3_small", "efficientnet_b0"}
)
BUILTIN_TEMPORAL = frozenset({"mean", "lstm", "gru", "attention"})

_ENCODERS: dict[str, Builder] = {}
_TEMPORAL: dict[str, Builder] = {}


def _register(table: dict[str, Builder], kind: str, name: str) -> Callable[[F], F]:
    def wrapper(fn: F) -> F:
        if name in table:
            raise ValueError(f"{kind} '{name}' is already registered")
        table[name] = fn
        return fn

    return wrapper


def ensure_builtins() -> None:
    """Import the built-in encoders and heads (this registers them)."""
    importlib.import_module("pipeline.models.encoders")
    importlib.import_module("pipeline.models.temporal")


def is_known(kind: str, name: str) -> bool:
    """Cheap check for the built-in names; anything else consults the full registry."""
    builtin = BUILTIN_ENCODERS if kind == "encoder" else BUILTIN_TEMPORAL
    if name in builtin:
        return True
    getter = get_encoder_builder if kind == "encoder" else get_temporal_builder
    getter(name)  # raises ValueError listing the known names
    return True


def _get(table: dict[str, Builder], kind: str, name: str) -> Builder:
    ensure_builtins()
    try:
        return table[name]
    except KeyError:
        raise ValueError(f"unknown {kind} '{name}'; known: {', '.join(sorted(table))}") from None


def register_encoder(name: str) -> Callable[[F], F]:
    """Register a keyword-only builder of a per-frame encoder `(N, 3, H, W) -> (N, D)`."""
    return _register(_ENCODERS, "encoder", name)


def register_temporal(name: str) -> Callable[[F], F]:
    """Register a keyword-only builder of a temporal head `(B, T, D) -> (B, E)`."""
    return _register(_TEMPORAL, "temporal head", name)


def list_encoders() -> list[str]:
    ensure_builtins()
    return sorted(_ENCODERS)


def list_temporal_heads() -> list[str]:
    ensure_builtins()
    return sorted(_TEMPORAL)


def get_encoder_builder(name: str) -> Builder:
    return _get(_ENCODERS, "encoder", name)


def get_temporal_builder(name: str) -> Builder:
    return _get(_TEMPORAL, "temporal head", name)
