"""A result table written as an aligned text table, CSV, JSON (a list of row objects) or Parquet.

Output goes to stdout or to `--out` (a local path or s3:// URI, through the jobs' fsspec).
"""

from __future__ import annotations

import base64
import csv
import io
import json
import math
import sys
from datetime import date, datetime, time, timedelta
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import storage
from pipeline.config import StorageConfig
from pipeline.query.errors import QueryError

FORMATS = ("table", "csv", "json", "parquet")
CELL_WIDTH = 48  # table format: longer cells (embeddings) are cut with an ellipsis


def render(table: pa.Table, fmt: str) -> bytes:
    """The table in one of FORMATS, as bytes."""
    if fmt == "table":
        return (text_table(table) + "\n").encode()
    if fmt == "csv":
        return csv_bytes(table)
    if fmt == "json":
        return (json.dumps(_clean(table.to_pylist()), indent=1) + "\n").encode()
    if fmt == "parquet":
        sink = io.BytesIO()
        pq.write_table(table, sink, compression="zstd")
        return sink.getvalue()
    raise QueryError(f"--format {fmt!r} is unknown; use one of {', '.join(FORMATS)}")


def write(table: pa.Table, fmt: str, out: str | None, storage_cfg: StorageConfig) -> None:
    """Render and write to `out`, or to stdout."""
    data = render(table, fmt)
    if out is None:
        if fmt == "parquet" and sys.stdout.isatty():
            raise QueryError("--format parquet is binary: give --out FILE (or redirect stdout)")
        binary = getattr(sys.stdout, "buffer", None)
        if binary is None:  # a text-only stdout (some notebooks, StringIO)
            if fmt == "parquet":
                raise QueryError("--format parquet is binary: give --out FILE")
            sys.stdout.write(data.decode())
            return
        sys.stdout.flush()
        binary.write(data)
        binary.flush()
        return
    try:
        fs = storage.filesystem(out, storage_cfg)
        path = storage.strip_scheme(out)
        parent = path.rsplit("/", 1)[0]
        if parent and not storage.is_remote(out):
            fs.makedirs(parent, exist_ok=True)
        with fs.open(path, "wb") as f:
            f.write(data)
    except (OSError, ValueError) as e:
        raise QueryError(f"cannot write --out {storage.redact(out)}: {e}") from e


def csv_bytes(table: pa.Table) -> bytes:
    """CSV with a header row, quoting only where needed; nested values (embeddings, lists,
    structs) as JSON text, times as ISO 8601, NULL as an empty field."""
    sink = io.StringIO()
    writer = csv.writer(sink, lineterminator="\n")
    writer.writerow(table.column_names)
    for batch in table.to_batches(max_chunksize=65536):
        columns = [
            [_json_cell(v) for v in col.to_pylist()] if _is_nested(col.type) else col.to_pylist()
            for col in batch.columns
        ]
        writer.writerows([_csv_cell(v) for v in row] for row in zip(*columns, strict=True))
    return sink.getvalue().encode()


def _csv_cell(value):
    if value is None:
        return ""
    if isinstance(value, float) and not math.isfinite(value):
        return "" if math.isnan(value) else str(value)
    return _clean(value)


def text_table(table: pa.Table) -> str:
    """An aligned text table with a row count; long cells are cut."""
    names = table.column_names
    rows = [[_cell(v) for v in row.values()] for row in table.to_pylist()]
    widths = [max([len(n), *(len(r[i]) for r in rows)]) for i, n in enumerate(names)]
    numeric = [pa.types.is_integer(t) or pa.types.is_floating(t) for t in table.schema.types]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if num else c.ljust(w)
            for c, w, num in zip(cells, widths, numeric, strict=True)
        ).rstrip()

    out = [line(names), line(["-" * w for w in widths]), *(line(r) for r in rows)]
    out.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(out)


def _is_nested(t: pa.DataType) -> bool:
    return pa.types.is_nested(t)


def _cell(value) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, float):
        text = f"{value:.6g}"
    elif isinstance(value, list | dict):
        text = _json_cell(value)
    else:
        text = str(value)
    text = " ".join(text.split())
    return text if len(text) <= CELL_WIDTH else text[: CELL_WIDTH - 1] + "…"


def _json_cell(value) -> str | None:
    return None if value is None else json.dumps(_clean(value), separators=(",", ":"))


def _clean(value):
    """Python values from Arrow -> JSON-safe values (NaN -> null, times as ISO text)."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        # a map column comes back as a list of (key, value) tuples
        return [_clean(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return value
