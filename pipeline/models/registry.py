"""Name -> builder registries for frame encoders and temporal heads (torchvision style)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from torch import nn

Builder = Callable[..., nn.Module]
F = TypeVar("F", bound=Builder)

_ENCODERS: dict[str, Builder] = {}
_TEMPORAL: dict[str, Builder] = {}


def _register(table: dict[str, Builder], kind: str, name: str) -> Callable[[F], F]:
    def wrapper(fn: F) -> F:
        if name in table:
            raise ValueError(f"{kind} '{name}' is already registered")
        table[name] = fn
        return fn

    return wrapper


def _get(table: dict[str, Builder], kind: str, name: str) -> Builder:
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
    return sorted(_ENCODERS)


def list_temporal_heads() -> list[str]:
    return sorted(_TEMPORAL)


def get_encoder_builder(name: str) -> Builder:
    return _get(_ENCODERS, "encoder", name)


def get_temporal_builder(name: str) -> Builder:
    return _get(_TEMPORAL, "temporal head", name)
