"""The ledger: which (video, fingerprint, model_version) each committed run indexed.

Written with every run under `_ledger/` and committed with it, so it can never disagree with
the tables. Incremental runs read it to skip what is already done.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import schema, storage
from pipeline.config import StorageConfig
from pipeline.listing import VideoEntry
from pipeline.runs import committed_runs


def read_ledger(output_uri: str, storage_cfg: StorageConfig) -> pa.Table:
    """Ledger rows of committed runs only (a crashed run's files are not in any record)."""
    fs = storage.filesystem(output_uri, storage_cfg)
    ledger_dir = storage.strip_scheme(storage.join(output_uri, schema.LEDGER))
    tables = []
    marker = f"/{schema.LEDGER}/"
    for record in committed_runs(output_uri, storage_cfg):
        for uri in record.get("files", []):
            if marker in uri:  # re-rooted under this output: an index may have been moved
                path = ledger_dir + "/" + uri.rsplit(marker, 1)[1]
                tables.append(pq.read_table(io.BytesIO(fs.cat_file(path))))
    if not tables:
        return schema.LEDGER_SCHEMA.empty_table()
    return pa.concat_tables(tables).select(schema.LEDGER_SCHEMA.names).cast(schema.LEDGER_SCHEMA)


@dataclass(frozen=True)
class Selection:
    todo: list[VideoEntry]
    skipped: int


def select_videos(
    entries: list[VideoEntry], ledger: pa.Table, model_version: str, *, retry_errors: bool = False
) -> Selection:
    """New or changed videos for this model; with `retry_errors`, only last runs' failures."""
    latest: dict[tuple[str, str], str] = {}  # (uri, fingerprint) -> status, for this model
    last_attempt: dict[str, str] = {}  # uri -> status of its newest attempt, for this model
    for row in ledger.to_pylist():  # ledger files come oldest run first
        if row["model_version"] == model_version:
            latest[(row["video_uri"], row["fingerprint"])] = row["status"]
            last_attempt[row["video_uri"]] = row["status"]
    if retry_errors:
        todo = [e for e in entries if last_attempt.get(e.uri) == "error"]
    else:
        todo = [e for e in entries if (e.uri, e.fingerprint) not in latest]
    return Selection(todo=todo, skipped=len(entries) - len(todo))


def ledger_table(
    entries: list[VideoEntry], failed: set[str], model_version: str, run_id: str
) -> pa.Table:
    rows = [
        {
            "video_uri": e.uri,
            "fingerprint": e.fingerprint,
            "model_version": model_version,
            "status": "error" if e.uri in failed else "ok",
            "run_id": run_id,
        }
        for e in entries
    ]
    return pa.Table.from_pylist(rows, schema=schema.LEDGER_SCHEMA)
