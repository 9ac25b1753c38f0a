"""Progress of a run: stages report counts to one small actor (the run's RunBook, which also
keeps the decode guard's record); the driver logs and keeps a timeline (for the run record and
the report). Plain lines, readable in `ray job logs`."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import ray

from pipeline.video.guard import GuardBook

log = logging.getLogger("reelay.progress")
SLOWEST_KEPT = 20
READER_REASONS_KEPT = 10


class ProgressTracker:
    """Counters fed by the plan and decode tasks and the inference actors (fire-and-forget
    calls). Videos are planned while others are decoded: totals grow as plans arrive."""

    def __init__(self):
        self.remaining: dict[str, int] = {}
        self.counts = {
            "planned_videos": 0,
            "planned_clips": 0,
            "decoded_frames": 0,
            "decoded_units": 0,
            "inferred_clips": 0,
            "inferred_frames": 0,
            "failed_units": 0,
            "videos_done": 0,
        }
        self.decode_seconds: dict[str, float] = {}
        # units per reader (pipeline.video.io.DecodedFrames.reader)
        self.readers: dict[str, int] = {}
        self.nodes: dict[str, dict] = {}  # Ray node id -> what its workers did (`node_work`)

    def planned(self, clips_per_video: dict[str, int]) -> None:
        for uri, n in clips_per_video.items():
            self.counts["planned_videos"] += 1
            self.counts["planned_clips"] += n
            self._count_down(uri, -n)

    def decoded(
        self, uri: str, frames: int, seconds: float, failed: bool, reader: str | None = None,
        node: str = "",
    ) -> None:  # fmt: skip
        self.counts["decoded_frames"] += frames
        self.counts["decoded_units"] += 1
        self.counts["failed_units"] += int(failed)
        self.decode_seconds[uri] = self.decode_seconds.get(uri, 0.0) + seconds
        if reader is not None:
            self.readers[reader] = self.readers.get(reader, 0) + 1
        work = self._node(node)
        work["decoded_units"] += 1
        work["decoded_frames"] += frames
        work["decode_s"] += seconds

    def inferred(
        self, clips_by_video: dict[str, int], frames: int, node: str = "", seconds: float = 0.0
    ) -> None:
        self.counts["inferred_frames"] += frames
        for uri, n in clips_by_video.items():
            self.counts["inferred_clips"] += n
            self._count_down(uri, n)
        work = self._node(node)
        work["inferred_clips"] += sum(clips_by_video.values())
        work["infer_s"] += seconds

    def _node(self, node: str) -> dict:
        return self.nodes.setdefault(
            node,
            {"decoded_units": 0, "decoded_frames": 0, "decode_s": 0.0, "inferred_clips": 0,
             "infer_s": 0.0},
        )  # fmt: skip

    def node_work(self) -> dict[str, dict]:
        """Per Ray node: decode units, frames and seconds, inferred clips and seconds. Work
        a lost node did before it went is counted where it was done, and again where it was
        retried: this is work done, not the index's contents."""
        return {
            node: {k: round(v, 3) if isinstance(v, float) else v for k, v in work.items()}
            for node, work in self.nodes.items()
        }

    def _count_down(self, uri: str, clips: int) -> None:
        """A video is done when its inferred clips reach its planned ones (either may come
        first: they are calls from different processes)."""
        left = self.remaining.get(uri, 0) - clips
        self.remaining[uri] = left
        if left == 0:
            self.counts["videos_done"] += 1

    def snapshot(self) -> dict:
        return dict(self.counts)

    def slowest(self, n: int = SLOWEST_KEPT) -> list[tuple[str, float]]:
        return sorted(self.decode_seconds.items(), key=lambda kv: -kv[1])[:n]

    def reader_counts(self, n: int = READER_REASONS_KEPT) -> dict[str, int]:
        """Units per reader, the `n` most frequent (decord's reasons vary with the files)."""
        return dict(sorted(self.readers.items(), key=lambda kv: -kv[1])[:n])


class RunBook(GuardBook, ProgressTracker):
    """A run's one bookkeeping actor: the decode guard's record (GuardBook) and the progress
    counters (ProgressTracker), in one small actor process rather than two."""

    def __init__(self) -> None:
        GuardBook.__init__(self)
        ProgressTracker.__init__(self)


@dataclass
class ProgressLog:
    """Driver thread: every `interval_s`, one log line and one timeline sample."""

    tracker: ray.actor.ActorHandle
    total_videos: int
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
        # clips of the videos planned so far, scaled by the share of videos planned
        planned = counts["planned_videos"] / max(self.total_videos, 1)
        done = counts["inferred_clips"] / max(counts["planned_clips"], 1) * planned
        rate = counts["inferred_frames"] / max(t, 1e-9)
        eta = (t / done - t) if 0 < done < 1 else 0.0
        log.info(
            "progress: %d/%d videos, %d/%d clips%s (%.0f%%), %.1f frames/s, %d failed units%s",
            counts["videos_done"],
            self.total_videos,
            counts["inferred_clips"],
            counts["planned_clips"],
            "" if planned >= 1 else f" of {counts['planned_videos']} videos planned",
            100 * done,
            rate,
            counts["failed_units"],
            "" if final else f", ETA {eta / 60:.1f} min",
        )
        return counts
