"""The planner keeps each decode task within its memory budget (PlanConfig.task_memory_bytes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import ConfigError, PlanConfig, SamplingConfig, StorageConfig
from pipeline.listing import list_videos
from pipeline.samples import VideoSpec, write_video
from pipeline.video.plan import PlanVideo

MIB = 2**20


def plan_rows(path: Path, sampling: SamplingConfig, plan: PlanConfig) -> list[dict]:
    (entry,) = list_videos(str(path))
    row = {"uri": entry.uri, "size": entry.size, "fingerprint": entry.fingerprint}
    return PlanVideo(sampling, plan, StorageConfig())(row)  # inline: no Ray, no book


def test_frames_per_unit_shrinks_with_the_output_size_and_the_budget():
    plan = PlanConfig(unit_frames=128, task_memory_bytes=64 * MIB)
    assert plan.frames_per_unit(640, 360, 112) == 128  # small frames: the flag wins
    big_output = plan.frames_per_unit(640, 360, 448)  # 602 KB per resized frame
    assert 0 < big_output < 128
    assert big_output < PlanConfig(task_memory_bytes=96 * MIB).frames_per_unit(640, 360, 448)
    assert 0 < plan.frames_per_unit(1920, 1080, 112) < 128  # 8 decoder frames of 6 MiB + a chunk
    assert plan.frames_per_unit(2560, 1440, 112) == 0  # 8 frames of 11 MiB: over 64 MiB
    assert PlanConfig().frames_per_unit(2560, 1440, 112) == 128  # the default budget: 1 GiB
    assert PlanConfig().frames_per_unit(16384, 16384, 112) == 0


def test_units_fit_the_budget(tmp_path):
    path = write_video(VideoSpec(width=320, height=180, fps=10, seconds=12.0), tmp_path / "v.mp4")
    sampling = SamplingConfig(fps=10, clip_frames=4, image_size=448)
    plan = PlanConfig(unit_frames=128, task_memory_bytes=64 * MIB)
    per_unit = plan.frames_per_unit(320, 180, 448)
    units = plan_rows(path, sampling, plan)
    assert len(units) > 1 and not any(u["error_stage"] for u in units)
    assert all(u["sampled_frames"] <= per_unit for u in units)
    assert sum(u["clip_end"] - u["clip_start"] for u in units) == units[0]["num_clips"] == 30


def test_a_video_whose_frames_cannot_fit_is_an_error_row(tmp_path):
    spec = VideoSpec(width=2560, height=1440, fps=2, seconds=1.0)
    path = write_video(spec, tmp_path / "qhd.mp4")
    (row,) = plan_rows(path, SamplingConfig(), PlanConfig(task_memory_bytes=64 * MIB))
    assert row["error_stage"] == "plan" and row["error_type"] == "OverMemoryBudget"
    assert "2560x1440" in row["error_message"] and "--decode-memory-mib" in row["error_message"]
    (ok,) = plan_rows(path, SamplingConfig(), PlanConfig())  # fits the default budget
    assert not ok["error_stage"]


def test_a_budget_below_64_mib_is_refused():
    with pytest.raises(ConfigError, match="decode-memory-mib"):
        PlanConfig(task_memory_bytes=32 * MIB)


def test_small_units_are_grouped_into_tasks_big_ones_stay_alone():
    from pipeline.video.plan import group_units

    units = [{"sampled_frames": n, "i": i} for i, n in enumerate([20] * 10 + [128, 128, 5])]
    groups = group_units(units, max_frames=128)
    assert [u["i"] for g in groups for u in g] == list(range(13))  # order kept, none lost
    assert all(sum(u["sampled_frames"] for u in g) <= 128 or len(g) == 1 for g in groups)
    assert [len(g) for g in groups] == [6, 4, 1, 1, 1]  # 120 frames, the other small ones, ...


def test_plan_tasks_group_units_and_pass_unplannable_videos_on(tmp_path):
    """A plan batch -> decode tasks of at most `unit_frames` sampled frames: a long video's
    units spread over several tasks, small units share one, and a broken file is a task of
    its own with its plan error (it then travels through decode and infer as an error row)."""
    import pyarrow as pa

    from pipeline.video.plan import PlanTasks

    spec = VideoSpec(width=64, height=48, fps=10, seconds=12.0)
    write_video(spec, tmp_path / "a.mp4")  # 120 sampled frames: 8 units of <= 16
    for i in (1, 2):  # 4 frames: one clip, one small unit each
        small = VideoSpec(width=64, height=48, fps=10, seconds=0.4, seed=i)
        write_video(small, tmp_path / f"b{i}.mp4")
    (tmp_path / "c.mp4").write_bytes(b"not a video")
    rows = [
        {"uri": e.uri, "size": e.size, "fingerprint": e.fingerprint}
        for e in sorted(list_videos(str(tmp_path)), key=lambda e: e.uri)
    ]
    sampling = SamplingConfig(fps=10, clip_frames=4, image_size=32)
    plan_tasks = PlanTasks(PlanVideo(sampling, PlanConfig(unit_frames=16), StorageConfig()))
    tasks = plan_tasks(pa.Table.from_pylist(rows))["units"].to_pylist()
    broken = [t for t in tasks if t[0]["error_stage"]]
    good = [t for t in tasks if not t[0]["error_stage"]]
    assert [(u["video_uri"][-5:], u["error_stage"]) for t in broken for u in t] == [
        ("c.mp4", "plan")
    ]
    assert all(sum(u["sampled_frames"] for u in t) <= 16 for t in good)
    units = [u for t in good for u in t]
    long_units = [u for u in units if u["video_uri"].endswith("a.mp4")]
    assert len(long_units) == 8 and sum(u["sampled_frames"] for u in long_units) == 120
    assert sum(1 for t in good if any(u["video_uri"].endswith("a.mp4") for u in t)) == 8
    assert len(good) < len(units)  # the small units rode along in a task with room
