"""Stage 4 of the index job: the run's tables into staging, ready for the commit. Clips and
per-video sums are written by the streaming pipeline's last stage as results come (4a); the
videos, errors and the ledger then from the sums the driver merges (4b)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc
import ray

from pipeline import schema, storage
from pipeline.aggregate import (
    SUM_COUNT,
    WORK_COUNTS,
    block_summary,
    clip_rows,
    errors_table,
    failed_rows,
    failed_video_rows,
    merge_sums,
    sums_rows,
    videos_table,
)
from pipeline.index.commit import RunOutput
from pipeline.index.ledger import ledger_table
from pipeline.index.shots import UNITS, number_units, renumber_clips, unit_summary
from pipeline.listing import VideoEntry
from pipeline.models.source import ModelSpec

DRIVER_SUMS_BYTES = 2**30  # per-video sums merged on the driver up to this size (float64)
# clip results per staging task, in bytes: the results come in inference batches (8 clips each
# on CPU actors), and a Ray task and a file per batch cost more than their rows' work; clips
# files then hold ~25k rows (512-d)
RESULT_TASK_BYTES = 64 * 2**20
SUMS = "_sums"  # staging folder of the per-video sums (read back by the driver, never committed)


@dataclass(frozen=True)
class Staged:
    """What the staging stage left: the sums files the driver received names of (files of
    attempts Ray retried are not among them), and the executed dataset (its stats)."""

    sums_files: tuple[str, ...]
    dataset: ray.data.Dataset
    units_files: tuple[str, ...] = ()  # --clips shots: the units' summaries (index/shots.py)


@dataclass(frozen=True)
class StageResults:
    """Ray Data batch function, the pipeline's last stage: a batch of clip results -> its good
    clips into one staging file of the clips table, and its block summary (per-video sums,
    failed units) into one sums file; returns a row naming both files.

    Files get fresh names per attempt: a task Ray retries (its node lost after it wrote) leaves
    files no returned row names, which `drop_orphans` removes before the commit."""

    out: RunOutput

    def __call__(self, table: pa.Table) -> pa.Table:
        name = uuid.uuid4().hex
        clips = clip_rows(table)
        clips_file = self.out.write_small_table(schema.CLIPS, clips, name) if clips.num_rows else ""
        sums_file = self.out.write_small_table(SUMS, block_summary(table), name)
        units_file = ""
        if "unit_first_frame" in table.column_names:  # --clips shots
            units_file = self.out.write_small_table(UNITS, unit_summary(table), name)
        return pa.table(
            {"clips_file": [clips_file], "sums_file": [sums_file], "units_file": [units_file]}
        )


def stage_results(results: ray.data.Dataset, out: RunOutput, rows: int, task_cpus: float) -> Staged:
    """Stage 4a, at the end of the streaming pipeline: results into staging files as they come,
    `rows` clip results per file (`result_rows_per_task`), `task_cpus` per task. Only file
    names come back to the driver, so neither the object store nor the driver holds a
    corpus's results."""
    staged = results.map_batches(
        StageResults(out), batch_size=rows, batch_format="pyarrow", num_cpus=task_cpus
    )
    named = staged.take_all()
    files = {r[kind] for r in named for kind in ("clips_file", "sums_file", "units_file")}
    drop_orphans(out, files)
    units = tuple(sorted(r["units_file"] for r in named if r["units_file"]))
    return Staged(tuple(sorted(r["sums_file"] for r in named)), staged, units)


def drop_orphans(out: RunOutput, named: set[str]) -> None:
    """Remove staged clips and sums files that no returned row names (see StageResults)."""
    fs = out.fs
    for folder in (out.staging(schema.CLIPS), out.staging(SUMS), out.staging(UNITS)):
        if fs.exists(folder):
            for path in fs.find(folder):
                if path not in named:  # both are paths without a scheme (RunOutput.staging)
                    fs.rm(path)


