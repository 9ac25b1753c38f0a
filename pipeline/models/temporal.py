"""Temporal heads `(B, T, D) -> (B, E)`: pool a clip's frame features into one embedding."""

from __future__ import annotations

import torch
from torch import nn

from pipeline.models.config import ModelConfig
from pipeline.models.registry import register_temporal


class MeanPool(nn.Module):
    """Order-blind baseline: average over time."""

    def __init__(self, in_dim: int) -> None:
        super().__init__()
        self.out_dim = in_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=1)  # (B, T, D) -> (B, D)


class RecurrentHead(nn.Module):
    """LSTM/GRU; the embedding is the last layer's final hidden state (both directions)."""

    def __init__(self, rnn: type[nn.LSTM] | type[nn.GRU], in_dim: int, cfg: ModelConfig) -> None:
        super().__init__()
        self.rnn = rnn(
            in_dim,
            cfg.hidden_dim,
            num_layers=cfg.num_layers,
            batch_first=True,
            bidirectional=cfg.bidirectional,
            dropout=cfg.dropout if cfg.num_layers > 1 else 0.0,
        )
        self.directions = 2 if cfg.bidirectional else 1
        self.out_dim = cfg.hidden_dim * self.directions

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, h = self.rnn(x)  # h: (layers * directions, B, H); LSTM gives (h, c)
        if isinstance(h, tuple):
            h = h[0]
        return torch.cat(list(h[-self.directions :]), dim=-1)  # (B, H * directions)


def transformer(cfg: ModelConfig) -> nn.TransformerEncoder:
    """Pre-norm transformer layers of width `hidden_dim` (the attention head's, and attention
    fusion's: pipeline.models.fusion)."""
    layer = nn.TransformerEncoderLayer(
        cfg.hidden_dim,
        cfg.attention_heads,
        dim_feedforward=2 * cfg.hidden_dim,
        dropout=cfg.dropout,
        batch_first=True,
        norm_first=True,
    )
    return nn.TransformerEncoder(layer, cfg.attention_layers, enable_nested_tensor=False)


class AttentionHead(nn.Module):
    """Pre-norm transformer over frames with a learned class token and positions."""

    def __init__(self, in_dim: int, cfg: ModelConfig) -> None:
        super().__init__()
        d = cfg.hidden_dim
        self.max_frames = cfg.max_frames
        self.proj = nn.Linear(in_dim, d)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.max_frames + 1, d))
        # Unit-scale class token and positions: at std 0.02 (the ViT default) the head stays
        # at chance on time order when trained from a random CNN, whose frame features barely
        # differ within a clip at first (measured; docs/training.md).
        nn.init.trunc_normal_(self.cls_token, std=1.0, a=-2.0, b=2.0)
        nn.init.trunc_normal_(self.pos_embed, std=1.0, a=-2.0, b=2.0)
        self.encoder = transformer(cfg)
        self.norm = nn.LayerNorm(d)
        self.out_dim = d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        if t > self.max_frames:
            raise ValueError(
                f"attention head got {t} frames but max_frames={self.max_frames}; "
                "sample fewer frames or build the model with a larger ModelConfig.max_frames"
            )
        x = self.proj(x)  # (B, T, d)
        x = torch.cat([self.cls_token.expand(b, -1, -1), x], dim=1)  # (B, T+1, d)
        x = self.norm(self.encoder(x + self.pos_embed[:, : t + 1]))  # (B, T+1, d)
        return x[:, 0]  # (B, d)


@register_temporal("mean")
def mean(*, in_dim: int, config: ModelConfig) -> MeanPool:
    return MeanPool(in_dim)


@register_temporal("lstm")
def lstm(*, in_dim: int, config: ModelConfig) -> RecurrentHead:
    return RecurrentHead(nn.LSTM, in_dim, config)


@register_temporal("gru")
def gru(*, in_dim: int, config: ModelConfig) -> RecurrentHead:
    return RecurrentHead(nn.GRU, in_dim, config)


@register_temporal("attention")
def attention(*, in_dim: int, config: ModelConfig) -> AttentionHead:
    return AttentionHead(in_dim, config)
