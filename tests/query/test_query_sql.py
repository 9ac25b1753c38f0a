"""jobs/query.py OUTPUT_URI "SQL": the four views, committed runs only, output formats."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def test_views_hold_what_the_run_record_counts(local_index, cli):
    res = cli(
        local_index.output_uri,
        "SELECT (SELECT count(*) FROM videos) AS videos, (SELECT count(*) FROM clips) AS clips,"
        " (SELECT count(*) FROM errors) AS errors, (SELECT count(*) FROM runs) AS runs,"
        " (SELECT count(*) FROM videos WHERE status = 'ok') AS ok",
        "--format",
        "json",
    )
    assert res.code == 0, res.err
    counts = local_index.record["counts"]
    assert res.json() == [
        {
            "videos": counts["processed"] + counts["failed"],
            "clips": counts["clips"],
            "errors": counts["errors"],
            "runs": 1,
            "ok": counts["processed"],
        }
    ]
    assert counts["processed"] == 6 and counts["failed"] == 1 and counts["clips"] == 12
    assert res.err == ""


def test_runs_view_is_the_record_typed_like_read_json(local_index, cli):
    res = cli(
        local_index.output_uri,
        "SELECT run_id, status, counts.processed AS processed, model_version,"
        " typeof(ended_at) AS t, config.model.encoder AS encoder FROM runs",
        "--format",
        "json",
    )
    assert res.code == 0, res.err
    [row] = res.json()
    assert row["run_id"] == local_index.run_id
    assert row["processed"] == 6 and row["status"] == "ok"
    assert row["model_version"] == local_index.record["model_version"]
    assert row["t"] == "TIMESTAMP WITH TIME ZONE" and row["encoder"] == "small_cnn"


def test_run_date_is_a_date_column(local_index, cli):
    res = cli(
        local_index.output_uri,
        "SELECT DISTINCT CAST(run_date AS VARCHAR) AS d, typeof(run_date) AS t FROM clips",
        "--format",
        "json",
    )
    assert res.code == 0, res.err
    assert res.json() == [{"d": local_index.record["started_at"][:10], "t": "DATE"}]


def test_json_is_a_list_of_row_objects(local_index, cli):
    res = cli(
        local_index.output_uri,
        "SELECT video_uri, clip_index, score, embedding, topk_labels FROM clips"
        " ORDER BY video_uri, clip_index",
        "--format",
        "json",
    )
    assert res.code == 0, res.err
    rows = res.json()
    assert isinstance(rows, list) and len(rows) == 12
    assert all(isinstance(r, dict) for r in rows)
    assert set(rows[0]) == {"video_uri", "clip_index", "score", "embedding", "topk_labels"}
    assert len(rows[0]["embedding"]) == 128 and isinstance(rows[0]["embedding"][0], float)
    assert [r["clip_index"] for r in rows[:2]] == [0, 1]


def test_json_timestamps_are_iso_text(local_index, cli):
    res = cli(local_index.output_uri, "SELECT indexed_at FROM videos LIMIT 1", "--format", "json")
    assert res.code == 0, res.err
    assert res.json()[0]["indexed_at"].startswith(local_index.record["started_at"][:10])


def test_csv_has_a_header_and_nested_values_as_json(local_index, cli):
    res = cli(
        local_index.output_uri,
        "SELECT video_uri, clip_index, frame_indices FROM clips ORDER BY video_uri, clip_index",
        "--format",
        "csv",
    )
    assert res.code == 0, res.err
    rows = list(csv.reader(io.StringIO(res.out)))
    assert rows[0] == ["video_uri", "clip_index", "frame_indices"]
    assert len(rows) == 13
    assert json.loads(rows[1][2]) == [0, 5, 10, 15]  # 2 samples per second of a 10 fps video


def test_table_format_is_aligned_and_counts_rows(local_index, cli):
    res = cli(local_index.output_uri, "SELECT label, count(*) AS n FROM clips GROUP BY label")
    assert res.code == 0, res.err
    lines = res.out.splitlines()
    assert lines[0].split() == ["label", "n"]
    assert set(lines[1]) <= {"-", " "}
    assert lines[-1] == f"({len(lines) - 3} row{'s' if len(lines) != 4 else ''})"


def test_parquet_and_out_file(local_index, cli, tmp_path):
    target = tmp_path / "deep" / "result.parquet"
    res = cli(
        local_index.output_uri,
        "SELECT video_uri, embedding, indexed_at FROM videos ORDER BY video_uri",
        "--format",
        "parquet",
        "--out",
        target,
    )
    assert res.code == 0, res.err
    assert res.out == ""
    table = pq.read_table(target)
    assert table.num_rows == 7
    assert pa.types.is_timestamp(table.schema.field("indexed_at").type)


def test_out_file_for_text_formats(local_index, cli, tmp_path):
    target = tmp_path / "labels.json"
    res = cli(local_index.output_uri, "SELECT 1 AS one", "--format", "json", "--out", target)
    assert res.code == 0 and res.out == ""
    assert json.loads(target.read_text()) == [{"one": 1}]


def test_sql_from_stdin(local_index, cli, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("SELECT count(*) AS n FROM videos"))
    res = cli(local_index.output_uri, "-", "--format", "json")
    assert res.code == 0, res.err
    assert res.json() == [{"n": 7}]


def test_several_statements_return_the_last(local_index, cli):
    res = cli(
        local_index.output_uri,
        "CREATE TEMP TABLE x AS SELECT 41 AS v; SELECT v + 1 AS v FROM x",
        "--format",
        "json",
    )
    assert res.code == 0, res.err
    assert res.json() == [{"v": 42}]


def _rewrite_run_id(src: Path, dst: Path, run_id: str) -> None:
    table = pq.read_table(src)
    table = table.set_column(
        table.schema.get_field_index("run_id"), "run_id", pa.array([run_id] * table.num_rows)
    )
    dst.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, dst)


def test_uncommitted_runs_are_invisible(index_copy, cli):
    out = Path(index_copy.output_uri)
    clips = sorted((out / "clips").rglob("*.parquet"))
    videos = sorted((out / "videos").rglob("*.parquet"))
    # a run whose files are in place but whose record was never written (crash mid-commit)
    _rewrite_run_id(
        clips[0], out / "clips" / "run_date=2030-01-01" / "ghost-00000.parquet", "ghost"
    )
    _rewrite_run_id(
        videos[0], out / "videos" / "run_date=2030-01-01" / "ghost-00000.parquet", "ghost"
    )
    # a run still in staging
    staged = out / "_staging" / "staged" / "clips" / "part-0.parquet"
    _rewrite_run_id(clips[0], staged, "staged")
    shutil.copy(clips[0], out / "_staging" / "staged" / "clips" / "same-run-id.parquet")
    res = cli(
        out,
        "SELECT (SELECT count(*) FROM clips) AS clips, (SELECT count(*) FROM videos) AS videos,"
        " (SELECT count(DISTINCT run_id) FROM clips) AS runs,"
        " (SELECT count(*) FROM clips WHERE run_date > DATE '2029-01-01') AS future",
        "--format",
        "json",
    )
    assert res.code == 0, res.err
    assert res.json() == [{"clips": 12, "videos": 7, "runs": 1, "future": 0}]


def test_a_copied_index_reads_its_own_files(index_copy, local_index, cli):
    """Records name the files where they were written; a copy must read its own files."""
    out = Path(index_copy.output_uri)
    files = sorted((out / "clips").rglob("*.parquet"))
    for f in files:
        pq.write_table(pq.read_table(f).slice(0, 1), f)  # one row left per file, in the copy
    res = cli(out, "SELECT count(*) AS n FROM clips", "--format", "json")
    assert res.code == 0, res.err
    assert res.json() == [{"n": len(files)}]
    original = cli(local_index.output_uri, "SELECT count(*) AS n FROM clips", "--format", "json")
    assert original.json() == [{"n": 12}]
