"""Train a video classifier on Ray: `python jobs/train.py --data URI --output URI [options]`.

--data is a manifest (.csv/.parquet with uri,label[,split]) or a folder <root>/<split>/<label>/.
With --features-from INDEX_URI only a new temporal head is trained, on the frame features an
index run stored. The output holds best.pt, which `jobs/index.py --checkpoint <output>` uses.
Exit codes: 0 success, 2 bad usage or input (or another run writing the same --output), 1 an
unexpected failure. Errors are one line on stderr; REELAY_DEBUG=1 adds the traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, no install

from pipeline.cli import (  # noqa: E402
    add_model_flags,
    add_sampling_flags,
    model_config,
    run_job,
    sampling_config,
)
from pipeline.config import PlanConfig, StorageConfig  # noqa: E402
from pipeline.train.config import (  # noqa: E402
    DEFAULT_MODEL,
    DEFAULT_SAMPLING,
    OptimConfig,
    TrainConfig,
    WorkersConfig,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument(
        "--data",
        required=True,
        help="manifest .csv/.parquet (uri,label[,split]; relative uris resolve against its "
        "folder) or a folder <root>/<split>/<label>/*.mp4; local or s3://",
    )
    p.add_argument("--output", required=True, help="local folder or s3://bucket/prefix")
    add_sampling_flags(p)
    add_model_flags(p)
    p.set_defaults(  # training defaults: small frames and a temporal head (see docs/training.md)
        fps=DEFAULT_SAMPLING.fps,
        clip_frames=DEFAULT_SAMPLING.clip_frames,
        image_size=DEFAULT_SAMPLING.image_size,
        encoder=DEFAULT_MODEL.encoder,
        temporal=DEFAULT_MODEL.temporal,
        num_classes=None,  # set by the labels
    )
    p.add_argument("--epochs", type=int, default=OptimConfig.epochs)
    p.add_argument(
        "--batch-size",
        type=int,
        default=OptimConfig.batch_size,
        help="clips per optimizer step, over all workers",
    )
    p.add_argument("--lr", type=float, default=OptimConfig.lr, help="AdamW learning rate")
    p.add_argument("--weight-decay", type=float, default=OptimConfig.weight_decay)
    p.add_argument("--num-workers", type=int, default=1, help="Ray Train workers (DDP)")
    p.add_argument(
        "--cpus-per-worker",
        type=float,
        default=1.0,
        help="CPUs reserved per worker (also its torch threads)",
    )
    p.add_argument("--use-gpu", action="store_true", help="one GPU per worker")
    p.add_argument(
        "--max-failures",
        type=int,
        default=WorkersConfig.max_failures,
        help="worker-group failures to recover from by restarting at the latest checkpoint",
    )
    p.add_argument(
        "--val-fraction",
        type=float,
        default=0.2,
        help="share of each class held out for validation when the data has no split",
    )
    p.add_argument(
        "--resume", action="store_true", help="continue the run in --output from its last epoch"
    )
    p.add_argument(
        "--keep-checkpoints",
        type=int,
        default=2,
        help="epoch checkpoints kept (best by val accuracy; the latest is always kept)",
    )
    p.add_argument(
        "--features-from",
        metavar="INDEX_URI",
        help="an index job's --output whose committed runs kept per-frame features "
        "(jobs/index.py --keep-frame-features): train only the temporal head and classifier "
        "on them, no decoding (far cheaper). --data still gives labels and split. The "
        "encoder, its weights and the sampling are the index run's (--encoder, --fps, "
        "--clip-frames, --image-size are not used); best.pt is the complete model",
    )
    p.add_argument(
        "--unit-frames", type=int, default=128, help="sampled frames per decode work unit"
    )
    p.add_argument("--storage-options", help="JSON of extra s3fs options")
    return p.parse_args(argv)


def build_config(args: argparse.Namespace) -> TrainConfig:
    if args.num_classes is not None:
        logging.getLogger("reelay").info("--num-classes is ignored: the labels set it")
    args.num_classes = 2  # placeholder, replaced by the number of labels
    return TrainConfig(
        data_uri=args.data,
        output_uri=args.output,
        sampling=sampling_config(args),
        model=model_config(args),
        optim=OptimConfig(
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            weight_decay=args.weight_decay,
        ),
        workers=WorkersConfig(
            num_workers=args.num_workers,
            use_gpu=args.use_gpu,
            cpus_per_worker=args.cpus_per_worker,
            max_failures=args.max_failures,
        ),
        plan=PlanConfig(unit_frames=args.unit_frames),
        storage=StorageConfig.from_json(args.storage_options),
        val_fraction=args.val_fraction,
        seed=args.seed,
        offline=args.offline,
        resume=args.resume,
        features_from=args.features_from,
        keep_checkpoints=args.keep_checkpoints,
    )


def main(argv: list[str] | None = None) -> int:
    return run_job("reelay train", _main, argv)


def _main(argv: list[str] | None) -> int:
    args = parse_args(argv)
    from pipeline.train import run

    summary = run(build_config(args))
    print(summary.line(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
