"""A video that crashes or hangs its decoder costs that video, not the run.

`jobs/index.py` runs in a subprocess with its own local Ray, so that its workers see
REELAY_CRASH_AT / REELAY_HANG_AT (pipeline/faults.py): decoding `crashme` SIGKILLs the worker
every time, decoding `hangme` sleeps forever. Both must end as rows in errors/ with the right
reason, and the good videos beside them must be indexed in full.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.samples import VideoSpec, write_video
from pipeline.video.guard import GuardBook
from tests.job_process import run_index_job

FLAGS = ["--fps", "2", "--clip-frames", "4", "--image-size", "32", "--decode-timeout", "6"]
GOOD = ("good0", "good1")


@pytest.fixture(scope="module")
def guarded_run(tmp_path_factory) -> tuple[int, Path, str]:
    root = tmp_path_factory.mktemp("guard")
    corpus = root / "in"
    for i, name in enumerate((*GOOD, "crashme", "hangme")):
        spec = VideoSpec(width=64, height=48, fps=10, seconds=4.0, seed=40 + i)
        write_video(spec, corpus / f"{name}.mp4")
    out = root / "out"
    faults = {"REELAY_CRASH_AT": "decode:crashme", "REELAY_HANG_AT": "decode:hangme"}
    args = ["--input", str(corpus), "--output", str(out), *FLAGS, "--max-failure-fraction", "0.6"]
    code, log = run_index_job(args, faults, root / "job.log")
    return code, out, log


def table(out: Path, name: str) -> list[dict]:
    return pq.read_table(out / name).to_pylist()


def errors_by_video(out: Path) -> dict[str, list[dict]]:
    rows: dict[str, list[dict]] = {}
    for r in table(out, "errors"):
        rows.setdefault(Path(r["video_uri"]).stem, []).append(r)
    return rows


def test_the_run_succeeds_despite_a_crashing_and_a_hanging_video(guarded_run):
    code, _, log = guarded_run
    assert code == 0, log[-3000:]


def test_a_video_that_kills_its_decoder_is_an_error_row(guarded_run):
    _, out, _ = guarded_run
    rows = errors_by_video(out)["crashme"]
    assert {r["error_type"] for r in rows} == {"DecoderCrashed"}, rows
    assert all(r["stage"] == "decode" for r in rows)
    assert "died 2 times" in rows[0]["message"], rows[0]["message"]


def test_a_video_that_hangs_is_an_error_row_after_its_budget(guarded_run):
    _, out, _ = guarded_run
    rows = errors_by_video(out)["hangme"]
    assert {r["error_type"] for r in rows} == {"DecodeTimeout"}, rows
    assert "longer than 6 s" in rows[0]["message"], rows[0]["message"]


def test_the_good_videos_are_indexed_in_full(guarded_run):
    _, out, _ = guarded_run
    assert set(errors_by_video(out)) == {"crashme", "hangme"}
    clips = table(out, "clips")
    per_video = {g: sum(Path(c["video_uri"]).stem == g for c in clips) for g in GOOD}
    assert per_video == dict.fromkeys(GOOD, 2), per_video  # 4 s at 2 fps, clips of 4 frames
    videos = {Path(v["video_uri"]).stem: v for v in table(out, "videos")}
    assert set(videos) == {*GOOD, "crashme", "hangme"}
    assert all(videos[g]["num_clips"] == 2 for g in GOOD)


def test_the_book_counts_unfinished_starts_and_timeouts():
    book = GuardBook()
    assert book.begin("a") == (0, False)
    assert book.begin("a") == (1, False)  # the first start never finished: one death
    book.finish("a")
    assert book.begin("a") == (0, False)
    book.timeout("a")
    assert book.begin("a")[1] is True
    assert book.begin("b") == (0, False)


def test_a_start_decided_by_the_book_is_not_counted_as_a_death():
    book = GuardBook()
    book.begin("a"), book.begin("a")  # two deaths
    assert book.begin("a") == (2, False)  # decided: DecoderCrashed, the call is skipped
    book.skipped("a")
    assert book.begin("a") == (2, False)  # a re-run of the task sees the same two deaths
