"""Stages 1 to 4a of the index job as one streaming Ray Data pipeline: plan (CPU tasks, 1 video
-> work units grouped into decode tasks), decode (CPU tasks, 1 unit -> clips with frames),
infer (an actor pool, 1 clip -> 1 row without frames) and stage (CPU tasks: clips and per-video
sums into staging files). Decoding and the actors' start-up overlap the header reads, and
neither the driver nor the object store holds a whole corpus's work units or results."""

from __future__ import annotations

import logging
from dataclasses import asdict

import ray

from pipeline.config import IndexConfig, SamplingConfig
from pipeline.index.commit import RunOutput
from pipeline.index.progress import ProgressLog
from pipeline.index.write import Staged, result_rows_per_task, stage_results
from pipeline.listing import VideoEntry
from pipeline.models.inference import ClipInferencer
from pipeline.models.source import ModelSpec
from pipeline.ray_env import InferenceResources, cluster_cpus, inference_resources
from pipeline.video.decode import DecodeUnit, DecodeUnits
from pipeline.video.guard import open_book
from pipeline.video.plan import PlanTasks, PlanVideo

log = logging.getLogger("reelay.index")


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


def index_stream(
    entries: list[VideoEntry],
    cfg: IndexConfig,
    sampling: SamplingConfig,
    spec: ModelSpec,
    out: RunOutput,
    book,
) -> tuple[Staged, dict, InferenceResources]:
    """Stages 1 to 4a as one streaming Ray Data pipeline: plan, decode, infer, and the clips
    and per-video sums into staging files as they come. `book` is the run's RunBook: the
    decode guard's record and the progress counters.

    Also returns the progress seen on the way (a timeline, the slowest videos to decode, the
    work per node) and the inference actors the run was sized for."""
    resources = inference_resources(cfg.infer)
    rows = result_rows_per_task(spec, sampling.clip_frames, cfg.infer.keep_frame_features)
    progress = ProgressLog(book, len(entries), cfg.progress_interval_s, cfg.stall_timeout_s)
    try:
        with progress:
            results = streaming_dataset(entries, cfg, sampling, spec, out.run_id, resources, book)
            staged = stage_results(results, out, rows, resources.task_cpus)
    except KeyboardInterrupt:
        if progress.stalled:
            raise progress.stalled_error() from None
        raise
    slowest, readers, nodes = ray.get(
        [book.slowest.remote(), book.reader_counts.remote(), book.node_work.remote()]
    )
    return (
        staged,
        {
            "timeline": progress.timeline,
            "slowest_videos": [{"video_uri": u, "decode_s": round(s, 3)} for u, s in slowest],
            "readers": readers,
            "nodes": work_per_node(nodes),
        },
        resources,
    )


def work_per_node(work: dict[str, dict]) -> list[dict]:
    """The book's work per node id as rows, with each node's address and whether it was still
    alive at the end of the pipeline (a lost node's work was done again elsewhere)."""
    known = {n["NodeID"]: n for n in ray.nodes()}
    rows = []
    for node_id, counts in sorted(work.items()):
        node = known.get(node_id, {})
        rows.append(
            {
                "node_id": node_id,
                "address": node.get("NodeManagerAddress", ""),
                "alive": bool(node.get("Alive", False)),
                **counts,
            }
        )
    return rows


def streaming_dataset(
    entries,
    cfg: IndexConfig,
    sampling: SamplingConfig,
    spec: ModelSpec,
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
