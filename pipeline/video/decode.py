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
from pipeline.video import shots
from pipeline.video.audio import AudioTrack, UnitSound, UnreadableAudio, read_unit_sound
from pipeline.video.fingerprint import ZOOMS, frame_fingerprints
from pipeline.video.guard import guarded
from pipeline.video.io import (
    DecodedFrames,
    UndecodableFrames,
    VideoInfo,
    read_frames_and_times,
)
from pipeline.video.sampling import ClipSpan, plan_clips, sampled_frame_indices

UNIT_META = (
    "video_uri",
    "size_bytes",
    "fingerprint",
    "num_frames",
    "fps",
    "duration_s",
    "width",
    "height",
    "has_audio",
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
    sound: tuple[int, float] | None = None,
) -> tuple[DecodedFrames, UnitSound | None]:
    """The frames at `indices`; with `sound` (rate, seconds a sample stands for), also the
    sound of the time the decoded frames stand for (in the same guarded call: a hang in
    either costs the unit, never the run)."""
    crash_point("decode", uri)
    path = storage.local_copy(uri, fingerprint, storage_cfg)
    got = read_frames_and_times(path, indices, size, info, chunk_bytes)
    if sound is None:
        return got, None
    rate, per_sample_s = sound
    decoded = got.decoded()
    if not decoded.any():
        return got, UnitSound(AudioTrack.absent(rate))
    span = got.times[decoded]
    end = max(float(span[:, 1].max()), float(span[:, 0].max()) + per_sample_s)
    return got, read_unit_sound(path, float(span[:, 0].min()), end, rate)


def per_sample_s(info: VideoInfo, sampling: SamplingConfig) -> float:
    """The seconds one sampled frame stands for (sampling never goes past the native rate)."""
    return 1.0 / min(sampling.fps, info.fps) if info.fps > 0 else 1.0 / sampling.fps


@dataclass(frozen=True)
class UnitShots:
    """What a --clips shots unit found: its clips (clip and shot numbers counted from the
    unit's start) and the cuts in it, as sample numbers of the video and their times."""

    clips: list[ClipSpan]
    cuts: list[int]
    cut_times: list[float]
    first_frame: int  # the frame number of the unit's first sample


def unit_shots(
    got: DecodedFrames, wanted: list[int], unit: tuple[int, int], first_sample: int,
    clip_frames: int,
) -> UnitShots:  # fmt: skip
    """Cuts among the unit's decoded samples (positions `unit` of `wanted`; the samples around
    it are the detector's context), then windows of at most `clip_frames` samples inside each
    shot. Undecodable samples are left out of the detection; a window that holds one is
    dropped later, like any clip whose frames did not decode."""
    start, end = unit
    decoded = got.decoded()
    usable = [i for i in range(len(wanted)) if decoded[i]]
    inside = [i for i in usable if start <= i < end]
    before = [i for i in usable if i < start][-shots.CONTEXT_BEFORE :]
    after = [i for i in usable if i >= end][: shots.CONTEXT_AFTER]
    found = shots.detect_cuts(
        got.frames[inside],
        previous=got.frames[before] if before else None,
        following=got.frames[after] if after else None,
    ) if inside else []  # fmt: skip
    cuts = [inside[p] - start for p in found]  # positions among all the unit's samples
    clips = []
    for k, (a, b, _) in enumerate(shots.shot_windows(end - start, cuts, clip_frames)):
        frames = wanted[start + a : start + b]
        frames += [frames[-1]] * (clip_frames - len(frames))
        shot = sum(1 for c in cuts if c <= a)  # 0: the shot running when the unit starts
        clips.append(ClipSpan(k, tuple(frames), 0.0, 0.0, shot_index=shot))
    times = [float(got.times[start + c, 0]) for c in cuts]
    return UnitShots(clips, [first_sample + c for c in cuts], times, wanted[start])


