"""Stages 1-2 of training with --features-from: an index's stored frame features, no decoding.

  1. match (driver)    labeled video -> the newest used index run that indexed it (videos/);
                       videos that run failed on (wholly or in part) are counted as skipped
                       (reasons from errors/) and keep the clips it did write, as in end-to-end
                       training; videos no used run indexed fail the run, named
  2. read  (Ray Data)  those runs' clips files, 1 clip row -> 1 row {features (T, D) float32,
                       label int64} for the labeled videos they own; shuffled once (seeded) and
                       materialized per split, like the decoded clips of end-to-end training

Video URIs are matched as the index job lists them: local paths absolute and normalised,
`s3://bucket/key` as is (`video_key`). Torch-free: Ray Data workers unpickle this module.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray

from pipeline import schema, storage
from pipeline.config import StorageConfig
from pipeline.listing import InputError
from pipeline.train.data import LABEL, ClipSplit, label_counts, preserve_order
from pipeline.train.inputs import LabeledData
from pipeline.train.split import TRAIN, VAL

if TYPE_CHECKING:
    from pipeline.train.index_source import FeatureSource

log = logging.getLogger("reelay.train")

FEATURES = "features"  # (T, D) float32 per clip: the training datasets' input column
SPLIT = "split"
SHOWN = 5  # URIs named in an error message


def video_key(uri: str) -> str:
    """The form in which --data URIs and the index's video_uri are compared."""
    if storage.is_remote(uri):
        return f"{storage.scheme_of(uri)}://{storage.strip_scheme(uri)}"
    return os.path.normpath(storage.strip_scheme(uri))


@dataclass(frozen=True)
class Indexed:
    """The newest used run that indexed a video, and how that went."""

    run_id: str
    status: str  # ok | error
    video_uri: str  # as the index recorded it


@dataclass(frozen=True)
class JoinLabels:
    """Ray Data batch function: clip rows of the index -> {features, label, split} of the
    labeled videos, each taken from the one run that owns it."""

    owners: dict[str, tuple[str, int, str]]  # video key -> (run_id, label index, split)
    shape: tuple[int, int]  # (T, D)

    def __call__(self, table: pa.Table) -> dict[str, np.ndarray]:
        uris = table["video_uri"].to_pylist()
        runs = table["run_id"].to_pylist()
        owners = [self.owners.get(video_key(u)) for u in uris]
        keep = np.asarray(
            [o is not None and o[0] == r for o, r in zip(owners, runs, strict=True)], dtype=bool
        )
        feats = table[schema.FRAME_FEATURES].filter(pa.array(keep)).combine_chunks()
        if feats.null_count:
            raise ValueError(f"{feats.null_count} clips have null {schema.FRAME_FEATURES}")
        t, d = self.shape
        values = pc.list_flatten(pc.list_flatten(feats)).to_numpy(zero_copy_only=False)
        kept = [o for o, k in zip(owners, keep, strict=True) if k]
        return {
            FEATURES: values.astype(np.float32, copy=False).reshape(len(kept), t, d),
            LABEL: np.asarray([o[1] for o in kept], dtype=np.int64),
            SPLIT: np.asarray([o[2] for o in kept], dtype=object),
        }


def feature_splits(
    data: LabeledData, source: FeatureSource, storage_cfg: StorageConfig, seed: int
) -> dict[str, ClipSplit]:
    """Train and val clips of stored features, materialized, with skipped videos counted."""
    indexed = index_status(source, storage_cfg)  # 1. match (driver)
    check_indexed(data, indexed, source)
    label_index = {name: i for i, name in enumerate(data.labels)}
    owners, failed = {}, {}
    for v in data.videos:
        found = indexed[video_key(v.uri)]
        owners[video_key(v.uri)] = (found.run_id, label_index[v.label], v.split)
        if found.status != "ok":  # no clips, or some units failed: counted as in end to end
            failed[v.uri] = (found, v.split)
    failures = index_failures(failed, source, storage_cfg)
    joined = _read(owners, source, storage_cfg, seed) if owners else None  # 2. read
    splits = {}
    for name in (TRAIN, VAL):
        clips, counts = None, np.zeros(len(data.labels), dtype=np.int64)
        if joined is not None:
            clips = (
                joined.filter(expr=f"{SPLIT} == '{name}'")
                .select_columns([FEATURES, LABEL])
                .materialize()
            )
            counts += label_counts(clips, len(data.labels))
        own = [f for f in failures if f["split"] == name]
        splits[name] = ClipSplit(
            clips if counts.sum() else None,
            counts,
            len(data.split(name)),
            [{k: v for k, v in f.items() if k != "split"} for f in own],
        )
    return splits


