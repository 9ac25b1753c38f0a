"""An output's runs: their ids, and the committed ones every reader sees.

A run is visible once `_runs/<run_id>.json` exists (the commit point, pipeline/index/commit.py).
Its record lists the files the commit made visible; those, and only those, are read. Files of a
run without a record (a crash mid-commit, a stray copy) and everything under `_staging/` stay
invisible. The index job's ledger, the query catalog, the run report and training's feature
source all read committed runs through `read_runs`.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pipeline import schema, storage
from pipeline.config import OutputError, StorageConfig

TABLES = (schema.VIDEOS, schema.CLIPS, schema.ERRORS, schema.SHOTS)  # what readers query
_OLDEST = "0000"  # sorts before any ISO timestamp


def unwritable(output_uri: str, error: OSError) -> OutputError:
    """The one-line error of a write to `output_uri` that the storage refused."""
    return OutputError(
        f"cannot write to {storage.redact(output_uri)}: {storage.redact(str(error))}; "
        "check that the bucket exists and the credentials may write there"
    )


def new_run_id(now: datetime) -> str:
    """A run's id: its UTC start time, then a random suffix (two runs in one second differ)."""
    return now.strftime("%Y%m%dT%H%M%SZ-") + secrets.token_hex(3)


class RunRecordError(ValueError):
    """A run record that cannot be read as JSON: the message names it and what to do."""


@dataclass(frozen=True)
class Run:
    """One committed run: its record and the files it made visible, per table."""

    run_id: str
    record: dict
    files: dict[str, tuple[str, ...]]  # table -> URIs under the output URI being read
    graphs: dict[str, tuple[str, ...]] = field(default_factory=dict)  # table -> its ANN files

    @property
    def model_version(self) -> str | None:
        return self.record.get("model_version")

    @property
    def audio_dim(self) -> int:
        """How many of the embedding's last values are the sound's (0: a model of pictures,
        or a run recorded before sound)."""
        return int(self.record.get("audio_dim") or 0)

    @property
    def commit_order(self) -> tuple[str, str, str]:
        """Sort key: when the run ended (its commit), then started, then its id."""
        return (
            _iso(self.record.get("ended_at")),
            _iso(self.record.get("started_at")),
            self.run_id,
        )


def read_runs(output_uri: str, storage_cfg: StorageConfig = storage.NO_OPTIONS) -> list[Run]:
    """The committed runs under `output_uri`, oldest commit first; none when nothing is
    committed there. Raises RunRecordError for a record that is not JSON, OSError where the
    storage refuses."""
    fs = storage.filesystem(output_uri, storage_cfg)
    root = storage.strip_scheme(output_uri).rstrip("/")
    runs_dir = f"{root}/{schema.RUNS}"
    fs.invalidate_cache(root)  # a rerun in the same process must see new commits
    if not fs.isdir(runs_dir):
        return []
    paths = sorted(p for p in fs.glob(f"{runs_dir}/*.json") if not p.endswith("/"))
    contents = fs.cat(paths) if paths else {}
    runs = []
    for path in paths:
        try:
            record = json.loads(contents[path])
        except (ValueError, KeyError) as e:
            raise RunRecordError(
                f"run record {storage.redact(storage.with_scheme(path, output_uri))} is not "
                f"valid JSON ({e}); fix or remove it"
            ) from e
        run_id = record.get("run_id") or path.rsplit("/", 1)[-1].removesuffix(".json")
        files = _run_files(fs, root, output_uri, run_id, record)
        runs.append(Run(run_id, record, files, _run_graphs(output_uri, record)))
    return sorted(runs, key=lambda r: r.commit_order)


def committed_runs(output_uri: str, storage_cfg: StorageConfig = storage.NO_OPTIONS) -> list[dict]:
    """The committed run records under `output_uri`, oldest commit first."""
    return [run.record for run in read_runs(output_uri, storage_cfg)]


def _run_files(fs, root: str, output_uri: str, run_id: str, record: dict) -> dict:
    """The record's files, re-rooted under `output_uri` (an index may have been copied or
    moved since it was written); records without a file list fall back to the naming rule
    `<table>/run_date=<date>/<run_id>-NNNNN.parquet`."""
    files: dict[str, list[str]] = {t: [] for t in TABLES}
    if isinstance(record.get("files"), list):
        for (folder, _, name), uri in _listed(output_uri, record):
            if folder in files and name.endswith(".parquet"):
                files[folder].append(uri)
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


def _run_graphs(output_uri: str, record: dict) -> dict[str, tuple[str, ...]]:
    """The record's nearest-neighbour graphs per table (`_search/<table>/<run_id>-N.faiss`),
    re-rooted under `output_uri`; none for runs committed before the search stage."""
    graphs: dict[str, list[str]] = {}
    for (folder, table, name), uri in _listed(output_uri, record):
        if folder == schema.SEARCH and name.endswith(".faiss"):
            graphs.setdefault(table, []).append(uri)
    return {t: tuple(v) for t, v in graphs.items()}


def _listed(output_uri: str, record: dict) -> list[tuple[tuple[str, str, str], str]]:
    """Each file the record lists: its last three path parts, and its URI re-rooted under
    `output_uri` (an index may have been copied or moved since it was written)."""
    listed = []
    for uri in record.get("files") or ():
        parts = str(uri).rstrip("/").split("/")
        if len(parts) >= 3:
            listed.append(
                ((parts[-3], parts[-2], parts[-1]), storage.join(output_uri, *parts[-3:]))
            )
    return listed


def _iso(value) -> str:
    """An ISO timestamp normalised to UTC for sorting ('' and junk sort first)."""
    if not value:
        return _OLDEST
    try:
        return datetime.fromisoformat(str(value)).astimezone(UTC).isoformat()
    except ValueError:
        return _OLDEST


class Stopwatch:
    """Seconds per stage of a run, in order (its record's `timings_s`)."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = round(now - self._last, 3)
        self._last = now
