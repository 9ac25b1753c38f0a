"""Bad input: one clear line on stderr, exit code 2, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def assert_one_line_error(res, *fragments: str) -> None:
    assert res.code == 2, (res.code, res.out, res.err)
    assert res.out == ""
    lines = res.err.strip().splitlines()
    assert len(lines) == 1, res.err
    assert lines[0].startswith("reelay query: error: ")
    assert "Traceback" not in res.err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_missing_folder(cli, tmp_path):
    assert_one_line_error(cli(tmp_path / "nope", "SELECT 1"), "no index at", "does not exist")


def test_folder_without_committed_runs(cli, tmp_path):
    (tmp_path / "videos").mkdir()
    assert_one_line_error(cli(tmp_path, "SELECT 1"), "no index at", "no committed run")


def test_corrupt_run_record(cli, index_copy):
    record = next(Path(index_copy.output_uri, "_runs").glob("*.json"))
    record.write_text("{not json")
    assert_one_line_error(cli(index_copy.output_uri, "SELECT 1"), "is not valid JSON")


@pytest.mark.parametrize(
    ("sql", "fragment"),
    [
        ("SELEC * FROM videos", "Parser Error"),
        ("SELECT * FROM videoz", "videoz"),
        ("SELECT no_such_column FROM clips", "no_such_column"),
        ("   ", "empty"),
    ],
)
def test_sql_errors(cli, local_index, sql, fragment):
    assert_one_line_error(cli(local_index.output_uri, sql), "SQL" if sql.strip() else "", fragment)


def test_unknown_video(cli, local_index):
    assert_one_line_error(
        cli(local_index.output_uri, "--similar", "s3://nowhere/x.mp4"), "not in the index", "x.mp4"
    )


def test_unknown_clip(cli, local_index):
    res = cli(
        local_index.output_uri,
        "--similar",
        local_index.video_uris()[0],
        "--level",
        "clip",
        "--clip-index",
        "99",
    )
    assert_one_line_error(res, "no clip 99")


def test_video_without_embedding(cli, local_index):
    assert_one_line_error(
        cli(local_index.output_uri, "--similar", local_index.broken_uri), "no embedding"
    )


def test_similar_to_a_file_that_is_not_there(cli, local_index, tmp_path):
    assert_one_line_error(
        cli(local_index.output_uri, "--similar-to-file", tmp_path / "missing.mp4"),
        "similar-to-file",
    )


def test_similar_to_a_broken_file(cli, local_index):
    assert_one_line_error(
        cli(local_index.output_uri, "--similar-to-file", local_index.broken_uri), "cannot embed"
    )


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--similar", "x", "--level", "frame"], "--level"),
        (["--similar", "x", "-k", "0"], "-k"),
        (["SELECT 1", "--similar", "x"], "give one of SQL"),
        (["SELECT 1", "--text", "a dog"], "give one of SQL"),
        (["--text", "  "], "--text needs some words"),
        ([], "give SQL"),
        (["SELECT 1", "--format", "xml"], "--format"),
        (["SELECT 1", "--no-such-flag"], "unrecognized arguments"),
        (["SELECT 1", "--storage-options", "{nope"], "--storage-options"),
        (["--similar", "x", "-k", "many"], "invalid int value"),
    ],
)
def test_usage_errors(cli, local_index, argv, fragment):
    assert_one_line_error(cli(local_index.output_uri, *argv), fragment)


def test_unsupported_scheme(cli):
    assert_one_line_error(cli("gs://bucket/index", "SELECT 1"), "unsupported URI scheme")


def test_the_real_cli_in_a_subprocess(tmp_path):
    env = {**os.environ, "PYTHONPATH": ""}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "jobs" / "query.py"), str(tmp_path / "nope"), "SELECT 1"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "no index at" in proc.stderr and "Traceback" not in proc.stderr


def test_the_real_cli_answers_sql(local_index, tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "jobs" / "query.py"),
            local_index.output_uri,
            "SELECT count(*) AS n FROM clips",
            "--format",
            "csv",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["n", "12"]
    assert proc.stderr == ""
