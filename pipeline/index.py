"""The index job: object storage -> decode -> CNN / temporal head -> Parquet, on Ray Data.

Stages (row ratios):
  0. list    (driver)       input URI -> 1 row per video; incremental runs drop what the
                            ledger already holds for this model
  1. plan    (CPU tasks)    1 video -> N work units (time ranges of <= unit_frames samples),
                            grouped into decode tasks
  2. decode  (CPU tasks)    1 unit -> N clips with frames (T, S, S, 3) uint8
  3. infer   (actors)       1 clip -> 1 row: embedding, label, scores; frames dropped
  4. write   (tasks+driver) clips; per-video sums merged into videos; errors, ledger; commit
Stages 1-3 are one streaming Ray Data pipeline (pipeline/index_stream.py): decoding and the
actors' start-up overlap the header reads, and the driver never holds a whole corpus's work
units. Stage 4 is pipeline/index_write.py; this module runs the stages in order and commits,
once, or per part of a long run (--commit-every: pipeline/run_parts.py).
"""

from __future__ import annotations

import logging
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

import ray

from pipeline import schema, storage
from pipeline.background import in_background
from pipeline.config import ConfigError, IndexConfig
from pipeline.faults import crash_point
from pipeline.gc_pause import paused_gc
from pipeline.index_stream import decode_and_infer, plan_units, start_book
from pipeline.index_write import write_tables
from pipeline.ledger import committed_runs, read_ledger, select_videos
from pipeline.listing import VIDEO_EXTENSIONS, list_videos
from pipeline.model_source import ModelRecipe, resolve_model
from pipeline.output import RunOutput, new_run_id, recover
from pipeline.ray_env import ensure_ray
from pipeline.run_parts import count_parts, listed_per_part, part_run_ids, split_parts
from pipeline.writer_lease import WriterLease

log = logging.getLogger("reelay.index")
# imported beside Ray's start-up (ensure_ray) by a run that will write a report
REPORT_MODULES = ("pipeline.report",)


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
            f"reelay index run {self.run_id}{runs}: {c.get('processed', 0)} videos ok, "
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


class Stopwatch:
    """Seconds per stage, in order."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = round(now - self._last, 3)
        self._last = now


def run(cfg: IndexConfig) -> RunSummary:
    """Index the videos under cfg.input_uri into cfg.output_uri; returns the run's summary."""
    with ExitStack() as held:
        return _run(cfg, held)


