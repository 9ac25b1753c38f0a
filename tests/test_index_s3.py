"""The index job from S3 to S3: a moto server over HTTP on 127.0.0.1, read back with s3fs.

One in-process run on the session's local Ray (its workers inherit AWS_ENDPOINT_URL): sample
videos and a broken file uploaded with boto3 under raw/, the index written under index/.
"""

from __future__ import annotations

import io
import json
import re
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import schema
from pipeline.config import IndexConfig, SamplingConfig, StorageConfig
from pipeline.index import run
from tests.videos import pyav_frame_count

SAMPLING = SamplingConfig(fps=2, clip_frames=4, image_size=32)
# Explicit credentials through --storage-options (moto takes any): they must reach every worker
# and never be written anywhere.
SECRET = "s3cr3t-never-in-output"
STORAGE = StorageConfig(options={"key": "AKIAREELAYTEST", "secret": SECRET})
KEY = re.compile(
    r"^index/(?P<table>videos|clips|errors)/run_date=\d{4}-\d{2}-\d{2}/(?P<run>.+)-\d{5}\.parquet$"
)


@pytest.fixture(scope="module")
def s3_run(ray_local, s3_server, sample_corpus: Path):
    import boto3
    import s3fs

    bucket = f"reelay-{uuid.uuid4().hex[:10]}"
    client = boto3.client("s3")
    client.create_bucket(Bucket=bucket)
    sources = {}
    for path in sorted(sample_corpus.rglob("*.mp4"))[:4]:
        sources[f"raw/{path.relative_to(sample_corpus).as_posix()}"] = path
    # A key with spaces and non-ASCII characters must survive URL encoding both ways.
    sources["raw/other dir/vidéo à tester.mp4"] = sorted(sample_corpus.rglob("*.mp4"))[-1]
    for key, path in sources.items():
        client.upload_file(str(path), bucket, key)
    client.put_object(Bucket=bucket, Key="raw/broken.mp4", Body=b"not a video, only text\n" * 9)
    client.put_object(Bucket=bucket, Key="raw/notes.txt", Body=b"not listed")
    etags = {
        key: client.head_object(Bucket=bucket, Key=key)["ETag"].strip('"')
        for key in [*sources, "raw/broken.mp4"]
    }

    summary = run(
        IndexConfig(
            input_uri=f"s3://{bucket}/raw/",
            output_uri=f"s3://{bucket}/index",
            sampling=SAMPLING,
            storage=STORAGE,
            run_id="s3-run",
        )
    )
    fs = s3fs.S3FileSystem()
    fs.invalidate_cache()

    def read(table: str) -> pa.Table:
        paths = sorted(fs.find(f"{bucket}/index/{table}"))
        assert paths, table
        return pa.concat_tables([pq.read_table(p, filesystem=fs) for p in paths])

    record_text = fs.cat_file(f"{bucket}/index/{schema.RUNS}/s3-run.json").decode()
    keys = sorted(
        o["Key"]
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="index/")
        for o in page.get("Contents", [])
    )
    return {
        "bucket": bucket,
        "sources": sources,
        "etags": etags,
        "summary": summary,
        "fs": fs,
        "keys": keys,
        "videos": read(schema.VIDEOS),
        "clips": read(schema.CLIPS),
        "errors": read(schema.ERRORS),
        "record_text": record_text,
        "record": json.loads(record_text),
    }


def test_videos_from_s3(s3_run):
    bucket = s3_run["bucket"]
    rows = {r["video_uri"]: r for r in s3_run["videos"].to_pylist()}
    expected = {f"s3://{bucket}/{k}" for k in [*s3_run["sources"], "raw/broken.mp4"]}
    assert set(rows) == expected  # notes.txt is not a video
    assert s3_run["videos"].num_rows == len(expected)
    clips_per_video: dict[str, int] = {}
    for uri in s3_run["clips"]["video_uri"].to_pylist():
        clips_per_video[uri] = clips_per_video.get(uri, 0) + 1
    for key, local in s3_run["sources"].items():
        v = rows[f"s3://{bucket}/{key}"]
        assert v["status"] == "ok", key
        assert v["num_frames"] == pyav_frame_count(local)
        assert v["size_bytes"] == local.stat().st_size
        assert v["fingerprint"] == f"etag:{s3_run['etags'][key]}"
        assert v["num_clips"] == clips_per_video[v["video_uri"]] >= 1
        assert np.isfinite(np.asarray(v["embedding"], np.float32)).all()
    broken = rows[f"s3://{bucket}/raw/broken.mp4"]
    assert broken["status"] == "error" and broken["num_clips"] == 0


