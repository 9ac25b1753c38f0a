"""A worker node lost mid-run, as a preempted spot machine is: SIGKILL to its raylet and all its
workers at once, no drain; then either a fresh node joins seconds later (the autoscaler's
replacement) or none does (the run goes on with what is left). Either way the run finishes
with exit 0, every video exactly once, and no error rows for the videos that were on the lost
node.

The cluster is real (tests/ray_cluster.py: `ray start --head` plus `ray start --address`); the
job joins it through RAY_ADDRESS, as under `ray job submit`. The head runs no tasks (as on
clusters where it only schedules); of its two worker nodes, the doomed one's processes see
REELAY_HANG_AT (pipeline/faults.py), so its decode tasks and inference actors stop at their
first video and mark it: the node is killed while it holds work (decode units, an inference
batch, or both), every time.

And a node whose object store is smaller than the corpus's decoded frames (make test-all).
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
from tests.job_process import run_index_job, run_python, small_training
from tests.ray_cluster import RayCluster, RayNode

VIDEOS = 12
CLIPS_PER_VIDEO = 2  # 4 s at --fps 2, clips of 4 frames
FLAGS = ["--fps", "2", "--clip-frames", "4", "--image-size", "32", "--batch-size", "2"]


def add_doomed_node(cluster: RayCluster, marks: Path) -> tuple[RayNode, str]:
    """A worker node whose decode tasks and inference actors hang at their first video, each
    leaving a marker in `marks`: it will die holding work. Returns the node and its id."""
    before = {n["node_id"] for n in cluster.alive_nodes()}
    doomed = cluster.add_worker(
        env={"REELAY_HANG_AT": "decode,infer", "REELAY_FAULT_DIR": str(marks)}
    )
    (node_id,) = {n["node_id"] for n in cluster.alive_nodes()} - before
    return doomed, node_id


def run_losing(
    cluster: RayCluster,
    doomed: RayNode,
    marks: Path,
    command: list[str],
    log: Path,
    then=None,
    settle_s: float = 0.0,
    reach_s: float = 120,
    timeout_s: float = 240,
) -> dict:
    """`python *command` on `cluster` (stopped after `timeout_s`); `doomed` is killed
    `settle_s` seconds after it holds work (which it must within `reach_s`), then `then()`
    runs. Returns the run's code, log and seconds, and what the node held."""
    outcome: dict = {}

    def job() -> None:
        started = time.monotonic()
        outcome["code"], outcome["log"] = run_python(
            command, {"RAY_ADDRESS": cluster.address}, log, timeout_s=timeout_s
        )
        outcome["seconds"] = time.monotonic() - started

    runner = threading.Thread(target=job)
    runner.start()
    deadline = time.monotonic() + reach_s
    while not list(marks.glob("hanging-*")) and runner.is_alive():
        assert time.monotonic() < deadline, "no work reached the doomed node"
        time.sleep(0.2)
    outcome["held"] = sorted(p.name.rsplit("-", 1)[0] for p in marks.glob("hanging-*"))
    assert outcome["held"], outcome.get("log", "")[-3000:]
    time.sleep(settle_s)
    cluster.kill(doomed)
    if then is not None:
        then()
    runner.join(timeout=timeout_s + 60)
    assert not runner.is_alive(), "the run hung after losing a node"
    return outcome


@pytest.fixture(
    scope="module",
    params=[
        pytest.param(True, id="replaced"),
        pytest.param(False, id="gone-for-good", marks=pytest.mark.slow),
    ],
)
def node_lost_run(request, tmp_path_factory):
    root = tmp_path_factory.mktemp("node-lost")
    corpus, out, marks = root / "in", root / "out", root / "marks"
    marks.mkdir()
    for i in range(VIDEOS):
        spec = VideoSpec(width=64, height=48, fps=10, seconds=4.0, seed=70 + i)
        write_video(spec, corpus / f"v{i:02d}.mp4")
    cluster = RayCluster()
    try:
        cluster.start(workers=1, head_cpus=0)
        doomed, lost_id = add_doomed_node(cluster, marks)

        def replace() -> None:
            time.sleep(3)
            cluster.add_worker()  # the autoscaler's replacement

        args = ["jobs/index.py", "--input", str(corpus), "--output", str(out), *FLAGS]
        outcome = run_losing(
            cluster, doomed, marks, args, root / "job.log", replace if request.param else None
        )
        outcome |= {"out": out, "lost": lost_id}
        yield outcome
    finally:
        cluster.stop()


