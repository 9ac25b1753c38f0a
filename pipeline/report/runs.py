"""Inputs of a run report: the run's record, the records before it, and its videos/errors rows.

Only committed runs are read (their record lists their files). File paths in a record are
re-rooted under the output URI given here, since an index may have been copied or moved.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import schema, storage
from pipeline.config import StorageConfig
from pipeline.report.errors import ReportError
from pipeline.runs import committed_runs

VIDEO_COLUMNS = ("video_uri", "status", "label", "score")
ERROR_COLUMNS = ("video_uri", "stage", "error_type", "message")


@dataclass(frozen=True)
class RunInputs:
    output_uri: str
    record: dict
    history: list[dict]  # every committed record, oldest first (the reported one included)
    videos: pa.Table  # VIDEO_COLUMNS of the run's videos rows
    errors: pa.Table  # ERROR_COLUMNS of the run's errors rows
    missing_files: list[str]  # files the record lists that are gone (expired partitions)

    @property
    def run_id(self) -> str:
        return self.record["run_id"]


def load_run(
    output_uri: str, run_id: str | None, storage_cfg: StorageConfig = storage.NO_OPTIONS
) -> RunInputs:
    """The run `run_id` (default: the latest committed run) and what its report needs."""
    where = storage.redact(output_uri)
    try:
        fs = storage.filesystem(output_uri, storage_cfg)
        if not fs.exists(storage.strip_scheme(output_uri)):
            raise ReportError(f"no index at {where}: the folder does not exist")
        history = committed_runs(output_uri, storage_cfg)
    except ReportError:
        raise
    except (ValueError, OSError) as e:  # bad scheme, bad JSON, no permission
        raise ReportError(f"cannot read the run records under {where}: {e}") from e
    if not history:
        raise ReportError(
            f"no index at {where}: no committed run (no {schema.RUNS}/*.json); "
            "point at the --output of jobs/index.py"
        )
    record = pick_run(history, run_id, where)
    missing: list[str] = []
    videos = read_rows(fs, output_uri, record, schema.VIDEOS, VIDEO_COLUMNS, missing)
    errors = read_rows(fs, output_uri, record, schema.ERRORS, ERROR_COLUMNS, missing)
    return RunInputs(output_uri, record, history, videos, errors, missing)


def pick_run(history: list[dict], run_id: str | None, where: str) -> dict:
    if run_id is None:
        return history[-1]
    for record in history:
        if record.get("run_id") == run_id:
            return record
    recent = ", ".join(r.get("run_id", "?") for r in history[-5:])
    raise ReportError(
        f"run {run_id!r} is not a committed run in {where}; the latest runs are: {recent}"
    )


def run_files(record: dict, table: str, output_uri: str) -> list[str]:
    """The record's files of `table` (`<table>/run_date=<d>/<name>.parquet`), under output_uri."""
    out = []
    for uri in record.get("files", []) or []:
        parts = str(uri).rstrip("/").split("/")
        if len(parts) >= 3 and parts[-3] == table and parts[-1].endswith(".parquet"):
            out.append(storage.strip_scheme(storage.join(output_uri, *parts[-3:])))
    return out


def read_rows(
    fs, output_uri: str, record: dict, table: str, columns: tuple[str, ...], missing: list[str]
) -> pa.Table:
    """The columns of one table's committed files of the run (files that are gone: skipped,
    noted in `missing`)."""
    tables = []
    for path in run_files(record, table, output_uri):
        try:
            data = fs.cat_file(path)
        except FileNotFoundError:
            missing.append(storage.with_scheme(path, output_uri))
            continue
        parquet = pq.ParquetFile(io.BytesIO(data))
        tables.append(parquet.read(columns=[c for c in columns if c in parquet.schema_arrow.names]))
    empty = pa.schema([(c, pa.float32() if c == "score" else pa.string()) for c in columns])
    if not tables:
        return empty.empty_table()
    table_ = pa.concat_tables(tables, promote_options="permissive")
    for c in columns:  # an older file without a column: nulls
        if c not in table_.column_names:
            table_ = table_.append_column(c, pa.nulls(table_.num_rows, empty.field(c).type))
    return table_.select(list(columns))
