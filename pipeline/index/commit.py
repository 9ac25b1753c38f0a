"""Stage 4, write and commit: staged Parquet files become visible in one repeatable step.

Protocol (docs/operations.md):
1. every file of a run is written under `_staging/<run_id>/<table>/`;
2. `prepare` writes `_staging/<run_id>/_commit.json`: the run record and the list of moves
   (staged file -> `<table>/run_date=<date>/<run_id>-<n>.parquet`); from here on the run rolls
   forward, never back;
3. `finish` moves (local) or copies (S3) each file that is not in place yet, writes
   `_runs/<run_id>.json` (the commit point: readers use only run_ids with a record), and removes
   the staging folder.
Each step can be repeated. `recover` finishes prepared runs that crashed and deletes staging
folders of runs that crashed before `prepare`. The plan and the record are written whole or not
at all (storage.write_whole): a crash mid-write never leaves half a JSON file for a reader.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import schema, storage
from pipeline.ann import FRAMES
from pipeline.ann import SUFFIX as SEARCH_SUFFIX
from pipeline.config import StorageConfig
from pipeline.faults import crash_point
from pipeline.runs import unwritable

log = logging.getLogger("reelay.output")

TABLES = (schema.VIDEOS, schema.CLIPS, schema.ERRORS, schema.SHOTS, schema.LEDGER)
SEARCHED = (schema.VIDEOS, schema.CLIPS)  # tables with nearest-neighbour graphs (pipeline.ann)
SEARCH_FOLDERS = (*SEARCHED, FRAMES)  # under _search/: the graphs, and the frame-hash tables
COMMIT_PLAN = "_commit.json"


def parquet_args() -> dict:
    """Writer options: zstd, dictionaries only for string columns."""
    return {"compression": "zstd", "use_dictionary": schema.DICTIONARY_COLUMNS}


def with_version(table: pa.Table) -> pa.Table:
    """`table` with the schema version in its footer metadata (schema.VERSION_METADATA)."""
    return table.replace_schema_metadata(
        {**(table.schema.metadata or {}), **schema.VERSION_METADATA}
    )


def _parent(path: str) -> str:
    return path.rsplit("/", 1)[0]


@dataclass(frozen=True)
class RunOutput:
    """Paths of one run under the output URI, and its commit."""

    output_uri: str
    run_id: str
    run_date: str
    storage: StorageConfig

    @property
    def fs(self):
        return storage.filesystem(self.output_uri, self.storage)

    def _path(self, *parts: str) -> str:
        return storage.strip_scheme(storage.join(self.output_uri, *parts))

    def staging(self, table: str = "") -> str:
        """The staging folder of a table (a path for the fsspec / pyarrow filesystem)."""
        return self._path(schema.STAGING, self.run_id, table)

    def final_name(self, table: str, n: int) -> str:
        if table.startswith(schema.SEARCH):  # `_search/<table>`: graphs beside no partition
            return self._path(table, f"{self.run_id}-{n:05d}{SEARCH_SUFFIX}")
        if table == schema.LEDGER:
            return self._path(table, f"{self.run_id}-{n:05d}.parquet")
        return self._path(
            table, f"{schema.PARTITION_KEY}={self.run_date}", f"{self.run_id}-{n:05d}.parquet"
        )

    def record_path(self) -> str:
        return self._path(schema.RUNS, f"{self.run_id}.json")

    def staged_files(self, table: str, suffix: str = ".parquet") -> list[str]:
        """A table's staged files in commit order (their final names are numbered so)."""
        folder = self.staging(table)
        found = self.fs.find(folder) if self.fs.exists(folder) else []
        return sorted(p for p in found if p.endswith(suffix))

    def read_staged(self, paths: list[str]) -> list[pa.Table]:
        """Small staged tables read back whole (the sums, the units' summaries), the files
        fetched concurrently (object stores)."""
        contents = self.fs.cat(list(paths))
        return [pq.read_table(pa.BufferReader(contents[p])) for p in paths]

    def write_small_table(self, table_name: str, table: pa.Table, part: str) -> str:
        """Write a table that fits in memory into staging (the driver's errors, videos and
        ledger; a staging task's batch of clips); returns its path."""
        path = f"{self.staging(table_name)}/{part}.parquet"
        self.fs.makedirs(_parent(path), exist_ok=True)
        with self.fs.open(path, "wb") as f:
            pq.write_table(with_version(table), f, **parquet_args())
        return path

    def write_table_parts(self, table_name: str, table: pa.Table, rows_per_file: int = 100_000):
        """Write a driver-side table into staging, in files of at most `rows_per_file` rows."""
        for i, start in enumerate(range(0, max(table.num_rows, 1), rows_per_file)):
            self.write_small_table(table_name, table.slice(start, rows_per_file), f"part-{i:05d}")

    def clear_staging(self) -> None:
        fs = self.fs
        if fs.exists(self.staging()):
            fs.rm(self.staging(), recursive=True)
        parent = self._path(schema.STAGING)
        if fs.exists(parent) and not fs.ls(parent):
            fs.rm(parent, recursive=True)

    def check_writable(self) -> None:
        """Fail fast, before any work, when the output cannot be written."""
        probe = self._path(schema.STAGING, f".write-check-{self.run_id}")
        try:
            self.fs.makedirs(_parent(probe), exist_ok=True)
            self.fs.pipe_file(probe, b"ok")
            self.fs.rm(probe)
        except OSError as e:  # PermissionError, FileNotFoundError (a missing bucket), ...
            raise unwritable(self.output_uri, e) from e

    def is_committed(self) -> bool:
        return self.fs.exists(self.record_path())

    def prepare(self, record: dict) -> dict:
        """Freeze the run: its record and the moves that will publish it."""
        fs = self.fs
        moves = []
        staged = [(t, ".parquet") for t in TABLES]
        staged += [(f"{schema.SEARCH}/{t}", SEARCH_SUFFIX) for t in SEARCH_FOLDERS]
        for table, suffix in staged:
            moves += [
                (src, self.final_name(table, i))
                for i, src in enumerate(self.staged_files(table, suffix))
            ]
        files = [storage.with_scheme(dst, self.output_uri) for _, dst in moves]
        plan = {"record": {**record, "files": files}, "moves": moves}
        data = json.dumps(plan, indent=1, default=str).encode()  # recover() reads it
        storage.write_whole(fs, f"{self.staging()}/{COMMIT_PLAN}", data)
        return plan

    def finish(self, plan: dict) -> None:
        """Publish a prepared run; safe to repeat after a crash at any point."""
        fs = self.fs
        remote = storage.is_remote(self.output_uri)
        for i, (src, dst) in enumerate(plan["moves"]):
            if fs.exists(src):
                fs.makedirs(_parent(dst), exist_ok=True)
                if remote:  # S3 has no rename: copy; staged copies go with the folder
                    fs.copy(src, dst)
                else:
                    fs.mv(src, dst)
            elif not fs.exists(dst):
                raise RuntimeError(
                    f"commit of run {self.run_id}: {src} and {dst} are both "
                    "missing; the staging area was altered"
                )
            if i == 0:
                crash_point("commit_first_move")
        data = json.dumps(plan["record"], indent=2, default=str).encode()
        storage.write_whole(fs, self.record_path(), data)  # the commit point
        crash_point("commit_before_cleanup")
        self.clear_staging()

    def commit(self, record: dict) -> list[str]:
        plan = self.prepare(record)
        crash_point("commit_prepared")
        self.finish(plan)
        return plan["record"]["files"]


