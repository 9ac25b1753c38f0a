"""In-flight clip rows -> the output tables: clips (the good ones), errors, and one row per
video from its clips (mean embedding, mean class scores).

Aggregation is a sum that can be taken in parts: each block of clip results becomes one sums
row per video (clips counted, embeddings and class scores summed in float64), sums rows of
the same video merge by adding, and a video's row divides at the end. The job sums per block
in Ray tasks and merges on the driver when the videos fit there, without a shuffle; larger runs
merge with a Ray Data groupby over the same rows (`pipeline/index/write.py`).
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline import schema

SUM_COUNT = "num_clips"  # good clips
WORK_COUNTS = ("sampled_frames", "units")  # planned frames and work units (ok or failed)
EMBEDDING_SUM = "embedding_sum"
PROBS_SUM = "probs_sum"


def is_ok(table: pa.Table) -> pa.Array:
    return pc.equal(table["error_stage"], "")


def clip_rows(table: pa.Table) -> pa.Table:
    """Successful clips, in the clips table's columns and types."""
    ok = table.filter(is_ok(table))
    frame_features = None
    if schema.FRAME_FEATURES in ok.column_names:
        kept = ok.schema.field(schema.FRAME_FEATURES).type  # list<list<float32>[D]>[T]
        frame_features = (kept.list_size, kept.value_type.list_size)
    audio_dim = 0
    if schema.AUDIO_EMBEDDING in ok.column_names:
        audio_dim = ok.schema.field(schema.AUDIO_EMBEDDING).type.list_size
    target = schema.clips_schema(
        ok.schema.field("embedding").type.list_size, frame_features, audio_dim
    )
    return ok.select(target.names).cast(target)


def failed_rows(table: pa.Table) -> pa.Table:
    """The rows of failed work units (any table with an `error_stage` column)."""
    return table.filter(pc.invert(is_ok(table)))


def errors_table(errors: list[dict], run_id: str) -> pa.Table:
    rows = [
        {
            "video_uri": e["video_uri"],
            "stage": e["error_stage"],
            "error_type": e["error_type"],
            "message": e["error_message"],
            "run_id": run_id,
        }
        for e in errors
    ]
    return pa.Table.from_pylist(rows, schema=schema.ERRORS_SCHEMA)


