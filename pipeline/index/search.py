"""Stage 4c of the index job: nearest-neighbour graphs over the run's own rows (pipeline.ann).

The staged videos and clips files are read in commit order and cut into shards of at most
`ann.SHARD_ROWS` rows (a file is never split); each shard's graph is built by one Ray task and
staged under `_staging/<run_id>/_search/<table>/`, so the commit publishes it with the
tables. Ids are row positions in the run's files, so a graph needs no key column of its own.
"""

from __future__ import annotations

import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray

from pipeline import ann, schema, storage
from pipeline.index.commit import SEARCHED, RunOutput

DRIVER_ROWS = 20_000  # up to this many rows in all, the driver builds the graphs (~1 s)


def shards(row_counts: list[int], max_rows: int) -> list[tuple[int, int, int]]:
    """Consecutive files into shards: (first file, end file, first row) each, at most
    `max_rows` rows per shard unless one file alone holds more."""
    out, first_file, first_row, rows, position = [], 0, 0, 0, 0
    for i, n in enumerate(row_counts):
        if rows and rows + n > max_rows:
            out.append((first_file, i, first_row))
            first_file, first_row, rows = i, position, 0
        rows += n
        position += n
    if rows:
        out.append((first_file, len(row_counts), first_row))
    return out


def build_shard(out: RunOutput, table: str, paths: list[str], first_row: int, n: int) -> int:
    """One shard's graph into staging; returns the rows it holds (rows without an embedding,
    the failed videos, are left out: their positions are never found)."""
    fs = storage.arrow_filesystem(out.output_uri, out.storage)
    column = pq.read_table(paths, columns=["embedding"], filesystem=fs)["embedding"]
    valid = pc.is_valid(column).to_numpy(zero_copy_only=False)
    positions = first_row + valid.nonzero()[0]
    if not len(positions):
        return 0
    matrix = ann.unit_rows(column.filter(pc.is_valid(column)))
    data = ann.build(matrix, positions)
    path = f"{out.staging(f'{schema.SEARCH}/{table}')}/{n:05d}{ann.SUFFIX}"
    out.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    storage.write_whole(out.fs, path, data)
    return len(positions)


def stage_graphs(out: RunOutput) -> dict[str, int]:
    """Stage 4c: every searched table's graphs into staging, one Ray task per shard (on the
    driver for small runs); returns the rows each table's graphs hold."""
    fs = storage.arrow_filesystem(out.output_uri, out.storage)
    jobs, total = [], 0
    for table in SEARCHED:
        files = out.staged_files(table)
        counts = [pq.ParquetFile(fs.open_input_file(p)).metadata.num_rows for p in files]
        total += sum(counts)
        for n, (a, b, first_row) in enumerate(shards(counts, ann.SHARD_ROWS)):
            jobs.append((out, table, files[a:b], first_row, n))
    rows = dict.fromkeys(SEARCHED, 0)
    if total <= DRIVER_ROWS:  # a task costs more than such a graph
        built = [build_shard(*job) for job in jobs]
    else:
        build = ray.remote(num_cpus=1)(build_shard)
        built = ray.get([build.remote(*job) for job in jobs])
    for job, n in zip(jobs, built, strict=True):
        rows[job[1]] += n
    return rows
