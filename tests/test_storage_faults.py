"""Storage faults: s3fs talks to the session's moto server through tests/s3_faults.FaultProxy.

The proxy answers chosen requests with 503 SlowDown, a connection reset, a delay past the read
timeout, or 403 AccessDenied, and forwards the rest. The endpoint reaches s3fs through
StorageConfig (as --storage-options would), which travels with the config to Ray's workers.

- transient faults (throttling, resets, timeouts) on listing, reading and writing are retried
  by botocore / s3fs (pipeline/storage.py's settings, no loop of our own) and the result is
  complete; each test checks that the faults it planned were met, so a retry really happened;
- access denied and missing buckets fail fast, once, with one clear message, on input and
  output, and a missing output bucket is never created;
- one small index run over S3 with faults on every stage indexes every video once.
"""

from __future__ import annotations

import io
import json
import time
import uuid

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import schema, storage
from pipeline.config import IndexConfig, SamplingConfig, StorageConfig
from pipeline.index import run
from pipeline.index.commit import RunOutput
from pipeline.listing import InputError, list_videos
from pipeline.runs import OutputError
from pipeline.samples import VideoSpec, write_video
from pipeline.video.sampling import plan_clips
from tests.s3_faults import FaultProxy

SECRET = "s3cr3t-faults-never-in-messages"
LIST = r"list-type=2"  # ListObjectsV2
FAIL_FAST_S = 5.0  # an answer that is not retried comes back well within this


@pytest.fixture()
def proxy(s3_server):
    with FaultProxy(s3_server) as p:
        yield p


def via(proxy: FaultProxy, **options) -> StorageConfig:
    """Options as --storage-options would give them: the proxy as the endpoint, explicit keys."""
    return StorageConfig(
        options={"endpoint_url": proxy.endpoint, "key": "AKIAFAULTS", "secret": SECRET, **options}
    )


def put(bucket: str, objects: dict[str, bytes]) -> None:
    client = boto3.client("s3")  # straight to moto, not through the proxy
    for key, body in objects.items():
        client.put_object(Bucket=bucket, Key=key, Body=body)


def keys(bucket: str, prefix: str = "") -> list[str]:
    pages = (
        boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    )
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def bucket_exists(name: str) -> bool:
    return name in {b["Name"] for b in boto3.client("s3").list_buckets()["Buckets"]}


def assert_all_faults_met(proxy: FaultProxy) -> None:
    for rule in proxy.rules:
        assert rule.hits == rule.times, f"planned fault never met: {rule}"


# ---------------------------------------------------------------------------------- transient


def test_listing_is_retried_through_throttling_and_resets(proxy, s3_bucket):
    put(s3_bucket, {f"raw/v{i}.mp4": bytes([i]) * (100 + i) for i in range(5)})
    put(s3_bucket, {"raw/sub/w.mkv": b"w" * 7, "raw/notes.txt": b"not a video"})
    direct = list_videos(f"s3://{s3_bucket}/raw/")
    proxy.add("slowdown", "GET", LIST, times=1)
    proxy.add("reset", "GET", LIST, times=1)
    entries = list_videos(f"s3://{s3_bucket}/raw/", via(proxy))
    assert entries == direct
    names = [*(f"v{i}.mp4" for i in range(5)), "sub/w.mkv"]
    assert [e.uri for e in entries] == sorted(f"s3://{s3_bucket}/raw/{n}" for n in names)
    assert all(e.fingerprint.startswith("etag:") for e in entries)
    assert_all_faults_met(proxy)
    # the faults came first, then the same request succeeded
    answers = [s.action for s in proxy.seen(method="GET", target=LIST)]
    assert answers[:2] == ["slowdown", "reset"] and "forwarded" in answers[2:]


def test_reads_are_retried_through_throttling_resets_and_timeouts(
    proxy, s3_bucket, tmp_path, monkeypatch
):
    monkeypatch.setenv("REELAY_CACHE_DIR", str(tmp_path / "cache"))
    bodies = {f"raw/v{i}.mp4": bytes(range(256)) * (40 + i) for i in range(3)}
    put(s3_bucket, bodies)
    proxy.add("reset", "GET", r"/raw/v0\.mp4$", times=2)
    proxy.add("slowdown", "GET", r"/raw/v1\.mp4$", times=2)
    proxy.add("delay", "GET", r"/raw/v2\.mp4$", times=1, delay_s=2.5)
    # a read timeout short enough for the delay to trip it (the default is 120 s)
    cfg = via(proxy, config_kwargs={"read_timeout": 1})
    for key, body in bodies.items():
        path = storage.local_copy(f"s3://{s3_bucket}/{key}", f"etag:{key}", cfg)
        assert path.read_bytes() == body, key
    assert_all_faults_met(proxy)
    for key in bodies:  # each object was asked again after its fault, and served
        assert [s.status for s in proxy.seen(method="GET", target=key + "$")][-1] in (200, 206)
    assert not list((tmp_path / "cache").glob(".part-*"))  # no partial download left


