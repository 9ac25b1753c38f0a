"""Stages 1-2 of training, plan + decode (Ray Data), once, before the trainer starts.

The same PlanVideo/DecodeUnit as the index job, so training and inference see the same frames:
  1. plan    (CPU tasks)  1 labeled video -> N work units (label carried along)
  2. decode  (CPU tasks)  1 unit -> N clip rows {frames (T, S, S, 3) uint8, label int64}
Unreadable videos become error rows; they are dropped here and counted, never fatal. The clip
datasets are materialized (frames stay uint8 in the object store) so that the training
workers, which hold the cluster's CPUs, need no Ray Data tasks while they iterate.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pyarrow.compute as pc
import ray

from pipeline.config import PlanConfig, SamplingConfig, StorageConfig
from pipeline.listing import InputError
from pipeline.schema import ERROR_FIELDS
from pipeline.train.inputs import LabeledVideo
from pipeline.video.decode import DecodeUnit
from pipeline.video.plan import PlanVideo

log = logging.getLogger("reelay.train")

FRAMES, LABEL = "frames", "label"  # the columns the training loop reads
AUDIO = "audio"  # and, for a model that hears, each clip's sound (N,) float32
FAILURE_COLUMNS = ("video_uri", *ERROR_FIELDS)


@dataclass(frozen=True)
class CarryColumns:
    """Row function wrapper: `fn(row)`, with `keys` of the input row copied onto each output."""

    fn: Callable[[dict], list[dict]]
    keys: tuple[str, ...]

    def __call__(self, row: dict) -> list[dict]:
        extra = {k: row[k] for k in self.keys}
        return [{**out, **extra} for out in self.fn(row)]


@dataclass
class ClipSplit:
    """One split's decoded clips (materialized) and what was dropped from it."""

    clips: ray.data.Dataset | None  # columns: frames (T, S, S, 3) uint8, label int64
    clips_per_label: np.ndarray  # (K,)
    videos: int  # listed in this split
    failures: list[dict]  # one per failed unit: video_uri, error_stage/type/message

    @property
    def skipped_videos(self) -> int:
        return len({f["video_uri"] for f in self.failures})

    @property
    def num_clips(self) -> int:
        return int(self.clips_per_label.sum())


def decode_split(
    videos: list[LabeledVideo],
    labels: tuple[str, ...],
    sampling: SamplingConfig,
    plan: PlanConfig,
    storage_cfg: StorageConfig,
    seed: int,
    book: Any,
) -> ClipSplit:
    """Plan and decode one split's videos into materialized clip rows with a label index.

    Videos are put in a seeded random order first and Ray Data keeps that order, so the
    materialized rows are mixed across classes and the same for the same seed. `book` is the
    stage's crash and time-budget accounting (`pipeline.video.guard.open_book`): one actor for
    every split, plan and decode alike (their keys say which), or None.
    """
    index = {name: i for i, name in enumerate(labels)}
    order = np.random.default_rng(seed).permutation(len(videos))
    items = [{**asdict(videos[i]), LABEL: index[videos[i].label]} for i in order]
    with preserve_order():
        return _decode(items, labels, sampling, plan, storage_cfg, book)


@contextmanager
def preserve_order() -> Iterator[None]:
    options = ray.data.DataContext.get_current().execution_options
    before, options.preserve_order = options.preserve_order, True
    try:
        yield
    finally:
        options.preserve_order = before


def _decode(
    items: list[dict],
    labels: tuple[str, ...],
    sampling: SamplingConfig,
    plan: PlanConfig,
    storage_cfg: StorageConfig,
    book: Any,
) -> ClipSplit:
    # 1. plan (CPU tasks): 1 video -> N work units; the unit list is small, so it comes back
    guard = plan.decode_task_options()  # plan tasks decode a first frame: the same budget
    units = (
        ray.data.from_items(items, override_num_blocks=max(1, min(len(items), 1024)))
        .flat_map(CarryColumns(PlanVideo(sampling, plan, storage_cfg, book), (LABEL,)), **guard)
        .take_all()
        if items
        else []
    )
    failures = [_failure(u) for u in units if u["error_stage"]]
    units = [u for u in units if not u["error_stage"]]
    clips = None
    counts = np.zeros(len(labels), dtype=np.int64)
    if units:
        # 2. decode (CPU tasks): 1 unit -> N clips
        decode = DecodeUnit(sampling, plan, storage_cfg, book=book)
        decoded = (
            ray.data.from_items(units, override_num_blocks=max(1, min(len(units), 1024)))
            .flat_map(CarryColumns(decode, (LABEL,)), **guard)
            .materialize()
        )
        errors, clean = decoded_summary(decoded, len(labels))
        failures += errors
        counts += clean
        clips = decoded.filter(expr="error_stage == ''") if errors else decoded
        clips = clips.select_columns(
            [FRAMES, LABEL, *([AUDIO] if sampling.hears else [])]
        ).materialize()
        del decoded  # its blocks are freed; only the clean clips stay in the object store
    return ClipSplit(clips if counts.sum() else None, counts, len(items), failures)


def _failure(row: dict) -> dict:
    return {k: row[k] for k in FAILURE_COLUMNS}


def decoded_summary(decoded: ray.data.Dataset, num_labels: int) -> tuple[list[dict], np.ndarray]:
    """The failed units' rows and the clean clips per label, in one pass over the decoded
    rows' small columns (each pass is a Ray Data execution: ~0.3-1 s here)."""
    failures, counts = [], np.zeros(num_labels, dtype=np.int64)
    small = decoded.select_columns([LABEL, *FAILURE_COLUMNS])
    for batch in small.iter_batches(batch_format="pyarrow", batch_size=None):
        failed = pc.not_equal(batch["error_stage"], "")
        failures += batch.filter(failed).select(list(FAILURE_COLUMNS)).to_pylist()
        clean = batch.filter(pc.invert(failed))[LABEL].to_numpy()
        counts += np.bincount(clean, minlength=num_labels)
    return failures, counts


def label_counts(clips: ray.data.Dataset, num_labels: int) -> np.ndarray:
    counts = np.zeros(num_labels, dtype=np.int64)
    for batch in clips.select_columns([LABEL]).iter_batches(batch_format="numpy", batch_size=None):
        counts += np.bincount(batch[LABEL], minlength=num_labels)
    return counts


def check_decoded(train: ClipSplit, val: ClipSplit, labels: tuple[str, ...]) -> None:
    """After decoding: every class must keep training clips, and val must not be empty."""
    empty = [labels[i] for i, n in enumerate(train.clips_per_label) if n == 0]
    if empty:
        raise InputError(
            f"no readable training videos for class(es) {empty} (empty class): "
            f"{train.skipped_videos} of {train.videos} training videos were unreadable; "
            "see skipped.parquet in the output for the reasons"
        )
    if val.num_clips == 0:
        raise InputError(
            f"no readable validation videos: {val.skipped_videos} of {val.videos} were "
            "unreadable; see skipped.parquet in the output for the reasons"
        )
