"""Index a video corpus into Parquet: `python jobs/index.py --input URI --output URI [options]`.

Exit codes: 0 success, 2 bad usage or input, 3 more failures than --max-failure-fraction,
4 no progress for --stall-timeout seconds, 1 an unexpected failure. Errors are one line on
stderr; REELAY_DEBUG=1 adds the traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, no install

from pipeline.cli import (  # noqa: E402,E501
    add_model_flags,
    add_sampling_flags,
    model_config,
    run_job,
    sampling_config,
)
from pipeline.config import (  # noqa: E402
    PRECISIONS,
    ConfigError,
    GuardConfig,
    IndexConfig,
    InferConfig,
    PlanConfig,
    RunMode,
    StorageConfig,
)

EXIT_THRESHOLD = 3
EXIT_STALLED = 4


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument(
        "--input",
        required=True,
        help="folder, s3://bucket/prefix/, glob, or manifest .csv/.parquet (uri column)",
    )
    p.add_argument("--output", required=True, help="local folder or s3://bucket/prefix")
    add_sampling_flags(p)
    add_model_flags(p)
    p.add_argument(
        "--labels",
        help="zero-shot labels for --encoder clip --temporal mean: comma-separated "
        '("cat,dog,car") or a text file with one label per line',
    )
    p.add_argument(
        "--checkpoint",
        help="a training run's output folder or a checkpoint file; "
        "its model, labels and sampling override the flags",
    )
    p.add_argument("--run-id", help="name of this run (default: UTC time + random suffix)")
    p.add_argument(
        "--batch-size",
        type=int,
        help="clips per forward pass (default: 8 on CPU actors, 32 on GPU actors)",
    )
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument(
        "--precision",
        default="auto",
        choices=PRECISIONS,
        help="compute dtype on GPUs (autocast): auto is bf16 where the GPU has it, else fp16; "
        "CPU actors always run fp32",
    )
    p.add_argument(
        "--gpus-per-actor",
        type=float,
        default=1.0,
        help="GPU share of one inference actor: 0.5 runs two actors per GPU, so that one's "
        "CPU work (batch copies, result rows) overlaps the other's GPU work",
    )
    p.add_argument(
        "--calls-per-actor",
        type=int,
        help="Ray Data calls in flight per inference actor (default: 2 on GPU actors, so that "
        "batching the next input and the last output overlaps the model; 1 on CPU actors). "
        "The model still runs one batch at a time",
    )
    p.add_argument(
        "--cpus-per-actor",
        type=float,
        default=1.0,
        help="CPUs (and torch threads) per inference actor",
    )
    p.add_argument("--max-actors", type=int, help="upper bound of the inference actor pool")
    p.add_argument(
        "--cpus-per-task",
        type=float,
        help="CPUs Ray reserves per plan and decode task (default: 0.5 beside CPU inference "
        "actors, whose threads then yield their cores to decoding; 1 beside GPU actors). "
        "1 or more keeps CPU actors at their normal priority",
    )
    p.add_argument(
        "--torch-threads",
        type=int,
        help="torch threads per CPU inference actor (default: twice --cpus-per-actor, "
        "so that inference also uses the cores decode leaves idle)",
    )
    p.add_argument(
        "--unit-frames",
        type=int,
        default=128,
        help="sampled frames per work unit: longer videos are split in time ranges",
    )
    p.add_argument(
        "--decode-memory-mib",
        type=int,
        default=PlanConfig.task_memory_bytes // 2**20,
        help="memory budget of one decode task: work units shrink to fit it, Ray reserves it "
        "per task, and a video whose frames cannot fit becomes an error row",
    )
    p.add_argument(
        "--max-failure-fraction",
        type=float,
        default=0.5,
        help="fail the run (exit 3) when more videos than this fraction fail",
    )
    p.add_argument(
        "--commit-every",
        type=int,
        default=0,
        metavar="VIDEOS",
        help="commit a long run in parts of at most this many videos, each a run of its own "
        "(<run-id>-001, -002, ...): a crash then loses one part's work, and the next "
        "--incremental run takes the rest; 0 commits once, at the end",
    )
    p.add_argument(
        "--stall-timeout",
        type=float,
        default=1800.0,
        metavar="SECONDS",
        help="stop the run (exit 4) when its work makes no progress this long, e.g. when the "
        "cluster lost the nodes it needs and none replace them; nothing of it is committed and "
        "the next --incremental run takes its videos; 0 waits for ever",
    )
    p.add_argument(
        "--keep-frame-features",
        action="store_true",
        help="also write each clip's per-frame CNN features (clips.frame_features, (T, D)): "
        "jobs/train.py --features-from trains new temporal heads on them cheaply",
    )
    p.add_argument(
        "--incremental",
        action="store_true",
        help="index only videos that are new or changed since the committed runs, "
        "for this model version (the nightly mode)",
    )
    p.add_argument(
        "--reindex",
        action="store_true",
        help="with --incremental: ignore the ledger and index everything again",
    )
    p.add_argument(
        "--retry-errors",
        action="store_true",
        help="index only the videos whose last run failed (transient errors)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="list and plan only: print what a run would do, with a time estimate",
    )
    p.add_argument(
        "--decode-timeout",
        type=float,
        default=600.0,
        help="seconds one work unit (or one header read) may take before the video is an error",
    )
    p.add_argument(
        "--storage-options",
        help='JSON of extra s3fs options, e.g. \'{"client_kwargs": {"region_name": "eu-west-1"}}\'',
    )
    return p.parse_args(argv)


def zero_shot_labels(value: str | None) -> tuple[str, ...]:
    """--labels as a tuple: a file's lines, else the comma-separated names (unique, in order)."""
    if not value:
        return ()
    path = Path(value)
    names = path.read_text().splitlines() if path.is_file() else value.split(",")
    labels = tuple(dict.fromkeys(n.strip() for n in names if n.strip()))
    if len(labels) < 2:
        raise ConfigError(f"--labels needs at least two labels (got {list(labels)})")
    return labels


