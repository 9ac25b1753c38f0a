"""What the index job writes matches pipeline/schema.py, as pyarrow, pandas and DuckDB read it."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd
import pyarrow.parquet as pq
import pytest

from pipeline import schema
from pipeline.query import SqlQuery, run

DIM = 128  # small_cnn's embedding


def expected_schema(table: str):
    return {
        schema.VIDEOS: schema.videos_schema(DIM),
        schema.CLIPS: schema.clips_schema(DIM),
        schema.ERRORS: schema.ERRORS_SCHEMA,
    }[table]


def committed_files(index, table: str) -> list[Path]:
    files = [Path(f) for f in index.record["files"] if f"/{table}/" in f and f.endswith(".parquet")]
    assert files, f"the run wrote no {table} files"
    return files


@pytest.mark.parametrize("table", [schema.VIDEOS, schema.CLIPS, schema.ERRORS])
def test_pyarrow_reads_the_schema_of_schema_py(local_index, table):
    for path in committed_files(local_index, table):
        written = pq.read_schema(path)
        assert written.equals(expected_schema(table), check_metadata=False), (path, written)


@pytest.mark.parametrize("table", [schema.VIDEOS, schema.CLIPS, schema.ERRORS])
def test_pandas_reads_the_dtypes_of_schema_py(local_index, table):
    """pandas' Arrow-backed dtypes are exact (NumPy-backed ones turn ints with nulls into floats:
    the failed-videos rows have no frame counts)."""
    expected = [(f.name, pd.ArrowDtype(f.type)) for f in expected_schema(table)]
    for path in committed_files(local_index, table):
        frame = pd.read_parquet(path, dtype_backend="pyarrow")
        assert list(frame.dtypes.items()) == expected, path
        assert list(pd.read_parquet(path).columns) == [name for name, _ in expected]


@pytest.mark.parametrize("table", [schema.VIDEOS, schema.CLIPS, schema.ERRORS])
def test_duckdb_views_have_the_types_of_schema_py(local_index, table, tmp_path):
    """DuckDB's types for the schema.py columns (through an empty file of that schema), plus
    the partition column run_date DATE."""
    empty = tmp_path / "empty.parquet"
    pq.write_table(expected_schema(table).empty_table(), empty)
    expected = duckdb.sql(f"DESCRIBE SELECT * FROM read_parquet('{empty}')").fetchall()
    expected = [(name, kind) for name, kind, *_ in expected] + [(schema.PARTITION_KEY, "DATE")]
    got = run(SqlQuery(local_index.output_uri, f"DESCRIBE {table}"))
    columns = zip(got["column_name"].to_pylist(), got["column_type"].to_pylist(), strict=True)
    assert list(columns) == expected


def test_empty_views_keep_their_columns(index_copy):
    """A table no committed run wrote (errors/ when nothing failed) is an empty view with the
    same columns, so queries over it still run."""
    import json
    import shutil

    out = Path(index_copy.output_uri)
    shutil.rmtree(out / "errors")
    record_path = next((out / "_runs").glob("*.json"))
    record = json.loads(record_path.read_text())
    record["files"] = [f for f in record["files"] if "/errors/" not in f]
    record_path.write_text(json.dumps(record))
    got = run(SqlQuery(str(out), "DESCRIBE errors"))
    assert got["column_name"].to_pylist() == [*schema.ERRORS_SCHEMA.names, schema.PARTITION_KEY]
    assert run(SqlQuery(str(out), "SELECT count(*) AS n FROM errors"))["n"].to_pylist() == [0]


def test_fixed_windows_have_no_shots(local_index):
    """The query index is made with fixed windows: no shots rows, clips without a shot."""
    assert (
        run(SqlQuery(local_index.output_uri, "SELECT count(*) AS n FROM shots"))["n"][0].as_py()
        == 0
    )
    got = run(SqlQuery(local_index.output_uri, "SELECT count(shot_index) AS n FROM clips"))
    assert got["n"][0].as_py() == 0
