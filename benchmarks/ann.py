"""Approximate nearest-neighbour search over a million clip embeddings (issue "search that
scales"): faiss HNSW against exact search, one index for the whole corpus and one per run merged
at query time (the way a nightly index grows: each committed run indexes its own rows).

    python -m benchmarks.ann [--rows 1000000] [--dim 128] [--runs 10] [--queries 1000]
    (make bench runs it as the suite `ann`)

No real corpus of a million clips exists here, so the embeddings are synthetic: unit vectors
from a mixture of 2,000 clusters (videos of a kind sit together, as clip embeddings do), each
with its own spread; queries are fresh draws from the same mixture. Prints build time, memory,
single-query latency p50/p99 for k = 10 and recall@10 against exact search, for a few efSearch.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import numpy as np

K = 10


def embeddings(rows: int, dim: int, clusters: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    spread = rng.uniform(0.3, 1.0, clusters).astype(np.float32)
    owner = rng.integers(0, clusters, rows)
    out = np.empty((rows, dim), dtype=np.float32)
    for start in range(0, rows, 100_000):  # in blocks: bounded temporary memory
        part = owner[start : start + 100_000]
        noise = rng.standard_normal((len(part), dim)).astype(np.float32)
        out[start : start + len(part)] = centres[part] + noise * spread[part, None]
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def latencies(search, queries: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """Top-K ids of each query, one query at a time (as jobs/query.py asks), and the seconds
    each took."""
    ids, seconds = np.empty((len(queries), K), dtype=np.int64), []
    for i, q in enumerate(queries):
        start = time.perf_counter()
        ids[i] = search(q[None, :])
        seconds.append(time.perf_counter() - start)
    return ids, seconds


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth, strict=True)]))


def summary(name: str, build_s: float, found, seconds, truth, **extra) -> dict:
    ms = np.asarray(seconds) * 1000
    return {
        "index": name,
        "build_s": round(build_s, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "recall_at_10": round(recall(found, truth), 4),
        **extra,
    }


def measure(rows: int, dim: int = 128, runs: int = 10, queries: int = 1000) -> dict:
    """The figures above, for `make bench` (suite `ann`): exact search, one graph over all the
    rows, and `runs` graphs merged, all built and searched by pipeline.ann as the jobs do
    (HNSW behind an id map, searched with the newest-row filter)."""
    import faiss

    from pipeline import ann

    faiss.omp_set_num_threads(2)
    data = embeddings(rows, dim, 2000, seed=0)
    # fresh draws from the same mixture (the same centres come from the same seed)
    asked = embeddings(rows + queries, dim, 2000, seed=0)[rows:]
    allowed = np.ones(rows, dtype=bool)  # every row the newest of its key
    out: dict = {"rows": rows, "dim": dim, "queries": queries, "runs": runs, "indexes": []}

    exact = faiss.IndexFlatIP(dim)
    exact.add(data)
    truth = exact.search(asked, K)[1]
    exact.reset()  # frees the copy of the data

    def brute(q):  # what --search exact does: one matrix-vector product, argpartition
        scores = data @ q[0]
        top = np.argpartition(scores, len(scores) - K)[-K:]
        return top[np.argsort(-scores[top])]

    found, seconds = latencies(brute, asked[:200])
    out["indexes"].append(summary("exact", 0.0, found, seconds, truth[:200]))

    start = time.perf_counter()
    data_bytes = ann.build(data, np.arange(rows))
    build = time.perf_counter() - start
    start = time.perf_counter()
    graph = ann.Graph.load(data_bytes)
    load = time.perf_counter() - start
    for breadth in (32, ann.SEARCH_BREADTH, 128):

        def one(q, graph=graph, breadth=breadth):
            return graph.search(q[0], K, allowed, breadth)[1]

        found, seconds = latencies(one, asked)
        out["indexes"].append(
            summary(f"one graph, efSearch {breadth}", build, found, seconds, truth,
                    index_mb=round(len(data_bytes) / 2**20), load_s=round(load, 2))
        )  # fmt: skip
    del graph, data_bytes

    per_run = rows // runs
    start = time.perf_counter()
    parts = [
        ann.Graph.load(ann.build(data[r * per_run : (r + 1) * per_run],
                                 np.arange(r * per_run, (r + 1) * per_run)))
        for r in range(runs)
    ]  # fmt: skip
    build = time.perf_counter() - start
    for breadth in (32, ann.SEARCH_BREADTH):

        def merged(q, breadth=breadth):
            scores, ids = [], []
            for part in parts:
                s, i = part.search(q[0], K, allowed, breadth)
                scores.append(s)
                ids.append(i)
            scores, ids = np.concatenate(scores), np.concatenate(ids)
            return ids[np.argsort(-scores)[:K]]

        found, seconds = latencies(merged, asked)
        out["indexes"].append(
            summary(f"{runs} graphs merged, efSearch {breadth}", build, found, seconds, truth)
        )
    out["peak_rss_mb"] = round(peak_rss_mb())
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=128)  # the default model's embedding size
    p.add_argument("--runs", type=int, default=10, help="per-run graphs, merged at query time")
    p.add_argument("--queries", type=int, default=1000)
    a = p.parse_args()
    print(json.dumps(measure(a.rows, a.dim, a.runs, a.queries), indent=1))


if __name__ == "__main__":
    main()
