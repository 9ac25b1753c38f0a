"""VideoModel: frame encoder + temporal head + linear classifier; builder and version hash."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence

import torch
from torch import nn

import pipeline.models.audio_encoders  # noqa: F401 (registers the audio encoders)
import pipeline.models.clip  # noqa: F401 (registers the clip encoder)
import pipeline.models.encoders  # noqa: F401 (registers the built-in encoders)
import pipeline.models.temporal  # noqa: F401 (registers the built-in temporal heads)
from pipeline.models.config import ModelConfig
from pipeline.models.fusion import AttentionFusion, ConcatFusion
from pipeline.models.registry import (
    get_audio_encoder_builder,
    get_encoder_builder,
    get_temporal_builder,
)


class VideoModel(nn.Module):
    """`(frames (B, T, 3, H, W), audio (B, N))` -> `(embedding (B, E), logits (B, K))`.

    A picture-only model (the default) takes frames alone, `model(frames)`, as it always did;
    its weights are named as they always were. A model that hears (`ModelConfig.modalities`)
    also takes each clip's sound, 16 kHz mono samples; an audio-only one has no frame encoder.
    The embedding is what the classifier reads: `[picture part ; sound part]` for a model of
    both (pipeline.models.fusion), the last `audio_dim` values being the sound's.
    """

    def __init__(
        self,
        encoder: nn.Module | None,
        temporal: nn.Module | None,
        num_classes: int,
        audio: nn.Module | None = None,
        fusion: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.temporal = temporal
        self.audio = audio  # samples (B, N) -> sound tokens (B, Ta, H)
        self.fusion = fusion
        self.audio_dim = audio.out_dim if audio is not None else 0
        self.classifier = nn.Linear(self.embedding_dim, num_classes)

    @property
    def embedding_dim(self) -> int:
        if self.fusion is not None:
            return self.fusion.out_dim
        return self.temporal.out_dim if self.temporal is not None else self.audio_dim

    @property
    def sees(self) -> bool:
        return self.encoder is not None

    def encode_frames(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5:
            raise ValueError(f"expected clips of shape (B, T, 3, H, W), got {tuple(x.shape)}")
        b, t = x.shape[:2]
        return self.encode_images(x.flatten(0, 1)).reshape(b, t, -1)  # (B, T, D)

    def encode_images(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) -> (N, D): the CNN alone, frame by frame."""
        return self.encoder(x)

    def encode_audio(self, samples: torch.Tensor) -> torch.Tensor:
        """(B, N) samples -> (B, Ta, H) sound tokens."""
        if self.audio is None:
            raise ValueError("this model does not hear: it was built with modalities 'video'")
        return self.audio(samples)

    def forward_features(
        self, feats: torch.Tensor | None, sound: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Frame features (B, T, D) and/or sound tokens (B, Ta, H) -> (B, E), (B, K)."""
        if self.audio is None:
            emb = self.temporal(feats)  # (B, T, D) -> (B, E)
        elif self.encoder is None:
            emb = sound.mean(dim=1)  # (B, H)
        elif self.temporal is None:  # attention fusion: one transformer over both
            emb = self.fusion(feats, sound)
        else:
            emb = self.fusion(self.temporal(feats), sound)
        return emb, self.classifier(emb)

    def forward(
        self, frames: torch.Tensor | None = None, audio: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.encode_frames(frames) if self.encoder is not None else None
        sound = self.encode_audio(audio) if self.audio is not None else None
        return self.forward_features(feats, sound)


def _build(
    config: ModelConfig, load_pretrained: bool, pretrained_state, audio_state=None
) -> VideoModel:
    encoder = temporal = audio = fusion = None
    if config.sees:
        encoder = get_encoder_builder(config.encoder)(
            pretrained_weights=config.pretrained_weights,
            load_weights=load_pretrained,
            pretrained_state=pretrained_state,
        )
        if not (config.hears and config.fusion == "attention"):
            temporal = get_temporal_builder(config.temporal)(in_dim=encoder.out_dim, config=config)
    if config.hears:
        audio = get_audio_encoder_builder(config.audio_encoder)(
            out_dim=config.audio_dim, weights=audio_state if load_pretrained else None
        )
    if encoder is not None and audio is not None:
        if temporal is None:
            fusion = AttentionFusion(encoder.out_dim, audio.out_dim, config)
        else:
            fusion = ConcatFusion(temporal.out_dim, audio.out_dim)
    return VideoModel(encoder, temporal, config.num_classes, audio, fusion)


def build_model(
    config: ModelConfig,
    *,
    seed: int | None = None,
    load_pretrained: bool = True,
    pretrained_state: dict | None = None,
    audio_state: dict | None = None,
) -> VideoModel:
    """Build a model; with `seed`, weights are reproducible and the caller's RNG is untouched.

    `load_pretrained=False` keeps the pretrained architecture (ImageNet head, categories)
    without reading the weights file: used when a checkpoint supplies the state dict.
    `pretrained_state`: the encoder's pretrained weights as fetched by the driver
    (pipeline.models.weights); without it a weights name is read from the torch cache.
    `audio_state`: the audio encoder's pretrained state dict (--audio-weights), likewise.
    """
    if seed is None:
        return _build(config, load_pretrained, pretrained_state, audio_state)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _build(config, load_pretrained, pretrained_state, audio_state)


def state_dict_version(
    state_dict: Mapping[str, torch.Tensor], config: ModelConfig, labels: Sequence[str]
) -> str:
    """First 16 hex of sha256 over config, labels and every tensor (name, dtype, shape, bytes)."""
    h = hashlib.sha256()
    h.update(json.dumps(config.to_dict(), sort_keys=True).encode())
    h.update(json.dumps(list(labels)).encode())
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu().contiguous()
        h.update(json.dumps([name, str(t.dtype), list(t.shape)]).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def model_version(model: nn.Module, config: ModelConfig, labels: Sequence[str]) -> str:
    """Deterministic content hash of a model, its config and its labels."""
    return state_dict_version(model.state_dict(), config, labels)
