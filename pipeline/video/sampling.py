"""Pure sampling logic: which frames of a video are kept, and how they group into clips."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.config import SamplingConfig


@dataclass(frozen=True)
class ClipSpan:
    """One clip: `clip_frames` frame indices of the video (the last may repeat to pad)."""

    clip_index: int
    frame_indices: tuple[int, ...]
    start_s: float
    end_s: float
    shot_index: int | None = None  # --clips shots: the shot's number within the work unit


def sampled_frame_indices(num_frames: int, native_fps: float, target_fps: float) -> np.ndarray:
    """Frame indices taken at `target_fps` (capped at the native rate), strictly increasing."""
    if num_frames <= 0:
        return np.zeros(0, dtype=np.int64)
    if not native_fps > 0:
        raise ValueError(f"video reports a frame rate of {native_fps}; cannot sample by time")
    step = max(native_fps / target_fps, 1.0)  # native frames per sample
    count = int(np.floor((num_frames - 1) / step + 1e-9)) + 1
    return np.floor(np.arange(count) * step + 1e-9).astype(np.int64)


def clip_windows(num_samples: int, clip_frames: int, stride: int) -> list[tuple[int, int]]:
    """[start, end) windows over the sampled sequence; a tail window covers the last samples."""
    if num_samples <= 0:
        return []
    if num_samples <= clip_frames:
        return [(0, num_samples)]
    starts = list(range(0, num_samples - clip_frames + 1, stride))
    if starts[-1] + clip_frames < num_samples:
        starts.append(num_samples - clip_frames)
    return [(s, s + clip_frames) for s in starts]


def plan_clips(num_frames: int, native_fps: float, sampling: SamplingConfig) -> list[ClipSpan]:
    """All clips of a video; short clips are padded by repeating their last frame."""
    samples = sampled_frame_indices(num_frames, native_fps, sampling.fps)
    clips = []
    for i, (start, end) in enumerate(
        clip_windows(len(samples), sampling.clip_frames, sampling.stride)
    ):
        frames = [int(f) for f in samples[start:end]]
        frames += [frames[-1]] * (sampling.clip_frames - len(frames))
        clips.append(
            ClipSpan(
                clip_index=i,
                frame_indices=tuple(frames),
                start_s=frames[0] / native_fps,
                end_s=min(num_frames, frames[-1] + 1) / native_fps,
            )
        )
    return clips


def group_clips(clips: list[ClipSpan], max_frames: int) -> list[tuple[int, int]]:
    """Cut clips into [first, last) ranges of at most `max_frames` distinct frames (>= 1 clip)."""
    ranges: list[tuple[int, int]] = []
    first, frames = 0, set()
    for i, clip in enumerate(clips):
        merged = frames | set(clip.frame_indices)
        if frames and len(merged) > max_frames:
            ranges.append((first, i))
            first, merged = i, set(clip.frame_indices)
        frames = merged
    if clips:
        ranges.append((first, len(clips)))
    return ranges


def sample_ranges(num_samples: int, max_frames: int) -> list[tuple[int, int]]:
    """The sampled sequence cut into consecutive [start, end) ranges of at most `max_frames`:
    the work units of --clips shots, whose clips are only known once the frames are seen."""
    step = max(1, max_frames)
    return [(a, min(a + step, num_samples)) for a in range(0, num_samples, step)]
