"""The index job: object storage -> decode -> CNN / temporal head -> Parquet, on Ray Data.

Stages (row ratios):
  0. list    (driver)       input URI -> 1 row per video; incremental runs drop what the
                            ledger already holds for this model
  1. plan    (CPU tasks)    1 video -> N work units (time ranges of <= unit_frames samples),
                            grouped into decode tasks
  2. decode  (CPU tasks)    1 unit -> N clips with frames (T, S, S, 3) uint8
  3. infer   (actors)       1 clip -> 1 row: embedding, label, scores; frames dropped
  4. write   (tasks+driver) clips; per-video sums merged into videos; errors, ledger; commit
Stages 1-3 are one streaming Ray Data pipeline: decoding and the actors' start-up overlap
the header reads, and the driver never holds a whole corpus's work units.
"""

from __future__ import annotations

import logging
import secrets
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc
import ray

from pipeline import schema, storage, tables
from pipeline.aggregate import (
    SUM_COUNT,
    WORK_COUNTS,
    block_summary,
    failed_video_rows,
    merge_sums,
    sums_rows,
    videos_table,
)
from pipeline.background import in_background
from pipeline.config import ConfigError, IndexConfig
from pipeline.decode import DecodeUnit, DecodeUnits
from pipeline.faults import crash_point
from pipeline.gc_pause import paused_gc
from pipeline.guard import open_book
from pipeline.infer import ClipInferencer
from pipeline.ledger import committed_runs, ledger_table, read_ledger, select_videos
from pipeline.listing import VIDEO_EXTENSIONS, VideoEntry, list_videos
from pipeline.model_source import ModelRecipe, ModelSpec, build_recipe, resolve_model
from pipeline.output import RunOutput, parquet_args, recover
from pipeline.plan import PlanTasks, PlanVideo
from pipeline.progress import ProgressLog, RunBook
from pipeline.ray_env import InferenceResources, cluster_cpus, ensure_ray, inference_resources

log = logging.getLogger("reelay.index")
# imported beside Ray's start-up (ensure_ray) by a run that will write a report
REPORT_MODULES = ("pipeline.report",)

