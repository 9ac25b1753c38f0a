"""The per-epoch checkpoint folder: a reelay checkpoint plus the state needed to resume.

  model.pt        the reelay checkpoint format (pipeline.models): what best.pt becomes
  train_state.pt  optimizer state, last finished epoch, metrics history (plain data only)

Both are loaded weights-only: a checkpoint is data, never code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pipeline.models import Checkpoint, ModelConfig, load_checkpoint, save_checkpoint

MODEL_FILE = "model.pt"
STATE_FILE = "train_state.pt"


@dataclass(frozen=True)
class TrainState:
    epoch: int  # last finished epoch, 1-based
    optimizer: dict[str, Any]
    history: list[dict[str, Any]]  # one metrics dict per finished epoch


def write_epoch_checkpoint(
    folder: Path,
    model: nn.Module,
    config: ModelConfig,
    labels: list[str],
    *,
    sampling: dict,
    extra: dict,
    state: TrainState,
    normalization: dict[str, list[float]] | None = None,
) -> None:
    """Write model.pt (reelay format) and train_state.pt into `folder`."""
    ckpt = Checkpoint.from_model(
        model, config, labels, sampling=sampling, normalization=normalization, extra=extra
    )
    save_checkpoint(ckpt, folder / MODEL_FILE)
    torch.save(
        {"epoch": state.epoch, "optimizer": state.optimizer, "history": state.history},
        folder / STATE_FILE,
    )


def read_epoch_checkpoint(folder: Path) -> tuple[Checkpoint, TrainState]:
    ckpt = load_checkpoint(folder / MODEL_FILE)
    raw = torch.load(folder / STATE_FILE, map_location="cpu", weights_only=True)
    return ckpt, TrainState(int(raw["epoch"]), raw["optimizer"], list(raw["history"]))
