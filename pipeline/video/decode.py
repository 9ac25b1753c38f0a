"""Stage 2, decode (CPU tasks, 1 work unit : N clips): sampled frames, resized, as clip rows.

A unit whose frames partly fail to decode keeps the clips whose frames all decoded; each run
of undecodable frames becomes one error row naming the clips it cost.

Every clip row also carries `unit_frames`: its unit's sampled frames on the unit's first row
(or its one error row), 0 on the others, so the run's frame and unit counts add up from the
results without the driver holding the plan."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline import storage
from pipeline.config import PlanConfig, SamplingConfig, StorageConfig
from pipeline.faults import crash_point
from pipeline.ray_env import this_node
from pipeline.schema import ERROR_FIELDS, error_fields, no_error
from pipeline.video.guard import guarded
from pipeline.video.io import (
    DecodedFrames,
    UndecodableFrames,
    VideoInfo,
    read_frames_and_times,
)
from pipeline.video.sampling import plan_clips

UNIT_META = (
    "video_uri",
    "size_bytes",
    "fingerprint",
    "num_frames",
    "fps",
    "duration_s",
    "width",
    "height",
    "num_clips",
)


def fetch_and_read(
    uri: str,
    fingerprint: str,
    storage_cfg: StorageConfig,
    indices: list[int],
    size: int,
    info: VideoInfo,
    chunk_bytes: int,
) -> DecodedFrames:
    crash_point("decode", uri)
    path = storage.local_copy(uri, fingerprint, storage_cfg)
    return read_frames_and_times(path, indices, size, info, chunk_bytes)


@dataclass(frozen=True)
class DecodeUnit:
    """Row function: a work unit -> one row per clip with `frames` (T, S, S, 3) uint8.

    A failure yields one row with clip_index -1, blank frames and the error fields set, so the
    error travels with the data and the rest of the run goes on.
    """

    sampling: SamplingConfig
    plan: PlanConfig
    storage: StorageConfig
    progress: Any = None  # the run's RunBook actor (its ProgressTracker methods), or None
    book: Any = None  # the run's book actor (a pipeline.video.guard.GuardBook), or None: unguarded

    def __call__(self, unit: dict) -> list[dict]:
        start = time.perf_counter()
        rows, reader = self._rows(unit)
        if self.progress is not None:
            failed = any(row["error_stage"] for row in rows)
            frames = 0 if rows[0]["error_stage"] else unit["sampled_frames"]
            self.progress.decoded.remote(
                unit["video_uri"], frames, time.perf_counter() - start, failed, reader,
                this_node(),
            )  # fmt: skip
        return rows

    def _rows(self, unit: dict) -> tuple[list[dict], str | None]:
        """The unit's rows, and which reader read its frames (`DecodedFrames.reader`; None
        when nothing was read)."""
        meta = {k: unit[k] for k in UNIT_META}
        if unit["error_stage"]:  # the video could not be planned: its error row goes on
            return [self._error_row(meta, unit, {k: unit[k] for k in ERROR_FIELDS})], None
        got = None
        try:
            info, clips, wanted, got = self._read(unit)
            rows = list(self._clip_rows(unit, meta, info, clips, wanted, got))
        except Exception as e:  # recorded on the row: see class docstring
            rows = [self._error_row(meta, unit, error_fields("decode", e))]
        else:
            for i, row in enumerate(rows):  # the unit counted once, on its first row
                row["unit_frames"] = unit["sampled_frames"] if i == 0 else 0
        return rows, (got.reader if got is not None else None)

    def _error_row(self, meta: dict, unit: dict, error: dict) -> dict:
        size, frames = self.sampling.image_size, self.sampling.clip_frames
        return {
            **meta,
            "clip_index": -1,
            "start_s": 0.0,
            "end_s": 0.0,
            "frame_indices": np.zeros(frames, dtype=np.int32),
            "frames": np.zeros((frames, size, size, 3), np.uint8),
            "unit_frames": unit["sampled_frames"],
            **error,
        }

    def _read(self, unit: dict) -> tuple[VideoInfo, list, list[int], DecodedFrames]:
        """The unit's clips, the frames they take and what reading them gave (guarded)."""
        info = VideoInfo(
            int(unit["num_frames"]),
            float(unit["fps"]),
            int(unit["width"]),
            int(unit["height"]),
            reader=unit.get("reader") or "",
        )
        clips = plan_clips(info.num_frames, info.fps, self.sampling)
        clips = clips[unit["clip_start"] : unit["clip_end"]]
        wanted = sorted({f for c in clips for f in c.frame_indices})
        first, last = unit["clip_start"], unit["clip_end"] - 1
        got = guarded(
            fetch_and_read,
            unit["video_uri"],
            unit["fingerprint"],
            self.storage,
            wanted,
            self.sampling.image_size,
            info,
            self.plan.chunk_bytes,
            guard=self.plan.guard,
            what=f"decoding clips {first}-{last}",
            key=f"decode {unit['video_uri']} {unit['fingerprint']} {first}",
            book=self.book,
        )
        return info, clips, wanted, got

    def _clip_rows(
        self, unit: dict, meta: dict, info: VideoInfo, clips: list, wanted: list[int], got
    ):
        """The unit's clip rows, then one error row per run of frames that did not decode."""
        position = {f: i for i, f in enumerate(wanted)}
        decoded = got.decoded()
        if got.frame_size is not None:  # as decoded: the plan read the header's coded size
            meta = {**meta, "width": got.frame_size[0], "height": got.frame_size[1]}
        for clip in clips:
            take = [position[f] for f in clip.frame_indices]
            if not decoded[take].all():
                continue
            yield {
                **meta,
                "clip_index": clip.clip_index,
                # presentation times (true for variable frame rates), not index / average fps
                "start_s": float(got.times[take[0], 0]),
                "end_s": float(got.times[take[-1], 1]),
                "frame_indices": np.asarray(clip.frame_indices, dtype=np.int32),
                "frames": got.frames[take],
                **no_error(),
            }
        for failure in got.failures:  # after the clips: a unit's first row is a clip if any
            bad = set(wanted[failure.start : failure.stop])
            lost = [c.clip_index for c in clips if bad.intersection(c.frame_indices)]
            clips_lost = f"clip {lost[0]}" if len(lost) == 1 else f"clips {lost[0]}-{lost[-1]}"
            error = UndecodableFrames(
                f"{failure.message(wanted, info.num_frames)}; {clips_lost} not indexed"
            )
            yield self._error_row(meta, unit, error_fields("decode", error))


@dataclass(frozen=True)
class DecodeUnits:
    """Row function: a decode task's units (`{"units": [...]}`, see plan.group_units) -> the
    clip rows of each, in order; every unit keeps its own guard, errors and progress."""

    decode: DecodeUnit

    def __call__(self, row: dict) -> list[dict]:
        return [clip for unit in row["units"] for clip in self.decode(unit)]
