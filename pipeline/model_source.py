"""Where the index job's model comes from: a training checkpoint, or a seeded/pretrained build.

A `ModelSpec` (labels, model_version, embedding size) is resolved once: by the driver when it
needs the model before the pipeline (a checkpoint's sampling, pretrained weights' file checked
before Ray starts, the ledger of an incremental run, a dry run), and otherwise, for a seeded
model, by the index job's inference actors from a `ModelRecipe`, so that such a run's driver never
imports torch. A checkpoint's spec is read without building the model. torch is imported by the
functions that build or read a model, not by this module.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from pipeline import storage
from pipeline.config import ConfigError, IndexConfig, SamplingConfig, StorageConfig
from pipeline.models.config import ModelConfig
from pipeline.models.normalization import IMAGENET_MEAN, IMAGENET_STD

if TYPE_CHECKING:
    from pipeline.models import Checkpoint

CHECKPOINT_NAMES = ("best.pt", "checkpoint.pt")


@dataclass(frozen=True)
class ModelSpec:
    """Enough to rebuild the model anywhere in the cluster."""

    model: ModelConfig
    labels: tuple[str, ...]
    model_version: str
    embedding_dim: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    checkpoint_uri: str | None = None
    seed: int = 0
    storage: StorageConfig = StorageConfig()


@dataclass(frozen=True)
class ModelRecipe:
    """A seeded or pretrained build (no checkpoint), not built yet: `build_recipe` makes the
    model and its `ModelSpec` wherever it runs. Its sampling is the flags' own."""

    model: ModelConfig
    seed: int = 0

    @classmethod
    def of(cls, cfg: IndexConfig) -> ModelRecipe | None:
        """The recipe of a seeded run; None where the driver must read files to know the
        model: a checkpoint (its sampling), pretrained weights (a missing file is a bad flag,
        told before Ray starts, not an inference actor's failure)."""
        if cfg.checkpoint_uri or cfg.model.pretrained_weights:
            return None
        return cls(cfg.model, cfg.seed)


def resolve_checkpoint_uri(uri: str, storage_cfg: StorageConfig) -> str:
    """A checkpoint file, or a training run's folder holding best.pt."""
    fs = storage.filesystem(uri, storage_cfg)
    path = storage.strip_scheme(uri)
    if fs.isfile(path):
        return uri
    for name in CHECKPOINT_NAMES:
        if fs.isfile(f"{path.rstrip('/')}/{name}"):
            return storage.join(uri, name)
    raise ConfigError(
        f"--checkpoint {storage.redact(uri)}: no checkpoint file there (looked for "
        f"the file itself and {', '.join(CHECKPOINT_NAMES)} inside)"
    )


def read_checkpoint(uri: str, storage_cfg: StorageConfig) -> Checkpoint:
    from pipeline.models import load_checkpoint

    fs = storage.filesystem(uri, storage_cfg)
    with fs.open(storage.strip_scheme(uri), "rb") as f:
        return load_checkpoint(io.BytesIO(f.read()))


def resolve_model(cfg: IndexConfig) -> tuple[ModelSpec, SamplingConfig]:
    """The model spec and the sampling to use: a checkpoint's own, else the flags'."""
    if cfg.checkpoint_uri:
        uri = resolve_checkpoint_uri(cfg.checkpoint_uri, cfg.storage)
        try:
            ckpt = read_checkpoint(uri, cfg.storage)
            dim = ckpt.embedding_dim  # the model is built by the inference actors only
        except ValueError as e:  # not a checkpoint, tampered, or pickled code: refused
            raise ConfigError(f"--checkpoint {storage.redact(uri)}: {e}") from e
        sampling = SamplingConfig.from_dict({**cfg.sampling.to_dict(), **ckpt.sampling})
        spec = ModelSpec(
            ckpt.model,
            tuple(ckpt.labels),
            f"ckpt-{ckpt.model_version}",
            dim,
            tuple(ckpt.normalization["mean"]),
            tuple(ckpt.normalization["std"]),
            checkpoint_uri=uri,
            storage=cfg.storage,
        )
        return spec, sampling
    _, spec = build_recipe(ModelRecipe(cfg.model, cfg.seed))
    return spec, cfg.sampling


def build_recipe(recipe: ModelRecipe):
    """The recipe's model (eval mode) and its spec: model_version hashes the built weights."""
    try:
        model, labels = _build_untrained(recipe.model, recipe.seed)
    except RuntimeError as e:  # pretrained weights not in the local cache
        if not recipe.model.pretrained_weights:
            raise
        raise ConfigError(f"--weights {recipe.model.pretrained_weights}: {e}") from e
    from pipeline.models import model_version

    config = _effective_config(recipe.model, labels)
    kind = "pretrained" if recipe.model.pretrained_weights else "seeded"
    version = f"{kind}-{recipe.model.encoder}-{recipe.model.temporal}-s{recipe.seed}-"
    version += model_version(model, config, labels)
    dim = model.temporal.out_dim
    return model, ModelSpec(config, tuple(labels), version, dim, seed=recipe.seed)


def _effective_config(model: ModelConfig, labels: list[str]) -> ModelConfig:
    return replace(model, num_classes=len(labels))


def _build_untrained(model_cfg: ModelConfig, seed: int):
    """A seeded model; with ImageNet weights and a `mean` head, the ImageNet classifier and
    its category names are used, so labels mean something without training."""
    from pipeline.models import build_model

    model = build_model(model_cfg, seed=seed)
    head = getattr(model.encoder, "imagenet_head", None)
    categories = getattr(model.encoder, "categories", None)
    if head is not None and categories and model_cfg.temporal == "mean":
        model.classifier = head
        return model.eval(), list(categories)
    return model.eval(), [f"class_{i}" for i in range(model_cfg.num_classes)]


def load_model(spec: ModelSpec):
    """Rebuild the spec's model in eval mode (called once per inference actor)."""
    if spec.checkpoint_uri:
        ckpt = read_checkpoint(spec.checkpoint_uri, spec.storage)
        if f"ckpt-{ckpt.model_version}" != spec.model_version:
            raise RuntimeError(
                f"checkpoint {storage.redact(spec.checkpoint_uri)} changed during "
                "the run; rerun the job"
            )
        return ckpt.build_model()
    model, _ = _build_untrained(spec.model, spec.seed)
    return model
