"""An embedded DuckDB with views `videos`, `clips`, `errors` and `runs` over committed runs only.

The Parquet views read exactly the files the run records list (plus the Hive column `run_date`,
a DATE); `runs` holds the records themselves, typed as DuckDB's `read_json` types them, so SQL
written here also runs on `read_parquet(...)`/`read_json(...)` views a user makes by hand
(docs/queries.md). s3:// output goes through the same fsspec filesystem as the jobs.
"""

from __future__ import annotations

import json
import os
import tempfile

import duckdb
import pyarrow as pa

from pipeline import schema
from pipeline.query.catalog import TABLES, Catalog
from pipeline.query.errors import QueryError

RUNS_VIEW = "runs"
VIEWS = (*TABLES, RUNS_VIEW)


def empty_table(table: str) -> pa.Table:
    """A table's columns with no rows, typed as DuckDB reads the Parquet files."""
    if table in (schema.ERRORS, schema.SHOTS):
        fields = list(schema.ERRORS_SCHEMA if table == schema.ERRORS else schema.SHOTS_SCHEMA)
    else:
        base = schema.videos_schema(1) if table == schema.VIDEOS else schema.clips_schema(1)
        fields = [
            pa.field(f.name, pa.list_(pa.float32())) if f.name == "embedding" else f for f in base
        ]
    return pa.schema([*fields, (schema.PARTITION_KEY, pa.date32())]).empty_table()


def sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def connect(catalog: Catalog) -> duckdb.DuckDBPyConnection:
    """A fresh in-memory DuckDB with the four views over `catalog`'s committed runs."""
    con = duckdb.connect()
    if catalog.is_remote:
        con.register_filesystem(catalog.filesystem())
    for table in TABLES:
        files = catalog.files(table)
        if files:
            source = (
                f"read_parquet([{', '.join(sql_string(f) for f in files)}], "
                f"hive_partitioning = true, hive_types = {{'{schema.PARTITION_KEY}': 'DATE'}}, "
                "union_by_name = true)"
            )
        else:  # no committed run wrote this table (errors/ is absent when nothing failed)
            source = f"_empty_{table}"
            con.register(source, empty_table(table))
        con.execute(f"CREATE VIEW {table} AS SELECT * FROM {source}")
    _create_runs(con, catalog.records())
    return con


def _create_runs(con: duckdb.DuckDBPyConnection, records: list[dict]) -> None:
    """`runs`: one row per committed record, as `read_json('<out>/_runs/*.json')` reads them."""
    with tempfile.TemporaryDirectory(prefix="reelay-runs-") as tmp:
        path = os.path.join(tmp, "runs.ndjson")
        with open(path, "w", encoding="utf-8") as f:
            for record in records:
                f.write(json.dumps(record, default=str) + "\n")
        con.execute(
            f"CREATE TABLE {RUNS_VIEW} AS SELECT * FROM read_json({sql_string(path)}, "
            "format = 'newline_delimited')"
        )


def query(con: duckdb.DuckDBPyConnection, sql: str) -> pa.Table:
    """Run SQL (several statements allowed; the last one's rows are returned)."""
    if not sql.strip():
        raise QueryError('the SQL is empty; e.g. "SELECT label, count(*) FROM videos GROUP BY 1"')
    try:
        relation = con.sql(sql)
        return relation.to_arrow_table() if relation is not None else pa.table({})
    except duckdb.Error as e:
        raise QueryError(f"SQL error: {e}") from e
