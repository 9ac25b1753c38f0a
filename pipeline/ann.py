"""Approximate nearest-neighbour indexes: one per committed run and table, merged at query time.

Each index run builds, over its own videos and clips, faiss HNSW graphs of their unit-length
embeddings (inner product = cosine) and commits them beside its Parquet files, under
`_search/<table>/<run_id>-NNNNN.faiss`. A night never rebuilds what earlier nights indexed,
and a query searches each run's graphs with a filter that keeps only the newest row per key,
then merges the runs' candidates by score. An id in a graph is the row's position in its run's
table files, read in the order the run record lists them.

Why faiss HNSW: `make bench` (benchmarks/ann.py) measured, at a million 128-d clips on two
cores, recall@10 0.97 and a 0.25 ms p50 for one graph (exact search: 25 ms), and 0.999 with
2 ms for ten per-run graphs merged; faiss filters a search by id (`IDSelectorBitmap`), which
is how superseded rows stay out without over-fetching.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

LINKS = 32  # HNSW neighbours per node (M)
BUILD_BREADTH = 80  # efConstruction
SEARCH_BREADTH = 64  # efSearch: recall@10 0.97 at a million rows (docs/benchmarks.md)
SHARD_ROWS = 1_000_000  # rows per graph: ~0.75 GB and ~100 s of build per shard at 128-d
SUFFIX = ".faiss"
FRAMES = "frames"  # `_search/frames/`: each run's table of its clips' frame hashes
# the frame-hash tables: faiss multi-index hashing, 3 substrings of 21 bits looked up with up
# to 2 bits flipped, so two hashes within 3 x 2 + 2 = 8 bits are always found (pigeonhole)
HASH_SUBSTRINGS, HASH_FLIPS = 3, 2


def unit_rows(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """fixed_size_list<float32>[D] (no nulls) -> (N, D) float32 with unit L2 rows; all-zero
    rows stay zero. Each chunk's values are viewed zero-copy and divided into the output."""
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    dim = column.type.list_size
    out = np.empty((len(column), dim), dtype=np.float32)
    start = 0
    for chunk in chunks:
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


def build(matrix: np.ndarray, ids: np.ndarray) -> bytes:
    """An HNSW graph over unit rows `matrix`, row i known by `ids[i]`, serialized."""
    import faiss  # the index job's search stage and the query job's ANN path only

    graph = faiss.IndexHNSWFlat(matrix.shape[1], LINKS, faiss.METRIC_INNER_PRODUCT)
    graph.hnsw.efConstruction = BUILD_BREADTH
    index = faiss.IndexIDMap2(graph)
    index.add_with_ids(np.ascontiguousarray(matrix, dtype=np.float32), ids.astype(np.int64))
    return faiss.serialize_index(index).tobytes()


def hash_codes(hashes: np.ndarray) -> np.ndarray:
    """uint64 hashes as faiss's binary codes: (N, 8) uint8."""
    return np.ascontiguousarray(hashes, dtype=np.uint64).view(np.uint8).reshape(-1, 8)


def hash_table(hashes: np.ndarray, ids: np.ndarray):
    """A multi-index hash table of 64-bit frame hashes (uint64), hash i known by `ids[i]`:
    what --duplicates looks each frame up in (`range_search` by Hamming distance)."""
    import faiss

    table = faiss.IndexBinaryMultiHash(64, HASH_SUBSTRINGS, 64 // HASH_SUBSTRINGS)
    table.nflip = HASH_FLIPS
    index = faiss.IndexBinaryIDMap2(table)
    index.add_with_ids(hash_codes(hashes), ids.astype(np.int64))
    index.own_fields = True  # the id map keeps its table alive
    table.this.disown()
    return index


def build_hash_table(hashes: np.ndarray, ids: np.ndarray) -> bytes:
    """`hash_table`, serialized (each index run's `_search/frames/` files)."""
    import faiss

    return faiss.serialize_index_binary(hash_table(hashes, ids)).tobytes()


def load_hash_table(data: bytes):
    """A table `build_hash_table` wrote (a faiss binary index: `range_search` by Hamming)."""
    import faiss

    return faiss.deserialize_index_binary(np.frombuffer(data, dtype=np.uint8))


@dataclass(frozen=True)
class Graph:
    """One loaded graph (a faiss HNSW behind an id map)."""

    index: object  # faiss.Index

    @classmethod
    def load(cls, data: bytes) -> Graph:
        import faiss

        return cls(faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8)))

    @property
    def dim(self) -> int:
        return int(self.index.d)

    def search(
        self, query: np.ndarray, k: int, allowed: np.ndarray, breadth: int = SEARCH_BREADTH
    ) -> tuple[np.ndarray, np.ndarray]:
        """The k best (scores, ids) among the ids where `allowed` (a bool mask over positions)
        is true; fewer when fewer are allowed."""
        import faiss

        bitmap = np.packbits(allowed, bitorder="little")  # faiss reads bit i of byte i // 8
        selector = faiss.IDSelectorBitmap(len(bitmap), faiss.swig_ptr(bitmap))  # n in bytes
        params = faiss.SearchParametersHNSW(sel=selector, efSearch=max(breadth, k))
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)  # one query: OpenMP's start-up cost 100x the search itself
        try:
            scores, ids = self.index.search(
                query.reshape(1, -1).astype(np.float32), k, params=params
            )
        finally:
            faiss.omp_set_num_threads(threads)
        found = ids[0] >= 0
        return scores[0][found], ids[0][found]

    def vector(self, id_: int) -> np.ndarray | None:
        """The stored unit row of an id, or None when this graph does not hold it."""
        try:
            return self.index.reconstruct(int(id_))
        except RuntimeError:  # faiss: the id is not in this graph
            return None
