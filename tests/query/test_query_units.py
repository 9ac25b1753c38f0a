"""The query modules' pure parts, without an index job run: search, newest-row selection,
catalog re-rooting, output formats, error lines, config rebuilding."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.config import GuardConfig, PlanConfig
from pipeline.query.catalog import Run, load_catalog
from pipeline.query.embed_file import from_dict
from pipeline.query.errors import QueryError, one_line
from pipeline.query.formats import render
from pipeline.query.vectors import (
    EmbeddingIndex,
    Part,
    build_index,
    latest_rows,
    search,
    unit_rows,
)


def fsl(matrix: np.ndarray) -> pa.FixedSizeListArray:
    matrix = np.asarray(matrix, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1)), matrix.shape[1])


def run_(run_id: str, model: str = "m1") -> Run:
    return Run(run_id, {"run_id": run_id, "model_version": model}, {})


def part(run: Run, uris: list[str], matrix, clips: list[int] | None = None) -> Part:
    columns = {"video_uri": pa.array(uris)}
    if clips is not None:
        columns["clip_index"] = pa.array(clips, pa.int32())
    columns |= {"label": pa.array([f"l-{u}" for u in uris]), "embedding": fsl(matrix)}
    return Part(run, pa.table(columns))


def test_unit_rows_normalise_and_keep_zero_rows():
    column = pa.chunked_array([fsl([[3, 4], [0, 0]]), fsl([[0, 2]])])
    np.testing.assert_allclose(unit_rows(column), [[0.6, 0.8], [0, 0], [0, 1]])


def test_unit_rows_of_a_sliced_chunk():
    column = pa.chunked_array([fsl([[1, 0], [0, 5], [2, 0]]).slice(1, 2)])
    np.testing.assert_allclose(unit_rows(column), [[0, 1], [1, 0]])


def test_search_matches_a_full_sort():
    rng = np.random.default_rng(0)
    matrix = rng.normal(size=(500, 16)).astype(np.float32)
    index = EmbeddingIndex(
        "video",
        "m1",
        pa.table({"video_uri": [f"v{i}" for i in range(500)], "label": ["x"] * 500}),
        unit_rows(pa.chunked_array([fsl(matrix)])),
    )
    q = rng.normal(size=16)
    got = search(index, q, 7)
    expected = np.argsort(-(index.matrix @ (q / np.linalg.norm(q))))[:7]
    assert got["video_uri"].to_pylist() == [f"v{i}" for i in expected]
    assert got.column_names == ["video_uri", "score", "label"]


def test_search_puts_the_query_first_among_ties_and_can_leave_it_out():
    matrix = unit_rows(pa.chunked_array([fsl([[1, 0], [2, 0], [0, 1], [1, 1]])]))
    rows = pa.table({"video_uri": ["a", "b", "c", "d"], "label": ["x"] * 4})
    index = EmbeddingIndex("video", "m1", rows, matrix)
    got = search(index, matrix[1], 3, self_row=1)
    assert got["video_uri"].to_pylist() == ["b", "a", "d"]
    assert got["score"].to_pylist()[:2] == [1.0, 1.0]
    assert search(index, matrix[1], 10, self_row=1, exclude_self=True)["video_uri"].to_pylist() == [
        "a",
        "d",
        "c",
    ]
    assert search(index, matrix[1], 4, self_row=1, exclude_self=True).num_rows == 3


def test_search_rejects_a_query_of_another_size():
    index = EmbeddingIndex(
        "video", "m1", pa.table({"video_uri": ["a"], "label": ["x"]}), np.ones((1, 3), np.float32)
    )
    with pytest.raises(QueryError, match="dimensions"):
        search(index, np.ones(4), 1)


def test_latest_rows_keep_the_newest_run_per_key():
    new = part(run_("new"), ["a", "c"], [[1, 0], [0, 1]])
    old = part(run_("old"), ["a", "b"], [[0, 1], [1, 1]])
    kept = latest_rows([new, old], "video")
    assert [(p.run.run_id, p.table["video_uri"].to_pylist()) for p in kept] == [
        ("new", ["a", "c"]),
        ("old", ["b"]),
    ]


def test_latest_rows_per_clip():
    new = part(run_("new"), ["a", "a"], [[1, 0], [0, 1]], clips=[1, 2])
    old = part(run_("old"), ["a", "a", "a"], [[1, 0], [0, 1], [1, 1]], clips=[0, 1, 2])
    kept = latest_rows([new, old], "clip")
    assert kept[1].table["clip_index"].to_pylist() == [0]
    assert sum(p.table.num_rows for p in kept) == 3


def test_build_index_keeps_one_model_and_drops_missing_embeddings():
    with_null = pa.table(
        {
            "video_uri": ["x", "y"],
            "label": ["l", None],
            "embedding": pa.FixedSizeListArray.from_arrays(
                pa.array([1, 0, 0, 0], pa.float32()), 2, mask=pa.array([False, True])
            ),
        }
    )
    parts = [
        Part(
            run_("r2", "m2"),
            pa.table({"video_uri": ["z"], "label": ["l"], "embedding": fsl([[1, 2]])}),
        ),
        Part(run_("r1", "m1"), with_null),
    ]
    index = build_index(parts, "video", "m1")
    assert index.rows["video_uri"].to_pylist() == ["x"]
    assert index.matrix.shape == (1, 2)
    with pytest.raises(QueryError, match="no video embeddings"):
        build_index(parts, "video", "m3")


def write_run(out: Path, run_id: str, ended_at: str, files_base: str | None, n: int = 1) -> None:
    """A committed run with n clips rows (its record naming files under `files_base`)."""
    name = f"clips/run_date=2030-01-01/{run_id}-00000.parquet"
    path = out / name
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = pa.table(
        {
            "video_uri": [f"v{i}" for i in range(n)],
            "clip_index": pa.array(range(n), pa.int32()),
            "run_id": [run_id] * n,
        }
    )
    pq.write_table(rows, path)
    record = {"run_id": run_id, "ended_at": ended_at, "model_version": "m"}
    if files_base is not None:
        record["files"] = [f"{files_base}/{name}"]
    (out / "_runs").mkdir(exist_ok=True)
    (out / "_runs" / f"{run_id}.json").write_text(json.dumps(record))


def test_catalog_orders_runs_by_commit_and_re_roots_files(tmp_path):
    write_run(tmp_path, "b-run", "2030-01-02T00:00:00+00:00", "/somewhere/else")
    write_run(tmp_path, "a-run", "2030-01-03T01:00:00+01:00", str(tmp_path))  # = 00:00 UTC
    write_run(tmp_path, "legacy", "2030-01-01T00:00:00+00:00", None)  # no file list
    write_run(tmp_path, "legacy-2", "2030-01-01T00:00:00+00:00", None)  # shares a name prefix
    catalog = load_catalog(str(tmp_path))
    assert [r.run_id for r in catalog.runs] == ["legacy", "legacy-2", "b-run", "a-run"]
    assert catalog.files("clips") == [
        str(tmp_path / f"clips/run_date=2030-01-01/{r}-00000.parquet")
        for r in ("legacy", "legacy-2", "b-run", "a-run")
    ]
    assert catalog.latest().run_id == "a-run"
    assert catalog.files("errors") == []


def test_catalog_of_a_relative_path_is_absolute(tmp_path, monkeypatch):
    write_run(tmp_path, "r", "2030-01-01T00:00:00+00:00", str(tmp_path))
    monkeypatch.chdir(tmp_path.parent)
    catalog = load_catalog(tmp_path.name)
    assert catalog.output_uri == str(tmp_path)


def test_formats():
    table = pa.table(
        {
            "name": ["a,b", None],
            "score": pa.array([0.5, float("nan")], pa.float32()),
            "emb": fsl([[1, 2], [3, 4]]),
            "at": pa.array(
                [datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC), None], pa.timestamp("us", "UTC")
            ),
        }
    )
    rows = json.loads(render(table, "json"))
    assert rows == [
        {"name": "a,b", "score": 0.5, "emb": [1.0, 2.0], "at": "2030-01-02T03:04:05+00:00"},
        {"name": None, "score": None, "emb": [3.0, 4.0], "at": None},
    ]
    lines = list(csv.reader(io.StringIO(render(table, "csv").decode())))
    assert lines == [
        ["name", "score", "emb", "at"],
        ["a,b", "0.5", "[1.0,2.0]", "2030-01-02T03:04:05+00:00"],
        ["", "", "[3.0,4.0]", ""],
    ]
    back = pq.read_table(io.BytesIO(render(table, "parquet")))
    assert back.column_names == table.column_names
    assert back["emb"].to_pylist() == [[1.0, 2.0], [3.0, 4.0]] and back["at"].equals(table["at"])
    text = render(table, "table").decode().splitlines()
    assert text[0].split() == ["name", "score", "emb", "at"]
    assert text[-1] == "(2 rows)" and "NULL" in text[3]


def test_one_line_drops_duckdb_carets():
    message = 'Parser Error: syntax error at or near "SELEC"\n\nLINE 1: SELEC 1\n        ^^^^^'
    assert one_line(message) == 'Parser Error: syntax error at or near "SELEC"'
    assert one_line('Catalog Error: Table x does not exist!\nDid you mean "y"?') == (
        'Catalog Error: Table x does not exist!; Did you mean "y"?'
    )


def test_from_dict_rebuilds_nested_configs_and_ignores_unknown_keys():
    plan = from_dict(
        PlanConfig, {"unit_frames": 7, "guard": {"timeout_s": 5.0}, "from_the_future": 1}
    )
    assert plan == PlanConfig(unit_frames=7, guard=GuardConfig(timeout_s=5.0))


def test_build_index_skips_a_run_where_every_video_failed():
    """Such a run writes its videos with an embedding of size 0, all null."""
    all_failed = pa.table(
        {
            "video_uri": ["f"],
            "label": pa.array([None], pa.string()),
            "embedding": pa.array([None], pa.list_(pa.float32(), 0)),
        }
    )
    parts = [Part(run_("r2"), all_failed), part(run_("r1"), ["a", "b"], [[1, 0], [0, 1]])]
    index = build_index(latest_rows(parts, "video"), "video", "m1")
    assert index.rows["video_uri"].to_pylist() == ["a", "b"]
