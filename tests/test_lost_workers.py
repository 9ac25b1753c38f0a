"""A decode worker and an inference actor killed mid-run (SIGKILL) cost a retry, not the run:
every video is indexed exactly once, with all its clips, and no error rows.

`jobs/index.py` runs in a subprocess with its own Ray (tests/job_process.py) and
REELAY_CRASH_ONCE_AT (pipeline/faults.py): the first decode task that reaches `lost-d` and the
first inference batch holding a clip of `lost-i` kill their own process, once in the whole run,
as a preempted node would.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.samples import VideoSpec, write_video
from tests.job_process import run_index_job

NAMES = ("ok-0", "lost-d", "ok-1", "lost-i", "ok-2", "ok-3")
CLIPS_PER_VIDEO = 2  # 4 s at --fps 2, clips of 4 frames
FLAGS = ["--fps", "2", "--clip-frames", "4", "--image-size", "32", "--batch-size", "2"]


@pytest.fixture(scope="module")
def killed_run(tmp_path_factory) -> tuple[int, Path, str, Path]:
    root = tmp_path_factory.mktemp("lost")
    corpus, out, marks = root / "in", root / "out", root / "marks"
    marks.mkdir()
    for i, name in enumerate(NAMES):
        spec = VideoSpec(width=64, height=48, fps=10, seconds=4.0, seed=60 + i)
        write_video(spec, corpus / f"{name}.mp4")
    faults = {
        "REELAY_CRASH_ONCE_AT": "decode:lost-d,infer:lost-i",
        "REELAY_FAULT_DIR": str(marks),
    }
    code, log = run_index_job(
        ["--input", str(corpus), "--output", str(out), *FLAGS], faults, root / "job.log"
    )
    return code, out, log, marks


def stems(rows: list[dict]) -> Counter:
    return Counter(Path(r["video_uri"]).stem for r in rows)


def test_both_processes_were_killed(killed_run):
    _, _, log, marks = killed_run
    assert {p.name for p in marks.iterdir()} == {"crashed-decode", "crashed-infer"}, log[-3000:]


def test_the_run_succeeds(killed_run):
    code, out, log, _ = killed_run
    assert code == 0, log[-3000:]
    (record,) = [json.loads(p.read_text()) for p in (out / "_runs").glob("*.json")]
    assert record["counts"]["processed"] == len(NAMES) and record["counts"]["failed"] == 0


def test_every_video_and_clip_exactly_once(killed_run):
    _, out, _, _ = killed_run
    videos = pq.read_table(out / "videos").to_pylist()
    assert stems(videos) == Counter(NAMES)
    assert all(v["status"] == "ok" and v["num_clips"] == CLIPS_PER_VIDEO for v in videos)
    clips = pq.read_table(out / "clips").to_pylist()
    assert stems(clips) == Counter({n: CLIPS_PER_VIDEO for n in NAMES})
    assert len({(c["video_uri"], c["clip_index"]) for c in clips}) == len(clips)
    assert pq.read_table(out / "errors").num_rows == 0
