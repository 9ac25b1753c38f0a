"""--clips shots through the index job: clips never cross a detected cut, a long video's work
units neither invent nor lose a cut, and the shots table agrees with the clips."""

from __future__ import annotations

import math

import pytest

from pipeline.config import ConfigError, IndexConfig, PlanConfig, SamplingConfig
from pipeline.index import run
from pipeline.query import SqlQuery
from pipeline.query import run as query
from pipeline.samples import ShotSpec, shot_corpus, write_shots
from pipeline.video.shots import CutScore, score_cuts

FPS = 2


@pytest.fixture(scope="module")
def shot_videos(tmp_path_factory):
    """Three mixed shot videos and a pan-only one, with their true cuts in seconds."""
    folder = tmp_path_factory.mktemp("shot-videos")
    corpus = shot_corpus(videos=2, seed=3)
    truth = {}
    for name in ("mixed_0", "mixed_1", "pan_only"):
        cuts = write_shots(corpus[name], folder / f"{name}.mp4", width=128, height=96, fps=24)
        truth[str(folder / f"{name}.mp4")] = [c / 24 for c in cuts]
    short = (ShotSpec(scene=11, seconds=1.2), ShotSpec(scene=40, seconds=1.3))
    cuts = write_shots(short, folder / "two_short_shots.mp4", width=128, height=96, fps=24)
    truth[str(folder / "two_short_shots.mp4")] = [c / 24 for c in cuts]
    return folder, truth


def index(folder, out, unit_frames: int, clips: str = "shots") -> str:
    sampling = SamplingConfig(fps=FPS, clip_frames=4, image_size=64, clips=clips)
    run(
        IndexConfig(
            input_uri=str(folder),
            output_uri=str(out),
            sampling=sampling,
            plan=PlanConfig(unit_frames=unit_frames),
        )
    )
    return str(out)


def sql(out: str, text: str):
    return query(SqlQuery(out, text))


@pytest.fixture(scope="module")
def indexed(ray_local, shot_videos, tmp_path_factory):
    """The corpus indexed twice: in work units of 5 samples (every video cut into several) and
    in one unit per video."""
    folder, _ = shot_videos
    root = tmp_path_factory.mktemp("shot-index")
    return index(folder, root / "units", unit_frames=5), index(folder, root / "whole", 1000)


def test_cuts_are_found_within_one_sample(indexed, shot_videos):
    _, truth = shot_videos
    shots = sql(indexed[0], "SELECT video_uri, start_s FROM shots WHERE shot_index > 0")
    found: dict[str, list[int]] = {uri: [] for uri in truth}
    for row in shots.to_pylist():  # a shot starts at a sample: sample n is at n / FPS s
        found[row["video_uri"]].append(round(row["start_s"] * FPS))
    total = CutScore(0, 0, 0)
    for uri, cuts in truth.items():  # a cut shows at the first sample on or after it
        total += score_cuts(found[uri], [math.ceil(t * FPS - 1e-9) for t in cuts], tolerance=1)
    assert total.true_positives >= 5 and total.f1 >= 0.95, total
    assert uri_shots(indexed[0])[next(u for u in truth if "pan_only" in u)] == 1


def uri_shots(out: str) -> dict[str, int]:
    rows = sql(out, "SELECT video_uri, count(*) AS n FROM shots GROUP BY 1").to_pylist()
    return {r["video_uri"]: r["n"] for r in rows}


def test_work_units_neither_invent_nor_lose_a_cut(indexed):
    units, whole = indexed
    columns = "video_uri, shot_index, start_s, end_s"
    a = sql(units, f"SELECT {columns} FROM shots ORDER BY 1, 2")
    b = sql(whole, f"SELECT {columns} FROM shots ORDER BY 1, 2")
    assert a.to_pylist() == b.to_pylist()
    runs = sql(units, "SELECT counts.units AS units, counts.shots AS shots FROM runs")
    assert runs["units"][0].as_py() > 4 and runs["shots"][0].as_py() == a.num_rows


