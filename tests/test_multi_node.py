"""A worker node lost mid-run, as a preempted spot machine is: SIGKILL to its raylet and all its
workers at once, no drain, then a fresh node joining seconds later (the autoscaler's
replacement). The run must finish with exit 0, every video exactly once, and no error rows for
the videos that were on the lost node.

The cluster is real (tests/ray_cluster.py: `ray start --head` plus `ray start --address`); the
job joins it through RAY_ADDRESS, as under `ray job submit`. The first worker node's processes
see REELAY_HANG_AT (pipeline/faults.py), so its decode tasks stop inside a video and mark it:
the node is killed while it holds work, every time.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.samples import VideoSpec, write_video
from tests.job_process import run_index_job
from tests.ray_cluster import RayCluster

VIDEOS = 10
CLIPS_PER_VIDEO = 2  # 4 s at --fps 2, clips of 4 frames
FLAGS = ["--fps", "2", "--clip-frames", "4", "--image-size", "32", "--batch-size", "2"]


@pytest.fixture(scope="module")
def node_lost_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("node-lost")
    corpus, out, marks = root / "in", root / "out", root / "marks"
    marks.mkdir()
    for i in range(VIDEOS):
        spec = VideoSpec(width=64, height=48, fps=10, seconds=4.0, seed=70 + i)
        write_video(spec, corpus / f"v{i:02d}.mp4")
    cluster = RayCluster()
    outcome: dict = {}
    try:
        cluster.start(workers=0)
        doomed = cluster.add_worker(
            env={"REELAY_HANG_AT": "decode", "REELAY_FAULT_DIR": str(marks)}
        )

        def job() -> None:
            args = ["--input", str(corpus), "--output", str(out), *FLAGS]
            outcome["code"], outcome["log"] = run_index_job(
                args, {"RAY_ADDRESS": cluster.address}, root / "job.log", timeout_s=240
            )

        runner = threading.Thread(target=job)
        runner.start()
        deadline = time.monotonic() + 120
        while not list(marks.glob("hanging-decode-*")) and runner.is_alive():
            assert time.monotonic() < deadline, "no decode task reached the doomed node"
            time.sleep(0.2)
        lost_id = {n["node_id"] for n in cluster.alive_nodes() if not n["is_head_node"]}
        held = len(list(marks.glob("hanging-decode-*")))
        cluster.kill(doomed)
        time.sleep(3)
        cluster.add_worker()  # the replacement
        runner.join(timeout=300)
        assert not runner.is_alive(), "the run hung after losing a node"
        outcome |= {"out": out, "lost": lost_id, "held": held}
        yield outcome
    finally:
        cluster.stop()


def test_the_run_succeeds_after_losing_a_node(node_lost_run):
    assert node_lost_run["held"] >= 1  # the node died holding decode work
    assert node_lost_run["code"] == 0, node_lost_run["log"][-4000:]


def test_every_video_and_clip_exactly_once_and_no_errors(node_lost_run):
    out = node_lost_run["out"]
    videos = pq.read_table(out / "videos").to_pylist()
    assert Counter(Path(v["video_uri"]).stem for v in videos) == Counter(
        f"v{i:02d}" for i in range(VIDEOS)
    )
    assert all(v["status"] == "ok" and v["num_clips"] == CLIPS_PER_VIDEO for v in videos)
    clips = pq.read_table(out / "clips").to_pylist()
    assert len(clips) == VIDEOS * CLIPS_PER_VIDEO
    assert len({(c["video_uri"], c["clip_index"]) for c in clips}) == len(clips)
    assert pq.read_table(out / "errors").num_rows == 0


def test_the_record_names_the_lost_node_and_its_work(node_lost_run):
    (record,) = [json.loads(p.read_text()) for p in (node_lost_run["out"] / "_runs").glob("*.json")]
    nodes = {n["node_id"]: n for n in record["progress"]["nodes"]}
    assert record["counts"]["processed"] == VIDEOS and record["counts"]["failed"] == 0
    (lost,) = node_lost_run["lost"]
    # the lost node started work but never reported a unit done: its units were redone
    assert lost not in nodes or not nodes[lost]["alive"], nodes
    survivors = [n for n in nodes.values() if n["alive"]]
    assert sum(n["decoded_units"] for n in survivors) >= record["counts"]["units"]
