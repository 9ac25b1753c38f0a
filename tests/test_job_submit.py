"""The index job as users run it: `ray start --head`, `ray start --address` for a second node,
then `ray job submit --working-dir .` (tests/ray_cluster.py).

Runs in the default `make test` (not marked slow): it is the one test that goes through the
dashboard's job API, the runtime_env working_dir upload and `python jobs/index.py` on a cluster
of more than one node.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import urllib.request
import uuid
from pathlib import Path

import duckdb
import pytest

from tests.ray_cluster import REPO, RayCluster

EXCLUDES = [
    ".git",
    ".venv",
    "**/__pycache__",
    ".pytest_cache",
    ".ruff_cache",
    "demo_out",
    "bench_out",
    "*.egg-info",
]


@pytest.fixture()
def two_nodes():
    cluster = RayCluster()
    try:
        cluster.start(workers=1)
        yield cluster
    finally:
        killed, survivors = cluster.stop()
        assert not survivors, f"processes of the test's Ray cluster survived SIGKILL: {survivors}"
        with pytest.raises(OSError):  # the dashboard is gone with the head
            urllib.request.urlopen(f"{cluster.dashboard}/api/version", timeout=2)
        if killed:  # not an error: Ray's SIGTERM handling left these behind
            print(f"killed {len(killed)} leftover processes of the test's Ray cluster: {killed}")


# ---------------------------------------------------------------------------------- the test


def test_ray_job_submit_indexes_the_sample_corpus(two_nodes: RayCluster, sample_corpus: Path):
    out = Path(tempfile.mkdtemp(prefix="reelay-job-out-"))
    job_id = f"reelay-test-{uuid.uuid4().hex[:8]}"
    try:
        result = two_nodes.ray(
            "job",
            "submit",
            "--address",
            two_nodes.dashboard,
            "--submission-id",
            job_id,
            "--working-dir",
            str(REPO),
            "--runtime-env-json",
            json.dumps({"excludes": EXCLUDES}),
            "--",
            "python",
            "jobs/index.py",
            "--input",
            str(sample_corpus),
            "--output",
            str(out),
            "--fps",
            "2",
            "--clip-frames",
            "4",
            "--image-size",
            "32",
            "--run-id",
            "submitted",
            timeout=480,
        )
        text = result.stdout + result.stderr
        # The teardown finds Ray's processes as descendants of `ray start --block`.
        assert {"gcs_server", "raylet"} <= two_nodes.head.process_names()
        assert "raylet" in two_nodes.workers[0].process_names()
        assert result.returncode == 0, f"ray job submit exited {result.returncode}:\n{text[-6000:]}"
        assert f"Job '{job_id}' succeeded" in text
        assert "reelay index run submitted: 6 videos ok, 0 failed" in text, text[-6000:]

        # The job's log is kept by the cluster too.
        logs = two_nodes.ray("job", "logs", "--address", two_nodes.dashboard, job_id, timeout=60)
        assert "reelay index run submitted" in logs.stdout

        con = duckdb.connect()
        videos = con.execute(
            f"""SELECT regexp_extract(video_uri, '[^/]+$') AS name, status, num_frames, num_clips
                FROM read_parquet('{out}/videos/**/*.parquet', hive_partitioning = true)
                ORDER BY name"""
        ).fetchall()
        expected_names = sorted(p.name for p in sample_corpus.rglob("*.mp4"))
        assert [v[0] for v in videos] == expected_names
        assert all(v[1] == "ok" and v[2] == 30 and v[3] >= 1 for v in videos), videos
        (n_clips,) = con.execute(
            f"SELECT count(*) FROM read_parquet('{out}/clips/**/*.parquet')"
        ).fetchone()
        assert n_clips == sum(v[3] for v in videos)
        record = json.loads((out / "_runs" / "submitted.json").read_text())
        assert record["counts"]["processed"] == 6 and record["counts"]["failed"] == 0
        assert record["cluster"]["nodes"] == 2 and record["cluster"]["CPU"] == 4
        # both nodes worked, and the run record says how much
        nodes = record["progress"]["nodes"]
        assert len(nodes) == 2 and all(n["alive"] for n in nodes), nodes
        assert all(n["decoded_units"] + n["inferred_clips"] > 0 for n in nodes), nodes
        assert sum(n["decoded_units"] for n in nodes) == record["counts"]["units"]
        assert sum(n["inferred_clips"] for n in nodes) == n_clips
        report = (out / "_runs" / "submitted" / "report.html").read_text()
        assert "Work per node" in report and nodes[0]["node_id"][:12] in report
    finally:
        status = two_nodes.ray(
            "job", "status", "--address", two_nodes.dashboard, job_id, timeout=60
        )
        if "RUNNING" in status.stdout or "PENDING" in status.stdout:
            two_nodes.ray("job", "stop", "--address", two_nodes.dashboard, job_id, timeout=60)
        shutil.rmtree(out, ignore_errors=True)
