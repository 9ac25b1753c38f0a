"""Nearest-neighbour search of jobs/query.py against a bare NumPy matrix product, at 100k clips.

  python benchmarks/query_bench.py [--clips 100000] [--dim 128] [--runs 2] [--queries 50]

Writes a synthetic index with the real layout and schema (pipeline.schema, committed through
pipeline.index.commit.RunOutput), then times:
  search      one query on a loaded index: ours (pipeline.query.vectors.search: matmul,
              argpartition, result table) vs NumPy (matmul + argpartition + argsort) over the
              same normalised (N, D) float32 matrix; the aim is ours <= 2x NumPy
  load        committed files -> normalised matrix: ours (catalog, newest row per clip, model
              filter) vs NumPy (pyarrow.parquet.read_table of the embeddings + normalise)
  end_to_end  pipeline.query.run(SimilarQuery(...)): load + search, what one CLI call costs
              after interpreter start-up
  duckdb      list_cosine_similarity ... ORDER BY score DESC LIMIT k over the clips view
Prints a table and writes the results as JSON (--json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

import duckdb  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from pipeline import schema  # noqa: E402
from pipeline.config import StorageConfig  # noqa: E402
from pipeline.index.commit import RunOutput  # noqa: E402
from pipeline.query import SimilarQuery, run, vectors, views  # noqa: E402
from pipeline.query.catalog import load_catalog  # noqa: E402

MODEL_VERSION = "seeded-small_cnn-mean-s0-bench"
LABELS = [f"class_{i}" for i in range(8)]
CLIP_FRAMES = 16


# ------------------------------------------------------------------------ synthetic index


def clips_table(
    rng: np.random.Generator, uris: list[str], clips_per_video: int, dim: int, run_id: str
) -> pa.Table:
    """Clips of `uris` in the real clips schema; embeddings are noisy copies of 64 centres."""
    n = len(uris) * clips_per_video
    centres = rng.normal(size=(64, dim)).astype(np.float32)
    which = rng.integers(0, 64, size=n)
    emb = centres[which] + 0.5 * rng.normal(size=(n, dim)).astype(np.float32)
    probs = rng.dirichlet(np.ones(len(LABELS)), size=n).astype(np.float32)
    order = np.argsort(-probs, axis=1)[:, : schema.TOPK]
    top_scores = np.take_along_axis(probs, order, axis=1)
    clip_index = np.tile(np.arange(clips_per_video, dtype=np.int32), len(uris))
    frames = (clip_index[:, None] * CLIP_FRAMES + np.arange(CLIP_FRAMES)).astype(np.int32) * 5
    offsets = pa.array(np.arange(0, n * CLIP_FRAMES + 1, CLIP_FRAMES, dtype=np.int32))
    k_offsets = pa.array(np.arange(0, n * schema.TOPK + 1, schema.TOPK, dtype=np.int32))
    labels = np.asarray(LABELS, dtype=object)
    return pa.table(
        {
            "video_uri": pa.array(np.repeat(np.asarray(uris, dtype=object), clips_per_video)),
            "clip_index": pa.array(clip_index),
            "start_s": pa.array(clip_index * 8.0),
            "end_s": pa.array(clip_index * 8.0 + 8.0),
            "frame_indices": pa.ListArray.from_arrays(offsets, pa.array(frames.reshape(-1))),
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), dim),
            "label": pa.array(labels[order[:, 0]], pa.string()),
            "score": pa.array(top_scores[:, 0]),
            "topk_labels": pa.ListArray.from_arrays(
                k_offsets, pa.array(labels[order.reshape(-1)], pa.string())
            ),
            "topk_scores": pa.ListArray.from_arrays(k_offsets, pa.array(top_scores.reshape(-1))),
            "model_version": pa.array([MODEL_VERSION] * n),
            "run_id": pa.array([run_id] * n),
        },
        schema=schema.clips_schema(dim),
    )


def videos_table(clips: pa.Table, clips_per_video: int, run_id: str, at: datetime) -> pa.Table:
    """One row per video: the mean clip embedding, as the index job aggregates."""
    dim = clips.schema.field("embedding").type.list_size
    emb = clips["embedding"].combine_chunks().values.to_numpy().reshape(-1, clips_per_video, dim)
    n = emb.shape[0]
    uris = clips["video_uri"].take(pa.array(np.arange(0, clips.num_rows, clips_per_video)))
    return pa.table(
        {
            "video_uri": uris,
            "status": ["ok"] * n,
            "num_frames": pa.array(np.full(n, clips_per_video * 80), pa.int64()),
            "fps": np.full(n, 10.0),
            "duration_s": np.full(n, clips_per_video * 8.0),
            "width": pa.array(np.full(n, 640), pa.int32()),
            "height": pa.array(np.full(n, 360), pa.int32()),
            "num_clips": pa.array(np.full(n, clips_per_video), pa.int32()),
            "embedding": pa.FixedSizeListArray.from_arrays(
                pa.array(emb.mean(axis=1).reshape(-1)), dim
            ),
            "label": clips["label"].take(pa.array(np.arange(0, clips.num_rows, clips_per_video))),
            "score": pa.array(np.full(n, 0.5, np.float32)),
            "size_bytes": pa.array(np.full(n, 10_000_000), pa.int64()),
            "fingerprint": [f"etag:{i}" for i in range(n)],
            "model_version": [MODEL_VERSION] * n,
            "run_id": [run_id] * n,
            "indexed_at": pa.array([at] * n, pa.timestamp("us", tz="UTC")),
        },
        schema=schema.videos_schema(dim),
    )


def write_index(root: Path, clips: int, dim: int, clips_per_video: int, runs: int, seed: int):
    """`runs` committed runs: the first indexes every video, each later one re-indexes 10%."""
    rng = np.random.default_rng(seed)
    n_videos = clips // clips_per_video
    all_uris = [f"s3://bench-corpus/raw/video_{i:06d}.mp4" for i in range(n_videos)]
    start = datetime(2030, 1, 1, 2, 0, tzinfo=UTC)
    total_rows = 0
    for r in range(runs):
        at = start + timedelta(days=r)
        run_id = at.strftime("%Y%m%dT%H%M%SZ-") + f"bench{r}"
        uris = all_uris if r == 0 else list(rng.choice(all_uris, n_videos // 10, replace=False))
        out = RunOutput(str(root), run_id, at.strftime("%Y-%m-%d"), StorageConfig())
        table = clips_table(rng, uris, clips_per_video, dim, run_id)
        rows_per_file = 25_000  # Ray Data writes several files per table
        for i, first in enumerate(range(0, table.num_rows, rows_per_file)):
            out.write_small_table(schema.CLIPS, table.slice(first, rows_per_file), f"part-{i}")
        out.write_small_table(
            schema.VIDEOS, videos_table(table, clips_per_video, run_id, at), "part-0"
        )
        total_rows += table.num_rows
        out.commit(
            {
                "run_id": run_id,
                "schema_version": schema.SCHEMA_VERSION,
                "status": "ok",
                "started_at": at.isoformat(),
                "ended_at": (at + timedelta(hours=1)).isoformat(),
                "model_version": MODEL_VERSION,
                "labels": LABELS,
                "counts": {"processed": len(uris), "clips": table.num_rows},
            }
        )
    return all_uris, total_rows


# ------------------------------------------------------------------------------- timing


def median_ms(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter_ns()
        fn()
        times.append((time.perf_counter_ns() - t) / 1e6)
    return statistics.median(times)


def numpy_topk(matrix: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    scores = matrix @ q
    top = np.argpartition(scores, len(scores) - k)[-k:]
    return top[np.argsort(-scores[top])]


def numpy_load(files: list[str], dim: int) -> np.ndarray:
    table = pa.concat_tables([pq.read_table(f, columns=["embedding"]) for f in files])
    m = table["embedding"].combine_chunks().flatten().to_numpy().reshape(-1, dim)
    return m / np.linalg.norm(m, axis=1, keepdims=True)


def keys(table: pa.Table) -> set[tuple[str, int]]:
    return set(zip(table["video_uri"].to_pylist(), table["clip_index"].to_pylist(), strict=True))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--clips", type=int, default=100_000, help="clips in the first run")
    p.add_argument("--dim", type=int, default=128, help="embedding size (small_cnn: 128)")
    p.add_argument("--clips-per-video", type=int, default=20)
    p.add_argument("--runs", type=int, default=2, help="runs; later ones re-index 10%% of videos")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--queries", type=int, default=50, help="query clips timed")
    p.add_argument("--repeat", type=int, default=5, help="repetitions per timing (median)")
    p.add_argument("--workdir", help="where the index is written (default: a temporary folder)")
    p.add_argument("--json", default="bench_out/query_bench.json", help="results file")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="reelay-query-bench-") as tmp:
        root = Path(args.workdir or tmp) / "index"
        t = time.perf_counter()
        _, rows = write_index(
            root, args.clips, args.dim, args.clips_per_video, args.runs, args.seed
        )
        write_s = time.perf_counter() - t

        catalog = load_catalog(str(root))
        clip_files = catalog.files(schema.CLIPS)

        def load_ours() -> vectors.EmbeddingIndex:
            cat = load_catalog(str(root))
            parts = vectors.latest_rows(vectors.read_parts(cat, "clip"), "clip")
            return vectors.build_index(parts, "clip", MODEL_VERSION)

        index = load_ours()
        n = index.matrix.shape[0]
        load_ours_ms = median_ms(load_ours, args.repeat)
        load_numpy_ms = median_ms(lambda: numpy_load(clip_files, args.dim), args.repeat)

        rng = np.random.default_rng(args.seed + 1)
        rows_q = rng.choice(n, size=min(args.queries, n), replace=False)
        ours_ms, numpy_ms, agree = [], [], 0
        for row in rows_q:
            q = index.matrix[row]
            ours_ms.append(
                median_ms(
                    lambda q=q, row=row: vectors.search(index, q, args.k, int(row)), args.repeat
                )
            )
            numpy_ms.append(median_ms(lambda q=q: numpy_topk(index.matrix, q, args.k), args.repeat))
            ours = vectors.search(index, q, args.k, int(row))
            want = index.rows.take(pa.array(numpy_topk(index.matrix, q, args.k)))
            agree += keys(ours) == keys(want)
        search_ours, search_numpy = statistics.median(ours_ms), statistics.median(numpy_ms)

        query_row = index.rows.slice(int(rows_q[0]), 1).to_pylist()[0]
        similar = SimilarQuery(
            str(root),
            video_uri=query_row["video_uri"],
            level="clip",
            clip_index=query_row["clip_index"],
            k=args.k,
        )
        end_to_end_ms = median_ms(lambda: run(similar), max(3, args.repeat // 2))

        con = views.connect(catalog)
        sql = (
            "WITH q AS (SELECT embedding FROM clips WHERE video_uri = $uri AND clip_index = $i "
            "LIMIT 1) SELECT c.video_uri, c.clip_index, "
            "list_cosine_similarity(c.embedding, q.embedding) AS score FROM clips c, q "
            f"ORDER BY score DESC LIMIT {args.k}"
        )
        params = {"uri": query_row["video_uri"], "i": query_row["clip_index"]}
        duckdb_ms = median_ms(lambda: con.execute(sql, params).fetchall(), 3)
        con.close()

    results = {
        "benchmark": "query_bench",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "pyarrow": pa.__version__,
            "duckdb": duckdb.__version__,
        },
        "config": vars(args),
        "index": {
            "rows_written": rows,
            "clips_searched": int(n),
            "dim": args.dim,
            "clip_files": len(clip_files),
            "write_s": round(write_s, 2),
        },
        "search_ms": {
            "ours": round(search_ours, 3),
            "numpy": round(search_numpy, 3),
            "ratio": round(search_ours / search_numpy, 2),
            "topk_agree": f"{agree}/{len(rows_q)}",
        },
        "load_ms": {
            "ours": round(load_ours_ms, 1),
            "numpy": round(load_numpy_ms, 1),
            "ratio": round(load_ours_ms / load_numpy_ms, 2),
        },
        "end_to_end_ms": round(end_to_end_ms, 1),
        "duckdb_list_cosine_ms": round(duckdb_ms, 1),
    }
    print(
        f"{n} clips x {args.dim} (from {rows} rows in {args.runs} runs, {len(clip_files)} files)\n"
        f"search  ours {search_ours:8.3f} ms   numpy {search_numpy:8.3f} ms   "
        f"ratio {search_ours / search_numpy:.2f}x   top-k agree {agree}/{len(rows_q)}\n"
        f"load    ours {load_ours_ms:8.1f} ms   numpy {load_numpy_ms:8.1f} ms   "
        f"ratio {load_ours_ms / load_numpy_ms:.2f}x\n"
        f"end to end (load + search): {end_to_end_ms:.1f} ms; "
        f"DuckDB list_cosine_similarity: {duckdb_ms:.1f} ms"
    )
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
