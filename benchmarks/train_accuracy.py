"""Do temporal heads learn time order? Train on "right" vs "left" (exact time reversals).

    python -m benchmarks.train_accuracy [--per-class 150] [--epochs 12] [--out DIR]

Writes a sample corpus, trains each configuration with pipeline.train.run(cfg) on a local Ray, and
prints one row per run: best val accuracy, epochs, mean epoch time, wall time. Figures in
docs/training.md come from this script.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = str(Path(__file__).resolve().parents[1])
sys.path.insert(0, REPO_ROOT)

from pipeline.config import SamplingConfig  # noqa: E402
from pipeline.models import ModelConfig  # noqa: E402
from pipeline.samples import make_sample_corpus  # noqa: E402
from pipeline.train import OptimConfig, TrainConfig, WorkersConfig, run  # noqa: E402


@dataclass(frozen=True)
class Case:
    temporal: str
    num_workers: int = 1
    cpus_per_worker: float = 1.0

    @property
    def name(self) -> str:
        return f"{self.temporal}-w{self.num_workers}x{self.cpus_per_worker:g}cpu"


DEFAULT_CASES = "gru:1,attention:1,lstm:1,mean:1,gru:2"


def parse_cases(text: str) -> list[Case]:
    cases = []
    for item in text.split(","):
        parts = item.strip().split(":")
        workers = int(parts[1]) if len(parts) > 1 else 1
        cpus = float(parts[2]) if len(parts) > 2 else 1.0
        cases.append(Case(parts[0], workers, cpus))
    return cases


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--per-class", type=int, default=150, help="videos per class (train + val)")
    p.add_argument("--val-per-class", type=int, default=30)
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--fps", type=float, default=10.0)
    p.add_argument("--clip-frames", type=int, default=16)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--hidden-dim", type=int, default=128)
    p.add_argument(
        "--cases",
        default=DEFAULT_CASES,
        help="comma-separated head:workers[:cpus_per_worker], e.g. gru:1,gru:2,gru:1:2",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="folder for the corpus and runs (default: temp)")
    args = p.parse_args(argv)

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    root = args.out or Path(tempfile.mkdtemp(prefix="reelay-train-bench-"))
    t0 = time.perf_counter()
    corpus = make_sample_corpus(
        root / "corpus",
        per_class=args.per_class,
        classes=("right", "left"),
        val_per_class=args.val_per_class,
        seed=args.seed,
    )
    print(f"corpus: {2 * args.per_class} videos in {time.perf_counter() - t0:.1f}s at {corpus}")
    rows = []
    for case in parse_cases(args.cases):
        cfg = TrainConfig(
            data_uri=str(corpus / "manifest.csv"),
            output_uri=str(root / "runs" / case.name),
            sampling=SamplingConfig(
                fps=args.fps, clip_frames=args.clip_frames, image_size=args.image_size
            ),
            model=ModelConfig(
                encoder="small_cnn", temporal=case.temporal, hidden_dim=args.hidden_dim
            ),
            optim=OptimConfig(epochs=args.epochs, batch_size=args.batch_size),
            workers=WorkersConfig(
                num_workers=case.num_workers, cpus_per_worker=case.cpus_per_worker
            ),
            seed=args.seed,
        )
        t1 = time.perf_counter()
        summary = run(cfg)
        wall = time.perf_counter() - t1
        epoch_times = [m["epoch_time_s"] for m in summary.history]
        row = {
            "case": case.name,
            "temporal": case.temporal,
            "num_workers": case.num_workers,
            "cpus_per_worker": case.cpus_per_worker,
            "best_val_accuracy": summary.val_accuracy,
            "best_epoch": summary.best_epoch,
            "final_val_accuracy": summary.history[-1]["val_accuracy"],
            "epochs": summary.epochs,
            "epoch_time_s_median": statistics.median(epoch_times[1:] or epoch_times),
            "first_epoch_time_s": epoch_times[0],
            "train_clips": summary.counts["train_clips"],
            "val_clips": summary.counts["val_clips"],
            "wall_s": wall,
            "timings_s": summary.timings_s,
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    (root / "results.json").write_text(json.dumps(rows, indent=2))
    print()
    print("| run | best val acc (epoch) | last-epoch val acc | epoch time (median) | wall |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['case']} | {r['best_val_accuracy']:.3f} ({r['best_epoch']}) | "
            f"{r['final_val_accuracy']:.3f} | {r['epoch_time_s_median']:.1f} s | "
            f"{r['wall_s']:.0f} s |"
        )
    ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