def test_the_run_succeeds_after_losing_a_node(node_lost_run):
    assert node_lost_run["held"], "the doomed node held no work when it was killed"
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
    lost = node_lost_run["lost"]
    # the lost node started work but never reported a unit done: its units were redone
    assert lost not in nodes or not nodes[lost]["alive"], nodes
    survivors = [n for n in nodes.values() if n["alive"]]
    assert sum(n["decoded_units"] for n in survivors) >= record["counts"]["units"]


@pytest.mark.slow
def test_an_object_store_smaller_than_the_decoded_frames(tmp_path):
    """A worker node with a 100 MB object store and a corpus of 113 MB of decoded frames (3000
    frames at 112 px): Ray Data's backpressure carries the run through, the driver's and the
    node's memory stay bounded, and every clip is indexed once."""
    from benchmarks.driver_scale import PEAK_AT_EXIT

    store = 100 * 2**20
    for i in range(30):
        spec = VideoSpec(width=64, height=48, fps=10, seconds=20.0, seed=i)
        write_video(spec, tmp_path / "in" / f"v{i:02d}.mp4")
    cluster = RayCluster()
    try:
        cluster.start(workers=0, head_cpus=0)
        node = cluster.add_worker(object_store_bytes=store)
        peaks, done = [], threading.Event()

        def sample() -> None:
            while not done.wait(0.5):
                peaks.append(node.rss_bytes())

        sampler = threading.Thread(target=sample)
        sampler.start()
        args = [
            "-c", PEAK_AT_EXIT, "jobs/index.py", "--input", str(tmp_path / "in"),
            "--output", str(tmp_path / "out"), "--fps", "5", "--clip-frames", "8",
            "--image-size", "112", "--encoder", "small_cnn",
        ]  # fmt: skip
        code, log = run_python(args, {"RAY_ADDRESS": cluster.address}, tmp_path / "job.log", 400)
        done.set()
        sampler.join()
    finally:
        cluster.stop()
    assert code == 0, log[-4000:]
    (record,) = [json.loads(p.read_text()) for p in (tmp_path / "out" / "_runs").glob("*.json")]
    assert record["counts"]["sampled_frames"] * 112 * 112 * 3 > store  # more than fits
    clips = pq.read_table(tmp_path / "out" / "clips", columns=["video_uri", "clip_index"])
    assert clips.num_rows == record["counts"]["clips"] == 30 * 13
    assert len(set(zip(*clips.to_pydict().values(), strict=True))) == clips.num_rows
    driver_mib = json.loads(log.strip().splitlines()[-1])["peak_rss_mib"]
    node_mib = max(peaks) / 2**20
    print(f"driver peak {driver_mib:.0f} MiB, worker node peak {node_mib:.0f} MiB")
    assert driver_mib < 1500, driver_mib
    assert node_mib < 4000, node_mib


@pytest.mark.slow
def test_head_lost_mid_commit_then_a_new_cluster_completes_the_index(tmp_path):
    """The driver SIGKILLed in the middle of its commit (one file published, no record) and
    the whole cluster gone with it, as when the head node dies; an --incremental run on a new
    cluster finishes the crashed commit and leaves every video and clip once."""
    corpus, out = tmp_path / "in", tmp_path / "out"
    for i in range(6):
        spec = VideoSpec(width=64, height=48, fps=10, seconds=4.0, seed=90 + i)
        write_video(spec, corpus / f"h{i}.mp4")
    args = ["--input", str(corpus), "--output", str(out), "--incremental", *FLAGS]
    codes = []
    for faults in ({"REELAY_CRASH_AT": "commit_first_move"}, {}):
        cluster = RayCluster()
        try:
            cluster.start(workers=1, head_cpus=0)
            env = {"RAY_ADDRESS": cluster.address, **faults}
            codes.append(run_index_job(args, env, tmp_path / f"job{len(codes)}.log")[0])
        finally:
            cluster.stop()  # the head goes, and all the cluster's state with it
    assert codes == [-9, 0], codes
    videos = pq.read_table(out / "videos").to_pylist()
    assert Counter(Path(v["video_uri"]).stem for v in videos) == Counter(f"h{i}" for i in range(6))
    clips = pq.read_table(out / "clips").to_pylist()
    assert len(clips) == 6 * CLIPS_PER_VIDEO
    assert len({(c["video_uri"], c["clip_index"]) for c in clips}) == len(clips)
    records = [json.loads(p.read_text()) for p in (out / "_runs").glob("*.json")]
    assert sorted(r["counts"]["processed"] for r in records) == [0, 6]  # rolled forward


