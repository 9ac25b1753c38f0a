"""Pure Arrow transforms between the in-flight clip rows and the output tables."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from pipeline import schema


def is_ok(table: pa.Table) -> pa.Array:
    return pc.equal(table["error_stage"], "")


def clip_rows(table: pa.Table) -> pa.Table:
    """Successful clips, in the clips table's columns and types."""
    ok = table.filter(is_ok(table))
    frame_features = None
    if schema.FRAME_FEATURES in ok.column_names:
        kept = ok.schema.field(schema.FRAME_FEATURES).type  # list<list<float32>[D]>[T]
        frame_features = (kept.list_size, kept.value_type.list_size)
    target = schema.clips_schema(ok.schema.field("embedding").type.list_size, frame_features)
    return ok.select(target.names).cast(target)


def distinct_uris(table: pa.Table) -> pa.Table:
    """The block's distinct video URIs."""
    return pa.table({"video_uri": pc.unique(table["video_uri"])})


def aggregation_rows(table: pa.Table) -> pa.Table:
    """Successful clips with what the per-video aggregation needs."""
    ok = table.filter(is_ok(table))
    return ok.select(["video_uri", *schema.VIDEO_META_COLUMNS, "embedding", schema.CLIP_PROBS])


def error_rows(table: pa.Table) -> pa.Table:
    """Failed work units as error rows (one per unit), with the video's metadata."""
    bad = table.filter(pc.invert(is_ok(table)))
    return bad.select(
        ["video_uri", "error_stage", "error_type", "error_message", *schema.VIDEO_META_COLUMNS]
    )


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
