"""Stage 4 of the index job: the run's tables into staging (clips by Ray Data tasks; videos,
errors and the ledger from per-video sums the driver merges), ready for the commit."""

from __future__ import annotations

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
from pipeline.index.commit import RunOutput, parquet_args
from pipeline.index.ledger import ledger_table
from pipeline.listing import VideoEntry
from pipeline.models.source import ModelSpec

CLIP_FILE_BYTES = 256 * 2**20  # in memory; clips files then hold ~100k rows (zstd, 512-d)
DRIVER_SUMS_BYTES = 2**30  # per-video sums merged on the driver up to this size (float64)
# clip results per write and summary task, in bytes: the results come in inference batches (8
# clips each on CPU actors), and a Ray task per batch cost more than its rows' work
RESULT_TASK_BYTES = 64 * 2**20


def write_tables(results, entries: list[VideoEntry], out: RunOutput, spec: ModelSpec) -> dict:
    """Stage 4: the run's tables into staging. Returns counts and the failed video URIs.

    Two passes over the (materialized, frame-free) results: the clips table, written by Ray
    Data tasks; and one summary row per video and block (clips counted, embeddings and scores
    summed) plus one per failed unit, which the driver merges into the videos table."""
    indexed_at = datetime.now(UTC)
    sums, failures, totals = None, [], dict.fromkeys(WORK_COUNTS, 0)
    if results is not None:
        rows_per_task = result_rows_per_task(results)
        clips = results.map_batches(clip_rows, batch_format="pyarrow", batch_size=rows_per_task)
        clips.write_parquet(
            out.staging(schema.CLIPS),
            filesystem=storage.arrow_filesystem(out.output_uri, out.storage),
            min_bytes_per_file=CLIP_FILE_BYTES,
            **parquet_args(),
        )
        sums, failures, totals = summarize(results, len(entries), spec, rows_per_task)
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
    failed = {f["video_uri"] for f in failures}
    if entries:
        out.write_small_table(
            schema.LEDGER, ledger_table(entries, failed, spec.model_version, out.run_id), "ledger"
        )
    num_clips = int(pc.sum(sums[SUM_COUNT]).as_py() or 0) if sums is not None else 0
    return {"failed": failed, "clips": num_clips, "errors": len(failures), **totals}


def result_rows_per_task(results: ray.data.MaterializedDataset) -> int:
    """Clip results per write and summary task: about RESULT_TASK_BYTES of them (a row with
    per-frame features kept is tens of times wider), from the blocks' metadata."""
    rows = results.count()
    return max(1, RESULT_TASK_BYTES // max(1, results.size_bytes() // max(1, rows)))


def summarize(
    results, num_videos: int, spec: ModelSpec, rows_per_task: int
) -> tuple[pa.Table | None, list, dict]:
    """Per-video sums (one row per video), the failed units' error rows, and the run's
    planned frames and work units, from the results.

    Results are summed in Ray tasks of `rows_per_task` rows (`result_rows_per_task`). The
    driver merges the sums when they fit in DRIVER_SUMS_BYTES (no shuffle: a groupby costs
    seconds even on small runs); beyond that, a Ray Data groupby merges them and only the
    merged rows come back."""
    summary = results.map_batches(block_summary, batch_format="pyarrow", batch_size=rows_per_task)
    width = spec.embedding_dim + len(spec.labels)
    if num_videos * width * 8 <= DRIVER_SUMS_BYTES:
        table = collect(summary)
        if table is None:
            return None, [], dict.fromkeys(WORK_COUNTS, 0)
        totals = {name: int(pc.sum(table[name]).as_py() or 0) for name in WORK_COUNTS}
        return merge_sums(sums_rows(table)), failed_rows(table).to_pylist(), totals
    summary = summary.materialize()
    totals = {name: int(summary.sum(name) or 0) for name in WORK_COUNTS}
    failed = summary.map_batches(failed_rows, batch_format="pyarrow").take_all()
    merged = (
        summary.map_batches(sums_rows, batch_format="pyarrow")
        .groupby("video_uri", num_partitions=max(1, min(64, num_videos // 20_000 + 1)))
        .map_groups(merge_sums, batch_format="pyarrow")
    )
    return collect(merged), failed, totals


def collect(ds: ray.data.Dataset) -> pa.Table | None:
    """A dataset's blocks as one Arrow table on the driver (None when it has no rows)."""
    blocks = [b for b in ray.get(ds.to_arrow_refs()) if b.num_rows]
    return pa.concat_tables(blocks) if blocks else None