def test_writes_and_the_commit_are_retried_through_throttling_and_resets(proxy, s3_bucket):
    out_uri = f"s3://{s3_bucket}/index"
    out = RunOutput(out_uri, "faulty-commit", "2026-01-02", via(proxy))
    errors = pa.table(
        {"video_uri": ["s3://b/x.mp4"], "stage": ["plan"], "error_type": ["E"], "message": ["m"]}
    )
    proxy.add("slowdown", "PUT", r"/_staging/", times=1)  # the write probe
    proxy.add("reset", "PUT", r"/_staging/faulty-commit/errors/", times=1)  # a staged table
    proxy.add("reset", "PUT", r"/errors/run_date=", times=1)  # the commit's copy
    proxy.add("slowdown", "PUT", r"/_runs/faulty-commit\.json$", times=1)  # the commit point
    proxy.add("slowdown", "POST", r"\?delete", times=1)  # deleting the write probe or staging
    out.check_writable()
    out.write_small_table(schema.ERRORS, errors, "errors")
    files = out.commit({"run_id": "faulty-commit", "started_at": "2026-01-02T00:00:00+00:00"})
    assert_all_faults_met(proxy)
    target = "index/errors/run_date=2026-01-02/faulty-commit-00000.parquet"
    assert files == [f"s3://{s3_bucket}/{target}"]
    assert keys(s3_bucket) == sorted([target, "index/_runs/faulty-commit.json"])  # no staging
    body = boto3.client("s3").get_object(Bucket=s3_bucket, Key=target)["Body"].read()
    assert pq.read_table(io.BytesIO(body)).select(errors.column_names).equals(errors)
    record = json.loads(
        boto3.client("s3")
        .get_object(Bucket=s3_bucket, Key="index/_runs/faulty-commit.json")["Body"]
        .read()
    )
    assert record["files"] == files


# ---------------------------------------------------------------------------------- fail fast


def test_access_denied_on_listing_fails_fast_with_one_message(proxy, s3_bucket):
    put(s3_bucket, {"raw/v.mp4": b"v"})
    proxy.add("denied", None, LIST, times=-1)
    started = time.monotonic()
    with pytest.raises(InputError) as info:
        list_videos(f"s3://{s3_bucket}/raw/", via(proxy))
    assert time.monotonic() - started < FAIL_FAST_S
    message = str(info.value)
    assert message.startswith(f"no permission to list s3://{s3_bucket}/raw/")
    assert "Access Denied" in message and "credentials" in message
    assert SECRET not in message and "AKIAFAULTS" not in message
    assert len(proxy.seen("denied")) == 1  # refused once, not retried


def test_access_denied_on_the_output_fails_fast_before_any_work(proxy, s3_bucket):
    out = RunOutput(f"s3://{s3_bucket}/index", "denied-run", "2026-01-02", via(proxy))
    proxy.add("denied", "PUT", "", times=-1)
    started = time.monotonic()
    with pytest.raises(OutputError) as info:
        out.check_writable()
    assert time.monotonic() - started < FAIL_FAST_S
    assert str(info.value).startswith(f"cannot write to s3://{s3_bucket}/index: Access Denied")
    assert SECRET not in str(info.value)
    assert len(proxy.seen("denied")) == 1
    assert keys(s3_bucket) == []


def test_missing_input_bucket_fails_fast_with_one_message(proxy):
    missing = f"missing-{uuid.uuid4().hex[:10]}"
    for uri in (f"s3://{missing}/raw/", f"s3://{missing}/raw/*.mp4", f"s3://{missing}/m.csv"):
        started = time.monotonic()
        with pytest.raises(InputError) as info:
            list_videos(uri, via(proxy))
        assert time.monotonic() - started < FAIL_FAST_S, uri
        assert str(info.value).startswith(f"bucket '{missing}' of input {uri} does not exist")
    assert not bucket_exists(missing)
    assert all(s.status == 404 for s in proxy.seen()), proxy.log  # nothing retried as transient


def test_missing_output_bucket_fails_fast_and_is_not_created(proxy):
    missing = f"missing-{uuid.uuid4().hex[:10]}"
    out = RunOutput(f"s3://{missing}/index", "no-bucket", "2026-01-02", via(proxy))
    started = time.monotonic()
    with pytest.raises(OutputError) as info:
        out.check_writable()
    assert time.monotonic() - started < FAIL_FAST_S
    assert str(info.value).startswith(f"cannot write to s3://{missing}/index: ")
    assert "bucket does not exist" in str(info.value)
    # s3fs's makedirs would have created the bucket (pipeline.storage.S3NoBucketCreation)
    assert not bucket_exists(missing)
    assert proxy.seen(method="PUT") == []


