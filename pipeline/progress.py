"""Progress of a run: stages report counts to one small actor; the driver logs and keeps a
timeline (for the run record and the report). Plain lines, readable in `ray job logs`."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import ray

log = logging.getLogger("reelay.progress")
SLOWEST_KEPT = 20


@ray.remote(num_cpus=0, max_restarts=-1)
class ProgressTracker:
    """Counters fed by the decode tasks and inference actors (fire-and-forget calls)."""

    def __init__(self, clips_per_video: dict[str, int]):
        self.remaining = dict(clips_per_video)
        self.counts = {
            "decoded_frames": 0,
            "decoded_units": 0,
            "inferred_clips": 0,
            "inferred_frames": 0,
            "failed_units": 0,
            "videos_done": 0,
        }
        self.decode_seconds: dict[str, float] = {}

    def decoded(self, uri: str, frames: int, seconds: float, failed: bool) -> None:
        self.counts["decoded_frames"] += frames
        self.counts["decoded_units"] += 1
        self.counts["failed_units"] += int(failed)
        self.decode_seconds[uri] = self.decode_seconds.get(uri, 0.0) + seconds

    def inferred(self, clips_by_video: dict[str, int], frames: int) -> None:
        self.counts["inferred_frames"] += frames
        for uri, n in clips_by_video.items():
            self.counts["inferred_clips"] += n
            left = self.remaining.get(uri, 0) - n
            self.remaining[uri] = left
            if left == 0:
                self.counts["videos_done"] += 1

    def snapshot(self) -> dict:
        return dict(self.counts)

    def slowest(self, n: int = SLOWEST_KEPT) -> list[tuple[str, float]]:
        return sorted(self.decode_seconds.items(), key=lambda kv: -kv[1])[:n]


@dataclass
class ProgressLog:
    """Driver thread: every `interval_s`, one log line and one timeline sample."""

    tracker: ray.actor.ActorHandle
    total_videos: int
    total_clips: int
    interval_s: float = 10.0

    def __post_init__(self) -> None:
        self.timeline: list[dict] = []
        self._stop = threading.Event()
        self._start = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name="reelay-progress", daemon=True)

    def __enter__(self) -> ProgressLog:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sample(final=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def sample(self, final: bool = False) -> dict:
        try:
            counts = ray.get(self.tracker.snapshot.remote(), timeout=10)
        except Exception as e:  # progress is advisory: never fail the run for it
            log.debug("progress snapshot failed: %s", e)
            return {}
        t = time.monotonic() - self._start
        counts["t_s"] = round(t, 2)
        self.timeline.append(counts)
        done = counts["inferred_clips"] / max(self.total_clips, 1)
        rate = counts["inferred_frames"] / max(t, 1e-9)
        eta = (t / done - t) if 0 < done < 1 else 0.0
        log.info(
            "progress: %d/%d videos, %d/%d clips (%.0f%%), %.1f frames/s, %d failed units%s",
            counts["videos_done"],
            self.total_videos,
            counts["inferred_clips"],
            self.total_clips,
            100 * done,
            rate,
            counts["failed_units"],
            "" if final else f", ETA {eta / 60:.1f} min",
        )
        return counts