def build_config(args: argparse.Namespace) -> IndexConfig:
    return IndexConfig(
        input_uri=args.input,
        output_uri=args.output,
        sampling=sampling_config(args),
        model=model_config(args),
        offline=args.offline,
        plan=PlanConfig(
            unit_frames=args.unit_frames,
            task_memory_bytes=args.decode_memory_mib * 2**20,
            guard=GuardConfig(timeout_s=args.decode_timeout),
        ),
        infer=InferConfig(
            batch_size=args.batch_size,
            device=args.device,
            precision=args.precision,
            gpus_per_actor=args.gpus_per_actor,
            cpus_per_actor=args.cpus_per_actor,
            max_actors=args.max_actors,
            torch_threads=args.torch_threads,
            cpus_per_task=args.cpus_per_task,
            keep_frame_features=args.keep_frame_features,
            calls_per_actor=args.calls_per_actor,
        ),
        storage=StorageConfig.from_json(args.storage_options),
        mode=RunMode(
            incremental=args.incremental and not args.reindex,
            retry_errors=args.retry_errors,
            dry_run=args.dry_run,
        ),
        checkpoint_uri=args.checkpoint,
        labels=zero_shot_labels(args.labels),
        seed=args.seed,
        run_id=args.run_id,
        max_failure_fraction=args.max_failure_fraction,
        commit_every=args.commit_every,
        stall_timeout_s=args.stall_timeout,
    )


def main(argv: list[str] | None = None) -> int:
    return run_job("reelay index", _main, argv)


def _main(argv: list[str] | None) -> int:
    args = parse_args(argv)
    from pipeline import index

    cfg = build_config(args)
    try:
        summary = index.run(cfg)
    except index.FailureThresholdExceeded as e:
        print(f"reelay index: error: {e}", file=sys.stderr, flush=True)
        print(e.summary.line(), flush=True)
        return EXIT_THRESHOLD
    except index.RunStalled as e:
        print(f"reelay index: error: {e}", file=sys.stderr, flush=True)
        return EXIT_STALLED
    if summary.status == "dry_run":
        print(format_plan(summary.plan), flush=True)
        print(json.dumps(summary.plan), flush=True)
        return 0
    print(summary.line(), flush=True)
    return 0


def format_plan(plan: dict) -> str:
    """The dry run as a small table a person reads in a second."""
    est = plan["estimated_seconds"]
    rows = [
        ("new videos", f"{plan['new_videos']:,}"),
        ("unreadable", f"{plan['unreadable_videos']:,}"),
        ("size", f"{plan['total_bytes'] / 2**30:,.2f} GiB"),
        ("hours of video", f"{plan['video_hours']:,.2f}"),
        ("work units", f"{plan['work_units']:,}"),
        ("clips", f"{plan['clips']:,}"),
        ("frames to decode", f"{plan['sampled_frames']:,}"),
        ("commits", f"{plan['commits']:,}"),
        (
            "estimated time",
            f"{est / 60:,.1f} min"
            if est is not None
            else "unknown (no committed run to learn the speed from)",
        ),
    ]
    return "\n".join(f"  {name:<18}{value}" for name, value in rows)


if __name__ == "__main__":
    sys.exit(main())