def test_cli_exits_2_with_one_line_for_denied_and_missing_buckets(cli, proxy, s3_bucket, tmp_path):
    options = json.dumps(via(proxy).options)
    put(s3_bucket, {"raw/v.mp4": b"v"})
    proxy.add("denied", None, LIST, times=-1)
    code, logs, _ = cli(
        "--input", f"s3://{s3_bucket}/raw/", "--output", str(tmp_path / "out"),
        "--storage-options", options,
    )  # fmt: skip
    assert code == 2
    assert f"no permission to list s3://{s3_bucket}/raw/" in logs
    assert SECRET not in logs
    assert not (tmp_path / "out" / schema.RUNS).exists()
    proxy.clear()
    missing = f"missing-{uuid.uuid4().hex[:10]}"
    code, logs, _ = cli(
        "--input", str(tmp_path), "--output", f"s3://{missing}/index",
        "--storage-options", options,
    )  # fmt: skip
    assert code == 2
    assert f"cannot write to s3://{missing}/index" in logs and "bucket does not exist" in logs
    assert not bucket_exists(missing)


# ---------------------------------------------------------------------------------- a full run

SAMPLING = SamplingConfig(fps=2, clip_frames=2, image_size=32)
SPECS = {f"raw/v{i}.mp4": VideoSpec(seconds=2.0, seed=50 + i) for i in range(3)}


def test_index_run_through_faulty_storage_indexes_every_video_once(
    ray_local, proxy, s3_bucket, tmp_path
):
    for key, spec in SPECS.items():
        path = write_video(spec, tmp_path / key)
        boto3.client("s3").upload_file(str(path), s3_bucket, key)
    put(s3_bucket, {"raw/broken.mp4": b"not a video\n" * 8})
    # faults on every stage: listing (driver), downloads (plan tasks), staging writes (Ray Data
    # write tasks), the commit's copies (driver) and the record (the commit point)
    proxy.add("slowdown", "GET", LIST, times=1)
    proxy.add("reset", "GET", r"/raw/v0\.mp4$", times=1)
    proxy.add("slowdown", "GET", r"/raw/v1\.mp4$", times=1)
    proxy.add("slowdown", "PUT", r"/_staging/faulty-run/clips/", times=1)
    proxy.add("reset", "PUT", r"/videos/run_date=", times=1)
    proxy.add("slowdown", "PUT", r"/_runs/faulty-run\.json$", times=1)
    summary = run(
        IndexConfig(
            input_uri=f"s3://{s3_bucket}/raw/",
            output_uri=f"s3://{s3_bucket}/index",
            sampling=SAMPLING,
            storage=via(proxy),
            run_id="faulty-run",
        )
    )
    assert_all_faults_met(proxy)
    # the workers went through the proxy too: StorageConfig reached them
    for key in SPECS:
        assert proxy.seen("forwarded", "GET", key + "$"), key

    def table(name: str) -> pa.Table:
        client = boto3.client("s3")
        parts = [
            pq.read_table(io.BytesIO(client.get_object(Bucket=s3_bucket, Key=k)["Body"].read()))
            for k in keys(s3_bucket, f"index/{name}/")
        ]
        return pa.concat_tables(parts)

    videos = {r["video_uri"]: r for r in table(schema.VIDEOS).to_pylist()}
    assert len(videos) == table(schema.VIDEOS).num_rows == len(SPECS) + 1  # each once
    clips = table(schema.CLIPS).to_pylist()
    for key, spec in SPECS.items():
        v = videos[f"s3://{s3_bucket}/{key}"]
        expected = len(plan_clips(spec.num_frames, spec.fps, SAMPLING))
        assert v["status"] == "ok" and v["num_frames"] == spec.num_frames
        assert v["num_clips"] == expected
        assert sum(c["video_uri"] == v["video_uri"] for c in clips) == expected
    # the only error is the broken file: no S3 fault leaked into errors/
    (err,) = table(schema.ERRORS).to_pylist()
    assert err["video_uri"] == f"s3://{s3_bucket}/raw/broken.mp4" and err["stage"] == "plan"
    record = json.loads(
        boto3.client("s3")
        .get_object(Bucket=s3_bucket, Key="index/_runs/faulty-run.json")["Body"]
        .read()
    )
    assert record["counts"]["processed"] == len(SPECS) and record["counts"]["failed"] == 1
    assert summary.counts["clips"] == len(clips)
    assert not [k for k in keys(s3_bucket, "index/") if schema.STAGING in k]
    assert set(record["files"]) == {
        f"s3://{s3_bucket}/{k}"
        for k in keys(s3_bucket, "index/")
        if k.endswith((".parquet", ".faiss"))  # the tables and the search graphs
    }
    assert SECRET not in json.dumps(record)
