"""The committed runs under an output URI, as the query job reads them (pipeline.runs)."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline import schema, storage
from pipeline.config import StorageConfig
from pipeline.query.errors import QueryError
from pipeline.runs import TABLES, Run, RunRecordError, read_runs

__all__ = ["TABLES", "Catalog", "Run", "load_catalog"]


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
    try:
        fs.invalidate_cache(root)
        if not fs.isdir(root):
            raise QueryError(f"no index at {where}: the folder does not exist")
        runs = read_runs(output_uri, storage_cfg)
    except RunRecordError as e:
        raise QueryError(str(e)) from e
    except OSError as e:
        raise QueryError(f"cannot read the index at {where}: {type(e).__name__}: {e}") from e
    if not runs:
        raise QueryError(
            f"no index at {where}: no committed run (no {schema.RUNS}/*.json); "
            "point at the --output of jobs/index.py"
        )
    return Catalog(output_uri, storage_cfg, tuple(runs))
