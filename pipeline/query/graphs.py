"""Nearest neighbours through each run's HNSW graphs (pipeline.ann), merged across runs.

Only the key and label columns of the committed rows are read: they say which row of each key
is the newest (vectors.latest_rows), and that becomes a filter on each run's graphs, so a
superseded row is never returned and nothing is over-fetched. Each run gives its k best; the
merge keeps the k best of all. A run committed without graphs is searched exactly.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from pipeline import ann, storage
from pipeline.query import vectors
from pipeline.query.catalog import Catalog, Run
from pipeline.query.errors import QueryError

EXACT_ROWS = 100_000  # up to here `auto` searches exactly: ~5 ms a query, and no approximation


def rows_of(run: Run, level: str) -> int:
    """A run's rows at a level, from its record (rows since superseded included)."""
    counts = run.record.get("counts") or {}
    if level == "clip":
        return int(counts.get("clips") or 0)
    return int(counts.get("processed") or 0) + int(counts.get("failed") or 0)


def use_graphs(catalog: Catalog, level: str, model_version: str | None, method: str) -> bool:
    """Whether a search goes through the graphs: `ann`, or `auto` above EXACT_ROWS rows."""
    if method != "auto":
        return method == "ann"
    rows = sum(rows_of(r, level) for r in catalog.runs if r.model_version == model_version)
    return rows > EXACT_ROWS


@dataclass(frozen=True)
class RunRows:
    """The newest rows one run holds (key columns, label, `_position` in the run's files)."""

    run: Run
    table: pa.Table

    @property
    def positions(self) -> np.ndarray:
        return self.table[vectors.POSITION].to_numpy()


@dataclass(frozen=True)
class Hit:
    score: float
    run: int  # index into the searched RunRows
    position: int


class GraphSearch:
    """The newest rows of one model at one level, searchable through their runs' graphs."""

    def __init__(
        self, catalog: Catalog, level: str, model_version: str | None,
        parts: list[vectors.Part] | None = None,
    ) -> None:  # fmt: skip
        """`parts`: the level's newest rows without embeddings (read here when not given)."""
        if parts is None:
            parts = vectors.read_parts(catalog, level, embeddings=False)
            parts = vectors.latest_rows(parts, level)
        self.catalog, self.level = catalog, level
        self.runs = [RunRows(p.run, p.table) for p in parts if p.run.model_version == model_version]
        if not self.runs:
            raise QueryError(f"no {level} embeddings of model {model_version} in the index")
        self._graphs: dict[int, list[ann.Graph]] = {}
        self._matrices: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def find(self, video_uri: str, clip_index: int | None) -> tuple[int, int] | None:
        """(run, position) of a key, or None."""
        for i, rows in enumerate(self.runs):
            hits = np.flatnonzero(vectors.key_mask(rows.table, video_uri, clip_index, self.level))
            if hits.size:
                return i, int(rows.positions[hits[0]])
        return None

    def vector(self, run: int, position: int) -> np.ndarray:
        """A row's unit embedding (from its run's graph, else its run's files)."""
        for graph in self.graphs(run):
            found = graph.vector(position)
            if found is not None:
                return found
        if not self.runs[run].run.graphs.get(vectors.TABLE_OF[self.level]):
            positions, matrix = self.matrix(run)
            at = np.flatnonzero(positions == position)
            if at.size:
                return matrix[at[0]]
        raise QueryError(
            f"{storage.redact(self._uri(run, position))} has no embedding in the index (status "
            "error: see the errors view for why)"
        )

    def search(
        self, query: np.ndarray, k: int, self_hit: tuple[int, int] | None = None,
        exclude_self: bool = False,
    ) -> pa.Table:  # fmt: skip
        """The k rows nearest `query`, best first: key columns, `score`, `label`. The query's
        own row (`self_hit`) scores 1.0 and ranks first among ties, or is left out."""
        q = vectors.unit(query)
        hits: list[Hit] = []
        for i in range(len(self.runs)):
            skip = self_hit[1] if self_hit is not None and self_hit[0] == i else None
            hits += self._search_run(i, q, k, skip)
        if self_hit is not None and not exclude_self:
            hits.append(Hit(1.0, *self_hit))
        order = sorted(
            hits,
            key=lambda h: (-round(h.score, 6), (h.run, h.position) != self_hit, h.run, h.position),
        )[:k]
        return self._table(order)

    def graphs(self, run: int) -> list[ann.Graph]:
        if run not in self._graphs:
            uris = self.runs[run].run.graphs.get(vectors.TABLE_OF[self.level], ())
            fs = self.catalog.filesystem()
            paths = [storage.strip_scheme(u) for u in uris]
            with ThreadPoolExecutor(max(1, min(vectors.READ_THREADS, len(paths)))) as pool:
                self._graphs[run] = [ann.Graph.load(b) for b in pool.map(fs.cat_file, paths)]
        return self._graphs[run]

    def matrix(self, run: int) -> tuple[np.ndarray, np.ndarray]:
        """(positions, unit rows) of a run without graphs: its newest rows, read whole."""
        if run not in self._matrices:
            part = vectors.read_run(self.catalog, self.runs[run].run, self.level)
            live = np.isin(part[vectors.POSITION].to_numpy(), self.runs[run].positions)
            part = part.filter(pa.array(live))
            index = vectors.build_index([vectors.Part(self.runs[run].run, part)], self.level,
                                        self.runs[run].run.model_version)  # fmt: skip
            self._matrices[run] = (index.rows[vectors.POSITION].to_numpy(), index.matrix)
        return self._matrices[run]

    def _search_run(self, run: int, q: np.ndarray, k: int, skip: int | None) -> list[Hit]:
        positions = self.runs[run].positions
        if not self.runs[run].run.graphs.get(vectors.TABLE_OF[self.level]):
            have, matrix = self.matrix(run)
            scores = matrix @ q
            if skip is not None:
                scores[have == skip] = -np.inf
            top = np.argsort(-scores, kind="stable")[:k]
            return [Hit(float(scores[t]), run, int(have[t])) for t in top if scores[t] > -np.inf]
        allowed = np.zeros(int(positions.max()) + 1, dtype=bool)
        allowed[positions] = True
        if skip is not None:
            allowed[skip] = False
        hits = []
        for graph in self.graphs(run):
            if graph.dim != len(q):
                raise QueryError(f"query embedding has {len(q)} dimensions, the index {graph.dim}")
            scores, ids = graph.search(q, k, allowed)
            hits += [Hit(float(s), run, int(p)) for s, p in zip(scores, ids, strict=True)]
        return hits

    def _row(self, run: int, position: int) -> int:
        return int(np.searchsorted(self.runs[run].positions, position))

    def _uri(self, run: int, position: int) -> str:
        return self.runs[run].table["video_uri"][self._row(run, position)].as_py()

    def _table(self, hits: list[Hit]) -> pa.Table:
        rows = [self.runs[h.run].table.slice(self._row(h.run, h.position), 1) for h in hits]
        keys = vectors.KEYS[self.level]
        if not rows:
            empty = self.runs[0].table.slice(0, 0)
            table = empty.select([*keys, "label"])
        else:
            table = pa.concat_tables(rows).select([*keys, "label"])
        scores = np.clip([h.score for h in hits], -1.0, 1.0).astype(np.float64)
        columns = {name: table[name] for name in keys}
        columns["score"] = pa.array(np.round(scores, 6), pa.float64())
        columns["label"] = table["label"]
        return pa.table(columns)
