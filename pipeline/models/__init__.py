"""Video models: frame encoders + temporal heads, a registry, and plain-data checkpoints.

Attributes load lazily (PEP 562), so importing ModelConfig does not import torch.
"""

from importlib import import_module

_EXPORTS = {
    "IMAGENET_MEAN": "normalization",
    "IMAGENET_STD": "normalization",
    "Checkpoint": "checkpoint",
    "load_checkpoint": "checkpoint",
    "save_checkpoint": "checkpoint",
    "ModelConfig": "config",
    "list_encoders": "registry",
    "list_temporal_heads": "registry",
    "VideoModel": "video_model",
    "build_model": "video_model",
    "model_version": "video_model",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'pipeline.models' has no attribute {name!r}")
    value = getattr(import_module(f"pipeline.models.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value
