"""Stage 4c of the index job: nearest-neighbour graphs over the run's own rows (pipeline.ann).

The staged videos and clips files are read in commit order and cut into shards of at most
`ann.SHARD_ROWS` rows (a file is never split); each shard's graph (and for clips, the table of
their frame hashes, `_search/frames/`) is built by one Ray task and staged under
`_staging/<run_id>/_search/`, so the commit publishes it with the tables. Ids are row
positions in the run's files, so neither needs a key column of its own.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray

from pipeline import ann, schema, storage
from pipeline.index.commit import SEARCHED, RunOutput
from pipeline.video.fingerprint import informative

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
    """One shard's graph into staging, and for clips its frame-hash table; returns the rows
    the graph holds (rows without an embedding, the failed videos, are left out: their
    positions are never found)."""
    fs = storage.arrow_filesystem(out.output_uri, out.storage)
    columns = ["embedding", *(["frame_hashes"] if table == schema.CLIPS else [])]
    read = pq.read_table(paths, columns=columns, filesystem=fs)
    if table == schema.CLIPS:
        stage(out, ann.FRAMES, n, frame_table(read["frame_hashes"], first_row))
    column = read["embedding"]
    valid = pc.is_valid(column)
    positions = first_row + valid.to_numpy(zero_copy_only=False).nonzero()[0]
    if not len(positions):
        return 0
    matrix = ann.unit_rows(column.filter(valid))
    stage(out, table, n, ann.build(matrix, positions))
    return len(positions)


def frame_table(column: pa.ChunkedArray, first_row: int) -> bytes:
    """The clips' whole-frame hashes, each known by its clip's row position; hashes without
    structure (fingerprint.NO_HASH, far from half the bits set) left out, each clip's
    distinct hashes once."""
    lengths = pc.fill_null(pc.list_value_length(column), 0).to_numpy()
    pairs = pc.list_flatten(column.combine_chunks()) if len(column) else pa.array([])
    whole = (
        pc.list_flatten(pairs).to_numpy(zero_copy_only=False).reshape(-1, 2)[:, 0]
        if len(pairs) else np.zeros(0, np.int64)
    ).astype(np.int64).view(np.uint64)  # fmt: skip
    rows = first_row + np.repeat(np.arange(len(lengths)), lengths)
    keep = informative(whole)
    keys = np.unique(np.stack([rows[keep], whole[keep].view(np.int64)], axis=1), axis=0)
    return ann.build_hash_table(keys[:, 1].view(np.uint64), keys[:, 0])


def stage(out: RunOutput, folder: str, n: int, data: bytes) -> None:
    path = f"{out.staging(f'{schema.SEARCH}/{folder}')}/{n:05d}{ann.SUFFIX}"
    out.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    storage.write_whole(out.fs, path, data)


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
