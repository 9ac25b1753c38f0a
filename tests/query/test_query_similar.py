"""--similar / --similar-to-file: cosine neighbours, self first, newest row per key, same model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.aggregate import list_matrix
from pipeline.query import SimilarQuery, run
from pipeline.query.catalog import load_catalog
from pipeline.query.embed_file import embed_file


def stored(out: str, table: str) -> pa.Table:
    files = sorted(Path(out, table).rglob("*.parquet"))
    return pa.concat_tables([pq.read_table(f) for f in files])


def cosine_ranking(matrix: np.ndarray, q: np.ndarray) -> np.ndarray:
    m = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    return m @ (q / np.linalg.norm(q))


def test_similar_video_ranks_itself_first_with_score_one(local_index, cli):
    query = local_index.video_uris()[0]
    res = cli(local_index.output_uri, "--similar", query, "-k", "4", "--format", "json")
    assert res.code == 0, res.err
    rows = res.json()
    assert len(rows) == 4
    assert list(rows[0]) == ["video_uri", "score", "label"]
    assert rows[0]["video_uri"] == query and rows[0]["score"] == 1.0
    scores = [r["score"] for r in rows]
    assert scores == sorted(scores, reverse=True)
    assert len({r["video_uri"] for r in rows}) == 4


def test_scores_are_the_cosine_of_the_stored_embeddings(local_index):
    videos = stored(local_index.output_uri, "videos")
    videos = videos.filter(pa.compute.is_valid(videos["embedding"]))
    uris = videos["video_uri"].to_pylist()
    matrix = list_matrix(videos["embedding"])
    query = local_index.video_uris()[2]
    expected = cosine_ranking(matrix, matrix[uris.index(query)])
    table = run(SimilarQuery(local_index.output_uri, video_uri=query, k=100))
    assert table.num_rows == 6  # the broken video has no embedding
    got = dict(zip(table["video_uri"].to_pylist(), table["score"].to_pylist(), strict=True))
    for uri, score in zip(uris, expected, strict=True):
        assert got[uri] == pytest.approx(float(score), abs=1e-5)


def test_exclude_self_and_k(local_index, cli):
    query = local_index.video_uris()[1]
    res = cli(
        local_index.output_uri, "--similar", query, "-k", "2", "--exclude-self", "--format", "json"
    )
    assert res.code == 0, res.err
    rows = res.json()
    assert len(rows) == 2 and query not in [r["video_uri"] for r in rows]
    full = cli(local_index.output_uri, "--similar", query, "-k", "3", "--format", "json").json()
    assert rows == full[1:3]


def test_k_larger_than_the_index(local_index, cli):
    res = cli(
        local_index.output_uri,
        "--similar",
        local_index.video_uris()[0],
        "-k",
        "1000",
        "--format",
        "json",
    )
    assert res.code == 0, res.err
    assert len(res.json()) == 6


def test_clip_level(local_index, cli):
    query = local_index.video_uris()[3]
    res = cli(
        local_index.output_uri,
        "--similar",
        query,
        "--level",
        "clip",
        "--clip-index",
        "1",
        "-k",
        "5",
        "--format",
        "json",
    )
    assert res.code == 0, res.err
    rows = res.json()
    assert list(rows[0]) == ["video_uri", "clip_index", "score", "label"]
    assert (rows[0]["video_uri"], rows[0]["clip_index"], rows[0]["score"]) == (query, 1, 1.0)
    assert len(rows) == 5 and len({(r["video_uri"], r["clip_index"]) for r in rows}) == 5
    excluded = cli(
        local_index.output_uri,
        "--similar",
        query,
        "--level",
        "clip",
        "--clip-index",
        "1",
        "-k",
        "12",
        "--exclude-self",
        "--format",
        "json",
    ).json()
    assert len(excluded) == 11 and (query, 1) not in [
        (r["video_uri"], r["clip_index"]) for r in excluded
    ]


def test_relative_local_path_finds_the_video(local_index, cli, monkeypatch):
    query = Path(local_index.video_uris()[0])
    monkeypatch.chdir(query.parent)
    res = cli(local_index.output_uri, "--similar", query.name, "-k", "1", "--format", "json")
    assert res.code == 0, res.err
    assert res.json()[0]["video_uri"] == str(query)


def test_similar_to_file_embeds_like_the_index_job(local_index):
    """The in-process embedding of an indexed file equals what the index job stored."""
    uri = local_index.video_uris()[4]
    record = load_catalog(local_index.output_uri).latest().record
    embedded = embed_file(uri, record, load_catalog(local_index.output_uri).storage)
    videos = stored(local_index.output_uri, "videos")
    row = videos.filter(pa.compute.equal(videos["video_uri"], uri))
    np.testing.assert_allclose(
        embedded.video_embedding(), list_matrix(row["embedding"])[0], atol=1e-5
    )
    assert embedded.video["label"].to_pylist() == row["label"].to_pylist()
    clips = stored(local_index.output_uri, "clips")
    clips = clips.filter(pa.compute.equal(clips["video_uri"], uri)).sort_by("clip_index")
    assert embedded.clips["clip_index"].to_pylist() == clips["clip_index"].to_pylist()
    for i in clips["clip_index"].to_pylist():
        np.testing.assert_allclose(
            embedded.clip_embedding(i), list_matrix(clips["embedding"])[i], atol=1e-5
        )
    assert embedded.clips.schema.equals(clips.schema, check_metadata=False)


def test_similar_to_file_cli(local_index, cli):
    uri = local_index.video_uris()[5]
    res = cli(local_index.output_uri, "--similar-to-file", uri, "-k", "3", "--format", "json")
    assert res.code == 0, res.err
    rows = res.json()
    assert rows[0]["video_uri"] == uri and rows[0]["score"] == pytest.approx(1.0, abs=1e-5)
    excluded = cli(
        local_index.output_uri,
        "--similar-to-file",
        uri,
        "-k",
        "3",
        "--exclude-self",
        "--format",
        "json",
    ).json()
    assert uri not in [r["video_uri"] for r in excluded] and len(excluded) == 3


def _add_run(out: Path, run_id: str, ended_at: str, videos: pa.Table, model_version: str) -> None:
    """Commit a hand-made run holding `videos` (as the commit protocol would leave it)."""
    name = out / "videos" / "run_date=2031-01-01" / f"{run_id}-00000.parquet"
    name.parent.mkdir(parents=True, exist_ok=True)
    n = videos.num_rows
    videos = videos.set_column(
        videos.schema.get_field_index("run_id"), "run_id", pa.array([run_id] * n)
    )
    videos = videos.set_column(
        videos.schema.get_field_index("model_version"),
        "model_version",
        pa.array([model_version] * n),
    )
    pq.write_table(videos, name)
    record = {
        "run_id": run_id,
        "status": "ok",
        "started_at": ended_at,
        "ended_at": ended_at,
        "model_version": model_version,
        "counts": {"processed": n},
        "files": [str(name)],
    }
    (out / "_runs" / f"{run_id}.json").write_text(json.dumps(record))


@pytest.mark.parametrize("search", ["exact", "ann"])  # the later run has no graphs: mixed
def test_the_newest_row_per_video_wins(index_copy, local_index, search):
    out = Path(index_copy.output_uri)
    videos = stored(index_copy.output_uri, "videos")
    videos = videos.filter(pa.compute.is_valid(videos["embedding"]))
    uris = videos["video_uri"].to_pylist()
    a, b = local_index.video_uris()[0], local_index.video_uris()[1]
    # a later run re-indexed video a, and its embedding now points the same way as b's
    emb_b = list_matrix(videos["embedding"])[uris.index(b)]
    new_a = videos.filter(pa.compute.equal(videos["video_uri"], a))
    new_a = new_a.set_column(
        new_a.schema.get_field_index("embedding"),
        "embedding",
        pa.FixedSizeListArray.from_arrays(pa.array(2.0 * emb_b, pa.float32()), len(emb_b)),
    )
    _add_run(out, "later", "2031-01-01T00:00:00+00:00", new_a, local_index.record["model_version"])
    table = run(SimilarQuery(str(out), video_uri=a, k=100, search=search))
    got = table["video_uri"].to_pylist()
    assert len(got) == len(set(got)) == 6  # one row per video: the newest
    assert got[:2] == [a, b]  # the query first among the ties
    assert table["score"].to_pylist()[:2] == [1.0, 1.0]


@pytest.mark.parametrize("search", ["exact", "ann"])
def test_rows_of_another_model_are_left_out(index_copy, local_index, search):
    out = Path(index_copy.output_uri)
    videos = stored(index_copy.output_uri, "videos")
    c = local_index.video_uris()[2]
    only_c = videos.filter(pa.compute.equal(videos["video_uri"], c))
    _add_run(out, "other-model", "2031-01-01T00:00:00+00:00", only_c, "ckpt-somethingelse")
    from_c = run(SimilarQuery(str(out), video_uri=c, k=100, search=search))
    assert from_c["video_uri"].to_pylist() == [c]  # c is the only video of its model now
    a = local_index.video_uris()[0]
    from_a = run(SimilarQuery(str(out), video_uri=a, k=100, search=search))
    assert c not in from_a["video_uri"].to_pylist() and from_a.num_rows == 5
