"""Approximate nearest-neighbour search over a million clip embeddings (issue "search that
scales"): faiss HNSW against exact search, one index for the whole corpus and one per run merged
at query time (the way a nightly index grows: each committed run indexes its own rows).

    python -m benchmarks.ann [--rows 1000000] [--dim 128] [--runs 10] [--queries 1000]

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


def main() -> None:
    import faiss

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=128)  # the default model's embedding size
    p.add_argument("--runs", type=int, default=10, help="per-run indexes, merged at query time")
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--m", type=int, default=32, help="HNSW links per node")
    p.add_argument("--ef-construction", type=int, default=80)
    a = p.parse_args()
    faiss.omp_set_num_threads(2)
    data = embeddings(a.rows, a.dim, 2000, seed=0)
    # fresh draws from the same mixture (the same centres come from the same seed)
    queries = embeddings(a.rows + a.queries, a.dim, 2000, seed=0)[a.rows :]
    results = [{"rows": a.rows, "dim": a.dim, "queries": a.queries, "data_mb": data.nbytes / 2**20}]

    start = time.perf_counter()
    exact = faiss.IndexFlatIP(a.dim)
    exact.add(data)
    truth = exact.search(queries, K)[1]
    results.append(
        summary(
            "exact (flat)",
            0.0,
            *latencies(lambda q: exact.search(q, K)[1][0], queries[:200]),
            truth[:200],
        )
    )  # noqa: E501
    results[-1]["batch_truth_s"] = round(time.perf_counter() - start, 1)
    exact.reset()  # frees the copy of the data

    start = time.perf_counter()
    hnsw = faiss.IndexHNSWFlat(a.dim, a.m, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = a.ef_construction
    hnsw.add(data)
    build = time.perf_counter() - start
    size_mb = faiss.serialize_index(hnsw).nbytes / 2**20  # what it holds in memory and on disk
    for ef in (32, 64, 128):
        hnsw.hnsw.efSearch = ef
        found, seconds = latencies(lambda q: hnsw.search(q, K)[1][0], queries)
        name = f"hnsw M={a.m} efSearch={ef}"
        results.append(summary(name, build, found, seconds, truth, index_mb=round(size_mb)))
    hnsw.reset()

    # one index per run, merged: what a nightly index that never rebuilds pays at query time
    per_run = a.rows // a.runs
    start = time.perf_counter()
    parts = []
    for r in range(a.runs):
        index = faiss.IndexHNSWFlat(a.dim, a.m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = a.ef_construction
        index.add(data[r * per_run : (r + 1) * per_run])
        parts.append(index)
    build = time.perf_counter() - start
    for ef in (32, 64):
        for index in parts:
            index.hnsw.efSearch = ef

        def merged(q):
            scores, ids = [], []
            for r, index in enumerate(parts):
                s, i = index.search(q, K)
                scores.append(s[0])
                ids.append(i[0] + r * per_run)
            scores, ids = np.concatenate(scores), np.concatenate(ids)
            return ids[np.argsort(-scores)[:K]]

        found, seconds = latencies(merged, queries)
        results.append(
            summary(f"{a.runs} per-run hnsw, merged, efSearch={ef}", build, found, seconds, truth)
        )  # noqa: E501
    results[0]["peak_rss_mb"] = round(peak_rss_mb())
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
