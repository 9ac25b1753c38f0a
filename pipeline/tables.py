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
