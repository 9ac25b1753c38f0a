"""Stage 1, plan (CPU tasks, 1 video : N work units): read the header, cut into time ranges.

A work unit is a run of consecutive clips holding at most `unit_frames` sampled frames (fewer
when the resolution needs it: `PlanConfig.frames_per_unit`), so a decode task's memory stays
within its budget whatever the length and resolution of the video.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from pipeline import storage
from pipeline.config import PlanConfig, SamplingConfig, StorageConfig
from pipeline.faults import crash_point
from pipeline.schema import error_fields, no_error
from pipeline.video.guard import guarded
from pipeline.video.io import VideoInfo, probe
from pipeline.video.sampling import (
    group_clips,
    plan_clips,
    sample_ranges,
    sampled_frame_indices,
)

VIDEO_META_DEFAULTS = {
    "num_frames": 0,
    "fps": 0.0,
    "duration_s": 0.0,
    "width": 0,
    "height": 0,
    "has_audio": False,
    "num_clips": 0,
}


class OverMemoryBudget(ValueError):
    """The video's frames do not fit the per-task memory budget (--decode-memory-mib)."""


def fetch_and_probe(
    uri: str, fingerprint: str, storage_cfg: StorageConfig, plan: PlanConfig, image_size: int
) -> VideoInfo:
    crash_point("probe", uri)

    def check_size(width: int, height: int) -> None:
        if plan.frames_per_unit(width, height, image_size) < 1:
            raise OverMemoryBudget(
                f"a {width}x{height} frame takes {width * height * 3 / 2**20:.0f} MiB decoded; "
                f"with the decoder's own frames it does not fit the decode budget of "
                f"{plan.task_memory_bytes // 2**20} MiB per task; raise --decode-memory-mib "
                "if the nodes have the memory"
            )

    return probe(storage.local_copy(uri, fingerprint, storage_cfg), check_size)


@dataclass(frozen=True)
class PlanVideo:
    """Row function: a listed video -> its work units (or one error row)."""

    sampling: SamplingConfig
    plan: PlanConfig
    storage: StorageConfig
    book: Any = None  # the run's book actor (a pipeline.video.guard.GuardBook), or None: unguarded

    def __call__(self, row: dict) -> list[dict]:
        base = {
            "video_uri": row["uri"],
            "size_bytes": int(row["size"]),
            "fingerprint": row["fingerprint"],
        }
        try:
            info = guarded(
                fetch_and_probe,
                row["uri"],
                row["fingerprint"],
                self.storage,
                self.plan,
                self.sampling.image_size,
                guard=self.plan.guard,
                what="reading the video header",
                key=f"plan {row['uri']} {row['fingerprint']}",
                book=self.book,
            )
            per_unit = self.plan.frames_per_unit(info.width, info.height, self.sampling.image_size)
            units = self._units(info, per_unit)
        except Exception as e:  # any unreadable video becomes an error row, never a lost run
            return [
                {
                    **base,
                    **VIDEO_META_DEFAULTS,
                    "unit_index": 0,
                    "num_units": 0,
                    "clip_start": 0,
                    "clip_end": 0,
                    "sample_start": 0,
                    "sample_end": 0,
                    "sampled_frames": 0,
                    "reader": "",
                    **error_fields("plan", e),
                }
            ]
        meta = {
            "num_frames": info.num_frames,
            "fps": info.fps,
            "duration_s": info.duration_s,
            "width": info.width,
            "height": info.height,
            "has_audio": info.has_audio,
            "num_clips": sum(u["clip_end"] - u["clip_start"] for u in units),
        }
        return [
            {**base, **meta, **unit, "unit_index": i, "num_units": len(units),
             "reader": info.reader, **no_error()}
            for i, unit in enumerate(units)
        ]  # fmt: skip

    def _units(self, info: VideoInfo, per_unit: int) -> list[dict]:
        """The video's work units: runs of clips (fixed windows), or runs of samples whose
        clips the decode stage cuts at shots (--clips shots; `clip_start`/`clip_end` then
        count the windows the samples would make without cuts, for progress)."""
        if self.sampling.by_shot:
            count = len(sampled_frame_indices(info.num_frames, info.fps, self.sampling.fps))
            units, windows = [], 0
            for a, b in sample_ranges(count, per_unit):
                estimate = -(-(b - a) // self.sampling.clip_frames)
                units.append(
                    {"clip_start": windows, "clip_end": windows + estimate, "sample_start": a,
                     "sample_end": b, "sampled_frames": b - a}
                )  # fmt: skip
                windows += estimate
            return units
        clips = plan_clips(info.num_frames, info.fps, self.sampling)
        return [
            {"clip_start": a, "clip_end": b, "sample_start": 0, "sample_end": 0,
             "sampled_frames": len({f for c in clips[a:b] for f in c.frame_indices})}
            for a, b in group_clips(clips, per_unit)
        ]  # fmt: skip


def group_units(units: list[dict], max_frames: int) -> list[list[dict]]:
    """Consecutive work units into decode tasks of at most `max_frames` sampled frames (a unit
    is never split).

    One short video is one small unit (a 10 s video at 2 fps: 20 frames); a task per unit then
    pays Ray's per-task cost (scheduling, a result round trip) for ~0.1 s of work. Grouping
    keeps tasks near `max_frames` frames, so per-task memory stays bounded as for one unit."""
    target = max(1, max_frames)
    groups: list[list[dict]] = []
    frames = 0
    for unit in units:
        if groups and frames + unit["sampled_frames"] <= target:
            groups[-1].append(unit)
            frames += unit["sampled_frames"]
        else:
            groups.append([unit])
            frames = unit["sampled_frames"]
    return groups


def clips_per_video(units: list[dict]) -> dict[str, int]:
    """Planned clips of each video in `units` (0 for a video that could not be planned)."""
    clips: dict[str, int] = {}
    for u in units:
        clips[u["video_uri"]] = clips.get(u["video_uri"], 0) + u["clip_end"] - u["clip_start"]
    return clips


@dataclass(frozen=True)
class PlanTasks:
    """Batch function: listed videos (an Arrow batch) -> decode tasks, one row each,
    `{"units": [...]}`: the videos' work units grouped by `group_units`.

    Planning runs in the same streaming pipeline as decoding and inference, so decoding and
    the inference actors' start-up overlap the header reads, and the driver never holds the
    units of a whole corpus. A video that cannot be planned becomes a task of its one error
    row, which travels through decode and infer to the errors table."""

    plan_video: PlanVideo
    progress: Any = None  # the run's RunBook actor (its ProgressTracker methods), or None

    def __call__(self, batch: pa.Table) -> pa.Table:
        units = [u for row in batch.to_pylist() for u in self.plan_video(row)]
        good = [u for u in units if not u["error_stage"]]
        tasks = group_units(good, self.plan_video.plan.unit_frames)
        tasks += [[u] for u in units if u["error_stage"]]
        if self.progress is not None:
            self.progress.planned.remote(clips_per_video(units))
        return pa.table({"units": tasks})
