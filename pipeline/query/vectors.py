"""Nearest neighbours by cosine similarity: embeddings as one (N, D) float32 matrix of unit rows.

Loading reads only the key, label and embedding columns of the committed files, keeps the newest
row per key (`video_uri`, plus `clip_index` for clips) across runs, and turns the
fixed_size_list column into a matrix without a per-row Python loop. A search is then one
matrix-vector product and an `argpartition`: the same work as a bare NumPy baseline
(benchmarks/query_bench.py measures both).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline import schema, storage
from pipeline.query.catalog import Catalog, Run
from pipeline.query.errors import QueryError

LEVELS = ("video", "clip")
TABLE_OF = {"video": schema.VIDEOS, "clip": schema.CLIPS}
KEYS = {"video": ("video_uri",), "clip": ("video_uri", "clip_index")}
READ_THREADS = 8


@dataclass(frozen=True)
class Part:
    """The rows one committed run holds at one level (key columns, label, embedding)."""

    run: Run
    table: pa.Table


@dataclass(frozen=True)
class EmbeddingIndex:
    """Rows of one model version and their embeddings, L2-normalised: row i <-> matrix[i]."""

    level: str
    model_version: str | None
    rows: pa.Table  # key columns and label
    matrix: np.ndarray  # (N, D) float32, unit rows (all-zero rows stay zero)

    def position(self, video_uri: str, clip_index: int | None = None) -> int | None:
        """The row of a key, or None."""
        hits = np.flatnonzero(_key_mask(self.rows, video_uri, clip_index, self.level))
        return int(hits[0]) if hits.size else None


def read_parts(catalog: Catalog, level: str) -> list[Part]:
    """The level's committed rows, one part per run, newest run first (files read in parallel)."""
    table_name = TABLE_OF[level]
    columns = [*KEYS[level], "label", "embedding"]
    fs = storage.arrow_filesystem(catalog.output_uri, catalog.storage)
    jobs = [
        (run, storage.strip_scheme(uri))
        for run in reversed(catalog.runs)
        for uri in run.files.get(table_name, ())
    ]

    def read(path: str) -> pa.Table:
        try:
            return pq.read_table(path, columns=columns, filesystem=fs)
        except (OSError, pa.ArrowException) as e:
            raise QueryError(
                f"cannot read {storage.redact(storage.with_scheme(path, catalog.output_uri))}: "
                f"{type(e).__name__}: {e}"
            ) from e

    with ThreadPoolExecutor(max(1, min(READ_THREADS, len(jobs)))) as pool:
        tables = list(pool.map(read, [path for _, path in jobs]))
    by_run: dict[str, list[pa.Table]] = {}
    runs: dict[str, Run] = {}
    for (run, _), table in zip(jobs, tables, strict=True):
        by_run.setdefault(run.run_id, []).append(table)
        runs[run.run_id] = run
    return [Part(runs[rid], pa.concat_tables(ts)) for rid, ts in by_run.items()]


def latest_rows(parts: list[Part], level: str) -> list[Part]:
    """Keep the newest row per key: `parts` come newest run first, the first occurrence wins."""
    if len(parts) <= 1:
        return parts
    uris = pa.chunked_array([p.table["video_uri"] for p in parts]).combine_chunks()
    key = pc.dictionary_encode(uris).indices.to_numpy(zero_copy_only=False).astype(np.int64)
    if level == "clip":
        clip = pa.chunked_array([p.table["clip_index"] for p in parts]).to_numpy()
        key = (key << 32) | (clip.astype(np.int64) & 0xFFFFFFFF)
    keep = np.zeros(len(key), dtype=bool)
    keep[np.unique(key, return_index=True)[1]] = True  # index of each key's first occurrence
    out, start = [], 0
    for part in parts:
        n = part.table.num_rows
        mask = keep[start : start + n]
        start += n
        if mask.all():
            out.append(part)
        elif mask.any():
            out.append(Part(part.run, part.table.filter(pa.array(mask))))
    return out


