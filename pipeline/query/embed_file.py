"""Embed one new video with an index's own model, in-process (no Ray for one file).

The run record holds the index job's config; the model is rebuilt from it exactly as the job's
driver does (pipeline.models.source.resolve_model), and the file goes through the job's own
stages: PlanVideo (1) -> DecodeUnit (2) -> ClipInferencer (3) -> aggregate_video (4). So the
embedding equals the one the index job would write for the same file.
"""

from __future__ import annotations

import os
from dataclasses import MISSING, asdict, dataclass, fields, is_dataclass
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa

from pipeline import storage
from pipeline.aggregate import aggregate_video, clip_rows, list_matrix
from pipeline.config import (
    ConfigError,
    IndexConfig,
    InferConfig,
    PlanConfig,
    SamplingConfig,
    StorageConfig,
)
from pipeline.listing import InputError, list_videos
from pipeline.models import ModelConfig
from pipeline.query.errors import QueryError

QUERY_RUN_ID = "query"


@dataclass(frozen=True)
class EmbeddedVideo:
    """A file's clip rows (clips table columns) and its videos row, as the index job makes them."""

    video_uri: str
    model_version: str
    clips: pa.Table
    video: pa.Table

    def video_embedding(self) -> np.ndarray:
        return list_matrix(self.video["embedding"])[0]  # (D,)

    def clip_embedding(self, clip_index: int) -> np.ndarray:
        hits = np.flatnonzero(self.clips["clip_index"].to_numpy() == clip_index)
        if not hits.size:
            raise QueryError(
                f"{storage.redact(self.video_uri)} has clips 0..{self.clips.num_rows - 1}; "
                f"--clip-index {clip_index} is not one of them"
            )
        return list_matrix(self.clips["embedding"])[hits[0]]


def index_config(record: dict, input_uri: str, storage_cfg: StorageConfig) -> IndexConfig:
    """The index job's config from its run record, pointed at one new input."""
    cfg = record.get("config") or {}
    try:
        return IndexConfig(
            input_uri=input_uri,
            output_uri=cfg.get("output_uri") or "unused",
            sampling=from_dict(SamplingConfig, cfg.get("sampling")),
            model=from_dict(ModelConfig, cfg.get("model")),
            plan=from_dict(PlanConfig, cfg.get("plan")),
            infer=from_dict(InferConfig, cfg.get("infer")),
            storage=storage_cfg,
            checkpoint_uri=cfg.get("checkpoint_uri"),
            seed=int(cfg.get("seed", 0)),
            labels=tuple(cfg.get("labels") or ()),
        )
    except (TypeError, ValueError) as e:
        raise QueryError(
            f"run {record.get('run_id')}: its record's config cannot be rebuilt ({e})"
        ) from e


def from_dict(cls, values: dict | None):
    """A frozen config dataclass from its asdict() form; nested configs are rebuilt, keys this
    version does not know are ignored (a changed model is caught by its model_version)."""
    kwargs = {}
    for f in fields(cls):
        if not values or f.name not in values:
            continue
        value = values[f.name]
        default = f.default if f.default is not MISSING else None
        if is_dataclass(default) and isinstance(value, dict):
            value = from_dict(type(default), value)
        kwargs[f.name] = value
    return cls(**kwargs)


def embed_file(
    uri: str, record: dict, storage_cfg: StorageConfig, device: str = "cpu"
) -> EmbeddedVideo:
    """Plan, decode and embed one video file (local path or s3://) with `record`'s model."""
    from pipeline.models.inference import ClipInferencer
    from pipeline.models.source import resolve_model
    from pipeline.video.decode import DecodeUnit
    from pipeline.video.plan import PlanVideo

    cfg = index_config(record, uri, storage_cfg)
    try:
        spec, sampling = resolve_model(cfg)
    except (ConfigError, OSError) as e:
        raise QueryError(f"cannot rebuild the index's model: {e}") from e
    if record.get("model_version") and spec.model_version != record["model_version"]:
        raise QueryError(
            f"the index was built with model {record['model_version']} but its config now "
            f"gives {spec.model_version} (checkpoint replaced or model code changed); "
            "embeddings would not be comparable"
        )
    entry = _entry(uri, storage_cfg)

    # 1. plan: 1 video -> N work units
    units = PlanVideo(sampling, cfg.plan, storage_cfg)(asdict(entry))
    _raise_row_error(entry.uri, units)
    # 2. decode: 1 unit -> N clips with frames
    clips = [clip for unit in units for clip in DecodeUnit(sampling, cfg.plan, storage_cfg)(unit)]
    _raise_row_error(entry.uri, clips)
    # 3. infer: 1 clip -> 1 row, in the job's batch size
    inferencer = ClipInferencer(
        spec,
        device=device,
        threads=os.cpu_count() or 1,
        run_id=QUERY_RUN_ID,
        precision=cfg.infer.precision,
    )
    size = cfg.infer.batch_for(device)
    results = pa.concat_tables(
        [inferencer(_numpy_batch(clips[i : i + size])) for i in range(0, len(clips), size)]
    )
    # 4. aggregate: clips -> the videos row
    video = aggregate_video(
        results,
        labels=list(spec.labels),
        errored=frozenset(),
        model_version=spec.model_version,
        run_id=QUERY_RUN_ID,
        indexed_at=datetime.now(UTC),
    )
    return EmbeddedVideo(entry.uri, spec.model_version, clip_rows(results), video)


def _entry(uri: str, storage_cfg: StorageConfig):
    try:
        entries = list_videos(uri, storage_cfg)
    except (InputError, ValueError, OSError) as e:
        raise QueryError(f"--similar-to-file: {e}") from e
    if len(entries) != 1 or entries[0].uri.rstrip("/") != _as_listed(uri):
        raise QueryError(
            f"--similar-to-file {storage.redact(uri)}: not a video file (give one file with a "
            "video extension such as .mp4)"
        )
    return entries[0]


def _as_listed(uri: str) -> str:
    return storage.strip_scheme(uri) if not storage.is_remote(uri) else uri.rstrip("/")


def _raise_row_error(uri: str, rows: list[dict]) -> None:
    for row in rows:
        if row.get("error_stage"):
            raise QueryError(
                f"cannot embed {storage.redact(uri)}: {row['error_stage']} failed: "
                f"{row['error_type']}: {row['error_message']}"
            )
    if not rows:
        raise QueryError(f"cannot embed {storage.redact(uri)}: it has no frames to sample")


def _numpy_batch(rows: list[dict]) -> dict[str, np.ndarray]:
    """Row dicts -> the numpy batch Ray Data would hand ClipInferencer."""
    batch = {}
    for name in rows[0]:
        values = [row[name] for row in rows]
        if name == "frames":
            batch[name] = np.stack(values)
        elif name == "frame_indices":
            batch[name] = np.stack([np.asarray(v, dtype=np.int32) for v in values])
        else:
            batch[name] = np.asarray(values)
    return batch