def test_errors_and_clips_from_s3(s3_run):
    bucket = s3_run["bucket"]
    (err,) = s3_run["errors"].to_pylist()
    assert err["video_uri"] == f"s3://{bucket}/raw/broken.mp4"
    assert err["stage"] in ("plan", "decode") and err["error_type"] and err["message"]
    assert SECRET not in err["message"]
    for c in s3_run["clips"].to_pylist():
        assert c["video_uri"].startswith(f"s3://{bucket}/raw/")
        assert len(c["frame_indices"]) == SAMPLING.clip_frames
        assert c["run_id"] == "s3-run"


def test_run_record_and_layout_on_s3(s3_run):
    record = s3_run["record"]
    n = len(s3_run["sources"])
    assert record["status"] == "ok"
    assert record["counts"]["listed"] == n + 1
    assert record["counts"]["processed"] == n
    assert record["counts"]["failed"] == 1
    assert record["counts"]["clips"] == s3_run["clips"].num_rows
    assert s3_run["summary"].counts["processed"] == n
    bucket = s3_run["bucket"]
    assert all(f.startswith(f"s3://{bucket}/index/") for f in record["files"])
    assert not [k for k in s3_run["keys"] if schema.STAGING in k]  # staging cleaned up
    parquet = [k for k in s3_run["keys"] if k.endswith(".parquet")]
    tables = {m["table"] for k in parquet if (m := KEY.match(k))}
    assert tables == {schema.VIDEOS, schema.CLIPS, schema.ERRORS}
    for k in parquet:
        m = KEY.match(k)
        if m:  # table files; other folders (e.g. a ledger) have their own layout
            assert m["run"] == "s3-run", k
    graphs = [k for k in s3_run["keys"] if k.endswith(".faiss")]
    assert sorted(k.split("/")[-2] for k in graphs) == [schema.CLIPS, "frames", schema.VIDEOS]
    assert {f"s3://{bucket}/{k}" for k in parquet + graphs} == set(record["files"])


def test_credentials_are_not_recorded(s3_run):
    record = s3_run["record"]
    assert sorted(record["config"]["storage"]["options"]) == ["key", "secret"]  # names only
    assert SECRET not in s3_run["record_text"]
    assert "AKIAREELAYTEST" not in s3_run["record_text"]
    assert SECRET not in s3_run["summary"].line()


def test_schemas_on_s3(s3_run):
    dim = s3_run["videos"].schema.field("embedding").type.list_size
    for table, want in {
        schema.VIDEOS: schema.videos_schema(dim),
        schema.CLIPS: schema.clips_schema(dim),
        schema.ERRORS: schema.ERRORS_SCHEMA,
    }.items():
        got = s3_run[table].schema
        assert got.names == want.names
        assert [f.type for f in got] == [f.type for f in want], table


def test_duckdb_reads_the_s3_output_through_fsspec(s3_run):
    import duckdb
    import s3fs

    bucket = s3_run["bucket"]
    con = duckdb.connect()
    con.register_filesystem(s3fs.S3FileSystem())
    got = con.execute(
        f"""SELECT video_uri, status, num_clips, embedding, run_date
            FROM read_parquet('s3://{bucket}/index/videos/**/*.parquet', hive_partitioning = true)
            ORDER BY video_uri"""
    ).fetchall()
    want = sorted(s3_run["videos"].to_pylist(), key=lambda r: r["video_uri"])
    assert [g[:3] for g in got] == [(w["video_uri"], w["status"], w["num_clips"]) for w in want]
    for g, w in zip(got, want, strict=True):
        if w["embedding"] is not None:
            np.testing.assert_array_equal(np.asarray(g[3], np.float32), w["embedding"])
    assert {str(g[4]) for g in got} == {s3_run["record"]["started_at"][:10]}
    n_clips = con.execute(
        f"SELECT count(*) FROM read_parquet('s3://{bucket}/index/clips/**/*.parquet')"
    ).fetchone()[0]
    assert n_clips == s3_run["clips"].num_rows


def test_parquet_files_are_readable_as_plain_bytes(s3_run):
    """What Athena or Spark would do: fetch one object and parse it, no fsspec in between."""
    import boto3

    key = next(k for k in s3_run["keys"] if k.startswith("index/clips/"))
    body = boto3.client("s3").get_object(Bucket=s3_run["bucket"], Key=key)["Body"].read()
    table = pq.read_table(io.BytesIO(body))
    assert table.num_rows >= 1 and "embedding" in table.column_names
