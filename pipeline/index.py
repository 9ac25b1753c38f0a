"""The index job: object storage -> decode -> CNN / temporal head -> Parquet, on Ray Data.

Stages (row ratios):
  0. list    (driver)       input URI -> 1 row per video
  1. plan    (CPU tasks)    1 video -> N work units (time ranges of <= unit_frames samples)
  2. decode  (CPU tasks)    1 unit -> N clips with frames (T, S, S, 3) uint8
  3. infer   (actors)       1 clip -> 1 row: embedding, label, scores; frames dropped
  4. write   (tasks+driver) clips, videos (clips grouped by video), errors; then commit
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

import ray

from pipeline import schema, storage, tables
from pipeline.aggregate import aggregate_video, failed_video_rows
from pipeline.config import IndexConfig
from pipeline.decode import DecodeUnit
from pipeline.infer import ClipInferencer
from pipeline.listing import list_videos
from pipeline.model_source import resolve_model
from pipeline.output import RunOutput, parquet_args
from pipeline.plan import PlanVideo
from pipeline.ray_env import ensure_ray, inference_resources

log = logging.getLogger("reelay.index")


@dataclass
class RunSummary:
    run_id: str
    output_uri: str
    model_version: str
    counts: dict = field(default_factory=dict)
    timings_s: dict = field(default_factory=dict)
    frames_per_s: float = 0.0
    status: str = "ok"

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


def new_run_id(now: datetime) -> str:
    import secrets

    return now.strftime("%Y%m%dT%H%M%SZ-") + secrets.token_hex(3)


def run(cfg: IndexConfig) -> RunSummary:
    """Index every video under cfg.input_uri into cfg.output_uri; returns the run's summary."""
    started = datetime.now(UTC)
    run_id = cfg.run_id or new_run_id(started)
    out = RunOutput(cfg.output_uri, run_id, started.strftime("%Y-%m-%d"), cfg.storage)
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 3)
        clock = now

    spec, sampling = resolve_model(cfg)
    ensure_ray()
    # 0. list (driver): 1 row per video
    entries = list_videos(cfg.input_uri, cfg.storage)
    log.info("listed %d videos under %s", len(entries), storage.redact(cfg.input_uri))
    lap("list")

    # 1. plan (CPU tasks): 1 video -> N work units
    plan_rows = (
        (
            ray.data.from_items([asdict(e) for e in entries])
            .flat_map(PlanVideo(sampling, cfg.plan, cfg.storage), num_cpus=1)
            .take_all()
        )
        if entries
        else []
    )
    units = [u for u in plan_rows if not u["error_stage"]]
    plan_failures = [u for u in plan_rows if u["error_stage"]]
    lap("plan")
    log.info(
        "planned %d work units, %d clips, %d sampled frames; %d videos failed to open",
        len(units),
        sum(u["clip_end"] - u["clip_start"] for u in units),
        sum(u["sampled_frames"] for u in units),
        len(plan_failures),
    )

    # 2. decode (CPU tasks): 1 unit -> N clips; 3. infer (actors): 1 clip -> 1 row
    out.clear_staging()  # a crashed earlier attempt of this run_id must not leave duplicates
    results = None
    if units:
        resources = inference_resources(cfg.infer)
        results = (
            ray.data.from_items(units, override_num_blocks=min(len(units), 4096))
            .flat_map(DecodeUnit(sampling, cfg.plan, cfg.storage), num_cpus=1)
            .map_batches(
                ClipInferencer,
                fn_constructor_kwargs={
                    "spec": spec,
                    "device": resources.device,
                    "threads": resources.threads,
                    "run_id": run_id,
                },
                batch_size=cfg.infer.batch_size,
                batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(min_size=1, max_size=resources.max_actors),
                num_cpus=resources.num_cpus,
                num_gpus=resources.num_gpus,
            )
            .materialize()
        )
    lap("decode_infer")

    # 4. write: clips, videos, errors into staging; then commit
    indexed_at = datetime.now(UTC)
    arrow_fs = storage.arrow_filesystem(cfg.output_uri, cfg.storage)
    decode_failures: list[dict] = []
    ok_uris: set[str] = set()
    num_clips = 0
    if results is not None:
        decode_failures = results.map_batches(tables.error_rows, batch_format="pyarrow").take_all()
        clips = results.map_batches(tables.clip_rows, batch_format="pyarrow").materialize()
        num_clips = clips.count()
        if num_clips:
            clips.write_parquet(
                storage.strip_scheme(out.staging(schema.CLIPS)),
                filesystem=arrow_fs,
                **parquet_args(),
            )
            ok_uris = set(clips.unique("video_uri"))
            errored = frozenset(f["video_uri"] for f in decode_failures)
            (
                results.map_batches(tables.aggregation_rows, batch_format="pyarrow")
                .groupby("video_uri", num_partitions=max(1, min(64, len(ok_uris) // 20_000 + 1)))
                .map_groups(
                    aggregate_video,
                    batch_format="pyarrow",
                    fn_kwargs={
                        "labels": list(spec.labels),
                        "errored": errored,
                        "model_version": spec.model_version,
                        "run_id": run_id,
                        "indexed_at": indexed_at,
                    },
                )
                .write_parquet(
                    storage.strip_scheme(out.staging(schema.VIDEOS)),
                    filesystem=arrow_fs,
                    **parquet_args(),
                )
            )
    failures = plan_failures + decode_failures
    never_indexed = {f["video_uri"]: f for f in failures if f["video_uri"] not in ok_uris}
    if failures:
        out.write_small_table(schema.ERRORS, tables.errors_table(failures, run_id), "errors")
    if never_indexed:
        dim = clips.schema().base_schema.field("embedding").type.list_size if num_clips else 0
        out.write_small_table(
            schema.VIDEOS,
            failed_video_rows(
                list(never_indexed.values()),
                dim=dim,
                model_version=spec.model_version,
                run_id=run_id,
                indexed_at=indexed_at,
            ),
            "failed-videos",
        )
    lap("write")

    failed_uris = {f["video_uri"] for f in failures}
    sampled = sum(u["sampled_frames"] for u in units)
    summary = RunSummary(
        run_id=run_id,
        output_uri=cfg.output_uri,
        model_version=spec.model_version,
        counts={
            "listed": len(entries),
            "skipped": 0,
            "processed": len(ok_uris - failed_uris),
            "failed": len(failed_uris),
            "clips": num_clips,
            "sampled_frames": sampled,
            "errors": len(failures),
        },
        timings_s=timings,
        frames_per_s=sampled / max(timings["decode_infer"], 1e-9),
    )
    fraction = len(failed_uris) / max(len(entries), 1)
    if fraction > cfg.max_failure_fraction:
        summary.status = "failed_threshold"
    out.commit(
        {
            "run_id": run_id,
            "schema_version": schema.SCHEMA_VERSION,
            "status": summary.status,
            "started_at": started.isoformat(),
            "ended_at": datetime.now(UTC).isoformat(),
            "config": cfg.to_dict(),
            "sampling": sampling.to_dict(),
            "model_version": spec.model_version,
            "labels": list(spec.labels),
            "counts": summary.counts,
            "timings_s": timings,
            "throughput": {"frames_per_s": summary.frames_per_s},
        }
    )
    lap("commit")
    summary.timings_s = timings
    log.info(summary.line())
    if summary.status == "failed_threshold":
        raise FailureThresholdExceeded(
            f"{len(failed_uris)} of {len(entries)} videos failed ({fraction:.0%}), more than "
            f"--max-failure-fraction {cfg.max_failure_fraction:.0%}; the good videos were "
            f"committed in run {run_id}; see errors/ for the reasons",
            summary,
        )
    return summary