def result_rows_per_task(spec: ModelSpec, clip_frames: int, keep_frame_features: bool) -> int:
    """Clip results per staging task: about RESULT_TASK_BYTES of them, from the width of a
    row (embedding and its sound's part, scores, metadata; per-frame features, if kept, taken
    as wide as the embedding for each frame)."""
    row = 4 * (spec.embedding_dim + spec.audio_dim + 3 * len(spec.labels)) + 512
    if keep_frame_features:
        row += 4 * spec.embedding_dim * clip_frames
    return max(64, RESULT_TASK_BYTES // row)


def write_tables(
    staged: Staged | None, entries: list[VideoEntry], out: RunOutput, spec: ModelSpec
) -> dict:
    """Stage 4b: videos (from the per-video sums), errors and the ledger into staging, beside
    the clips the pipeline staged. Returns counts, the failed video URIs (nothing indexed)
    and the partial ones (some clips indexed, some lost)."""
    indexed_at = datetime.now(UTC)
    sums, failures, totals = None, [], dict.fromkeys(WORK_COUNTS, 0)
    if staged is not None:
        sums, failures, totals = summarize(staged, len(entries), spec, out)
        if out.fs.exists(out.staging(SUMS)):  # read: never committed
            out.fs.rm(out.staging(SUMS), recursive=True)
    labelled = dict(model_version=spec.model_version, run_id=out.run_id, indexed_at=indexed_at)
    ok_uris = set(sums["video_uri"].to_pylist()) if sums is not None else set()
    videos = []
    if sums is not None and sums.num_rows:
        errored = frozenset(f["video_uri"] for f in failures)
        videos.append(videos_table(sums, labels=list(spec.labels), errored=errored, **labelled))
    never_indexed = {f["video_uri"]: f for f in failures if f["video_uri"] not in ok_uris}
    if never_indexed:
        videos.append(
            failed_video_rows(list(never_indexed.values()), dim=spec.embedding_dim, **labelled)
        )
    if videos:
        out.write_table_parts(schema.VIDEOS, pa.concat_tables(videos).sort_by("video_uri"))
    # an errors file even when empty: plain readers of errors/ then always find the table
    out.write_small_table(schema.ERRORS, errors_table(failures, out.run_id), "errors")
    failed = set(never_indexed)
    partial = {f["video_uri"] for f in failures} - failed
    shots = 0
    if staged is not None and staged.units_files:
        shots = write_shots(staged, out)
    if entries:
        ledger = ledger_table(entries, failed, partial, spec.model_version, out.run_id)
        out.write_small_table(schema.LEDGER, ledger, "ledger")
    num_clips = int(pc.sum(sums[SUM_COUNT]).as_py() or 0) if sums is not None else 0
    return {
        "failed": failed,
        "partial": partial,
        "clips": num_clips,
        "shots": shots,
        "errors": len(failures),
        **totals,
    }


def write_shots(staged: Staged, out: RunOutput) -> int:
    """--clips shots: the video-wide clip and shot numbers into the staged clips, and the
    shots table into staging (pipeline.index.shots); returns the shots."""
    summaries = pa.concat_tables(out.read_staged(list(staged.units_files)))
    offsets, shots = number_units(summaries)
    renumber_clips(out, offsets)
    if shots.num_rows:
        shots = shots.append_column("run_id", pa.array([out.run_id] * shots.num_rows))
        shots = shots.cast(schema.SHOTS_SCHEMA).sort_by(
            [("video_uri", "ascending"), ("shot_index", "ascending")]
        )
        out.write_table_parts(schema.SHOTS, shots)
    out.fs.rm(out.staging(UNITS), recursive=True)
    return shots.num_rows


def summarize(
    staged: Staged, num_videos: int, spec: ModelSpec, out: RunOutput
) -> tuple[pa.Table | None, list, dict]:
    """Per-video sums (one row per video), the failed units' error rows, and the run's
    planned frames and work units, from the staged sums files.

    The driver merges the sums when they fit in DRIVER_SUMS_BYTES (no shuffle: a groupby costs
    seconds even on small runs); beyond that, a Ray Data groupby merges them and only the
    merged rows come back."""
    width = spec.embedding_dim + len(spec.labels)
    if num_videos * width * 8 <= DRIVER_SUMS_BYTES:
        tables = [t for t in out.read_staged(list(staged.sums_files)) if t.num_rows]
        if not tables:
            return None, [], dict.fromkeys(WORK_COUNTS, 0)
        table = pa.concat_tables(tables)
        totals = {name: int(pc.sum(table[name]).as_py() or 0) for name in WORK_COUNTS}
        return merge_sums(sums_rows(table)), failed_rows(table).to_pylist(), totals
    summary = ray.data.read_parquet(
        list(staged.sums_files), filesystem=storage.arrow_filesystem(out.output_uri, out.storage)
    ).materialize()
    totals = {name: int(summary.sum(name) or 0) for name in WORK_COUNTS}
    failed = summary.map_batches(failed_rows, batch_format="pyarrow").take_all()
    merged = (
        summary.map_batches(sums_rows, batch_format="pyarrow")
        .groupby("video_uri", num_partitions=max(1, min(64, num_videos // 20_000 + 1)))
        .map_groups(merge_sums, batch_format="pyarrow")
    )
    blocks = [b for b in ray.get(merged.to_arrow_refs()) if b.num_rows]
    return (pa.concat_tables(blocks) if blocks else None), failed, totals