@pytest.mark.parametrize("which", [0, 1])
def test_clips_tile_shots_and_never_cross_a_cut(indexed, which):
    out = indexed[which]
    clips = sql(
        out,
        "SELECT c.video_uri, c.clip_index, c.shot_index, c.start_s, c.end_s, "
        "s.start_s AS shot_start, s.end_s AS shot_end FROM clips c JOIN shots s "
        "ON c.video_uri = s.video_uri AND c.shot_index = s.shot_index ORDER BY 1, 2",
    )
    total = sql(out, "SELECT count(*) AS n FROM clips")["n"][0].as_py()
    assert clips.num_rows == total  # every clip belongs to a shot of the table
    for row in clips.to_pylist():
        assert row["shot_start"] - 1e-6 <= row["start_s"] < row["shot_end"], row
        assert row["end_s"] <= row["shot_end"] + 1 / FPS, row
    per_video = sql(
        out,
        "SELECT video_uri, count(*) AS n, min(clip_index) AS lo, max(clip_index) AS hi, "
        "count(DISTINCT clip_index) AS distinct_n FROM clips GROUP BY 1",
    )
    for row in per_video.to_pylist():  # numbered 0..n-1 across the work units
        assert (row["lo"], row["hi"], row["distinct_n"]) == (0, row["n"] - 1, row["n"])
    sums = sql(
        out,
        "SELECT v.video_uri, v.num_clips, sum(s.num_clips) AS in_shots FROM videos v "
        "JOIN shots s USING (video_uri) GROUP BY 1, 2",
    )
    for row in sums.to_pylist():
        assert row["num_clips"] == row["in_shots"], row


def test_a_shot_shorter_than_a_clip_is_its_own_clip(indexed, shot_videos):
    out = indexed[0]
    rows = sql(
        out,
        "SELECT shot_index, count(*) AS n FROM clips WHERE video_uri LIKE "
        "'%two_short_shots.mp4' GROUP BY 1 ORDER BY 1",
    ).to_pylist()
    assert [r["shot_index"] for r in rows] == [0, 1]


def test_clip_mode_flags():
    with pytest.raises(ConfigError, match="--clips must be one of windows, shots"):
        SamplingConfig(clips="scenes")
    with pytest.raises(ConfigError, match="--clip-stride does not apply"):
        SamplingConfig(clips="shots", clip_stride=2)
    assert SamplingConfig.from_dict(SamplingConfig(clips="shots").to_dict()).by_shot


def test_unit_offsets_number_clips_and_shots_video_wide():
    """Three units of one video, the middle one lost (no summary): the numbers continue."""
    import numpy as np
    import pyarrow as pa

    from pipeline.index.shots import UNITS_SCHEMA, number_units

    def unit(i, first, clips, cuts, times):
        return dict(video_uri="v", unit_index=i, first_frame=first, clips=clips, cuts=cuts,
                    cut_times=times, duration_s=30.0, shot=-1, indexed=0)  # fmt: skip

    def count(i, shot, n):
        return dict(video_uri="v", unit_index=i, first_frame=-1, clips=0, cuts=[],
                    cut_times=[], duration_s=0.0, shot=shot, indexed=n)  # fmt: skip

    rows = [
        unit(0, 0, 3, [5], [2.5]),  # clips 0-2; a cut at sample 5
        unit(2, 240, 2, [20], [10.0]),  # clips 3-4 (unit 1 lost); a cut at sample 20
        count(0, 0, 2), count(0, 1, 1), count(2, 0, 1), count(2, 1, 1),
    ]  # fmt: skip
    offsets, shots = number_units(pa.Table.from_pylist(rows, schema=UNITS_SCHEMA))
    clip_add, shot_add = offsets["v"].offsets(np.array([0, 100, 240, 300]))
    assert clip_add.tolist() == [0, 0, 3, 3] and shot_add.tolist() == [0, 0, 1, 1]
    assert shots["shot_index"].to_pylist() == [0, 1, 2]
    assert shots["start_s"].to_pylist() == [0.0, 2.5, 10.0]
    assert shots["end_s"].to_pylist() == [2.5, 10.0, 30.0]
    assert shots["num_clips"].to_pylist() == [2, 2, 1]
