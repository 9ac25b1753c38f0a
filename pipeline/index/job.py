"""The index job's driver: object storage -> decode -> CNN / temporal head -> Parquet, on Ray.

Stages (row ratios), in the order `run` takes them:
  0. list    (driver)       input URI -> 1 row per video; incremental runs drop what the
                            ledger already holds for this model
  1. plan    (CPU tasks)    1 video -> N work units (time ranges of <= unit_frames samples)
  2. decode  (CPU tasks)    1 unit -> N clips with frames (T, S, S, 3) uint8
  3. infer   (actors)       1 clip -> 1 row: embedding, label, scores; frames dropped
  4. write   (tasks+driver) clips and per-video sums staged as they come; the sums merged
                            into videos; errors, ledger; nearest-neighbour graphs over the
                            run's videos and clips (pipeline.ann)
  5. commit  (driver)       the run record makes the staged tables visible, once
Stages 1-3 and the staging half of 4 are one streaming Ray Data pipeline (stream.py). A long
run commits in parts of at most --commit-every videos, each a run of its own (`<run-id>-001`,
...): a crash then costs one part, not the whole corpus.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

import ray

from pipeline import ann, schema, storage
from pipeline.config import ConfigError, IndexConfig, SamplingConfig
from pipeline.faults import crash_point
from pipeline.index.commit import RunOutput, recover
from pipeline.index.ledger import read_ledger, select_videos
from pipeline.index.progress import RunBook
from pipeline.index.search import stage_graphs
from pipeline.index.stream import index_stream, plan_units
from pipeline.index.write import write_tables
from pipeline.listing import VIDEO_EXTENSIONS, VideoEntry, list_videos
from pipeline.models.source import ModelSpec, environment, resolve_model
from pipeline.ray_env import ensure_ray
from pipeline.runs import Stopwatch, committed_runs, new_run_id
from pipeline.video.guard import open_book
from pipeline.writer_lease import WriterLease

log = logging.getLogger("reelay.index")
T = TypeVar("T")


@dataclass
class RunSummary:
    run_id: str
    output_uri: str
    model_version: str
    counts: dict = field(default_factory=dict)
    timings_s: dict = field(default_factory=dict)
    frames_per_s: float = 0.0
    status: str = "ok"
    plan: dict = field(default_factory=dict)  # what a --dry-run found
    report_uri: str | None = None  # _runs/<run_id>/report.html (None when it could not be built)
    parts: list[str] = field(default_factory=list)  # the committed runs of a --commit-every run

    def line(self) -> str:
        c = self.counts
        runs = ""
        if self.parts:
            runs = f" in {len(self.parts)} commits ({self.parts[0]} to {self.parts[-1]})"
        return (
            f"reelay index run {self.run_id}{runs}: {c.get('processed', 0)} videos ok"
            f"{f' ({partial} partial)' if (partial := c.get('partial', 0)) else ''}, "
            f"{c.get('failed', 0)} failed, {c.get('skipped', 0)} skipped of "
            f"{c.get('listed', 0)} listed; {c.get('clips', 0)} clips; "
            f"{self.frames_per_s:.1f} frames/s; status {self.status}; "
            f"output {storage.redact(self.output_uri)}"
        )


class FailureThresholdExceeded(RuntimeError):
    """More videos failed than --max-failure-fraction allows (the good ones are committed)."""

    def __init__(self, message: str, summary: RunSummary):
        super().__init__(message)
        self.summary = summary


def run(cfg: IndexConfig) -> RunSummary:
    """Index the videos under cfg.input_uri into cfg.output_uri; returns the run's summary."""
    started = datetime.now(UTC)
    run_id = cfg.run_id or new_run_id(started)
    out = RunOutput(cfg.output_uri, run_id, started.strftime("%Y-%m-%d"), cfg.storage)
    watch = Stopwatch()
    with ExitStack() as held:
        if not cfg.mode.dry_run:
            out.check_writable()
            # one writer per output: refused, before recovery or any write, while another runs
            held.enter_context(WriterLease(cfg.output_uri, run_id, cfg.storage))
            recover(cfg.output_uri, cfg.storage)  # settle crashed runs before reading the ledger
        refuse_committed(cfg, [run_id])

        # 0. list (driver): 1 row per video
        listed = list_videos(cfg.input_uri, cfg.storage)
        if not listed:
            log.warning(
                "no videos under %s (extensions %s): committing an empty run; check --input if "
                "videos were expected",
                storage.redact(cfg.input_uri),
                ", ".join(sorted(VIDEO_EXTENSIONS)),
            )
        watch.lap("list")

        # the model, resolved once (a checkpoint's sampling overrides the flags'), then what
        # the ledger already holds for it (--incremental, --retry-errors), then Ray, when
        # there is work: a no-op nightly run never starts it
        records = None
        if cfg.mode.incremental or cfg.mode.retry_errors:
            records = committed_runs(cfg.output_uri, cfg.storage)
        spec, sampling = resolve_model(cfg, records)
        entries, skipped = listed, 0
        if records is not None:
            ledger = read_ledger(cfg.output_uri, cfg.storage, records)
            selection = select_videos(
                listed, ledger, spec.model_version, retry_errors=cfg.mode.retry_errors
            )
            entries, skipped = selection.todo, selection.skipped
        log.info(
            "listed %d videos under %s; %d to index, %d skipped",
            len(listed), storage.redact(cfg.input_uri), len(entries), skipped,
        )  # fmt: skip
        parts = split_parts(entries, cfg.commit_every)
        part_ids = part_run_ids(run_id, len(parts))
        if len(parts) > 1:
            refuse_committed(cfg, part_ids)
        if entries:
            ensure_ray()
        watch.lap("start")

        if cfg.mode.dry_run:  # 1. plan alone: what a run would do
            return dry_run_summary(run_id, cfg, spec, sampling, entries, len(listed), watch)

        # 1-5 per part: plan/decode/infer, write, commit
        if len(parts) > 1:
            log.info(
                "%d videos to index in %d commits of at most %d videos: runs %s to %s",
                len(entries), len(parts), cfg.commit_every, part_ids[0], part_ids[-1],
            )  # fmt: skip
        summaries: list[RunSummary] = []
        for k, (part, part_id, counts) in enumerate(
            zip(parts, part_ids, listed_per_part(len(listed), parts), strict=True)
        ):
            if k:
                started, watch = datetime.now(UTC), Stopwatch()
            part_out = out
            if len(parts) > 1:
                part_date = started.strftime("%Y-%m-%d")
                part_out = RunOutput(cfg.output_uri, part_id, part_date, cfg.storage)
                log.info(
                    "commit %d of %d: %d videos, run %s", k + 1, len(parts), len(part), part_id
                )
            summary = index_part(cfg, part_out, part, counts, spec, sampling, started, watch)
            summaries.append(summary)
            if summary.status == "failed_threshold":
                later = sum(len(p) for p in parts[k + 1 :])
                raise FailureThresholdExceeded(
                    threshold_message(cfg, summary, len(part), later),
                    combined(run_id, summaries),
                )
        return combined(run_id, summaries)


