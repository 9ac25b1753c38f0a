"""Fusion of a clip's picture and sound before the classifier (`--modalities video,audio`).

Both fusions give an embedding laid out `[picture part ; sound part]`, the sound part
`hidden_dim` wide, so that a query can rank by picture, by sound or by both from the one
`embedding` column (`VideoModel.audio_dim`):

- `concat`: the temporal head's picture embedding and the mean of the sound tokens, each
  layer-normalised (neither drowns the other whatever their scales), side by side;
- `attention`: one transformer over the frames' tokens and the sound's tokens together (with
  a learned kind per token set), each set then averaged: each part has attended to the other.
  It replaces the temporal head (the frames' order comes from its positions).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from pipeline.models.config import ModelConfig
from pipeline.models.temporal import transformer


class ConcatFusion(nn.Module):
    def __init__(self, picture_dim: int, sound_dim: int) -> None:
        super().__init__()
        self.picture_norm = nn.LayerNorm(picture_dim)
        self.sound_norm = nn.LayerNorm(sound_dim)
        self.out_dim = picture_dim + sound_dim

    def forward(self, picture: torch.Tensor, sound: torch.Tensor) -> torch.Tensor:
        """(B, Ev) picture embedding, (B, Ta, H) sound tokens -> (B, Ev + H)."""
        return torch.cat([self.picture_norm(picture), self.sound_norm(sound.mean(dim=1))], dim=1)


def sinusoids(length: int, dim: int, device) -> torch.Tensor:
    """(length, dim) fixed positions: a clip's sound has as many tokens as its length says."""
    position = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    rate = torch.exp(torch.arange(0, dim, 2, device=device) * (-math.log(10_000.0) / dim))
    table = torch.zeros(length, dim, device=device)
    table[:, 0::2] = torch.sin(position * rate)
    table[:, 1::2] = torch.cos(position * rate[: dim // 2])
    return table


class AttentionFusion(nn.Module):
    def __init__(self, frame_dim: int, sound_dim: int, cfg: ModelConfig) -> None:
        super().__init__()
        d = cfg.hidden_dim
        self.max_frames = cfg.max_frames
        self.frames = nn.Linear(frame_dim, d)
        self.sound = nn.Linear(sound_dim, d)
        self.frame_pos = nn.Parameter(torch.zeros(1, cfg.max_frames, d))
        self.kind = nn.Parameter(torch.zeros(2, d))  # 0: a frame's token, 1: the sound's
        # unit scale, as the attention head's positions (pipeline.models.temporal)
        nn.init.trunc_normal_(self.frame_pos, std=1.0, a=-2.0, b=2.0)
        nn.init.trunc_normal_(self.kind, std=1.0, a=-2.0, b=2.0)
        self.encoder = transformer(cfg)
        self.norm = nn.LayerNorm(d)
        self.out_dim = 2 * d

    def forward(self, frames: torch.Tensor, sound: torch.Tensor) -> torch.Tensor:
        """(B, T, D) frame features, (B, Ta, H) sound tokens -> (B, 2d)."""
        t, ta = frames.shape[1], sound.shape[1]
        if t > self.max_frames:
            raise ValueError(
                f"attention fusion got {t} frames but max_frames={self.max_frames}; "
                "sample fewer frames or build the model with a larger ModelConfig.max_frames"
            )
        f = self.frames(frames) + self.frame_pos[:, :t] + self.kind[0]
        s = self.sound(sound) + sinusoids(ta, f.shape[2], sound.device) + self.kind[1]
        x = self.norm(self.encoder(torch.cat([f, s], dim=1)))  # (B, T + Ta, d)
        return torch.cat([x[:, :t].mean(dim=1), x[:, t:].mean(dim=1)], dim=1)
