"""What a Ray Train worker needs to run the training loop (loop.py), as plain values: the
driver builds it without importing torch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline.models import ModelConfig
from pipeline.train.data import FRAMES


@dataclass(frozen=True)
class LoopSpec:
    """What every worker needs (plain values: it is pickled to the workers)."""

    model: ModelConfig  # num_classes == len(labels)
    labels: tuple[str, ...]
    sampling: dict
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    epochs: int
    batch_size: int  # per worker
    lr: float
    weight_decay: float
    seed: int
    threads: int
    shuffle_buffer: int  # clips in each worker's local shuffle buffer
    extra: dict  # training info stamped into every checkpoint
    report_extra: dict  # constant metrics added to every report (e.g. skipped videos)
    inputs: str = FRAMES  # FRAMES (decoded clips) or FEATURES (stored frame features)
    encoder: Any = None  # FEATURES: ObjectRef of the index run's encoder state dict

    @property
    def normalization(self) -> dict[str, list[float]]:
        return {"mean": list(self.mean), "std": list(self.std)}
