"""Pure numbers for the run report: from the run record and the run's rows, no I/O, no plots."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc

# Stage order of pipeline/index/job.py's Stopwatch; unknown stages follow in record order.
STAGES = ("list", "start", "plan", "decode_infer", "write", "search_index", "commit")
STAGE_NAMES = {
    "start": "model + Ray start-up",
    "decode_infer": "plan + decode + infer",
    "search_index": "search graphs",
}
TREND_RUNS = 30  # runs shown in the trend, the reported one last


def parse_time(value) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value)) if value else None
    except ValueError:
        return None


def duration_s(record: dict) -> float | None:
    start, end = parse_time(record.get("started_at")), parse_time(record.get("ended_at"))
    return (end - start).total_seconds() if start and end else None


def format_time(value) -> str:
    """An ISO timestamp as `YYYY-MM-DD HH:MM:SS UTC` (as given when it does not parse)."""
    t = parse_time(value)
    if t is None:
        return str(value or "?")
    if t.tzinfo is not None:
        t = t.astimezone(UTC)
    return t.strftime("%Y-%m-%d %H:%M:%S UTC")


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


@dataclass(frozen=True)
class Headline:
    """What a person reads first: did the run work, how much did it do, how fast."""

    run_id: str
    status: str
    ok: bool
    listed: int
    videos_ok: int
    videos_failed: int
    videos_partial: int
    videos_skipped: int
    clips: int
    sampled_frames: int
    frames_per_s: float
    duration_s: float | None
    model_version: str
    started_at: str
    max_failure_fraction: float | None


def headline(record: dict) -> Headline:
    counts = record.get("counts", {})
    status = record.get("status", "unknown")
    return Headline(
        run_id=record.get("run_id", "?"),
        status=status,
        ok=status == "ok",
        listed=int(counts.get("listed", 0)),
        videos_ok=int(counts.get("processed", 0)),
        videos_failed=int(counts.get("failed", 0)),
        videos_partial=int(counts.get("partial", 0)),
        videos_skipped=int(counts.get("skipped", 0)),
        clips=int(counts.get("clips", 0)),
        sampled_frames=int(counts.get("sampled_frames", 0)),
        frames_per_s=float(record.get("throughput", {}).get("frames_per_s") or 0.0),
        duration_s=duration_s(record),
        model_version=record.get("model_version", "?"),
        started_at=record.get("started_at", ""),
        max_failure_fraction=record.get("config", {}).get("max_failure_fraction"),
    )


@dataclass(frozen=True)
class Throughput:
    """Frames per second in each interval between progress samples (edges in seconds since
    decoding started; len(edges) == len(decode) + 1)."""

    edges: list[float]
    decode: list[float]  # decoded frames / s
    infer: list[float]  # inferred frames / s (clip frames, padding included)

    @property
    def single_interval(self) -> bool:
        return len(self.decode) == 1

    def average(self, rates: list[float]) -> float:
        """Frames over the whole timeline / its length."""
        widths = [b - a for a, b in zip(self.edges, self.edges[1:], strict=False)]
        return sum(r * w for r, w in zip(rates, widths, strict=True)) / max(sum(widths), 1e-9)


def throughput(timeline: list[dict]) -> Throughput:
    """Differences of the cumulative counters; the first interval starts at t=0 from zero, so
    a timeline of one sample gives the run's average."""
    samples = sorted((s for s in timeline if "t_s" in s), key=lambda s: s["t_s"])
    edges, decode, infer = [0.0], [], []
    prev = {"t_s": 0.0, "decoded_frames": 0, "inferred_frames": 0}
    for s in samples:
        dt = float(s["t_s"]) - prev["t_s"]
        if dt <= 0:
            continue
        decode.append((s.get("decoded_frames", 0) - prev["decoded_frames"]) / dt)
        infer.append((s.get("inferred_frames", 0) - prev["inferred_frames"]) / dt)
        edges.append(float(s["t_s"]))
        prev = {
            "t_s": float(s["t_s"]),
            "decoded_frames": s.get("decoded_frames", 0),
            "inferred_frames": s.get("inferred_frames", 0),
        }
    return merge_short_tail(Throughput(edges if decode else [], decode, infer))


