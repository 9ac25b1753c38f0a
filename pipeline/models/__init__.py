"""Video models: frame encoders + temporal heads, a registry, and plain-data checkpoints."""

from pipeline.models import encoders, temporal  # noqa: F401  (registers encoders and heads)
from pipeline.models.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from pipeline.models.config import ModelConfig
from pipeline.models.normalization import IMAGENET_MEAN, IMAGENET_STD
from pipeline.models.registry import list_encoders, list_temporal_heads
from pipeline.models.video_model import VideoModel, build_model, model_version

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Checkpoint",
    "ModelConfig",
    "VideoModel",
    "build_model",
    "list_encoders",
    "list_temporal_heads",
    "load_checkpoint",
    "model_version",
    "save_checkpoint",
]