def recover(output_uri: str, storage_cfg: StorageConfig) -> list[str]:
    """Settle runs that crashed: finish prepared ones, delete the rest. Returns what it did.

    Runs with one writer per output at a time: the caller holds the output's writer lease
    (pipeline.writer_lease), so every other staging folder belongs to a dead run.
    """
    fs = storage.filesystem(output_uri, storage_cfg)
    root = storage.strip_scheme(storage.join(output_uri, schema.STAGING))
    if not fs.exists(root):
        return []
    actions = []
    for folder in sorted(fs.ls(root, detail=False)):
        run_id = folder.rstrip("/").rsplit("/", 1)[-1]
        if run_id.startswith("."):  # another run's write check (run ids never start so)
            continue
        run = RunOutput(output_uri, run_id, "", storage_cfg)
        plan_path = f"{run.staging()}/{COMMIT_PLAN}"
        if fs.exists(plan_path):
            run.finish(json.loads(fs.cat_file(plan_path)))
            actions.append(f"finished the commit of crashed run {run_id}")
        else:
            fs.rm(run.staging(), recursive=True)
            actions.append(f"removed the uncommitted files of crashed run {run_id}")
    for action in actions:
        log.warning(action)
    if fs.exists(root) and not fs.ls(root):
        fs.rm(root, recursive=True)
    return actions