def merge_short_tail(tp: Throughput) -> Throughput:
    """Fold a last interval much shorter than the others (the final sample, taken when the
    dataset ends) into the one before it, so a second's burst does not look like a peak."""
    if len(tp.decode) < 2:
        return tp
    widths = sorted(b - a for a, b in zip(tp.edges, tp.edges[1:], strict=False))
    last = tp.edges[-1] - tp.edges[-2]
    if last >= widths[len(widths) // 2] / 3:
        return tp
    before = tp.edges[-2] - tp.edges[-3]

    def fold(rates: list[float]) -> list[float]:
        return [*rates[:-2], (rates[-2] * before + rates[-1] * last) / (before + last)]

    return Throughput([*tp.edges[:-2], tp.edges[-1]], fold(tp.decode), fold(tp.infer))


def stage_times(record: dict) -> list[tuple[str, float]]:
    """(display name, seconds) in pipeline order."""
    timings = record.get("timings_s", {}) or {}
    order = [s for s in STAGES if s in timings] + [s for s in timings if s not in STAGES]
    return [(STAGE_NAMES.get(s, s), float(timings[s])) for s in order]


@dataclass(frozen=True)
class FailureCount:
    stage: str
    error_type: str
    rows: int  # error rows (failed work units)
    videos: int  # distinct videos


def failure_counts(errors: pa.Table) -> list[FailureCount]:
    """Error rows grouped by (stage, error_type), most frequent first."""
    if errors.num_rows == 0:
        return []
    grouped = errors.group_by(["stage", "error_type"]).aggregate(
        [("video_uri", "count"), ("video_uri", "count_distinct")]
    )
    rows = [
        FailureCount(
            r["stage"] or "?",
            r["error_type"] or "?",
            r["video_uri_count"],
            r["video_uri_count_distinct"],
        )
        for r in grouped.to_pylist()
    ]
    return sorted(rows, key=lambda f: (-f.rows, f.stage, f.error_type))


@dataclass(frozen=True)
class LabelStat:
    label: str
    videos: int
    mean_score: float
    min_score: float
    max_score: float


def label_stats(videos: pa.Table, top: int = 20) -> list[LabelStat]:
    """Videos per predicted label with their score, most frequent first (at most `top`)."""
    if videos.num_rows == 0:
        return []
    labeled = videos.filter(pc.is_valid(videos["label"]))
    if labeled.num_rows == 0:
        return []
    grouped = labeled.group_by("label").aggregate(
        [("score", "count"), ("score", "mean"), ("score", "min"), ("score", "max")]
    )
    stats = [
        LabelStat(
            r["label"],
            r["score_count"],
            float(r["score_mean"] or 0.0),
            float(r["score_min"] or 0.0),
            float(r["score_max"] or 0.0),
        )
        for r in grouped.to_pylist()
    ]
    return sorted(stats, key=lambda s: (-s.videos, s.label))[:top]


@dataclass(frozen=True)
class TrendPoint:
    run_id: str
    started_at: datetime | None
    videos_ok: int
    videos_failed: int
    frames_per_s: float
    status: str


def trend(history: list[dict], run_id: str, limit: int = TREND_RUNS) -> list[TrendPoint]:
    """The committed runs up to and including `run_id` (oldest first), the last `limit`."""
    ids = [r.get("run_id") for r in history]
    upto = history[: ids.index(run_id) + 1] if run_id in ids else history
    points = []
    for r in upto[-limit:]:
        c = r.get("counts", {})
        points.append(
            TrendPoint(
                r.get("run_id", "?"),
                parse_time(r.get("started_at")),
                int(c.get("processed", 0)),
                int(c.get("failed", 0)),
                float(r.get("throughput", {}).get("frames_per_s") or 0.0),
                r.get("status", "unknown"),
            )
        )
    return points


def slowest_videos(record: dict, top: int = 10) -> list[tuple[str, float]]:
    """(video_uri, decode seconds), slowest first."""
    rows = record.get("progress", {}).get("slowest_videos", []) or []
    pairs = [(r["video_uri"], float(r["decode_s"])) for r in rows if "video_uri" in r]
    return sorted(pairs, key=lambda p: -p[1])[:top]
