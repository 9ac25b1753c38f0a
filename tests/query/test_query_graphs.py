"""--search ann: each run's HNSW graphs give what exact search gives, newest row per key only."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from pipeline import ann
from pipeline.index.search import shards
from pipeline.query import SimilarQuery, run
from pipeline.query.catalog import load_catalog
from pipeline.query.graphs import EXACT_ROWS, use_graphs


def both(out: str, **query) -> tuple:
    exact = run(SimilarQuery(out, search="exact", **query))
    approximate = run(SimilarQuery(out, search="ann", **query))
    return exact, approximate


def assert_same(exact, approximate) -> None:
    keys = [c for c in exact.column_names if c not in ("score",)]
    assert approximate.select(keys).to_pylist() == exact.select(keys).to_pylist()
    np.testing.assert_allclose(approximate["score"], exact["score"], atol=1e-5)


def test_the_run_commits_its_graphs(local_index):
    record = local_index.record
    graphs = [f for f in record["files"] if "/_search/" in f]
    assert sorted(Path(f).parent.name for f in graphs) == ["clips", "frames", "videos"]
    assert all(Path(f).exists() for f in graphs)
    rows = record["search_index"]["rows"]
    assert rows["clips"] == record["counts"]["clips"]
    assert rows["videos"] == record["counts"]["processed"]  # the failed video has no embedding
    assert not list(Path(local_index.output_uri).glob("_staging*"))


@pytest.mark.parametrize("level", ["video", "clip"])
@pytest.mark.parametrize("exclude_self", [False, True])
def test_graphs_find_what_exact_search_finds(local_index, level, exclude_self):
    for uri in local_index.video_uris():
        exact, approximate = both(
            local_index.output_uri, video_uri=uri, k=20, level=level, exclude_self=exclude_self
        )
        assert exact.num_rows > 0
        assert_same(exact, approximate)


def test_a_later_run_supersedes_the_rows_of_earlier_graphs(index_copy, index_builder):
    # a second full run: every key has a newer row in a newer graph; the first run's graphs
    # still hold theirs, which the filter must keep out
    record = index_builder(index_copy.corpus, index_copy.output_uri)
    catalog = load_catalog(index_copy.output_uri)
    assert [bool(r.graphs) for r in catalog.runs] == [True, True]
    for level in ("video", "clip"):
        exact, approximate = both(
            index_copy.output_uri, video_uri=index_copy.video_uris()[0], k=100, level=level
        )
        assert_same(exact, approximate)
        assert approximate.num_rows == (6 if level == "video" else record["counts"]["clips"])


def test_auto_searches_exactly_up_to_the_threshold(local_index):
    catalog = load_catalog(local_index.output_uri)
    version = local_index.record["model_version"]
    assert not use_graphs(catalog, "clip", version, "auto")
    assert use_graphs(catalog, "clip", version, "ann")
    assert EXACT_ROWS >= 10_000


def test_bad_search_method_fails_fast(local_index, cli):
    got = cli(local_index.output_uri, "--similar", local_index.video_uris()[0], "--search", "fast")
    assert got.code == 2 and "--search must be one of auto, exact, ann" in got.err


def test_a_graph_keeps_recall_against_exact_search():
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((200, 64)).astype(np.float32)
    rows = centres[rng.integers(0, 200, 20_000)] + 0.5 * rng.standard_normal((20_000, 64))
    matrix = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    matrix = matrix.astype(np.float32)
    graph = ann.Graph.load(ann.build(matrix, np.arange(20_000) * 3))  # ids need not be dense
    allowed = np.zeros(60_000, dtype=bool)
    allowed[::3] = True
    allowed[3 * np.arange(0, 20_000, 2)] = False  # half the rows filtered out
    queries = matrix[:200] + 0.1 * rng.standard_normal((200, 64)).astype(np.float32)
    hits = 0
    for q in queries:
        q = q / np.linalg.norm(q)
        _, ids = graph.search(q, 10, allowed)
        assert allowed[ids].all()  # the filter holds
        truth = np.argsort(-(matrix @ q))
        truth = [3 * t for t in truth if allowed[3 * t]][:10]
        hits += len(set(ids.tolist()) & set(truth))
    assert hits / (10 * len(queries)) >= 0.95
    assert graph.vector(3) is not None and graph.vector(4) is None


def test_shards_never_split_a_file():
    assert shards([5, 5, 5], 10) == [(0, 2, 0), (2, 3, 10)]
    assert shards([30, 1], 10) == [(0, 1, 0), (1, 2, 30)]
    assert shards([0, 0], 10) == []
    assert shards([], 10) == []


def test_graph_files_survive_a_copy_of_the_index(index_copy):
    # the records name the old paths: graphs are re-rooted under the copy like the tables
    record = json.loads(next(Path(index_copy.output_uri, "_runs").glob("*.json")).read_text())
    assert any("/_search/" in f for f in record["files"])
    catalog = load_catalog(index_copy.output_uri)
    (graph,) = catalog.runs[0].graphs["clips"]
    assert graph.startswith(str(Path(index_copy.output_uri).resolve()))
    assert pq.read_table(catalog.runs[0].files["clips"][0]).num_rows