def index_part(
    cfg: IndexConfig, out: RunOutput, entries: list[VideoEntry], counts: tuple[int, int],
    spec: ModelSpec, sampling: SamplingConfig, started: datetime, watch: Stopwatch,
) -> RunSummary:  # fmt: skip
    """Stages 1-5 of one run: a whole run, or one part of a long one. `counts` are its
    (listed, skipped) videos (`listed_per_part`)."""
    run_id = out.run_id
    out.clear_staging()  # a crashed earlier attempt of this run_id must not leave duplicates
    staged, progress, inference = None, {}, None
    if entries:
        # 1. plan + 2. decode (CPU tasks) + 3. infer (actors) + 4a. clips and per-video sums
        # into staging (CPU tasks): one streaming pipeline; only file names come back. The
        # run's bookkeeping actor lives as long.
        with open_book(RunBook) as book:
            staged, progress, inference = index_stream(entries, cfg, sampling, spec, out, book)
    watch.lap("decode_infer")

    # 4b. write: videos (from the per-video sums), errors, ledger into staging
    written = write_tables(staged, entries, out, spec)
    crash_point("after_staging", run_id)
    watch.lap("write")

    # 4c. search: nearest-neighbour graphs over the run's own videos and clips (Ray tasks)
    searchable = stage_graphs(out)
    watch.lap("search_index")

    # 5. commit: the run record makes the staged tables visible, once
    failed = written["failed"]
    counts = {
        "listed": counts[0],
        "skipped": counts[1],
        "units": written["units"],
        "sampled_frames": written["sampled_frames"],
        "processed": len(entries) - len(failed),
        "partial": len(written["partial"]),
        "failed": len(failed),
        "clips": written["clips"],
        "shots": written["shots"],
        "errors": written["errors"],
    }
    summary = RunSummary(
        run_id,
        cfg.output_uri,
        spec.model_version,
        counts,
        frames_per_s=counts["sampled_frames"] / max(watch.timings["decode_infer"], 1e-9),
    )
    if len(failed) / max(len(entries), 1) > cfg.max_failure_fraction:
        summary.status = "failed_threshold"
    record = {
        "run_id": run_id,
        "schema_version": schema.SCHEMA_VERSION,
        "status": summary.status,
        "started_at": started.isoformat(),
        "ended_at": datetime.now(UTC).isoformat(),
        "config": cfg.to_dict(),
        "sampling": sampling.to_dict(),
        "model_version": spec.model_version,
        "embedding_dim": spec.embedding_dim,
        # the embedding's last audio_dim values are the sound's (0: a model of pictures)
        "audio_dim": spec.audio_dim,
        "environment": environment(),  # torch and torchvision: what seeded weights depend on
        "labels": list(spec.labels),
        "counts": counts,
        "timings_s": watch.timings,
        "cluster": cluster_shape(),
        "inference": asdict(inference) if inference else None,
        "throughput": {"frames_per_s": summary.frames_per_s},
        "search_index": {"rows": searchable, "method": "faiss hnsw", "links": ann.LINKS},
        "progress": progress,
    }
    out.commit(record)
    watch.lap("commit")
    summary.timings_s = watch.timings
    summary.report_uri = write_report(cfg, run_id)  # after the commit: derived, never fatal
    log.info(summary.line())
    return summary


