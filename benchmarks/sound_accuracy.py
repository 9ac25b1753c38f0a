"""What each modality learns: models of the picture, the sound and both, on corpora whose classes
differ only in sound, only in picture, or in both (pipeline.samples.sound_corpus).

    python -m benchmarks.sound_accuracy [--per-class 24] [--epochs 10] [--out DIR]

Trains every (corpus, modalities, fusion) case with pipeline.train.run(cfg) on a local Ray and
prints one row per run: best val accuracy and wall time. The accuracy table in
docs/training.md comes from this script. Chance is 1 / 4 on every corpus; on `both` a model of
one modality can reach 1 / 2 at most (it knows the picture or the sound, not the other).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = str(Path(__file__).resolve().parents[1])
sys.path.insert(0, REPO_ROOT)

from pipeline.config import SamplingConfig  # noqa: E402
from pipeline.models import ModelConfig  # noqa: E402
from pipeline.samples import SOUND_CORPUS_KINDS, sound_corpus  # noqa: E402
from pipeline.train import OptimConfig, TrainConfig, WorkersConfig, run  # noqa: E402

CASES = ("video", "audio", "video+audio:concat", "video+audio:attention")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--per-class", type=int, default=24, help="videos per class (train + val)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--hidden-dim", type=int, default=64)
    p.add_argument("--kinds", default=",".join(SOUND_CORPUS_KINDS))
    p.add_argument(
        "--cases",
        default=",".join(CASES),
        help="modalities[:fusion], comma-separated; + for video,audio",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="folder for the corpora and runs (default: temp)")
    args = p.parse_args(argv)

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    root = args.out or Path(tempfile.mkdtemp(prefix="reelay-sound-bench-"))
    rows = []
    for kind in args.kinds.split(","):
        corpus = root / kind
        if not corpus.exists():
            sound_corpus(corpus, kind, args.per_class, seed=args.seed)
        for case in args.cases.split(","):
            modalities, _, fusion = case.replace("+", ",").partition(":")
            cfg = TrainConfig(
                data_uri=str(corpus),
                output_uri=str(root / "runs" / f"{kind}-{case.replace(':', '-')}"),
                sampling=SamplingConfig(fps=2, clip_frames=8, image_size=64, modalities=modalities),
                model=ModelConfig(
                    encoder="small_cnn",
                    hidden_dim=args.hidden_dim,
                    modalities=modalities,
                    fusion=fusion or "concat",
                ),
                optim=OptimConfig(epochs=args.epochs, batch_size=args.batch_size),
                workers=WorkersConfig(num_workers=1, cpus_per_worker=2),
                seed=args.seed,
            )
            started = time.perf_counter()
            summary = run(cfg)
            row = {
                "corpus": kind,
                "case": case,
                "best_val_accuracy": summary.val_accuracy,
                "best_epoch": summary.best_epoch,
                "train_clips": summary.counts["train_clips"],
                "val_clips": summary.counts["val_clips"],
                "wall_s": time.perf_counter() - started,
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    (root / "results.json").write_text(json.dumps(rows, indent=2))
    print("\n| corpus | model | best val accuracy (epoch) | wall |\n|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['corpus']} | {r['case']} | {r['best_val_accuracy']:.3f} ({r['best_epoch']}) "
            f"| {r['wall_s']:.0f} s |"
        )
    ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
