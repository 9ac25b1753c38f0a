"""Model configuration: plain, validated, serialisable to primitives."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from pipeline.models import registry

# What a model hears and sees (--modalities); the order is fixed so that one name means one model.
MODALITIES = ("video", "audio", "video,audio")
FUSIONS = ("concat", "attention")  # how a video,audio model joins its picture and its sound
# Fields a picture-only model leaves at their defaults and out of its dict, so that its config,
# and with it its model_version and its checkpoints' hash, is what it was before sound existed.
SOUND_FIELDS = {"modalities": "video", "audio_encoder": "audio_cnn", "fusion": "concat",
                "audio_weights": None}  # fmt: skip

_POSITIVE_INTS = (
    "num_classes",
    "hidden_dim",
    "num_layers",
    "attention_layers",
    "attention_heads",
    "max_frames",
)


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a VideoModel; everything needed to rebuild it from a checkpoint."""

    encoder: str = "small_cnn"
    temporal: str = "mean"
    num_classes: int = 8
    hidden_dim: int = 256  # RNN hidden size / attention d_model
    num_layers: int = 1  # RNN layers
    bidirectional: bool = False
    attention_layers: int = 2
    attention_heads: int = 4
    dropout: float = 0.1
    max_frames: int = 256  # positional table size of the attention head
    # a torchvision weights name ("DEFAULT"), or where a weights file was (a path or URI)
    pretrained_weights: str | None = None
    modalities: str = "video"  # "video", "audio" or "video,audio" (MODALITIES)
    audio_encoder: str = "audio_cnn"  # the sound's encoder, over 16 kHz samples
    fusion: str = "concat"  # video,audio: "concat" or "attention" (FUSIONS)
    audio_weights: str | None = None  # where the audio encoder's pretrained file was

    def __post_init__(self) -> None:
        object.__setattr__(self, "modalities", normalise_modalities(self.modalities))
        registry.is_known("encoder", self.encoder)  # raises ValueError listing known names
        registry.is_known("audio_encoder", self.audio_encoder)
        if self.audio_weights is not None and not self.hears:
            raise ValueError(
                "--audio-weights needs a model that hears: add --modalities audio or video,audio"
            )
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {', '.join(FUSIONS)}, got {self.fusion!r}")
        if (
            self.fusion == "attention"
            and self.modalities == "video,audio"
            and (self.hidden_dim % self.attention_heads)
        ):
            raise ValueError(
                f"ModelConfig.hidden_dim ({self.hidden_dim}) must be divisible by "
                f"attention_heads ({self.attention_heads}) for attention fusion"
            )
        registry.is_known("temporal", self.temporal)
        for name in _POSITIVE_INTS:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"ModelConfig.{name} must be an integer >= 1, got {value!r}")
        if not isinstance(self.bidirectional, bool):
            raise ValueError(f"ModelConfig.bidirectional must be bool: {self.bidirectional!r}")
        if not isinstance(self.dropout, int | float) or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"ModelConfig.dropout must be in [0, 1), got {self.dropout!r}")
        if self.temporal == "attention" and self.hidden_dim % self.attention_heads:
            raise ValueError(
                f"ModelConfig.hidden_dim ({self.hidden_dim}) must be divisible by "
                f"attention_heads ({self.attention_heads}) for the attention head"
            )
        if self.pretrained_weights is not None and not (
            isinstance(self.pretrained_weights, str) and self.pretrained_weights
        ):
            raise ValueError(
                "ModelConfig.pretrained_weights must be None, a torchvision weights name such "
                f"as 'DEFAULT' or a weights file's path or URI, got {self.pretrained_weights!r}"
            )

    @property
    def sees(self) -> bool:
        return "video" in self.modalities

    @property
    def hears(self) -> bool:
        return "audio" in self.modalities

    @property
    def audio_dim(self) -> int:
        """The width of the sound's part of the embedding (its encoder's output; 0: none)."""
        return self.hidden_dim if self.hears else 0

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of primitives (safe to store in a weights-only checkpoint); a
        picture-only model's dict has no sound fields (SOUND_FIELDS)."""
        d = asdict(self)
        if not self.hears:
            for name in SOUND_FIELDS:
                d.pop(name)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        """Inverse of to_dict; unknown keys are an error, missing keys take defaults."""
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown ModelConfig keys: {', '.join(unknown)}")
        return cls(**d)


def normalise_modalities(value: str) -> str:
    """`"audio,video"`, `" video , audio"` -> `"video,audio"`; ValueError for anything else."""
    parts = {p.strip() for p in str(value).split(",") if p.strip()}
    name = ",".join(m for m in ("video", "audio") if m in parts)
    if name not in MODALITIES or len(parts) != name.count(",") + 1:
        raise ValueError(f"modalities must be one of {', '.join(MODALITIES)} (got {value!r})")
    return name