@pytest.mark.slow
def test_a_cluster_left_without_workers_stops_by_itself_and_the_next_run_completes(tmp_path):
    """The only worker node dies holding work and nothing replaces it: the run stops after
    --stall-timeout with exit 4 and a message naming the lost node, never a hang; once a node
    joins, an --incremental run indexes every video, once."""
    corpus, out, marks = tmp_path / "in", tmp_path / "out", tmp_path / "marks"
    marks.mkdir()
    for i in range(6):
        spec = VideoSpec(width=64, height=48, fps=10, seconds=4.0, seed=110 + i)
        write_video(spec, corpus / f"s{i}.mp4")
    args = ["--input", str(corpus), "--output", str(out), "--incremental", *FLAGS]
    stall = ["--decode-timeout", "5", "--stall-timeout", "15"]
    cluster = RayCluster()
    try:
        cluster.start(workers=0, head_cpus=0)
        doomed, lost_id = add_doomed_node(cluster, marks)
        command = ["jobs/index.py", *args, *stall]
        outcome = run_losing(cluster, doomed, marks, command, tmp_path / "stalled.log")
        cluster.add_worker()
        code, log = run_index_job(args, {"RAY_ADDRESS": cluster.address}, tmp_path / "rerun.log")
    finally:
        cluster.stop()
    assert outcome["code"] == 4, outcome["log"][-4000:]
    assert "no progress for 15 s" in outcome["log"] and lost_id[:12] in outcome["log"]
    assert outcome["seconds"] < 120, outcome["seconds"]
    assert code == 0, log[-4000:]
    videos = pq.read_table(out / "videos").to_pylist()
    assert sorted(Path(v["video_uri"]).stem for v in videos) == [f"s{i}" for i in range(6)]
    clips = pq.read_table(out / "clips").to_pylist()
    assert len({(c["video_uri"], c["clip_index"]) for c in clips}) == len(clips) == 12


@pytest.mark.slow
def test_training_survives_losing_a_worker_node(sample_corpus, tmp_path):
    """jobs/train.py --max-failures on a cluster: the node its two workers run on dies in epoch
    2 (they hang there; 10 s later the node is SIGKILLed), a fresh node joins, and Ray Train
    restarts the worker group there from epoch 1's checkpoint: all epochs, the restart
    recorded."""
    out, marks = tmp_path / "out", tmp_path / "marks"
    marks.mkdir()
    command = small_training(sample_corpus, out, "--num-workers", "2", "--max-failures", "1")
    cluster = RayCluster()
    try:
        cluster.start(workers=0, head_cpus=0)  # the workers can only go to the doomed node
        doomed = cluster.add_worker(
            env={"REELAY_HANG_AT": "train_epoch:2", "REELAY_FAULT_DIR": str(marks)}
        )
        # Ray Train's controller takes epoch 1's checkpoint in when it polls: give it time
        outcome = run_losing(
            cluster, doomed, marks, command, tmp_path / "train.log", cluster.add_worker,
            settle_s=10, reach_s=300, timeout_s=400,
        )  # fmt: skip
    finally:
        cluster.stop()
    assert outcome["code"] == 0, outcome["log"][-4000:]
    record = json.loads((out / "train_run.json").read_text())
    assert record["epochs"] == 3 and record["status"] == "done"
    assert record["restarts"] == [{"from_epoch": 1}], record["restarts"]
