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
    pretrained: Any = None  # --weights: ObjectRef of the encoder's pretrained state dict
    audio_pretrained: Any = None  # --audio-weights: ObjectRef of the audio encoder's
    attempts: Any = None  # an Attempts actor (the driver's), or None

    @property
    def normalization(self) -> dict[str, list[float]]:
        return {"mean": list(self.mean), "std": list(self.std)}


class Attempts:
    """The worker group's starts, each with the epoch it started after (0: from scratch). Ray
    Train restarts a failed group from its latest checkpoint (--max-failures); the run record
    and the metrics say that it happened and from where."""

    def __init__(self) -> None:
        self.started_after: list[int] = []

    def begin(self, start_epoch: int) -> int:
        """Record a start; returns its attempt number (0: the first)."""
        self.started_after.append(start_epoch)
        return len(self.started_after) - 1

    def starts(self) -> list[int]:
        return list(self.started_after)
