"""Stage 4, write and commit: staged Parquet files become visible in one repeatable step.

Protocol (docs/operations.md): every file is first written under `_staging/<run_id>/<table>/`.
The commit writes a plan `_staging/<run_id>/_commit.json` mapping each staged file to its final
name `<table>/run_date=<date>/<run_id>-<n>.parquet`, moves (local) or copies (S3) the files, then
writes `_runs/<run_id>.json`, the commit record, and removes the staging folder. Each step can be
repeated: a rerun of the commit replays the same plan, and readers use only run_ids that have a
commit record.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import schema, storage
from pipeline.config import StorageConfig

TABLES = (schema.VIDEOS, schema.CLIPS, schema.ERRORS)


def parquet_args() -> dict:
    """Writer options: zstd, dictionaries only for string columns, schema version in metadata."""
    return {"compression": "zstd", "use_dictionary": schema.DICTIONARY_COLUMNS}


def with_version(table: pa.Table) -> pa.Table:
    meta = dict(table.schema.metadata or {})
    meta[b"reelay.schema_version"] = str(schema.SCHEMA_VERSION).encode()
    return table.replace_schema_metadata(meta)


@dataclass(frozen=True)
class RunOutput:
    """Paths of one run under the output URI."""

    output_uri: str
    run_id: str
    run_date: str
    storage: StorageConfig

    @property
    def fs(self):
        return storage.filesystem(self.output_uri, self.storage)

    def staging(self, table: str = "") -> str:
        return storage.join(self.output_uri, schema.STAGING, self.run_id, table)

    def final_dir(self, table: str) -> str:
        return storage.join(self.output_uri, table, f"{schema.PARTITION_KEY}={self.run_date}")

    def record_uri(self) -> str:
        return storage.join(self.output_uri, schema.RUNS, f"{self.run_id}.json")

    def write_small_table(self, table_name: str, table: pa.Table, part: str) -> None:
        """Write a driver-side table (errors, failed videos) into staging."""
        path = storage.strip_scheme(storage.join(self.staging(table_name), f"{part}.parquet"))
        self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        with self.fs.open(path, "wb") as f:
            pq.write_table(with_version(table), f, **parquet_args())

    def clear_staging(self) -> None:
        path = storage.strip_scheme(self.staging())
        if self.fs.exists(path):
            self.fs.rm(path, recursive=True)
        parent = storage.strip_scheme(storage.join(self.output_uri, schema.STAGING))
        if self.fs.exists(parent) and not self.fs.ls(parent):
            self.fs.rm(parent, recursive=True)

    def is_committed(self) -> bool:
        return self.fs.exists(storage.strip_scheme(self.record_uri()))

    def commit(self, record: dict) -> list[str]:
        """Make the staged files visible, then write the run record. Safe to repeat."""
        fs = self.fs
        plan_path = storage.strip_scheme(storage.join(self.staging(), "_commit.json"))
        if fs.exists(plan_path):
            plan = json.loads(fs.cat_file(plan_path))
        else:
            plan = self._plan_moves(fs)
            with fs.open(plan_path, "wb") as f:
                f.write(json.dumps(plan, indent=1).encode())
        remote = storage.is_remote(self.output_uri)
        for src, dst in plan:
            if fs.exists(src):
                fs.makedirs(dst.rsplit("/", 1)[0], exist_ok=True)
                if remote:  # S3 has no rename: copy, the staged copy goes with the folder
                    fs.copy(src, dst)
                else:
                    fs.mv(src, dst)
            elif not fs.exists(dst):
                raise RuntimeError(
                    f"commit of run {self.run_id}: {src} and {dst} are both "
                    "missing; the staging area was altered, rerun the job"
                )
        record = {**record, "files": [storage.with_scheme(d, self.output_uri) for _, d in plan]}
        record_path = storage.strip_scheme(self.record_uri())
        fs.makedirs(record_path.rsplit("/", 1)[0], exist_ok=True)
        with fs.open(record_path, "wb") as f:
            f.write(json.dumps(record, indent=2, default=str).encode())
        self.clear_staging()
        return record["files"]

    def _plan_moves(self, fs) -> list[tuple[str, str]]:
        moves = []
        for table in TABLES:
            src_dir = storage.strip_scheme(self.staging(table))
            files = (
                sorted(p for p in fs.find(src_dir) if p.endswith(".parquet"))
                if fs.exists(src_dir)
                else []
            )
            dst_dir = storage.strip_scheme(self.final_dir(table))
            moves += [
                (src, f"{dst_dir}/{self.run_id}-{i:05d}.parquet") for i, src in enumerate(files)
            ]
        return moves