def index_status(source: FeatureSource, storage_cfg: StorageConfig) -> dict[str, Indexed]:
    """Video key -> the newest used run's outcome for it (videos/ of the used runs)."""
    fs = storage.arrow_filesystem(source.index_uri, storage_cfg)
    found: dict[str, Indexed] = {}
    for run in source.runs.used:  # oldest commit first: the newest run wins
        for uri in run.files.get(schema.VIDEOS, ()):
            path = storage.strip_scheme(uri)
            rows = pq.read_table(path, filesystem=fs, columns=["video_uri", "status"]).to_pylist()
            for row in rows:
                found[video_key(row["video_uri"])] = Indexed(
                    run.run_id, row["status"], row["video_uri"]
                )
    return found


def check_indexed(data: LabeledData, indexed: dict[str, Indexed], source: FeatureSource) -> None:
    """Every labeled video must be in the used runs; else fail, naming the missing ones."""
    missing = [v.uri for v in data.videos if video_key(v.uri) not in indexed]
    if not missing:
        return
    shown = ", ".join(storage.redact(u) for u in missing[:SHOWN])
    more = f" and {len(missing) - SHOWN} more" if len(missing) > SHOWN else ""
    message = (
        f"{len(missing)} of {len(data.videos)} --data videos have no frame features in "
        f"--features-from {storage.redact(source.index_uri)} (runs {source.run_ids}, model "
        f"{source.model_version}): {shown}{more}; index them with jobs/index.py "
        "--keep-frame-features and the same model, or leave them out of --data"
    )
    if source.runs.other_models:
        message += f"; runs of other models were not used: {source.runs.describe_others()}"
    if len(missing) == len(data.videos) and indexed:
        example = storage.redact(next(iter(indexed.values())).video_uri)
        message += (
            f"; no --data URI matches the index, which holds e.g. {example}: the URIs must "
            "name the videos the index job listed"
        )
    raise InputError(message)


def index_failures(
    failed: dict[str, tuple[Indexed, str]], source: FeatureSource, storage_cfg: StorageConfig
) -> list[dict]:
    """Skipped-video rows (with split) for the videos the owning index run failed on."""
    if not failed:
        return []
    fs = storage.arrow_filesystem(source.index_uri, storage_cfg)
    runs = {found.run_id for found, _ in failed.values()}
    reasons: dict[tuple[str, str], dict] = {}  # (run_id, video key) -> first error row
    for run in source.runs.used:
        if run.run_id not in runs:
            continue
        for uri in run.files.get(schema.ERRORS, ()):
            table = pq.read_table(storage.strip_scheme(uri), filesystem=fs)
            for row in table.select(["video_uri", "stage", "error_type", "message"]).to_pylist():
                reasons.setdefault((run.run_id, video_key(row["video_uri"])), row)
    rows = []
    for uri, (found, split) in failed.items():
        why = reasons.get((found.run_id, video_key(uri)), {})
        rows.append(
            {
                "video_uri": uri,
                "split": split,
                "error_stage": why.get("stage") or "index",
                "error_type": why.get("error_type") or "NotIndexed",
                "error_message": f"index run {found.run_id} failed on this video: "
                + (why.get("message") or "no reason recorded"),
            }
        )
    return rows


def _read(
    owners: dict[str, tuple[str, int, str]],
    source: FeatureSource,
    storage_cfg: StorageConfig,
    seed: int,
) -> ray.data.MaterializedDataset:
    """The owning runs' clips files -> labeled feature rows of both splits, shuffled (seeded)."""
    runs = {run_id for run_id, _, _ in owners.values()}
    files = [
        storage.strip_scheme(uri)
        for run in source.runs.used
        if run.run_id in runs
        for uri in run.files[schema.CLIPS]
    ]
    with preserve_order():  # the same rows in the same order for the same seed
        return (
            ray.data.read_parquet(
                files,
                filesystem=storage.arrow_filesystem(source.index_uri, storage_cfg),
                columns=["video_uri", "run_id", schema.FRAME_FEATURES],
                partitioning=None,
            )
            .map_batches(JoinLabels(owners, source.shape), batch_format="pyarrow")
            .random_shuffle(seed=seed)  # the index's files come sorted by video, so by class
            .materialize()
        )
