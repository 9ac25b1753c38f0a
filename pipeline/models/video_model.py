"""VideoModel: frame encoder + temporal head + linear classifier; builder and version hash."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence

import torch
from torch import nn

import pipeline.models.clip  # noqa: F401 (registers the clip encoder)
import pipeline.models.encoders  # noqa: F401 (registers the built-in encoders)
import pipeline.models.temporal  # noqa: F401 (registers the built-in temporal heads)
from pipeline.models.config import ModelConfig
from pipeline.models.registry import get_encoder_builder, get_temporal_builder


class VideoModel(nn.Module):
    """`(B, T, 3, H, W)` normalised clips -> `(embedding (B, E), logits (B, K))`."""

    def __init__(self, encoder: nn.Module, temporal: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.temporal = temporal
        self.classifier = nn.Linear(temporal.out_dim, num_classes)

    def encode_frames(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5:
            raise ValueError(f"expected clips of shape (B, T, 3, H, W), got {tuple(x.shape)}")
        b, t = x.shape[:2]
        return self.encode_images(x.flatten(0, 1)).reshape(b, t, -1)  # (B, T, D)

    def encode_images(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) -> (N, D): the CNN alone, frame by frame."""
        return self.encoder(x)

    def forward_features(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        emb = self.temporal(feats)  # (B, T, D) -> (B, E)
        return emb, self.classifier(emb)  # (B, E), (B, K)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.forward_features(self.encode_frames(x))


def _build(config: ModelConfig, load_pretrained: bool, pretrained_state) -> VideoModel:
    encoder = get_encoder_builder(config.encoder)(
        pretrained_weights=config.pretrained_weights,
        load_weights=load_pretrained,
        pretrained_state=pretrained_state,
    )
    temporal = get_temporal_builder(config.temporal)(in_dim=encoder.out_dim, config=config)
    return VideoModel(encoder, temporal, config.num_classes)


def build_model(
    config: ModelConfig,
    *,
    seed: int | None = None,
    load_pretrained: bool = True,
    pretrained_state: dict | None = None,
) -> VideoModel:
    """Build a model; with `seed`, weights are reproducible and the caller's RNG is untouched.

    `load_pretrained=False` keeps the pretrained architecture (ImageNet head, categories)
    without reading the weights file: used when a checkpoint supplies the state dict.
    `pretrained_state`: the encoder's pretrained weights as fetched by the driver
    (pipeline.models.weights); without it a weights name is read from the torch cache.
    """
    if seed is None:
        return _build(config, load_pretrained, pretrained_state)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _build(config, load_pretrained, pretrained_state)


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
