"""The SQL and similarity paths over an index the real job wrote to S3 (a moto server)."""

from __future__ import annotations

import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest


@pytest.fixture(scope="module")
def s3_index(ray_local, s3_server, query_corpus, index_builder):
    import uuid

    import boto3

    bucket = f"query-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket=bucket)
    uri = f"s3://{bucket}/lake/video_index"
    return uri, index_builder(query_corpus, uri)


def test_sql_over_s3(s3_index, cli):
    uri, record = s3_index
    res = cli(
        uri,
        "SELECT (SELECT count(*) FROM videos) AS videos, (SELECT count(*) FROM clips) AS clips,"
        " (SELECT count(*) FROM errors) AS errors, (SELECT min(run_id) FROM runs) AS run_id",
        "--format",
        "json",
    )
    assert res.code == 0, res.err
    assert res.json() == [
        {"videos": 7, "clips": record["counts"]["clips"], "errors": 1, "run_id": record["run_id"]}
    ]


def test_uncommitted_s3_files_are_invisible(s3_index, cli):
    import fsspec

    uri, _ = s3_index
    fs = fsspec.filesystem("s3")
    root = uri.removeprefix("s3://")
    src = sorted(p for p in fs.find(f"{root}/clips") if p.endswith(".parquet"))[0]
    table = pq.read_table(io.BytesIO(fs.cat_file(src)))
    table = table.set_column(
        table.schema.get_field_index("run_id"), "run_id", pa.array(["ghost"] * table.num_rows)
    )
    sink = io.BytesIO()
    pq.write_table(table, sink)
    fs.pipe(f"{root}/clips/run_date=2030-01-01/ghost-00000.parquet", sink.getvalue())
    fs.pipe(f"{root}/_staging/ghost/clips/part-0.parquet", sink.getvalue())
    res = cli(
        uri, "SELECT count(*) AS n, count(DISTINCT run_id) AS runs FROM clips", "--format", "json"
    )
    assert res.code == 0, res.err
    assert res.json() == [{"n": 12, "runs": 1}]


def test_similar_over_s3_and_out_to_s3(s3_index, cli, query_corpus):
    import fsspec

    uri, _ = s3_index
    query = str(sorted(query_corpus.rglob("*.mp4"))[1])
    out = f"{uri.rsplit('/', 1)[0]}/results/similar.json"
    res = cli(uri, "--similar", query, "-k", "3", "--format", "json", "--out", out)
    assert res.code == 0, res.err
    fs = fsspec.filesystem("s3")
    fs.invalidate_cache()
    rows = json.loads(fs.cat_file(out.removeprefix("s3://")))
    assert rows[0] == {"video_uri": query, "score": 1.0, "label": rows[0]["label"]}
    assert len(rows) == 3


def test_missing_s3_index(s3_index, cli):
    uri, _ = s3_index
    res = cli(uri.replace("video_index", "no_index_here"), "SELECT 1")
    assert res.code == 2
    assert len(res.err.strip().splitlines()) == 1 and "no index at" in res.err