def _run(cfg: IndexConfig, held: ExitStack) -> RunSummary:
    """`run`; `held` keeps what the run holds until it ends: its writer lease on the output
    and its bookkeeping actor."""
    started = datetime.now(UTC)
    run_id = cfg.run_id or new_run_id(started)
    out = RunOutput(cfg.output_uri, run_id, started.strftime("%Y-%m-%d"), cfg.storage)
    watch = Stopwatch()
    selecting = cfg.mode.incremental or cfg.mode.retry_errors
    # a seeded model is built by the inference actors from its recipe, and they report its
    # spec; a driver that needs the model first (a checkpoint's sampling, pretrained weights'
    # file, the ledger's model version, a dry run) builds it beside the listing and Ray's
    # start-up (torch: ~2 s on 2 cores)
    recipe = None if cfg.mode.dry_run or selecting else ModelRecipe.of(cfg)
    model = None if recipe else in_background(resolve_model_paused, cfg)
    if not cfg.mode.dry_run:
        out.check_writable()
        # one writer per output: refused, before recovery or any write, while another runs
        held.enter_context(WriterLease(cfg.output_uri, run_id, cfg.storage))
        recover(cfg.output_uri, cfg.storage)  # settle crashed runs before reading the ledger
    refuse_committed(cfg, [run_id])

    # 0. list (driver): 1 row per video, minus what the ledger holds (incremental)
    listed = list_videos(cfg.input_uri, cfg.storage)
    if not listed:
        log.warning(
            "no videos under %s (extensions %s): committing an empty run; check --input if "
            "videos were expected",
            storage.redact(cfg.input_uri),
            ", ".join(sorted(VIDEO_EXTENSIONS)),
        )
    watch.lap("list")
    book = None  # the run's RunBook: its process starts as soon as Ray has started
    preload = () if cfg.mode.dry_run else REPORT_MODULES
    if not selecting:  # before Ray starts: the videos to index are the listed ones
        refuse_committed(cfg, more_part_ids(cfg, run_id, len(listed)))
    if listed and not selecting:
        ensure_ray(preload)  # Ray starts only when there is work: a bad input fails without it
        book = start_book(cfg, held)
    if recipe is not None and listed:
        spec, sampling = recipe, cfg.sampling  # resolved by the actors (decode_and_infer)
    elif recipe is not None:  # an empty run's record still names its model
        spec, sampling = resolve_model_paused(cfg)
    else:
        spec, sampling = model.result()
    entries, skipped = listed, 0
    if selecting:  # the ledger is read per model version: it needs the model first
        selection = select_videos(
            listed,
            read_ledger(cfg.output_uri, cfg.storage),
            spec.model_version,
            retry_errors=cfg.mode.retry_errors,
        )
        entries, skipped = selection.todo, selection.skipped
        refuse_committed(cfg, more_part_ids(cfg, run_id, len(entries)))
    log.info(
        "listed %d videos under %s; %d to index, %d skipped",
        len(listed),
        storage.redact(cfg.input_uri),
        len(entries),
        skipped,
    )
    if entries:  # a no-op nightly run finishes without paying Ray's start-up
        ensure_ray(preload)
        book = book or start_book(cfg, held)
    watch.lap("start")

    counts = {"listed": len(listed), "skipped": skipped}
    if cfg.mode.dry_run:  # 1. plan alone: what a run would do
        units, plan_failures = plan_units(entries, cfg, sampling)
        watch.lap("plan")
        counts |= {"units": len(units), "sampled_frames": sum(u["sampled_frames"] for u in units)}
        return dry_run_summary(run_id, cfg, spec, entries, units, plan_failures, counts, watch)

    # 1-4, then the commit: once, or per part of a long run (--commit-every)
    return _index_in_parts(cfg, out, entries, len(listed), (sampling, spec), book, started, watch)


def _index_in_parts(
    cfg: IndexConfig, out: RunOutput, entries, listed: int, model, book, started: datetime,
    watch: Stopwatch,
) -> RunSummary:  # fmt: skip
    """`entries` indexed and committed as the run `out`, or as consecutive parts of at most
    --commit-every videos, each a run of its own (pipeline.run_parts) with its own record,
    stopwatch and bookkeeping actor; one summary for them all. A part over
    --max-failure-fraction ends the run: later parts are not attempted. `model` is the
    (sampling, spec or recipe) pair every part indexes with."""
    parts = split_parts(entries, cfg.commit_every)
    part_ids = part_run_ids(out.run_id, len(parts))
    if len(parts) > 1:
        log.info(
            "%d videos to index in %d commits of at most %d videos: runs %s to %s",
            len(entries), len(parts), cfg.commit_every, part_ids[0], part_ids[-1],
        )  # fmt: skip
    summaries: list[RunSummary] = []
    for k, (part, part_id, counts) in enumerate(
        zip(parts, part_ids, listed_per_part(listed, parts), strict=True)
    ):
        with ExitStack() as part_held:  # a later part's bookkeeping actor ends with it
            if k:
                started, watch, book = datetime.now(UTC), Stopwatch(), start_book(cfg, part_held)
            part_out = out
            if len(parts) > 1:
                part_out = RunOutput(
                    cfg.output_uri, part_id, started.strftime("%Y-%m-%d"), cfg.storage
                )
                n = len(parts)
                log.info("commit %d of %d: %d videos, run %s", k + 1, n, len(part), part_id)
            first = summaries[0] if summaries else None
            summaries.append(
                _index_part(cfg, part_out, part, counts, model, book, started, watch, first)
            )
        summary = summaries[-1]
        if summary.status == "failed_threshold":
            later = sum(len(p) for p in parts[k + 1 :])
            raise FailureThresholdExceeded(
                threshold_message(cfg, summary, len(part), later),
                combined(out.run_id, summaries),
            )
    return combined(out.run_id, summaries)


