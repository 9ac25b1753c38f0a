"""Where --features-from's frame features come from: committed index runs of ONE model.

Only committed runs are read (pipeline.runs: `_runs/*.json` and the files each lists).
The runs that kept frame features (`jobs/index.py --keep-frame-features`) are grouped by
model_version and sampling; the group of the newest committed run is used, and any other group
is named in the log and the run record, never mixed in. The index run's model is rebuilt as the
index job built it (pipeline.models.source.resolve_model with the run record's config: its
ModelConfig and seed, or its --checkpoint) and must reproduce the record's model_version; its
encoder is the encoder of the trained model.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace

import pyarrow.parquet as pq

from pipeline import schema, storage
from pipeline.config import ConfigError, IndexConfig, SamplingConfig, StorageConfig
from pipeline.listing import InputError
from pipeline.models import ModelConfig
from pipeline.models.source import ModelSpec, load_model, resolve_model
from pipeline.runs import Run, read_runs

log = logging.getLogger("reelay.train")

AGAIN = "index it again with jobs/index.py --keep-frame-features"


@dataclass(frozen=True)
class FeatureRuns:
    """The committed runs of an index output, by what they offer to training."""

    used: tuple[Run, ...]  # kept frame features; one model_version and sampling; oldest first
    other_models: tuple[Run, ...]  # kept frame features of another model or sampling: not used
    without_features: tuple[Run, ...]  # no clips.frame_features

    def describe_others(self) -> list[dict]:
        return [{"run_id": r.run_id, "model_version": r.model_version} for r in self.other_models]


def keeps_features(run: Run) -> bool:
    """The run kept per-frame features (its record says so) and wrote clips."""
    infer = run.record.get("config", {}).get("infer", {})
    return bool(infer.get("keep_frame_features")) and bool(run.files.get(schema.CLIPS))


def _group(run: Run) -> tuple[str, str]:
    return run.model_version or "", json.dumps(run.record.get("sampling"), sort_keys=True)


def select_runs(runs: Sequence[Run]) -> FeatureRuns:
    """Runs with features of the newest committed run's model and sampling (runs come oldest
    commit first, as pipeline.runs orders them); the others are set apart, not mixed in."""
    with_features = [r for r in runs if keeps_features(r)]
    without = tuple(r for r in runs if not keeps_features(r))
    if not with_features:
        return FeatureRuns((), (), without)
    newest = _group(with_features[-1])
    used = tuple(r for r in with_features if _group(r) == newest)
    others = tuple(r for r in with_features if _group(r) != newest)
    return FeatureRuns(used, others, without)


@dataclass(frozen=True)
class FeatureSource:
    """The index output, the runs used, and the model that computed their features."""

    index_uri: str
    runs: FeatureRuns
    spec: ModelSpec  # the index run's model: encoder config, normalisation, model_version
    sampling: SamplingConfig  # what the index run decoded: the trained model's sampling
    shape: tuple[int, int]  # (T, D) of clips.frame_features

    @property
    def model_version(self) -> str:
        return self.spec.model_version

    @property
    def run_ids(self) -> list[str]:
        return [r.run_id for r in self.runs.used]

    def model_config(self, flags: ModelConfig, num_classes: int) -> ModelConfig:
        """The trained model: the head from the flags, the encoder of the index run."""
        index = self.spec.model
        return replace(
            flags,
            encoder=index.encoder,
            pretrained_weights=index.pretrained_weights,
            num_classes=num_classes,
        )

    def to_dict(self) -> dict:
        """For the run record and the checkpoint's `extra` (plain data)."""
        return {
            "index_uri": storage.redact(self.index_uri),
            "run_ids": self.run_ids,
            "model_version": self.model_version,
            "encoder": self.spec.model.encoder,
            "sampling": self.sampling.to_dict(),
            "frame_features": list(self.shape),
            "other_model_runs": self.runs.describe_others(),
        }


