"""The ledger: which (video, fingerprint, model_version) each committed run indexed.

Written with every run under `_ledger/` and committed with it, so it can never disagree with
the tables. Incremental runs read it to skip what is already done.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline import schema, storage
from pipeline.config import StorageConfig
from pipeline.listing import VideoEntry
from pipeline.runs import committed_runs


def read_ledger(
    output_uri: str, storage_cfg: StorageConfig, records: list[dict] | None = None
) -> pa.Table:
    """Ledger rows of committed runs only (a crashed run's files are not in any record).
    `records`: the committed run records, when the caller has read them."""
    fs = storage.filesystem(output_uri, storage_cfg)
    ledger_dir = storage.strip_scheme(storage.join(output_uri, schema.LEDGER))
    tables = []
    marker = f"/{schema.LEDGER}/"
    if records is None:
        records = committed_runs(output_uri, storage_cfg)
    for record in records:
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
    """New or changed videos for this model; with `retry_errors`, only those whose newest
    attempt for this model failed or was partial. In listing order.

    Arrow joins, not Python sets: a nightly run over a million listed videos selects in
    about a second and never holds the ledger as Python objects."""
    mine = ledger.filter(pc.equal(ledger["model_version"], model_version))
    listed = pa.table(
        {
            "video_uri": pa.array([e.uri for e in entries], pa.string()),
            "fingerprint": pa.array([e.fingerprint for e in entries], pa.string()),
            "position": pa.array(np.arange(len(entries), dtype=np.int64)),
        }
    )
    if retry_errors:  # ledger files come oldest run first: the highest row is the newest
        numbered = mine.append_column("row", pa.array(np.arange(mine.num_rows, dtype=np.int64)))
        newest = mine.take(numbered.group_by("video_uri").aggregate([("row", "max")])["row_max"])
        retry = pc.is_in(newest["status"], pa.array(["error", "partial"]))
        failed = newest.filter(retry).select(["video_uri"])
        todo = listed.join(failed, "video_uri", join_type="left semi")
    else:
        done = mine.select(["video_uri", "fingerprint"])
        todo = listed.join(done, ["video_uri", "fingerprint"], join_type="left anti")
    keep = np.sort(todo["position"].to_numpy())
    return Selection(todo=[entries[i] for i in keep], skipped=len(entries) - len(keep))


def ledger_table(
    entries: list[VideoEntry], failed: set[str], partial: set[str], model_version: str, run_id: str
) -> pa.Table:
    """The run's videos with their status: `error` (nothing indexed), `partial` or `ok`."""
    rows = [
        {
            "video_uri": e.uri,
            "fingerprint": e.fingerprint,
            "model_version": model_version,
            "status": "error" if e.uri in failed else "partial" if e.uri in partial else "ok",
            "run_id": run_id,
        }
        for e in entries
    ]
    return pa.Table.from_pylist(rows, schema=schema.LEDGER_SCHEMA)