def refuse_committed(cfg: IndexConfig, run_ids: list[str]) -> None:
    """A run id is used once: a committed one is refused before any work (exit 2)."""
    for run_id in run_ids:
        if RunOutput(cfg.output_uri, run_id, "", cfg.storage).is_committed():
            raise ConfigError(
                f"run {run_id} is already committed in {storage.redact(cfg.output_uri)}"
                "; choose another --run-id"
            )


def split_parts(entries: Sequence[T], commit_every: int) -> list[list[T]]:
    """`entries` in listing order, cut every `commit_every` (0: one part). Always at least one
    part, empty when there is nothing to index: an empty run still commits its record."""
    if count_parts(len(entries), commit_every) == 1:
        return [list(entries)]
    return [list(entries[i : i + commit_every]) for i in range(0, len(entries), commit_every)]


def count_parts(videos: int, commit_every: int) -> int:
    """How many parts `split_parts` makes of `videos` videos."""
    return 1 if commit_every <= 0 or videos <= commit_every else -(-videos // commit_every)


def part_run_ids(run_id: str, parts: int) -> list[str]:
    """The run id of each part: `run_id` itself for a single part, else `<run_id>-001`,
    `-002`, ... (zero-padded to at least three digits, so that they sort in order)."""
    if parts == 1:
        return [run_id]
    width = max(3, len(str(parts)))
    return [f"{run_id}-{k:0{width}d}" for k in range(1, parts + 1)]


def listed_per_part(listed: int, parts: list[list]) -> list[tuple[int, int]]:
    """(listed, skipped) for each part's run record, so that each record keeps `listed` =
    `skipped` + `processed` + `failed` and the parts' sums are the whole run's: the first part
    carries the videos the selection skipped (incremental runs), every part its own."""
    skipped = listed - sum(len(p) for p in parts)
    first = [(len(parts[0]) + skipped, skipped)]
    return first + [(len(p), 0) for p in parts[1:]]


def threshold_message(cfg: IndexConfig, summary: RunSummary, videos: int, later: int) -> str:
    """Why a run (or one part of it) failed the run, and what is committed and what is not."""
    failed = summary.counts["failed"]
    not_attempted = (
        f"; the {later} videos of later commits were not attempted (an --incremental run takes "
        "them)" if later else ""
    )  # fmt: skip
    return (
        f"{failed} of {videos} videos failed ({failed / max(videos, 1):.0%}), more than "
        f"--max-failure-fraction {cfg.max_failure_fraction:.0%}; the good videos were "
        f"committed in run {summary.run_id}{not_attempted}; see errors/ for the reasons"
    )


def combined(run_id: str, summaries: list[RunSummary]) -> RunSummary:
    """One summary for a run's parts (the part's own when there is one): counts and stage
    times summed, frames/s over the parts' decode + infer time, the last part's report."""
    if len(summaries) == 1:
        return summaries[0]
    counts: dict = {}
    timings: dict = {}
    for s in summaries:
        for key, value in s.counts.items():
            counts[key] = counts.get(key, 0) + value
        for key, value in s.timings_s.items():
            timings[key] = round(timings.get(key, 0.0) + value, 3)
    failed = any(s.status == "failed_threshold" for s in summaries)
    last = summaries[-1]
    return RunSummary(
        run_id,
        last.output_uri,
        last.model_version,
        counts,
        timings,
        frames_per_s=counts.get("sampled_frames", 0) / max(timings.get("decode_infer", 0), 1e-9),
        status="failed_threshold" if failed else "ok",
        report_uri=last.report_uri,
        parts=[s.run_id for s in summaries],
    )


def write_report(cfg: IndexConfig, run_id: str) -> str | None:
    """The committed run's report (report.html, PNGs, metrics.prom under _runs/<run_id>/).

    Derived from what was committed and rebuildable with jobs/report.py, so a failure here is
    a warning: it must never fail a run that is already committed."""
    try:
        from pipeline.report import build_run_report  # matplotlib: only a run that reports

        return build_run_report(cfg.output_uri, run_id, cfg.storage)
    except Exception as e:  # logged; the run stays committed
        log.warning(
            "run %s is committed, but its report could not be built (%s: %s); rebuild it with "
            "python jobs/report.py %s --run-id %s",
            run_id,
            type(e).__name__,
            storage.redact(" ".join(str(e).split())),
            storage.redact(cfg.output_uri),
            run_id,
        )
        return None


def cluster_shape() -> dict:
    if not ray.is_initialized():  # nothing to do: the run did not start Ray
        return {"CPU": 0, "GPU": 0, "nodes": 0}
    resources = ray.cluster_resources()
    return {
        "CPU": resources.get("CPU", 0),
        "GPU": resources.get("GPU", 0),
        "nodes": len([n for n in ray.nodes() if n.get("Alive")]),
    }


def dry_run_summary(
    run_id: str, cfg: IndexConfig, spec: ModelSpec, sampling: SamplingConfig,
    entries: list[VideoEntry], listed: int, watch: Stopwatch,
) -> RunSummary:  # fmt: skip
    """Stage 1 alone: what a run would do, with a time estimate from the last committed run's
    throughput. Nothing is written."""
    units, plan_failures = plan_units(entries, cfg, sampling)
    watch.lap("plan")
    sampled = sum(u["sampled_frames"] for u in units)
    counts = {"listed": listed, "skipped": listed - len(entries), "units": len(units)}
    counts["sampled_frames"] = sampled
    previous = [
        r
        for r in committed_runs(cfg.output_uri, cfg.storage)
        if r.get("throughput", {}).get("frames_per_s")
    ]
    rate = previous[-1]["throughput"]["frames_per_s"] if previous else None
    video_seconds = sum({u["video_uri"]: u["duration_s"] for u in units}.values())
    plan = {
        "new_videos": len(entries),
        "unreadable_videos": len(plan_failures),
        "total_bytes": sum(e.size for e in entries),
        "video_hours": video_seconds / 3600,
        "work_units": len(units),
        "clips": sum(u["clip_end"] - u["clip_start"] for u in units),
        "sampled_frames": sampled,
        "frames_per_s_last_run": rate,
        "estimated_seconds": sampled / rate if rate else None,
        "commits": count_parts(len(entries), cfg.commit_every),
    }
    log.info("dry run: nothing written; %s", plan)
    return RunSummary(
        run_id, cfg.output_uri, spec.model_version, counts, watch.timings, status="dry_run",
        plan=plan,
    )  # fmt: skip
