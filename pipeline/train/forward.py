"""What the model is fed, in training and evaluation: decoded frames or stored frame features.

Two kinds of input (the training datasets' column besides LABEL):
  frames    uint8 clips (B, T, S, S, 3), normalised here; the whole VideoModel runs; a model
            that hears also gets the clips' sound (AUDIO, (B, N) float32 samples)
  features  per-frame CNN features (B, T, D) float32 from an index run (--features-from); only
            the temporal head and the classifier run (`HeadOnly`), the encoder never does
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from pipeline.models import VideoModel
from pipeline.train.data import AUDIO, FRAMES, LABEL
from pipeline.train.features import FEATURES

INPUTS = (FRAMES, FEATURES)  # what a training dataset's clips hold (besides LABEL)

Batch = dict[str, torch.Tensor]


def normalise(frames: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """(B, T, H, W, 3) uint8 -> (B, T, 3, H, W) float, ImageNet-normalised, each frame laid out
    channels_last (as in infer.py)."""
    x = frames.permute(0, 1, 4, 2, 3).float().div_(255)  # (B, T, 3, H, W)
    x = x.sub_(mean.view(1, 1, 3, 1, 1)).div_(std.view(1, 1, 3, 1, 1))
    b, t = x.shape[:2]
    return x.flatten(0, 1).contiguous(memory_format=torch.channels_last).unflatten(0, (b, t))


class HeadOnly(nn.Module):
    """A VideoModel fed frame features: temporal head + classifier. The encoder stays inside
    (frozen, never run) so that every checkpoint is the complete model."""

    def __init__(self, model: VideoModel) -> None:
        super().__init__()
        self.model = model
        model.encoder.requires_grad_(False)  # DDP ignores parameters without grad

    def forward(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.forward_features(feats)  # (B, T, D) -> (B, E), (B, K)


def wrap(model: VideoModel, inputs: str) -> nn.Module:
    """The module to train or run for `inputs`."""
    return model if inputs == FRAMES else HeadOnly(model)


def video_model(module: nn.Module) -> VideoModel:
    """The VideoModel inside DDP and/or HeadOnly (what a checkpoint stores)."""
    module = getattr(module, "module", module)  # DDP keeps the real model in .module
    return module.model if isinstance(module, HeadOnly) else module


def trainable(module: nn.Module) -> list[nn.Parameter]:
    """What the optimizer updates: everything for frames (as before), the head for features."""
    inner = getattr(module, "module", module)
    if isinstance(inner, HeadOnly):
        return [p for p in inner.parameters() if p.requires_grad]
    return list(module.parameters())


@dataclass(frozen=True)
class ModelInput:
    """Batch -> the model's arguments on `device`: normalised frames and, for a model that
    hears, the sound's samples; or float32 features."""

    inputs: str  # FRAMES or FEATURES
    mean: torch.Tensor  # (3,) on the device
    std: torch.Tensor
    sees: bool = True
    hears: bool = False

    @classmethod
    def create(
        cls,
        inputs: str,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        device: torch.device,
        modalities: str = "video",
    ) -> ModelInput:
        if inputs not in INPUTS:
            raise ValueError(f"inputs must be one of {INPUTS}, got {inputs!r}")
        mean_t, std_t = torch.tensor(mean, device=device), torch.tensor(std, device=device)
        return cls(inputs, mean_t, std_t, "video" in modalities, "audio" in modalities)

    @property
    def device(self) -> torch.device:
        return self.mean.device

    def __call__(self, batch: Batch) -> tuple[torch.Tensor | None, ...]:
        if self.inputs == FEATURES:
            return (batch[FEATURES].to(self.device, torch.float32),)  # (B, T, D)
        frames = None
        if self.sees:  # (B, T, 3, H, W)
            frames = normalise(batch[FRAMES].to(self.device), self.mean, self.std)
        if not self.hears:
            return (frames,)
        return frames, batch[AUDIO].to(self.device, torch.float32)  # (B, N)

    def labels(self, batch: Batch) -> torch.Tensor:
        return batch[LABEL].to(self.device)  # (B,)
