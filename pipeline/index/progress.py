"""Progress of a run: stages report counts to one small actor (the run's RunBook, which also
keeps the decode guard's record); the driver logs and keeps a timeline (for the run record and
the report). Plain lines, readable in `ray job logs`."""

from __future__ import annotations

import _thread
import logging
import threading
import time
from dataclasses import dataclass

import ray

from pipeline.video.guard import GuardBook

log = logging.getLogger("reelay.progress")
SLOWEST_KEPT = 20
# counters whose standing still means the run's work stands still
STALL_KEYS = ("planned_videos", "decoded_units", "inferred_clips", "failed_units")
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


class RunStalled(RuntimeError):
    """The run's work made no progress for --stall-timeout seconds (nothing is committed)."""


@dataclass
class ProgressLog:
    """Driver thread: every `interval_s`, one log line and one timeline sample; every second,
    a look at whether the work still moves. With no progress for `stall_timeout_s` (0: never)
    it interrupts the driver's main thread, which `stalled_error` then explains."""

    tracker: ray.actor.ActorHandle
    total_videos: int
    interval_s: float = 10.0
    stall_timeout_s: float = 0.0

    def __post_init__(self) -> None:
        self.timeline: list[dict] = []
        self.stalled = False
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
        logged = moved = time.monotonic()
        last = None
        while not self._stop.wait(1.0):
            now = time.monotonic()
            if now - logged >= self.interval_s:
                counts, logged = self.sample(), now
            else:
                counts = self.snapshot()
            work = tuple(counts.get(k) for k in STALL_KEYS) if counts else last
            if work != last:
                last, moved = work, now
            elif self.stall_timeout_s and now - moved > self.stall_timeout_s:
                self.stalled = True
                _thread.interrupt_main()  # the main thread waits inside Ray Data
                return

    def snapshot(self) -> dict:
        try:
            return ray.get(self.tracker.snapshot.remote(), timeout=10)
        except Exception as e:  # progress is advisory: never fail the run for it
            log.debug("progress snapshot failed: %s", e)
            return {}

    def stalled_error(self) -> RunStalled:
        """What a stalled run says: how long, what was done, which nodes the cluster lost."""
        nodes = ray.nodes()
        lost = [
            f"{n['NodeID'][:12]} ({n.get('NodeManagerAddress', '?')})"
            for n in nodes
            if not n.get("Alive")
        ]
        alive = ray.cluster_resources()
        done = self.timeline[-1] if self.timeline else {}
        return RunStalled(
            f"no progress for {self.stall_timeout_s:g} s "
            f"({done.get('videos_done', 0)} of {self.total_videos} videos done); "
            f"nodes lost: {', '.join(lost) or 'none'}; the cluster now has "
            f"{alive.get('CPU', 0):g} CPUs and {alive.get('GPU', 0):g} GPUs. Nothing of this "
            "run is committed: rerun with --incremental once the cluster has the capacity "
            "(or raise --stall-timeout if the work is just slow to start)"
        )

    def sample(self, final: bool = False) -> dict:
        counts = self.snapshot()
        if not counts:
            return {}
        t = time.monotonic() - self._start
        counts["t_s"] = round(t, 2)
        self.timeline.append(counts)
        # clips of the videos planned so far, scaled by the share of videos planned
        planned = counts["planned_videos"] / max(self.total_videos, 1)
        # (--clips shots plans clips without the cuts: more may come than planned)
        done = min(1.0, counts["inferred_clips"] / max(counts["planned_clips"], 1)) * planned
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
