"""Video models: frame encoders + temporal heads, a registry, and plain-data checkpoints.

Attributes load lazily (PEP 562), so importing ModelConfig does not import torch.
"""

from pipeline import lazy_exports

_EXPORTS = {
    "IMAGENET_MEAN": "normalization",
    "IMAGENET_STD": "normalization",
    "Checkpoint": "checkpoint",
    "load_checkpoint": "checkpoint",
    "save_checkpoint": "checkpoint",
    "ModelConfig": "config",
    "list_audio_encoders": "registry",
    "list_encoders": "registry",
    "list_temporal_heads": "registry",
    "VideoModel": "video_model",
    "build_model": "video_model",
    "model_version": "video_model",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
