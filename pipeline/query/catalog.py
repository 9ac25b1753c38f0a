"""Committed runs and their files: what a reader may see under an output URI.

A run is visible once `_runs/<run_id>.json` exists (pipeline/output.py). Its record lists the
files the commit made visible; those, and only those, are read. Files of a run without a record
(a crash mid-commit, a stray copy) and everything under `_staging/` stay invisible.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from pipeline import schema, storage
from pipeline.config import StorageConfig
from pipeline.query.errors import QueryError

TABLES = (schema.VIDEOS, schema.CLIPS, schema.ERRORS)  # what readers query (not _ledger)
_OLDEST = "0000"  # sorts before any ISO timestamp


@dataclass(frozen=True)
class Run:
    """One committed run: its record and the files it made visible, per table."""

    run_id: str
    record: dict
    files: dict[str, tuple[str, ...]]  # table -> URIs under the output URI being read

    @property
    def model_version(self) -> str | None:
        return self.record.get("model_version")

    @property
    def commit_order(self) -> tuple[str, str, str]:
        """Sort key: when the run ended (its commit), then started, then its id."""
        return (
            _iso(self.record.get("ended_at")),
            _iso(self.record.get("started_at")),
            self.run_id,
        )


@dataclass(frozen=True)
class Catalog:
    """The committed runs under an output URI, oldest commit first."""

    output_uri: str
    storage: StorageConfig
    runs: tuple[Run, ...]

    @property
    def is_remote(self) -> bool:
        return storage.is_remote(self.output_uri)

    def filesystem(self):
        return storage.filesystem(self.output_uri, self.storage)

    def files(self, table: str) -> list[str]:
        """Committed files of one table (URIs), oldest run first."""
        return [uri for run in self.runs for uri in run.files.get(table, ())]

    def records(self) -> list[dict]:
        return [run.record for run in self.runs]

    def latest(self, table: str | None = None) -> Run:
        """The most recently committed run (that wrote files to `table`, when given)."""
        for run in reversed(self.runs):
            if table is None or run.files.get(table):
                return run
        raise QueryError(
            f"no committed run under {storage.redact(self.output_uri)} wrote any {table} rows"
        )


def load_catalog(output_uri: str, storage_cfg: StorageConfig = storage.NO_OPTIONS) -> Catalog:
    """Read every committed run record under `output_uri`; a clear error when there is no index."""
    where = storage.redact(output_uri)
    try:
        fs = storage.filesystem(output_uri, storage_cfg)
    except ValueError as e:
        raise QueryError(str(e)) from e
    root = storage.strip_scheme(output_uri).rstrip("/")
    if not storage.is_remote(output_uri):
        output_uri = root  # absolute: the views must not depend on the working directory
    runs_dir = f"{root}/{schema.RUNS}"
    try:
        fs.invalidate_cache(root)
        if not fs.isdir(root):
            raise QueryError(f"no index at {where}: the folder does not exist")
        paths = sorted(p for p in fs.glob(f"{runs_dir}/*.json") if not p.endswith("/"))
        contents = fs.cat(paths) if paths else {}
    except QueryError:
        raise
    except (OSError, PermissionError) as e:
        raise QueryError(f"cannot read the index at {where}: {type(e).__name__}: {e}") from e
    if not paths:
        raise QueryError(
            f"no index at {where}: no committed run (no {schema.RUNS}/*.json); "
            "point at the --output of jobs/index.py"
        )
    runs = []
    for path in paths:
        try:
            record = json.loads(contents[path])
        except (ValueError, KeyError) as e:
            raise QueryError(
                f"run record {storage.redact(storage.with_scheme(path, output_uri))} is not "
                f"valid JSON ({e}); fix or remove it"
            ) from e
        run_id = record.get("run_id") or path.rsplit("/", 1)[-1].removesuffix(".json")
        runs.append(Run(run_id, record, _run_files(fs, root, output_uri, run_id, record)))
    runs.sort(key=lambda r: r.commit_order)
    return Catalog(output_uri, storage_cfg, tuple(runs))


def _run_files(fs, root: str, output_uri: str, run_id: str, record: dict) -> dict:
    """The record's files, re-rooted under `output_uri` (an index may have been copied or
    moved since it was written); records without a file list fall back to the naming rule
    `<table>/run_date=<date>/<run_id>-NNNNN.parquet`."""
    files: dict[str, list[str]] = {t: [] for t in TABLES}
    if isinstance(record.get("files"), list):
        for uri in record["files"]:
            parts = str(uri).rstrip("/").split("/")
            if len(parts) >= 3 and parts[-3] in files and parts[-1].endswith(".parquet"):
                files[parts[-3]].append(storage.join(output_uri, *parts[-3:]))
        return {t: tuple(v) for t, v in files.items()}
    own = re.compile(rf"^{re.escape(run_id)}-\d+\.parquet$")
    for table in TABLES:
        found = fs.glob(f"{root}/{table}/{schema.PARTITION_KEY}=*/{run_id}-*.parquet")
        files[table] = [
            storage.with_scheme(p, output_uri)
            for p in sorted(found)
            if own.match(p.rsplit("/", 1)[-1])
        ]
    return {t: tuple(v) for t, v in files.items()}


def _iso(value) -> str:
    """An ISO timestamp normalised to UTC for sorting ('' and junk sort first)."""
    if not value:
        return _OLDEST
    try:
        return datetime.fromisoformat(str(value)).astimezone(UTC).isoformat()
    except ValueError:
        return _OLDEST