def unit_columns(unit: dict, found: UnitShots | None) -> dict:
    """A --clips shots row's unit columns: the unit's number, and on its first row (`found`),
    its first frame, how many clips it made and its cuts (pipeline.index.shots reads them);
    blanks on the others and where nothing was read."""
    return {
        "unit_index": unit["unit_index"],
        "unit_first_frame": found.first_frame if found else -1,
        "unit_clips": len(found.clips) if found else 0,
        "unit_cuts": np.asarray(found.cuts if found else [], dtype=np.int64),
        "unit_cut_times": np.asarray(found.cut_times if found else [], dtype=np.float64),
    }


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
        got, found = None, None
        if unit["error_stage"]:  # the video could not be planned: its error row goes on
            rows = [self._error_row(meta, unit, {k: unit[k] for k in ERROR_FIELDS})]
            return self._with_unit_columns(rows, unit, found), None
        try:
            info, clips, wanted, (got, sound), found = self._read(unit)
            self._check_sound(sound)
            rows = list(self._clip_rows(unit, meta, info, clips, wanted, got, sound))
        except Exception as e:  # recorded on the row: see class docstring
            rows = [self._error_row(meta, unit, error_fields("decode", e))]
        else:
            for i, row in enumerate(rows):  # the unit counted once, on its first row
                row["unit_frames"] = unit["sampled_frames"] if i == 0 else 0
        return self._with_unit_columns(rows, unit, found), (got.reader if got is not None else None)

    def _with_unit_columns(self, rows: list[dict], unit: dict, found) -> list[dict]:
        """--clips shots: what the driver numbers the video's clips and shots by."""
        if self.sampling.by_shot:
            for i, row in enumerate(rows):
                row |= unit_columns(unit, found if i == 0 else None)
        return rows

    def _check_sound(self, sound: UnitSound | None) -> None:
        """A model of sound alone cannot index a clip whose sound is unreadable."""
        if sound is not None and sound.error and self.sampling.modalities == "audio":
            raise UnreadableAudio(f"the audio stream cannot be decoded ({sound.error})")

    def _sound_columns(self, sound: UnitSound | None, start_s: float, seconds: float) -> dict:
        """A clip's `audio` (the samples of `seconds` from `start_s`) and `audio_rms` where
        the model hears; none otherwise."""
        if not self.sampling.hears:
            return {}
        if sound is None:
            return {"audio": np.zeros(self.sampling.audio_samples, np.float32),
                    "audio_rms": float("nan")}  # fmt: skip
        samples, rms = sound.clip(start_s, start_s + seconds, self.sampling.audio_samples)
        return {"audio": samples, "audio_rms": rms}

    def _error_row(self, meta: dict, unit: dict, error: dict) -> dict:
        size, frames = self.sampling.image_size, self.sampling.clip_frames
        return {
            **meta,
            "clip_index": -1,
            "start_s": 0.0,
            "end_s": 0.0,
            "frame_indices": np.zeros(frames, dtype=np.int32),
            "frames": np.zeros((frames, size, size, 3), np.uint8),
            "frame_hashes": np.zeros((frames, len(ZOOMS)), np.int64),
            "shot_index": -1,
            "unit_frames": unit["sampled_frames"],
            **self._sound_columns(None, 0.0, 0.0),
            **error,
        }

    def _read(self, unit: dict) -> tuple:
        """The unit's clips, the frames they take, what reading them gave (guarded), and the
        unit's shots (UnitShots; None for fixed windows)."""
        info = VideoInfo(
            int(unit["num_frames"]),
            float(unit["fps"]),
            int(unit["width"]),
            int(unit["height"]),
            reader=unit.get("reader") or "",
        )
        if self.sampling.by_shot:
            return self._read_shots(unit, info)
        clips = plan_clips(info.num_frames, info.fps, self.sampling)
        clips = clips[unit["clip_start"] : unit["clip_end"]]
        wanted = sorted({f for c in clips for f in c.frame_indices})
        return info, clips, wanted, self._fetch(unit, info, wanted), None

    def _read_shots(self, unit: dict, info: VideoInfo) -> tuple:
        """--clips shots: the unit's samples and the few around it that the cut detector reads
        (so a unit boundary neither invents nor hides a cut), then clips that tile each shot."""
        samples = sampled_frame_indices(info.num_frames, info.fps, self.sampling.fps)
        a, b = unit["sample_start"], unit["sample_end"]
        lo, hi = max(0, a - shots.CONTEXT_BEFORE), min(len(samples), b + shots.CONTEXT_AFTER)
        wanted = [int(f) for f in samples[lo:hi]]
        got, sound = self._fetch(unit, info, wanted)
        found = unit_shots(got, wanted, (a - lo, b - lo), a, self.sampling.clip_frames)
        return info, found.clips, wanted, (got, sound), found

    def _fetch(
        self, unit: dict, info: VideoInfo, wanted: list[int]
    ) -> tuple[DecodedFrames, UnitSound | None]:
        """The frames, guarded; where the model hears, the sound too (a video whose header
        lists no audio stream is silent without a read)."""
        first, last = unit["clip_start"], unit["clip_end"] - 1
        sound = None
        if self.sampling.hears and unit.get("has_audio") is not False:
            sound = (self.sampling.audio_rate, per_sample_s(info, self.sampling))
        got, sound = guarded(
            fetch_and_read,
            unit["video_uri"],
            unit["fingerprint"],
            self.storage,
            wanted,
            self.sampling.image_size,
            info,
            self.plan.chunk_bytes,
            sound,
            guard=self.plan.guard,
            what=f"decoding clips {first}-{last}",
            key=f"decode {unit['video_uri']} {unit['fingerprint']} {first}",
            book=self.book,
        )
        if self.sampling.hears and sound is None:  # no stream: silence, a fact
            sound = UnitSound(AudioTrack.absent(self.sampling.audio_rate))
        return got, sound

    def _clip_rows(
        self, unit: dict, meta: dict, info: VideoInfo, clips: list, wanted: list[int], got,
        sound: UnitSound | None = None,
    ):  # fmt: skip
        """The unit's clip rows, then one error row per run of frames that did not decode
        (and one where a model of picture and sound got no sound from a damaged stream)."""
        position = {f: i for i, f in enumerate(wanted)}
        decoded = got.decoded()
        hashes = frame_fingerprints(got.frames).view(np.int64)  # (N, 2): whole, zoomed
        if got.frame_size is not None:  # as decoded: the plan read the header's coded size
            meta = {**meta, "width": got.frame_size[0], "height": got.frame_size[1]}
        for clip in clips:
            take = [position[f] for f in clip.frame_indices]
            if not decoded[take].all():
                continue
            # presentation times (true for variable frame rates), not index / average fps
            start_s, end_s = float(got.times[take[0], 0]), float(got.times[take[-1], 1])
            yield {
                **meta,
                "clip_index": clip.clip_index,
                "start_s": start_s,
                "end_s": end_s,
                "frame_indices": np.asarray(clip.frame_indices, dtype=np.int32),
                "frames": got.frames[take],
                "frame_hashes": hashes[take],
                "shot_index": -1 if clip.shot_index is None else clip.shot_index,
                # the sound of the time its distinct samples stand for (a padded clip's
                # repeats add none)
                **self._sound_columns(
                    sound, start_s, len(set(clip.frame_indices)) * per_sample_s(info, self.sampling)
                ),
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
        if sound is not None and sound.error and clips:
            error = UnreadableAudio(
                f"the audio stream cannot be decoded ({sound.error}); clips "
                f"{clips[0].clip_index}-{clips[-1].clip_index} were indexed on their pictures "
                "with silence for their sound"
            )
            yield self._error_row(meta, unit, error_fields("decode", error))


@dataclass(frozen=True)
class DecodeUnits:
    """Row function: a decode task's units (`{"units": [...]}`, see plan.group_units) -> the
    clip rows of each, in order; every unit keeps its own guard, errors and progress."""

    decode: DecodeUnit

    def __call__(self, row: dict) -> list[dict]:
        return [clip for unit in row["units"] for clip in self.decode(unit)]
