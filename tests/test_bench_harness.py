"""The benchmark harness's own arithmetic and sampling (`make bench` is too long for CI; these
check what its figures are made of): ratios within rounds, goals, memory by process role."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from benchmarks import report

# psutil: Ray's vendored copy
from benchmarks.procs import REPO, TreeSampler, child_env, kill_tree, psutil, role
from benchmarks.summary import summarize


def _run(suite: str, name: str, rnd: int, **fields) -> dict:
    """A contender's run record, as benchmarks.run writes it (the fields the report reads)."""
    record = {"suite": suite, "name": name, "round": rnd, "status": "ok", "frames": 100}
    record |= {"wall_s": 10.0, "timings_s": {"start": 2.0, "decode_infer": 6.0}}
    return record | fields


def test_ratios_are_medians_of_within_round_ratios_and_goals_follow_the_median():
    # round by round, ours / pool end to end: 0.5, 0.9, 1.0 -> median 0.9 (the rounds' mean of
    # frames/s would give 0.8, a pooled ratio 0.82: neither is what the report promises)
    ours, pool = [10.0, 18.0, 30.0], [20.0, 20.0, 30.0]
    runs = []
    for r, (a, b) in enumerate(zip(ours, pool, strict=True)):
        runs.append(_run("limit", "ours", r, fps_wall=a, fps_work=a * 2, cpu_ms_per_frame=50.0))
        runs.append(_run("limit", "pool", r, fps_wall=b, fps_work=b, cpu_ms_per_frame=40.0))
    runs.append(_run("limit", "ours", 3, fps_wall=1000.0, status="failed"))  # failed: ignored

    summary = summarize({"runs": runs})
    limit = summary["ratios"]["limit"]
    assert limit["fps_wall"] == {"median": 0.9, "min": 0.5, "max": 1.0, "n": 3}
    assert limit["fps_work"]["median"] == 1.8
    assert limit["cpu"]["median"] == 0.8  # the baseline's CPU per frame over ours
    assert limit["met_wall"] and limit["met_work"]  # goal 0.85
    assert "naive" not in summary["ratios"]  # no naive runs: no ratio, not a zero
    assert summary["stages"]["stages_s"]["process start/exit (not in the run record)"] == 2.0

    runs[2]["fps_wall"] = 12.0  # round 1 now 0.6: median 0.6, under the goal
    assert not summarize({"runs": runs})["ratios"]["limit"]["met_wall"]


def _memory_run(name: str, minutes: float, by_role: dict | None) -> dict:
    run = _run(
        "memory",
        name,
        0,
        minutes=minutes,
        wall_s=10.0,
        tree_peak_rss_mb=3000.0,
        tree_peak_pss_mb=2000.0,
        tree_peak_single_rss_mb=1000.0,
        tree_peak_processes=12,
    )
    if by_role is not None:
        run["tree_peak_pss_by_role_mb"] = by_role
    return run


def test_memory_table_names_the_largest_process_of_each_role():
    roles = {
        "driver": 212.4,
        "ray::FlatMap": 770.2,
        "ray::MapWorker": 1004.0,
        "raylet": 60.0,
        "ray::IDLE": 748.0,
    }
    runs = [_memory_run("ours", 15, roles), _memory_run("naive", 1, None)]  # an older record
    results = {"runs": runs, "summary": summarize({"runs": runs})}
    table = report._memory_table(results).splitlines()

    assert "largest process per role" in table[0]
    naive, ours = table[2], table[3]  # sorted by contender, then length
    assert ours.startswith("| ours | 15 min |")
    assert ours.endswith("| ray::MapWorker 1004, ray::FlatMap 770, ray::IDLE 748, driver 212 |")
    assert "raylet" not in ours  # the four largest only
    assert naive.endswith("| n/a |")


PARENT = """
import subprocess, sys, time
for title in ("ray::FlatMap(DecodeUnits)", "ray::RunBook.begin"):  # a task, an actor's call
    subprocess.Popen(["bash", "-c", f'exec -a "{title}" sleep 60'])
big = subprocess.Popen(
    [sys.executable, "-c",
     "import time; b = b'x' * (96 * 2**20); print('ready', flush=True); time.sleep(60)"],
    stdout=subprocess.PIPE, text=True,
)
big.stdout.readline()
print("ready", flush=True)
time.sleep(60)
"""


@pytest.fixture
def process_tree():
    """A real tree: a parent, two children titled as Ray workers, a child holding 96 MiB."""
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout.readline().strip() == "ready"
        yield parent
    finally:
        kill_tree(psutil.Process(parent.pid))
        parent.wait(timeout=10)


def test_tree_sampler_peaks_each_role_by_its_largest_process(process_tree):
    root = psutil.Process(process_tree.pid)
    titled = sorted(role(p, root.pid) for p in root.children() if p.name() == "sleep")
    assert titled == ["ray::FlatMap", "ray::RunBook"]
    assert role(root, root.pid) == "driver"

    sampler = TreeSampler(process_tree.pid, interval_s=0.05, pss_every=1).start()
    time.sleep(0.6)
    sampler.stop()
    result = sampler.result()
    by_role = result["peak_pss_by_role_mb"]

    python = os.path.basename(sys.executable)  # the 96 MiB child, named by its executable
    assert set(by_role) == {"driver", "ray::FlatMap", "ray::RunBook", python}
    assert list(by_role)[0] == python  # largest first
    assert 90 <= by_role[python] <= 140
    assert by_role["ray::FlatMap"] < 10  # a sleep
    assert result["peak_processes"] == 4
    assert result["peak_pss_mb"] >= 0.95 * sum(by_role.values())  # the tree's sum holds them


OURS_CONTENDER = """
import json, sys
from benchmarks.contenders.ours import time_executions_after_start
calls = []
time_executions_after_start(calls)
before_start = "ray.data" in sys.modules
from pipeline.index import job as index
index.ensure_ray()  # joins the test session's Ray (RAY_ADDRESS)
import ray
ray.data.range(8).map_batches(lambda b: b).count()
print(json.dumps({"before_start": before_start, "calls": calls}))
"""


def test_ours_contender_leaves_ray_data_to_the_job_and_then_times_executions(ray_local):
    # The job imports Ray Data when it starts Ray; the contender importing it first (to wrap
    # its methods) would time an import that the job pays elsewhere
    env = child_env() | {"RAY_ADDRESS": ray_local.get_runtime_context().gcs_address}
    done = subprocess.run(
        [sys.executable, "-c", OURS_CONTENDER], cwd=REPO, env=env, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["before_start"] is False
    assert [c["method"] for c in seen["calls"]] == ["count"]