def list_matrix(column: pa.ChunkedArray | pa.Array, dtype=np.float32) -> np.ndarray:
    """fixed_size_list<float>[D] -> (N, D) array (no nulls expected)."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    width = arr.type.list_size
    return arr.flatten().to_numpy(zero_copy_only=False).reshape(len(arr), width).astype(dtype)


def _sum_lists(matrix: np.ndarray) -> pa.Array:
    flat = pa.array(np.ascontiguousarray(matrix, dtype=np.float64).reshape(-1))
    return pa.FixedSizeListArray.from_arrays(flat, matrix.shape[1])


def _sums_by_video(
    meta: pa.Table, counts: dict[str, np.ndarray], emb: np.ndarray, probs: np.ndarray
) -> pa.Table:
    """Rows of (video_uri, metadata...) with counts and per-row sums -> one row per video."""
    uris = meta["video_uri"].to_numpy(zero_copy_only=False)
    unique, first, inverse = np.unique(uris, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    emb_sum = np.zeros((len(unique), emb.shape[1]), np.float64)
    probs_sum = np.zeros((len(unique), probs.shape[1]), np.float64)
    np.add.at(emb_sum, inverse, emb)
    np.add.at(probs_sum, inverse, probs)
    rows = meta.take(pa.array(first))
    for name, values in counts.items():
        total = np.bincount(inverse, weights=values, minlength=len(unique))
        rows = rows.append_column(name, pa.array(total.astype(np.int64)))
    rows = rows.append_column(EMBEDDING_SUM, _sum_lists(emb_sum))
    return rows.append_column(PROBS_SUM, _sum_lists(probs_sum))


def _work_counts(table: pa.Table) -> dict[str, np.ndarray]:
    unit_frames = table["unit_frames"].to_numpy()
    return {"sampled_frames": unit_frames, "units": (unit_frames > 0).astype(np.int64)}


def _meta(table: pa.Table) -> pa.Table:
    return table.select(["video_uri", *schema.VIDEO_META_COLUMNS])


def block_summary(table: pa.Table) -> pa.Table:
    """A block of clip results (ok and failed rows) -> one sums row per video with good clips,
    and one row per failed work unit with its error (no sums). Both kinds count the planned
    frames and work units they stand for (`WORK_COUNTS`, from `unit_frames`). Small: it is
    what the driver collects instead of the clips."""
    ok, bad = sums_rows(table), failed_rows(table)
    sums = _sums_by_video(
        _meta(ok),
        {SUM_COUNT: np.ones(ok.num_rows)} | _work_counts(ok),
        list_matrix(ok["embedding"], np.float64),
        list_matrix(ok[schema.CLIP_PROBS], np.float64),
    )
    for name in schema.ERROR_FIELDS:
        sums = sums.append_column(name, pa.array([""] * sums.num_rows, pa.string()))
    errors = _meta(bad).append_column(SUM_COUNT, pa.array(np.zeros(bad.num_rows, np.int64)))
    for name, values in _work_counts(bad).items():
        errors = errors.append_column(name, pa.array(values.astype(np.int64)))
    for name in (EMBEDDING_SUM, PROBS_SUM):
        errors = errors.append_column(name, pa.nulls(bad.num_rows, sums.schema.field(name).type))
    for name in schema.ERROR_FIELDS:
        errors = errors.append_column(name, bad[name].cast(pa.string()))
    return pa.concat_tables([sums, errors.cast(sums.schema)])


def sums_rows(summary: pa.Table) -> pa.Table:
    """The sums rows of block summaries (their error rows left out)."""
    return summary.filter(is_ok(summary))


def merge_sums(sums: pa.Table) -> pa.Table:
    """Sums rows (any number per video, no error rows) -> one sums row per video."""
    return _sums_by_video(
        _meta(sums),
        {name: sums[name].to_numpy() for name in (SUM_COUNT, *WORK_COUNTS)},
        list_matrix(sums[EMBEDDING_SUM], np.float64),
        list_matrix(sums[PROBS_SUM], np.float64),
    )


def videos_table(
    sums: pa.Table,
    *,
    labels: list[str],
    errored: frozenset[str],
    model_version: str,
    run_id: str,
    indexed_at: datetime,
) -> pa.Table:
    """Merged sums (one row per video) -> videos rows. A video with any failed work unit keeps
    its good clips and is marked `partial` (the errors table says what was lost)."""
    counts = sums[SUM_COUNT].to_numpy()
    emb = (list_matrix(sums[EMBEDDING_SUM], np.float64) / counts[:, None]).astype(np.float32)
    probs = list_matrix(sums[PROBS_SUM], np.float64) / counts[:, None]
    best = np.argmax(probs, axis=1)
    n = len(counts)
    columns = {
        "video_uri": sums["video_uri"],
        "status": ["partial" if u in errored else "ok" for u in sums["video_uri"].to_pylist()],
        **{name: sums[name] for name in schema.VIDEO_META_COLUMNS},
        "num_clips": pa.array(counts, pa.int32()),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), emb.shape[1]),
        "label": pa.array(np.asarray(labels, dtype=object)[best], pa.string()),
        "score": pa.array(probs[np.arange(len(best)), best], pa.float32()),
        "model_version": [model_version] * n,
        "run_id": [run_id] * n,
        "indexed_at": pa.array([indexed_at] * n, pa.timestamp("us", tz="UTC")),
    }
    table_schema = schema.videos_schema(emb.shape[1])
    return pa.table({name: columns[name] for name in table_schema.names}).cast(table_schema)


def aggregate_video(clips: pa.Table, **kwargs) -> pa.Table:
    """The ok clips of one or more videos -> their videos rows (see `videos_table`)."""
    return videos_table(merge_sums(sums_rows(block_summary(clips))), **kwargs)


def failed_video_rows(
    failures: list[dict], *, dim: int, model_version: str, run_id: str, indexed_at: datetime
) -> pa.Table:
    """Videos that produced no clip at all: status `error`, no embedding."""
    table_schema = schema.videos_schema(dim)
    rows = [
        {
            "video_uri": f["video_uri"],
            "status": "error",
            **{k: f.get(k) or None for k in schema.VIDEO_META_COLUMNS},  # 0 = unknown here
            "size_bytes": f.get("size_bytes"),
            "fingerprint": f.get("fingerprint"),
            "num_clips": 0,
            "embedding": None,
            "label": None,
            "score": None,
            "model_version": model_version,
            "run_id": run_id,
            "indexed_at": indexed_at,
        }
        for f in failures
    ]
    return pa.Table.from_pylist(rows, schema=table_schema)