def find_features(index_uri: str, storage_cfg: StorageConfig) -> FeatureSource:
    """Read the index output's committed runs and pick the features to train on (fail fast)."""
    where = f"--features-from {storage.redact(index_uri)}"
    if not storage.is_remote(index_uri):
        index_uri = storage.strip_scheme(index_uri)  # absolute, as the runs' files are named
    try:
        committed = read_runs(index_uri, storage_cfg)
    except (ValueError, OSError) as e:  # a bad scheme or record, a refused read
        raise InputError(f"{where}: {e}") from e
    if not committed:
        raise InputError(
            f"{where}: no index there: no committed run (no {schema.RUNS}/*.json); "
            "point at the --output of jobs/index.py"
        )
    runs = select_runs(committed)
    if not runs.used:
        ids = ", ".join(r.run_id for r in committed)
        raise InputError(
            f"{where}: no committed run kept per-frame features (no clips.frame_features "
            f"column; runs {ids}); {AGAIN}"
        )
    newest = runs.used[-1]
    spec = index_model(newest, index_uri, storage_cfg)
    shape = _feature_shape(runs.used, index_uri, storage_cfg, where)
    sampling = SamplingConfig.from_dict(newest.record["sampling"])
    if shape[0] != sampling.clip_frames:
        raise InputError(
            f"{where}: clips.frame_features hold {shape[0]} frames but the runs sampled "
            f"clip_frames={sampling.clip_frames}; {AGAIN}"
        )
    log.info(
        "features from %s: runs %s, model %s (encoder %s), sampling %s, (T, D) = %s",
        storage.redact(index_uri),
        [r.run_id for r in runs.used],
        spec.model_version,
        spec.model.encoder,
        sampling.to_dict(),
        shape,
    )
    if runs.other_models:
        log.warning(
            "%s: not using runs of other models or sampling (features of one model only, the "
            "newest run's): %s",
            where,
            runs.describe_others(),
        )
    return FeatureSource(index_uri, runs, spec, sampling, shape)


def index_model(run: Run, index_uri: str, storage_cfg: StorageConfig) -> ModelSpec:
    """The run's model, resolved as the index job resolved it, checked by model_version."""
    config = run.record.get("config", {})
    try:
        cfg = IndexConfig(
            input_uri=config.get("input_uri") or index_uri,
            output_uri=index_uri,
            sampling=SamplingConfig.from_dict(config.get("sampling", {})),
            model=ModelConfig.from_dict(config.get("model", {})),
            checkpoint_uri=config.get("checkpoint_uri"),
            seed=int(config.get("seed", 0)),
            storage=storage_cfg,
        )
        spec, _ = resolve_model(cfg)
    except (ValueError, RuntimeError, OSError) as e:  # ConfigError is a ValueError
        raise ConfigError(
            f"--features-from: cannot rebuild the model of index run {run.run_id} "
            f"({run.model_version}): {e}"
        ) from e
    if spec.model_version != run.model_version:
        raise ConfigError(
            f"--features-from: index run {run.run_id} computed its features with model "
            f"{run.model_version}, but its config now rebuilds {spec.model_version} (its "
            "--checkpoint changed, or another torch version seeds differently); train on "
            f"features of a model that can be rebuilt: {AGAIN} and the current model"
        )
    return spec


def encoder_state(spec: ModelSpec) -> dict:
    """The index model's encoder weights (CPU tensors), as its inference actors loaded them."""
    model = load_model(spec)
    return {k: v.detach().cpu().clone() for k, v in model.encoder.state_dict().items()}


def check_encoder(state_dict: dict, encoder: dict) -> None:
    """A trained model's weights must hold the index run's encoder unchanged."""
    import torch

    changed = [k for k, v in encoder.items() if not torch.equal(state_dict[f"encoder.{k}"], v)]
    if changed:
        raise RuntimeError(f"the trained model's encoder differs from the index run's: {changed}")


def _feature_shape(
    runs: Sequence[Run], index_uri: str, storage_cfg: StorageConfig, where: str
) -> tuple[int, int]:
    """(T, D) from each run's first clips file; the column must be there, with one shape."""
    fs = storage.arrow_filesystem(index_uri, storage_cfg)
    shapes = set()
    for run in runs:
        first = run.files[schema.CLIPS][0]
        fields = pq.read_schema(storage.strip_scheme(first), filesystem=fs)
        if schema.FRAME_FEATURES not in fields.names:
            raise InputError(
                f"{where}: run {run.run_id}'s clips have no {schema.FRAME_FEATURES} column; {AGAIN}"
            )
        kind = fields.field(schema.FRAME_FEATURES).type  # fixed_size_list<...[D]>[T]
        shapes.add((kind.list_size, kind.value_type.list_size))
    if len(shapes) != 1:
        raise InputError(f"{where}: runs of one model kept features of shapes {sorted(shapes)}")
    return shapes.pop()