CLIP_FILE_BYTES = 256 * 2**20  # in memory; clips files then hold ~100k rows (zstd, 512-d)
DRIVER_SUMS_BYTES = 2**30  # per-video sums merged on the driver up to this size (float64)
# clip results per write and summary task, in bytes: the results come in inference batches (8
# clips each on CPU actors), and a Ray task per batch cost more than its rows' work
RESULT_TASK_BYTES = 64 * 2**20


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

    def line(self) -> str:
        c = self.counts
        return (
            f"reelay index run {self.run_id}: {c.get('processed', 0)} videos ok, "
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


def new_run_id(now: datetime) -> str:
    return now.strftime("%Y%m%dT%H%M%SZ-") + secrets.token_hex(3)


def run(cfg: IndexConfig) -> RunSummary:
    """Index the videos under cfg.input_uri into cfg.output_uri; returns the run's summary."""
    with ExitStack() as actors:
        return _run(cfg, actors)


def _run(cfg: IndexConfig, actors: ExitStack) -> RunSummary:
    """`run`; `actors` holds the run's bookkeeping actor until the run ends."""
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
        recover(cfg.output_uri, cfg.storage)  # settle crashed runs before reading the ledger
    if out.is_committed():
        raise ConfigError(
            f"run {run_id} is already committed in {storage.redact(cfg.output_uri)}"
            "; choose another --run-id"
        )

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
    if listed and not selecting:
        ensure_ray(preload)  # Ray starts only when there is work: a bad input fails without it
        book = start_book(cfg, actors)
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
    log.info(
        "listed %d videos under %s; %d to index, %d skipped",
        len(listed),
        storage.redact(cfg.input_uri),
        len(entries),
        skipped,
    )
    if entries:  # a no-op nightly run finishes without paying Ray's start-up
        ensure_ray(preload)
        book = book or start_book(cfg, actors)
    watch.lap("start")

    counts = {"listed": len(listed), "skipped": skipped}
    if cfg.mode.dry_run:  # 1. plan alone: what a run would do
        units, plan_failures = plan_units(entries, cfg, sampling)
        watch.lap("plan")
        counts |= {"units": len(units), "sampled_frames": sum(u["sampled_frames"] for u in units)}
        return dry_run_summary(run_id, cfg, spec, entries, units, plan_failures, counts, watch)

    # 1. plan (CPU tasks) + 2. decode (CPU tasks) + 3. infer (actors), one streaming pipeline;
    # its results are materialized without frames
    out.clear_staging()  # a crashed earlier attempt of this run_id must not leave duplicates
    results, progress, inference, spec = (
        decode_and_infer(entries, cfg, sampling, spec, run_id, book)
        if entries
        else (None, {}, None, spec)
    )
    watch.lap("decode_infer")

    # 4. write: clips, videos, errors, ledger into staging; then commit
    written = write_tables(results, entries, out, spec)
    crash_point("after_staging")
    watch.lap("write")
    failed = written["failed"]
    counts |= {
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
    fraction = len(failed) / max(len(entries), 1)
    if fraction > cfg.max_failure_fraction:
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
    if summary.status == "failed_threshold":
        raise FailureThresholdExceeded(
            f"{len(failed)} of {len(entries)} videos failed ({fraction:.0%}), more than "
            f"--max-failure-fraction {cfg.max_failure_fraction:.0%}; the good videos were "
            f"committed in run {run_id}; see errors/ for the reasons",
            summary,
        )
    return summary


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


def plan_units(entries: list[VideoEntry], cfg: IndexConfig, sampling) -> tuple[list, list]:
    """Stage 1 alone (--dry-run): work units of readable videos, and error rows of unreadable
    ones, from the same plan tasks as a run's pipeline."""
    if not entries:
        return [], []
    with open_book() as book:  # crash and time-budget accounting of the header reads
        plan = PlanTasks(PlanVideo(sampling, cfg.plan, cfg.storage, book))
        tasks = plan_dataset(entries, plan, **cfg.plan.decode_task_options()).take_all()
    rows = [u for task in tasks for u in task["units"]]
    units = [u for u in rows if not u["error_stage"]]
    failures = [u for u in rows if u["error_stage"]]
    log.info(
        "planned %d work units, %d clips, %d sampled frames; %d videos failed to open",
        len(units),
        sum(u["clip_end"] - u["clip_start"] for u in units),
        sum(u["sampled_frames"] for u in units),
        len(failures),
    )
    return units, failures


def plan_tasks(entries: list) -> int:
    return max(1, min(len(entries), 4 * cluster_cpus(), 4096))


def start_book(cfg: IndexConfig, actors: ExitStack):
    """The run's one bookkeeping actor (crash and time-budget accounting of header reads and
    decoding, and the progress counters), started as soon as Ray is: the first plan task
    waits for it, and its process would otherwise start with the pipeline's. None for a dry
    run, which plans under a book of its own."""
    return None if cfg.mode.dry_run else actors.enter_context(open_book(RunBook))


def decode_and_infer(
    entries: list[VideoEntry],
    cfg: IndexConfig,
    sampling,
    spec: ModelSpec | ModelRecipe,
    run_id: str,
    book,
) -> tuple[ray.data.MaterializedDataset, dict, InferenceResources, ModelSpec]:
    """Stages 1 to 3 as one streaming Ray Data pipeline; the result holds no frames. `book`
    is the run's RunBook (`start_book`).

    Also returns the progress seen on the way (a timeline and the slowest videos to decode),
    the inference actors the run was sized for, and the model's spec: `spec` itself, or the
    one the actors resolved from a recipe."""
    resources = inference_resources(cfg.infer)
    with ProgressLog(book, len(entries), cfg.progress_interval_s) as progress:
        results = streaming_dataset(
            entries, cfg, sampling, spec, run_id, resources, book
        ).materialize()
        slowest, readers, built = ray.get(
            [book.slowest.remote(), book.reader_counts.remote(), book.models_built.remote()]
        )
    return (
        results,
        {
            "timeline": progress.timeline,
            "slowest_videos": [{"video_uri": u, "decode_s": round(s, 3)} for u, s in slowest],
            "readers": readers,
        },
        resources,
        spec if isinstance(spec, ModelSpec) else built_spec(spec, built),
    )


def built_spec(recipe: ModelRecipe, built: list[ModelSpec]) -> ModelSpec:
    """The spec the inference actors resolved from `recipe`; every actor must have built the
    same weights (a seeded build differs across torch versions, so across mixed nodes)."""
    versions = sorted({s.model_version for s in built})
    if len(versions) > 1:
        raise RuntimeError(
            f"the inference actors built different models from one recipe ({', '.join(versions)}"
            "): the cluster's nodes differ in torch or torchvision; install the same versions "
            "everywhere, or index with a --checkpoint"
        )
    if built:
        return built[0]
    log.warning("no inference actor reported its model; resolving it on the driver")
    with paused_gc():
        return build_recipe(recipe)[1]


def streaming_dataset(
    entries,
    cfg: IndexConfig,
    sampling,
    spec: ModelSpec | ModelRecipe,
    run_id: str,
    resources: InferenceResources,
    book,
) -> ray.data.Dataset:
    """Plan and decode (CPU tasks, guarded; several small units per task), then infer (actor
    pool, sized by `resources`). `book` is the run's RunBook: the guard's record and the
    progress counters."""
    plan = PlanVideo(sampling, cfg.plan, cfg.storage, book)
    decode = DecodeUnit(sampling, cfg.plan, cfg.storage, progress=book, book=book)
    return decode_dataset(
        entries, PlanTasks(plan, book), decode, task_cpus=resources.task_cpus
    ).map_batches(
        ClipInferencer,
        fn_constructor_kwargs={
            "spec": spec,
            "device": resources.device,
            "threads": resources.threads,
            "run_id": run_id,
            "progress": book,
            "keep_frame_features": cfg.infer.keep_frame_features,
            "precision": cfg.infer.precision,
            "idle_priority": resources.idle_priority,
        },
        batch_size=resources.batch_size,
        batch_format="numpy",
        compute=resources.actor_pool(),
        num_cpus=resources.num_cpus,
        num_gpus=resources.num_gpus,
    )


PLAN_BATCH = 16  # videos planned per batch: a plan task hands on decode tasks as it goes


def plan_dataset(entries: list[VideoEntry], plan: PlanTasks, **options) -> ray.data.Dataset:
    """Stage 1: listed videos -> decode tasks (`{"units": [...]}`), PLAN_BATCH videos per
    batch; a header read is ~0.05 s, so a few plan tasks per CPU, not one per video."""
    return ray.data.from_items(
        [asdict(e) for e in entries], override_num_blocks=plan_tasks(entries)
    ).map_batches(plan, batch_size=PLAN_BATCH, batch_format="pyarrow", **options)


def decode_dataset(
    entries: list[VideoEntry], plan: PlanTasks, decode: DecodeUnit, task_cpus: float = 1.0
) -> ray.data.Dataset:
    """Stages 1 and 2: listed videos -> clip rows with frames, `task_cpus` per plan and
    decode task.

    Plan tasks group their videos' units into decode tasks (`plan.group_units`); each decode
    task becomes its own block (a streaming repartition), so one long video's units spread
    over many decode tasks."""
    return (
        plan_dataset(entries, plan, num_cpus=task_cpus)
        .repartition(target_num_rows_per_block=1)
        .flat_map(DecodeUnits(decode), **decode.plan.decode_task_options(task_cpus))
    )


def write_tables(results, entries: list[VideoEntry], out: RunOutput, spec: ModelSpec) -> dict:
    """Stage 4: the run's tables into staging. Returns counts and the failed video URIs.

    Two passes over the (materialized, frame-free) results: the clips table, written by Ray
    Data tasks; and one summary row per video and block (clips counted, embeddings and scores
    summed) plus one per failed unit, which the driver merges into the videos table."""
    indexed_at = datetime.now(UTC)
    sums, failures, totals = None, [], dict.fromkeys(WORK_COUNTS, 0)
    if results is not None:
        rows_per_task = result_rows_per_task(results)
        clips = results.map_batches(
            tables.clip_rows, batch_format="pyarrow", batch_size=rows_per_task
        )
        clips.write_parquet(
            out.staging(schema.CLIPS),
            filesystem=storage.arrow_filesystem(out.output_uri, out.storage),
            min_bytes_per_file=CLIP_FILE_BYTES,
            **parquet_args(),
        )
        sums, failures, totals = summarize(results, len(entries), spec, rows_per_task)
    labelled = dict(model_version=spec.model_version, run_id=out.run_id, indexed_at=indexed_at)
    ok_uris = set(sums["video_uri"].to_pylist()) if sums is not None else set()
    videos = []
    if sums is not None and sums.num_rows:
        errored = frozenset(f["video_uri"] for f in failures)
        videos.append(videos_table(sums, labels=list(spec.labels), errored=errored, **labelled))
    never_indexed = {f["video_uri"]: f for f in failures if f["video_uri"] not in ok_uris}
    if never_indexed:
        videos.append(
            failed_video_rows(list(never_indexed.values()), dim=spec.embedding_dim, **labelled)
        )
    if videos:
        out.write_table_parts(schema.VIDEOS, pa.concat_tables(videos).sort_by("video_uri"))
    # an errors file even when empty: plain readers of errors/ then always find the table
    out.write_small_table(schema.ERRORS, tables.errors_table(failures, out.run_id), "errors")
    failed = {f["video_uri"] for f in failures}
    if entries:
        out.write_small_table(
            schema.LEDGER, ledger_table(entries, failed, spec.model_version, out.run_id), "ledger"
        )
    num_clips = int(pc.sum(sums[SUM_COUNT]).as_py() or 0) if sums is not None else 0
    return {"failed": failed, "clips": num_clips, "errors": len(failures), **totals}


def result_rows_per_task(results: ray.data.MaterializedDataset) -> int:
    """Clip results per write and summary task: about RESULT_TASK_BYTES of them (a row with
    per-frame features kept is tens of times wider), from the blocks' metadata."""
    rows = results.count()
    return max(1, RESULT_TASK_BYTES // max(1, results.size_bytes() // max(1, rows)))


def summarize(
    results, num_videos: int, spec: ModelSpec, rows_per_task: int
) -> tuple[pa.Table | None, list, dict]:
    """Per-video sums (one row per video), the failed units' error rows, and the run's
    planned frames and work units, from the results.

    Results are summed in Ray tasks of `rows_per_task` rows (`result_rows_per_task`). The
    driver merges the sums when they fit in DRIVER_SUMS_BYTES (no shuffle: a groupby costs
    seconds even on small runs); beyond that, a Ray Data groupby merges them and only the
    merged rows come back."""
    summary = results.map_batches(block_summary, batch_format="pyarrow", batch_size=rows_per_task)
    width = spec.embedding_dim + len(spec.labels)
    if num_videos * width * 8 <= DRIVER_SUMS_BYTES:
        table = collect(summary)
        if table is None:
            return None, [], dict.fromkeys(WORK_COUNTS, 0)
        totals = {name: int(pc.sum(table[name]).as_py() or 0) for name in WORK_COUNTS}
        return merge_sums(sums_rows(table)), tables.failed_rows(table).to_pylist(), totals
    summary = summary.materialize()
    totals = {name: int(summary.sum(name) or 0) for name in WORK_COUNTS}
    failed = summary.map_batches(tables.failed_rows, batch_format="pyarrow").take_all()
    merged = (
        summary.map_batches(sums_rows, batch_format="pyarrow")
        .groupby("video_uri", num_partitions=max(1, min(64, num_videos // 20_000 + 1)))
        .map_groups(merge_sums, batch_format="pyarrow")
    )
    return collect(merged), failed, totals


def collect(ds: ray.data.Dataset) -> pa.Table | None:
    """A dataset's blocks as one Arrow table on the driver (None when it has no rows)."""
    blocks = [b for b in ray.get(ds.to_arrow_refs()) if b.num_rows]
    return pa.concat_tables(blocks) if blocks else None


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
