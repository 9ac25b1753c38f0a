"""Typed, frozen configuration of a training run (`jobs/train.py` flags land here)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from pipeline.config import (
    ConfigError,
    PlanConfig,
    SamplingConfig,
    StorageConfig,
    check_modalities,
)
from pipeline.models import ModelConfig

# Defaults that learn time order quickly on a CPU: small frames, a clip that covers a short
# video, a recurrent head (the index job's default `mean` head cannot see order).
DEFAULT_SAMPLING = SamplingConfig(fps=10.0, clip_frames=16, image_size=64)
DEFAULT_MODEL = ModelConfig(encoder="small_cnn", temporal="gru", num_classes=2)


@dataclass(frozen=True)
class OptimConfig:
    """The optimisation: Adam(W) over `epochs`; `batch_size` is global (split over workers)."""

    epochs: int = 10
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"--epochs must be >= 1 (got {self.epochs})")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be >= 1 (got {self.batch_size})")
        if not self.lr > 0:
            raise ConfigError(f"--lr must be > 0 (got {self.lr})")
        if self.weight_decay < 0:
            raise ConfigError(f"--weight-decay must be >= 0 (got {self.weight_decay})")


@dataclass(frozen=True)
class WorkersConfig:
    """Ray Train workers: DDP over `num_workers`, one GPU each with `use_gpu`."""

    num_workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: float = 1.0  # also the worker's torch threads (at least 1)
    # Worker-group failures Ray Train recovers from (restart from the latest checkpoint): a
    # lost node, a preempted GPU, or Ray 2.60's PlacementGroupCleaner wrongly declaring the
    # controller dead when the State API does not answer (seen on a loaded machine).
    max_failures: int = 2

    def __post_init__(self) -> None:
        if self.num_workers < 1:
            raise ConfigError(f"--num-workers must be >= 1 (got {self.num_workers})")
        if self.max_failures < 0:
            raise ConfigError(f"--max-failures must be >= 0 (got {self.max_failures})")
        if not self.cpus_per_worker > 0:
            raise ConfigError(f"--cpus-per-worker must be > 0 (got {self.cpus_per_worker})")

    def per_worker_batch(self, global_batch: int) -> int:
        return max(1, global_batch // self.num_workers)


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs."""

    data_uri: str
    output_uri: str
    sampling: SamplingConfig = DEFAULT_SAMPLING
    model: ModelConfig = DEFAULT_MODEL  # num_classes is replaced by the number of labels
    optim: OptimConfig = OptimConfig()
    workers: WorkersConfig = WorkersConfig()
    plan: PlanConfig = PlanConfig()
    storage: StorageConfig = StorageConfig()
    val_fraction: float = 0.2  # used only when the data has no split
    seed: int = 0
    offline: bool = False  # --weights never downloads (also REELAY_OFFLINE, HF_HUB_OFFLINE)
    resume: bool = False
    features_from: str | None = None
    keep_checkpoints: int = 2  # Ray keeps the best this many by val accuracy, plus the latest

    def __post_init__(self) -> None:
        if not self.data_uri:
            raise ConfigError(
                "--data is required: a manifest (.csv/.parquet with uri,label[,split]) or a "
                "folder laid out <root>/<split>/<label>/*.mp4"
            )
        if not self.output_uri:
            raise ConfigError("--output is required: a local folder or s3://bucket/prefix")
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(f"--val-fraction must be in (0, 1) (got {self.val_fraction})")
        if self.keep_checkpoints < 1:
            raise ConfigError(f"--keep-checkpoints must be >= 1 (got {self.keep_checkpoints})")
        if self.model.encoder == "clip":
            raise ConfigError(
                "--encoder clip indexes and searches by text (jobs/index.py, jobs/query.py "
                "--text) and labels zero-shot (--labels); training on it is not supported: "
                "train a torchvision or small_cnn encoder"
            )
        check_modalities(self.model, self.sampling)
        if self.features_from and self.model.hears:
            raise ConfigError(
                "--features-from trains a picture head on an index run's stored frame "
                "features, which hold no sound: leave --modalities at video"
            )
        if self.sampling.clip_frames > self.model.max_frames:
            raise ConfigError(
                f"--clip-frames {self.sampling.clip_frames} is more than the model's "
                f"max_frames ({self.model.max_frames})"
            )

    def to_dict(self) -> dict:
        """Plain data for the checkpoint's `extra` and the run record (storage keys only)."""
        d = asdict(self)
        d["storage"] = {"options": sorted(self.storage.options)}
        return d
