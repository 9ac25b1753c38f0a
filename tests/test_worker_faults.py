"""Workers that die or hang cost a retry or one video, never the run. One job, six videos:

- `lost-d`, `lost-i`: the first decode task that reaches `lost-d` and the first inference batch
  holding a clip of `lost-i` SIGKILL their own process, once in the whole run, as a preempted
  node would: a retry, and every video exactly once with all its clips and no error rows;
- `crashme` kills its decoder every time, `hangme` hangs it: each ends as an error row with
  the right reason, and the good videos beside them are indexed in full.

`jobs/index.py` runs in a subprocess with its own Ray (tests/job_process.py), so that its
workers see the REELAY_* fault variables (pipeline/faults.py).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.samples import VideoSpec, write_video
from pipeline.video.guard import GuardBook
from tests.job_process import run_index_job

SURVIVORS = ("ok-0", "lost-d", "ok-1", "lost-i")  # indexed in full
DOOMED = ("crashme", "hangme")  # error rows
CLIPS_PER_VIDEO = 2  # 4 s at --fps 2, clips of 4 frames
FLAGS = [
    *("--fps", "2", "--clip-frames", "4", "--image-size", "32", "--batch-size", "2"),
    *("--decode-timeout", "6", "--max-failure-fraction", "0.6"),
]


@pytest.fixture(scope="module")
def faulty_run(tmp_path_factory) -> tuple[int, Path, str, Path]:
    root = tmp_path_factory.mktemp("faults")
    corpus, out, marks = root / "in", root / "out", root / "marks"
    marks.mkdir()
    for i, name in enumerate((*SURVIVORS, *DOOMED)):
        spec = VideoSpec(width=64, height=48, fps=10, seconds=4.0, seed=60 + i)
        write_video(spec, corpus / f"{name}.mp4")
    faults = {
        "REELAY_CRASH_ONCE_AT": "decode:lost-d,infer:lost-i",
        "REELAY_FAULT_DIR": str(marks),
        "REELAY_CRASH_AT": "decode:crashme",
        "REELAY_HANG_AT": "decode:hangme",
    }
    code, log = run_index_job(
        ["--input", str(corpus), "--output", str(out), *FLAGS], faults, root / "job.log"
    )
    return code, out, log, marks


def stems(rows: list[dict]) -> Counter:
    return Counter(Path(r["video_uri"]).stem for r in rows)


def errors_by_video(out: Path) -> dict[str, list[dict]]:
    rows: dict[str, list[dict]] = {}
    for r in pq.read_table(out / "errors").to_pylist():
        rows.setdefault(Path(r["video_uri"]).stem, []).append(r)
    return rows


def test_the_run_succeeds(faulty_run):
    code, out, log, _ = faulty_run
    assert code == 0, log[-3000:]
    (record,) = [json.loads(p.read_text()) for p in (out / "_runs").glob("*.json")]
    assert record["counts"]["processed"] == len(SURVIVORS), record["counts"]
    assert record["counts"]["failed"] == len(DOOMED), record["counts"]


def test_a_decode_worker_and_an_inference_actor_were_killed(faulty_run):
    _, _, log, marks = faulty_run
    crashed = {p.name for p in marks.glob("crashed-*")}
    assert crashed == {"crashed-decode", "crashed-infer"}, log[-3000:]


def test_every_survivor_and_its_clips_exactly_once(faulty_run):
    _, out, _, _ = faulty_run
    videos = {Path(v["video_uri"]).stem: v for v in pq.read_table(out / "videos").to_pylist()}
    assert set(videos) == {*SURVIVORS, *DOOMED}
    assert len(pq.read_table(out / "videos")) == len(videos)
    assert all(videos[s]["status"] == "ok" for s in SURVIVORS)
    assert all(videos[s]["num_clips"] == CLIPS_PER_VIDEO for s in SURVIVORS)
    clips = pq.read_table(out / "clips").to_pylist()
    assert stems(clips) == Counter(dict.fromkeys(SURVIVORS, CLIPS_PER_VIDEO))
    assert len({(c["video_uri"], c["clip_index"]) for c in clips}) == len(clips)
    assert set(errors_by_video(out)) == set(DOOMED)


def test_a_video_that_kills_its_decoder_is_an_error_row(faulty_run):
    rows = errors_by_video(faulty_run[1])["crashme"]
    assert {r["error_type"] for r in rows} == {"DecoderCrashed"}, rows
    assert all(r["stage"] == "decode" for r in rows)
    assert "died 2 times" in rows[0]["message"], rows[0]["message"]


def test_a_video_that_hangs_is_an_error_row_after_its_budget(faulty_run):
    rows = errors_by_video(faulty_run[1])["hangme"]
    assert {r["error_type"] for r in rows} == {"DecodeTimeout"}, rows
    assert "longer than 6 s" in rows[0]["message"], rows[0]["message"]


def test_the_book_counts_unfinished_starts_and_timeouts():
    book = GuardBook()
    assert book.begin("a") == (0, False)
    assert book.begin("a") == (1, False)  # the first start never finished: one death
    book.finish("a")
    assert book.begin("a") == (0, False)
    book.timeout("a")
    assert book.begin("a")[1] is True
    assert book.begin("b") == (0, False)
