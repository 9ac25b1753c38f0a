"""Name -> builder registries for frame encoders, temporal heads and audio encoders
(torchvision style)."""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import Any, TypeVar

# The registry imports nothing: the built-in builders (encoders.py, clip.py, temporal.py,
# audio_encoders.py) register themselves when pipeline.models.video_model imports them to build a
# model, and names are checked against BUILTIN_* without torch (plan, decode and listing never
# import it).
Builder = Callable[..., Any]
F = TypeVar("F", bound=Builder)

BUILTIN_ENCODERS = frozenset(
    {"small_cnn", "resnet18", "resnet50", "mobilenet_v3_small", "efficientnet_b0", "clip"}
)
BUILTIN_TEMPORAL = frozenset({"mean", "lstm", "gru", "attention"})
BUILTIN_AUDIO_ENCODERS = frozenset({"audio_cnn", "cnn14"})

_ENCODERS: dict[str, Builder] = {}
_TEMPORAL: dict[str, Builder] = {}
_AUDIO_ENCODERS: dict[str, Builder] = {}
# kind (as is_known takes it) -> (table, built-in names, label in messages)
_KINDS = {
    "encoder": (_ENCODERS, BUILTIN_ENCODERS, "encoder"),
    "temporal": (_TEMPORAL, BUILTIN_TEMPORAL, "temporal head"),
    "audio_encoder": (_AUDIO_ENCODERS, BUILTIN_AUDIO_ENCODERS, "audio encoder"),
}


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
    names otherwise. `kind`: "encoder", "temporal" or "audio_encoder". Needs no torch: the
    built-ins are known by name."""
    if kind not in _KINDS:
        raise ValueError(f"unknown registry kind '{kind}'; known: {', '.join(sorted(_KINDS))}")
    table, builtin, label = _KINDS[kind]
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


def register_audio_encoder(name: str) -> Callable[[F], F]:
    """Register a keyword-only builder `(*, out_dim, weights=None)` of an audio encoder:
    `(B, N)` mono samples at 16 kHz -> `(B, Ta, out_dim)` tokens along time."""
    return _register(_AUDIO_ENCODERS, "audio encoder", name)


def list_encoders() -> list[str]:
    return _known(_ENCODERS, BUILTIN_ENCODERS)


def list_temporal_heads() -> list[str]:
    return _known(_TEMPORAL, BUILTIN_TEMPORAL)


def list_audio_encoders() -> list[str]:
    return _known(_AUDIO_ENCODERS, BUILTIN_AUDIO_ENCODERS)


def get_encoder_builder(name: str) -> Builder:
    """The builder of encoder `name` (the built-ins register when pipeline.models.video_model,
    which builds models, is imported)."""
    return _get(_ENCODERS, BUILTIN_ENCODERS, "encoder", name)


def get_temporal_builder(name: str) -> Builder:
    return _get(_TEMPORAL, BUILTIN_TEMPORAL, "temporal head", name)


def get_audio_encoder_builder(name: str) -> Builder:
    """The builder of audio encoder `name`. The built-ins' module is imported here on first use,
    so that a caller which never imported pipeline.models.video_model still finds them while
    this module stays free of torch."""
    if name in BUILTIN_AUDIO_ENCODERS and name not in _AUDIO_ENCODERS:
        import_module("pipeline.models.audio_encoders")
    return _get(_AUDIO_ENCODERS, BUILTIN_AUDIO_ENCODERS, "audio encoder", name)
