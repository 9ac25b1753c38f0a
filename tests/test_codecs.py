"""Every codec FFmpeg reads: which reader takes a stream (pipeline.video.codecs), that decord
and PyAV read the same frames, times and counts from the same file, and that what decord
cannot read (AV1, an MP4 cut short) is indexed through PyAV: whole, or `partial`."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import av
import decord  # noqa: F401  (imported first, as in a worker: decord's FFmpeg is loaded globally)
import numpy as np
import pyarrow.parquet as pq
import pytest

from pipeline import schema
from pipeline.samples import VideoSpec, render_frames, write_video
from pipeline.video.codecs import decord_decodes
from pipeline.video.io import (
    probe,
    probe_alone,
    read_alone,
    read_frames_and_times,
    read_header,
    read_with_decord,
    resize_frames,
)
from tests.videos import _encode, _write_many_streams, pyav_frames

SPEC = VideoSpec(seconds=3.0, seed=3)  # 30 frames, 160x96 at 10 fps
PATTERNS = {
    "every_3rd": lambda n: list(range(0, n, 3)),
    "middle_range": lambda n: list(range(n // 3, 2 * n // 3)),  # a unit of a long video
    "first_and_last": lambda n: [0, n - 1],
}
AV1_MISSING = (
    "libsvtav1" not in av.codecs_available or "libdav1d" not in av.codecs_available
)  # PyAV's wheels carry both; a PyAV built on another FFmpeg may not


def _av1(directory: Path, ext: str) -> Path:
    if AV1_MISSING:
        pytest.skip("this PyAV build has no AV1 encoder (libsvtav1) or decoder (libdav1d)")
    return write_video(replace(SPEC, codec="av1"), directory / f"av1{ext}")


WRITERS = {
    "h264": lambda d: write_video(SPEC, d / "h264.mp4"),
    "h264_bframes": lambda d: _encode(d / "h264_b.mp4", render_frames(SPEC), preset="veryfast"),
    "hevc": lambda d: _encode(d / "hevc.mp4", render_frames(SPEC), codec="libx265"),
    "vp9": lambda d: write_video(replace(SPEC, codec="vp9"), d / "vp9.webm"),
    "mpeg4": lambda d: write_video(replace(SPEC, codec="mpeg4"), d / "mpeg4.mkv"),
    "mjpeg": lambda d: write_video(replace(SPEC, codec="mjpeg"), d / "mjpeg.avi"),
    "av1_mkv": lambda d: _av1(d, ".mkv"),
    "av1_mp4": lambda d: _av1(d, ".mp4"),
}


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict:
    """name -> path, each file written when a test first asks for it."""
    return {"dir": tmp_path_factory.mktemp("codecs")}


def written(files: dict, name: str) -> Path:
    if name not in files:
        files[name] = WRITERS[name](files["dir"])
    return files[name]


def decord_opens(path: Path) -> bool:
    try:
        decord.VideoReader(str(path), num_threads=1)[0]
    except Exception:  # noqa: BLE001 (any refusal counts)
        return False
    return True


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_reader_is_chosen_by_what_decord_can_decode(files, name: str):
    """Asked before opening, decord's FFmpeg says it has a decoder exactly where decord opens
    the file; what it cannot decode goes to PyAV, and the probe says why."""
    path = written(files, name)
    header = read_header(path)
    assert decord_decodes(header.codec) == decord_opens(path), header
    info = probe(path)
    if decord_decodes(header.codec):
        assert info.reader == ""
    else:
        assert info.reader == f"pyav: decord has no {header.codec} decoder"


@pytest.mark.parametrize("pattern", sorted(PATTERNS))
@pytest.mark.parametrize("name", sorted(WRITERS))
def test_both_readers_give_the_same_frames_times_and_counts(files, name: str, pattern: str):
    """On the same file, PyAV alone and decord agree bit for bit: frame count, rate, the
    sampled frames and their times; both agree with every frame decoded in order by PyAV.
    (AV1: decord cannot read it, so PyAV alone against the sequential decode.)"""
    path = written(files, name)
    info = probe(path)
    alone = probe_alone(path, read_header(path), "pyav: compared")
    assert (alone.num_frames, alone.fps) == (info.num_frames, info.fps) == (30, 10.0)
    wanted = PATTERNS[pattern](info.num_frames)
    by_pyav = read_alone(path, wanted, 48, alone)
    assert by_pyav.failures == () and by_pyav.reader == "pyav: compared"
    truth = resize_frames(pyav_frames(path)[wanted], 48)
    assert np.array_equal(by_pyav.frames, truth)
    if not info.reader:
        by_decord = read_with_decord(path, wanted, 48, info, 2**24)
        assert np.array_equal(by_pyav.frames, by_decord.frames)
        assert np.array_equal(by_pyav.times, by_decord.times)
    else:  # the job's own read goes through PyAV
        got = read_frames_and_times(path, wanted, 48, info, 2**24)
        assert np.array_equal(got.frames, truth) and got.reader == info.reader
        assert np.allclose(got.times[:, 0], np.asarray(wanted) / 10.0, atol=1e-6)


def test_both_readers_pick_ffmpegs_best_video_stream(tmp_path):
    """Several video streams: the one `av_find_best_stream` picks (here the biggest, which is
    not the first), by both readers."""
    path = _write_many_streams(tmp_path / "many.mkv")
    header = read_header(path)
    assert (header.video_streams, header.stream_index, header.size) == (3, 2, (160, 96))
    info = probe(path)
    wanted = list(range(0, info.num_frames, 2))
    by_pyav = read_alone(path, wanted, 32, replace(info, reader="pyav: compared"))
    by_decord = read_with_decord(path, wanted, 32, info, 2**24)
    assert np.array_equal(by_pyav.frames, by_decord.frames)


def cut_short(source: Path, path: Path, keep: float) -> Path:
    """`source` (a faststart MP4: its index first) with only the first `keep` of its bytes."""
    data = source.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


@pytest.fixture(scope="module")
def partial_runs(ray_local, tmp_path_factory):
    """An AV1 video, an H.264 video and a faststart MP4 cut at 60 %: one run with
    --max-failure-fraction 0, then a --retry-errors run."""
    from pipeline.config import IndexConfig, RunMode, SamplingConfig
    from pipeline.index import run

    root = tmp_path_factory.mktemp("partial")
    corpus = root / "corpus"
    corpus.mkdir()
    whole = _encode(
        root / "whole.mp4",
        render_frames(replace(SPEC, seconds=10.0)),  # 100 frames
        container_options={"movflags": "faststart"},
        keyframe_interval=10,
    )
    cut_short(whole, corpus / "cut.mp4", 0.6)
    write_video(SPEC, corpus / "h264.mp4")
    if not AV1_MISSING:
        write_video(replace(SPEC, codec="av1"), corpus / "av1.mkv")
    sampling = SamplingConfig(fps=5, clip_frames=5, image_size=32)  # 1 s clips

    def index(**mode):
        cfg = IndexConfig(
            input_uri=str(corpus),
            output_uri=str(root / "out"),
            sampling=sampling,
            mode=RunMode(**mode),
            max_failure_fraction=0.0,
        )
        return run(cfg)

    first = index(incremental=True)
    retry = index(retry_errors=True)
    return corpus, root / "out", first, retry


def committed(out: Path, table: str, run_id: str) -> list[dict]:
    rows = pq.read_table(out / table).to_pylist()
    return [r for r in rows if r["run_id"] == run_id]


def test_a_cut_file_is_indexed_up_to_the_cut_as_partial(partial_runs):
    """The faststart MP4 cut at 60 %: its first clips are indexed, the video is `partial`,
    an errors row says where the file ends, and the run stays ok with
    --max-failure-fraction 0 (a partial video counts as indexed)."""
    corpus, out, first, _ = partial_runs
    cut = str(corpus / "cut.mp4")
    (video,) = [v for v in committed(out, schema.VIDEOS, first.run_id) if v["video_uri"] == cut]
    assert video["status"] == "partial" and video["num_frames"] == 100
    clips = sorted(
        c["clip_index"] for c in committed(out, schema.CLIPS, first.run_id) if c["video_uri"] == cut
    )
    assert video["num_clips"] == len(clips) >= 4 and clips == list(range(len(clips)))
    assert len(clips) <= 6  # 60 % of 10 one-second clips, less what the cut costs (5 here)
    errors = [e for e in committed(out, schema.ERRORS, first.run_id) if e["video_uri"] == cut]
    assert errors and all(e["stage"] == "decode" for e in errors)
    assert any("truncated file: it ends at byte" in e["message"] for e in errors), errors
    for e in errors:  # for people: no library source paths, error numbers or check text
        assert not any(s in e["message"] for s in (".cc:", "Errno", "Check failed", "vs. 0"))
    assert first.status == "ok" and first.counts["partial"] == 1
    assert first.counts["failed"] == 0 and first.counts["processed"] == first.counts["listed"]
    assert f"{first.counts['processed']} videos ok (1 partial), 0 failed" in first.line()


def test_the_documented_partial_videos_query_finds_it(partial_runs):
    """docs/queries.md's "partial-videos" block, verbatim, through jobs/query.py's SQL."""
    from pipeline.query import SqlQuery, run
    from tests.query.test_query_docs import QUERIES

    corpus, out, first, _ = partial_runs
    rows = run(SqlQuery(str(out), QUERIES["partial-videos"])).to_pylist()
    assert {r["video_uri"] for r in rows} == {str(corpus / "cut.mp4")}
    assert any("truncated file" in r["message"] for r in rows)


def test_retry_errors_takes_the_partial_video_again(partial_runs):
    corpus, out, first, retry = partial_runs
    assert retry.counts["skipped"] == first.counts["listed"] - 1
    assert [v["video_uri"] for v in committed(out, schema.VIDEOS, retry.run_id)] == [
        str(corpus / "cut.mp4")
    ]


def test_an_av1_video_is_indexed_through_pyav(partial_runs):
    corpus, out, first, _ = partial_runs
    if AV1_MISSING:
        pytest.skip("this PyAV build has no AV1 encoder (libsvtav1) or decoder (libdav1d)")
    av1 = str(corpus / "av1.mkv")
    (video,) = [v for v in committed(out, schema.VIDEOS, first.run_id) if v["video_uri"] == av1]
    assert video["status"] == "ok" and video["num_frames"] == 30 and video["num_clips"] == 3
    assert not [e for e in committed(out, schema.ERRORS, first.run_id) if e["video_uri"] == av1]
    record = json.loads((out / "_runs" / f"{first.run_id}.json").read_text())
    readers = record["progress"]["readers"]
    assert readers.get("pyav: decord has no av1 decoder", 0) >= 1, readers
    assert readers.get("pyav: the file was cut short", 0) >= 1, readers


def test_encoding_av1_leaves_the_callers_scheduling_alone(tmp_path):
    """SVT-AV1 moves the thread that opens it to real-time scheduling where it may; the sample
    writer puts it back, or every thread started after would inherit it."""
    if AV1_MISSING:
        pytest.skip("this PyAV build has no AV1 encoder (libsvtav1) or decoder (libdav1d)")
    before = os.sched_getscheduler(0), os.sched_getparam(0)
    write_video(replace(SPEC, codec="av1"), tmp_path / "av1.mkv")
    assert (os.sched_getscheduler(0), os.sched_getparam(0)) == before
