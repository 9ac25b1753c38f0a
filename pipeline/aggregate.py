"""Clips -> videos: one row per video from its clips (mean embedding, mean class scores)."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pyarrow as pa

from pipeline import schema


def list_matrix(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """fixed_size_list<float32>[D] -> (N, D) float32 (no nulls expected)."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    return arr.flatten().to_numpy(zero_copy_only=False).reshape(len(arr), -1).astype(np.float32)


def aggregate_video(
    clips: pa.Table,
    *,
    labels: list[str],
    errored: frozenset[str],
    model_version: str,
    run_id: str,
    indexed_at: datetime,
) -> pa.Table:
    """The clips of one video (ok rows) -> its videos row. A video with any failed work unit
    keeps its good clips but is marked `error` (see the errors table for why)."""
    emb = list_matrix(clips["embedding"]).mean(axis=0)  # (E,)
    probs = list_matrix(clips[schema.CLIP_PROBS]).mean(axis=0)  # (K,)
    best = int(np.argmax(probs))
    first = {name: clips[name][0].as_py() for name in ("video_uri", *schema.VIDEO_META_COLUMNS)}
    row = {
        **first,
        "status": "error" if first["video_uri"] in errored else "ok",
        "num_clips": clips.num_rows,
        "embedding": [emb.tolist()],
        "label": labels[best],
        "score": float(probs[best]),
        "model_version": model_version,
        "run_id": run_id,
        "indexed_at": indexed_at,
    }
    table_schema = schema.videos_schema(len(emb))
    return pa.table(
        {name: [row[name]] if name != "embedding" else row[name] for name in table_schema.names},
        schema=table_schema,
    )


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
