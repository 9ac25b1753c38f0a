"""Training: labeled videos -> Ray Data clips -> Ray Train (DDP) -> best.pt for the index job."""

from pipeline.train.config import OptimConfig, TrainConfig, WorkersConfig
from pipeline.train.run import TrainSummary, run

__all__ = ["OptimConfig", "TrainConfig", "TrainSummary", "WorkersConfig", "run"]