def locate(parts: list[Part], level: str, video_uri: str, clip_index: int | None) -> Part | None:
    """The part holding a key (after latest_rows a key lives in one part only)."""
    for part in parts:
        if _key_mask(part.table, video_uri, clip_index, level).any():
            return part
    return None


def build_index(parts: list[Part], level: str, model_version: str | None) -> EmbeddingIndex:
    """The rows of one model version with an embedding, as a normalised matrix."""
    tables = []
    for part in parts:
        if part.run.model_version != model_version:
            continue
        table = part.table
        if table["embedding"].null_count:  # failed videos have no embedding
            table = table.filter(pc.is_valid(table["embedding"]))
        if table.num_rows:  # (a run where every video failed wrote embeddings of size 0)
            tables.append(table)
    if not tables:
        raise QueryError(f"no {level} embeddings of model {model_version} in the index")
    table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    return EmbeddingIndex(
        level, model_version, table.drop_columns(["embedding"]), unit_rows(table["embedding"])
    )


def unit_rows(column: pa.ChunkedArray) -> np.ndarray:
    """fixed_size_list<float32>[D] (no nulls) -> (N, D) float32 with unit L2 rows.

    Each chunk's values are viewed zero-copy and divided straight into the output: one pass.
    """
    dim = column.type.list_size
    out = np.empty((len(column), dim), dtype=np.float32)
    start = 0
    for chunk in column.chunks:
        n = len(chunk)
        if not n:
            continue
        flat = chunk.values.slice(chunk.offset * dim, n * dim)
        values = flat.to_numpy(zero_copy_only=flat.null_count == 0).reshape(n, dim)
        norms = np.sqrt(np.einsum("ij,ij->i", values, values, dtype=np.float32))
        norms[norms == 0] = 1.0
        np.divide(values, norms[:, None], out=out[start : start + n])
        start += n
    return out


def unit(vector: np.ndarray) -> np.ndarray:
    v = np.asarray(vector, dtype=np.float32).reshape(-1)
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 0 else v


def search(
    index: EmbeddingIndex,
    query: np.ndarray,
    k: int,
    self_row: int | None = None,
    exclude_self: bool = False,
) -> pa.Table:
    """The k rows most similar to `query`, best first: key columns, `score`, `label`.

    `self_row` is the query's own row: it scores exactly 1.0 and ranks first among ties, or is
    left out with `exclude_self`.
    """
    n, dim = index.matrix.shape
    q = unit(query)
    if q.shape[0] != dim:
        raise QueryError(f"query embedding has {q.shape[0]} dimensions, the index {dim}")
    scores = index.matrix @ q  # (N,)
    if self_row is not None:
        scores[self_row] = -np.inf if exclude_self else 1.0
    available = n - (1 if self_row is not None and exclude_self else 0)
    k = max(0, min(k, available))
    top = np.argpartition(scores, n - k)[n - k :] if 0 < k < n else np.arange(n)[:k]
    top_scores = np.clip(scores[top], -1.0, 1.0)
    is_self = top == self_row if self_row is not None else np.zeros(len(top), dtype=bool)
    order = np.lexsort((top, ~is_self, -top_scores))  # score desc, the query first among ties
    top, top_scores = top[order], top_scores[order]
    rows = index.rows.take(pa.array(top))
    columns = {name: rows[name] for name in KEYS[index.level]}
    columns["score"] = pa.array(np.round(top_scores.astype(np.float64), 6))
    columns["label"] = rows["label"]
    return pa.table(columns)


def _key_mask(table: pa.Table, video_uri: str, clip_index: int | None, level: str) -> np.ndarray:
    mask = pc.equal(table["video_uri"], video_uri)
    if level == "clip" and clip_index is not None:
        mask = pc.and_(mask, pc.equal(table["clip_index"], clip_index))
    return pc.fill_null(mask, False).to_numpy(zero_copy_only=False).astype(bool)
