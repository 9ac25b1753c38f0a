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
from pipeline.aggregate import list_matrix
from pipeline.ann import unit_rows
from pipeline.query.catalog import Catalog, Run
from pipeline.query.duplicates import hashes_by_video
from pipeline.query.errors import QueryError

LEVELS = ("video", "clip")
# what --similar ranks by: the whole embedding, or its picture or sound part (a model that
# hears lays its embedding out [picture ; sound], the sound's part `audio_dim` wide)
BY = ("both", "picture", "sound")
TABLE_OF = {"video": schema.VIDEOS, "clip": schema.CLIPS}
KEYS = {"video": ("video_uri",), "clip": ("video_uri", "clip_index")}
READ_THREADS = 8
POSITION = "_position"  # a row's place in its run's files: its id in the run's graphs


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
        hits = np.flatnonzero(key_mask(self.rows, video_uri, clip_index, self.level))
        return int(hits[0]) if hits.size else None


def read_parts(catalog: Catalog, level: str, embeddings: bool = True) -> list[Part]:
    """The level's committed rows, one part per run, newest run first (files read in parallel):
    key columns, label, `_position` (the row's place in its run's files, the id in the run's
    graphs) and, with `embeddings`, the embedding."""
    columns = [*KEYS[level], "label", *(["embedding"] if embeddings else [])]
    runs = list(reversed(catalog.runs))
    jobs = [(run, uri) for run in runs for uri in run.files.get(TABLE_OF[level], ())]
    tables = _read_files(catalog, [uri for _, uri in jobs], columns)
    by_run: dict[str, list[pa.Table]] = {}
    for (run, _), table in zip(jobs, tables, strict=True):
        by_run.setdefault(run.run_id, []).append(table)
    return [Part(run, _numbered(by_run[run.run_id])) for run in runs if run.run_id in by_run]


def read_run(catalog: Catalog, run: Run, level: str) -> pa.Table:
    """One run's rows at a level with their embeddings, numbered as read_parts numbers them."""
    columns = [*KEYS[level], "label", "embedding"]
    return _numbered(_read_files(catalog, list(run.files.get(TABLE_OF[level], ())), columns))


@dataclass(frozen=True)
class FrameHashes:
    """Each video's frame hashes ((T, 2) uint64: whole frame, centre) in frame order, from the
    clips of the newest run that indexed it; per run, the video each clip row stands for (None
    where a newer run has the video: the row position is the id in the run's frame-hash
    tables); and how many videos have clips without hashes (indexed before they were stored)."""

    hashes: dict[str, np.ndarray]
    owners: dict[str, list[str | None]]
    unhashed: int


def frame_hashes(catalog: Catalog) -> FrameHashes:
    """The committed clips' frame hashes, each sampled frame once (clips overlap and pad)."""
    runs = list(reversed(catalog.runs))
    jobs = [(run, uri) for run in runs for uri in run.files.get(schema.CLIPS, ())]
    columns = ["video_uri", "frame_indices", "frame_hashes"]
    fs = storage.arrow_filesystem(catalog.output_uri, catalog.storage)

    def read(uri: str) -> pa.Table:
        path = storage.strip_scheme(uri)
        names = pq.read_schema(path, filesystem=fs).names
        return pq.read_table(path, columns=[c for c in columns if c in names], filesystem=fs)

    with ThreadPoolExecutor(max(1, min(READ_THREADS, len(jobs)))) as pool:
        tables = list(pool.map(read, [uri for _, uri in jobs]))
    newest: dict[str, str] = {}  # video -> the run whose clips stand for it
    for (run, _), table in zip(jobs, tables, strict=True):
        for uri in pc.unique(table["video_uri"]).to_pylist():
            newest.setdefault(uri, run.run_id)
    owners: dict[str, list[str | None]] = {}
    unhashed: set[str] = set()
    kept = []  # (video_uri, frame_indices, frame_hashes) of each video's newest run
    for (run, _), table in zip(jobs, tables, strict=True):
        uris = table["video_uri"].to_pylist()
        mine = [newest[u] == run.run_id for u in uris]
        owners.setdefault(run.run_id, []).extend(
            u if m else None for u, m in zip(uris, mine, strict=True)
        )
        if "frame_hashes" not in table.column_names:
            unhashed.update(u for u, m in zip(uris, mine, strict=True) if m)
            continue
        kept.append(table.filter(pa.array(mine, pa.bool_())).select(columns))
    hashes = hashes_by_video(pa.concat_tables(kept)) if kept else {}
    return FrameHashes(hashes, owners, len(unhashed))


def _numbered(tables: list[pa.Table]) -> pa.Table:
    table = pa.concat_tables(tables)
    return table.append_column(POSITION, pa.array(np.arange(table.num_rows, dtype=np.int64)))


def _read_files(catalog: Catalog, uris: list[str], columns: list[str]) -> list[pa.Table]:
    fs = storage.arrow_filesystem(catalog.output_uri, catalog.storage)

    def read(uri: str) -> pa.Table:
        try:
            return pq.read_table(storage.strip_scheme(uri), columns=columns, filesystem=fs)
        except (OSError, pa.ArrowException) as e:
            raise QueryError(f"cannot read {storage.redact(uri)}: {type(e).__name__}: {e}") from e

    with ThreadPoolExecutor(max(1, min(READ_THREADS, len(uris)))) as pool:
        return list(pool.map(read, uris))


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
        if key_mask(part.table, video_uri, clip_index, level).any():
            return part
    return None


def audio_dim(parts: list[Part], model_version: str | None) -> int:
    """How many of the model's embedding values are the sound's (its runs' records say)."""
    for part in parts:
        if part.run.model_version == model_version:
            return part.run.audio_dim
    return 0


def part_of(matrix: np.ndarray, by: str, sound: int, model_version: str | None) -> np.ndarray:
    """(N, D) embeddings -> the columns `by` ranks with (the whole for "both", and for a
    model of one kind the part it has); QueryError where the model lacks that part."""
    if by == "both":
        return matrix
    width = matrix.shape[-1]
    if by == "sound":
        if not sound:
            raise QueryError(
                f"model {model_version} does not hear: --by sound needs an index made with "
                "--modalities audio or video,audio"
            )
        return matrix[..., width - sound :]
    if sound == width:
        raise QueryError(f"model {model_version} hears only: --by picture needs one that sees")
    return matrix[..., : width - sound]


def build_index(
    parts: list[Part], level: str, model_version: str | None, by: str = "both"
) -> EmbeddingIndex:
    """The rows of one model version with an embedding, as a normalised matrix of the part
    `by` names."""
    sound = audio_dim(parts, model_version)
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
    if by == "both":
        matrix = unit_rows(table["embedding"])
    else:
        matrix = part_of(list_matrix(table["embedding"]), by, sound, model_version)
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        matrix = matrix / np.where(norms > 0, norms, 1.0)  # all-zero rows stay zero, as unit()
    return EmbeddingIndex(level, model_version, table.drop_columns(["embedding"]), matrix)


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


def key_mask(table: pa.Table, video_uri: str, clip_index: int | None, level: str) -> np.ndarray:
    mask = pc.equal(table["video_uri"], video_uri)
    if level == "clip" and clip_index is not None:
        mask = pc.and_(mask, pc.equal(table["clip_index"], clip_index))
    return pc.fill_null(mask, False).to_numpy(zero_copy_only=False).astype(bool)
