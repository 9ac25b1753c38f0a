"""Name -> builder registries for frame encoders and temporal heads (torchvision style)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

# The registry imports nothing: the built-in builders (encoders.py, clip.py, temporal.py) register
# themselves when pipeline.models.video_model imports them to build a model, and names are
# checked against BUILTIN_* without torch (plan, decode and listing never import it).
Builder = Callable[..., Any]
F = TypeVar("F", bound=Builder)

BUILTIN_ENCODERS = frozenset(
    {"small_cnn", "resnet18", "resnet50", "mobilenet_v3_small", "efficientnet_b0", "clip"}
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


def _known(table: dict[str, Builder], builtin: frozenset[str]) -> list[str]:
    return sorted(builtin | table.keys())


def _unknown(kind: str, name: str, table: dict[str, Builder], builtin: frozenset[str]):
    return ValueError(f"unknown {kind} '{name}'; known: {', '.join(_known(table, builtin))}")


def is_known(kind: str, name: str) -> bool:
    """Whether `name` is a built-in or registered builder; a ValueError listing the known
    names otherwise. Needs no torch: the built-ins are known by name."""
    if kind == "encoder":
        table, builtin, label = _ENCODERS, BUILTIN_ENCODERS, "encoder"
    else:
        table, builtin, label = _TEMPORAL, BUILTIN_TEMPORAL, "temporal head"
    if name not in builtin and name not in table:
        raise _unknown(label, name, table, builtin)
    return True


def _get(table: dict[str, Builder], builtin: frozenset[str], kind: str, name: str) -> Builder:
    if name not in table:
        raise _unknown(kind, name, table, builtin)
    return table[name]


def register_encoder(name: str) -> Callable[[F], F]:
    """Register a keyword-only builder of a per-frame encoder `(N, 3, H, W) -> (N, D)`."""
    return _register(_ENCODERS, "encoder", name)


def register_temporal(name: str) -> Callable[[F], F]:
    """Register a keyword-only builder of a temporal head `(B, T, D) -> (B, E)`."""
    return _register(_TEMPORAL, "temporal head", name)


def list_encoders() -> list[str]:
    return _known(_ENCODERS, BUILTIN_ENCODERS)


def list_temporal_heads() -> list[str]:
    return _known(_TEMPORAL, BUILTIN_TEMPORAL)


def get_encoder_builder(name: str) -> Builder:
    """The builder of encoder `name` (the built-ins register when pipeline.models.video_model,
    which builds models, is imported)."""
    return _get(_ENCODERS, BUILTIN_ENCODERS, "encoder", name)


def get_temporal_builder(name: str) -> Builder:
    return _get(_TEMPORAL, BUILTIN_TEMPORAL, "temporal head", name)