def refuse_committed(cfg: IndexConfig, run_ids: list[str]) -> None:
    """A run id is used once: a committed one is refused before any work (exit 2)."""
    for run_id in run_ids:
        if RunOutput(cfg.output_uri, run_id, "", cfg.storage).is_committed():
            raise ConfigError(
                f"run {run_id} is already committed in {storage.redact(cfg.output_uri)}"
                "; choose another --run-id"
            )


def more_part_ids(cfg: IndexConfig, run_id: str, videos: int) -> list[str]:
    """The run ids of the parts --commit-every cuts `videos` videos into; none for a single
    part, which is the run itself (its id is checked before the listing)."""
    parts = count_parts(videos, cfg.commit_every)
    return part_run_ids(run_id, parts) if parts > 1 else []


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


def _index_part(
    cfg: IndexConfig, out: RunOutput, entries, counts: tuple[int, int], model, book,
    started: datetime, watch: Stopwatch, first: RunSummary | None = None,
) -> RunSummary:  # fmt: skip
    """Stages 1-4 and the commit of one run: a whole run, or one part of a long one. `counts`
    are its (listed, skipped) videos (pipeline.run_parts.listed_per_part); `first` is the
    summary of a long run's first part, whose model every later part must have built."""
    run_id = out.run_id
    sampling, spec = model
    # 1. plan (CPU tasks) + 2. decode (CPU tasks) + 3. infer (actors), one streaming pipeline;
    # its results are materialized without frames
    out.clear_staging()  # a crashed earlier attempt of this run_id must not leave duplicates
    results, progress, inference, spec = (
        decode_and_infer(entries, cfg, sampling, spec, run_id, book)
        if entries
        else (None, {}, None, spec)
    )
    watch.lap("decode_infer")
    if first is not None and spec.model_version != first.model_version:
        raise RuntimeError(  # before anything of this part is staged
            f"run {run_id} built model {spec.model_version}, but run {first.run_id} built "
            f"{first.model_version} from the same flags: the cluster's nodes differ in torch "
            "or torchvision; install the same versions everywhere, or index with a --checkpoint"
        )

    # 4. write: clips, videos, errors, ledger into staging; then commit
    written = write_tables(results, entries, out, spec)
    crash_point("after_staging", run_id)
    watch.lap("write")
    failed = written["failed"]
    counts = {
        "listed": counts[0],
        "skipped": counts[1],
        "units": written["units"],
        "sampled_frames": written["sampled_frames"],
        "processed": len(entries) - len(failed),
        "failed": len(failed),
        "clips": written["clips"],
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
        "labels": list(spec.labels),
        "counts": counts,
        "timings_s": watch.timings,
        "cluster": cluster_shape(),
        "inference": asdict(inference) if inference else None,
        "throughput": {"frames_per_s": summary.frames_per_s},
        "progress": progress,
    }
    out.commit(record)
    watch.lap("commit")
    summary.timings_s = watch.timings
    summary.report_uri = write_report(cfg, run_id)  # after the commit: derived, never fatal
    log.info(summary.line())
    return summary


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


def resolve_model_paused(cfg: IndexConfig):
    """`resolve_model` with the garbage collector paused (torch's import; pipeline.gc_pause).
    The pause is process-wide: Ray Data's import and `ray.init` beside it gain too."""
    with paused_gc():
        return resolve_model(cfg)


def write_report(cfg: IndexConfig, run_id: str) -> str | None:
    """The committed run's report (report.html, PNGs, metrics.prom under _runs/<run_id>/).

    Derived from what was committed and rebuildable with jobs/report.py, so a failure here is
    a warning: it must never fail a run that is already committed."""
    try:
        with paused_gc():  # matplotlib, imported only when needed (pipeline.gc_pause)
            from pipeline.report import build_run_report

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


def dry_run_summary(run_id, cfg, spec, entries, units, plan_failures, counts, watch) -> RunSummary:
    """What a run would do, with a time estimate from the last committed run's throughput."""
    sampled = counts["sampled_frames"]
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
    summary = RunSummary(
        run_id,
        cfg.output_uri,
        spec.model_version,
        counts,
        watch.timings,
        status="dry_run",
        plan=plan,
    )
    log.info("dry run: nothing written; %s", plan)
    return summary
