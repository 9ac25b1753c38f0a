"""Contender "fused": the index job with the hand-written pool's shape on Ray Data.

Stages 2 and 3 run in one CPU actor per core: each decodes its decode tasks' units and runs
their clips through the model itself (one torch thread), so no frame goes through the object
store and no priority or half-CPU share is needed. Plan tasks stay tasks (a tenth of a CPU:
header reads), the write and the commit stay the job's. Everything else is `jobs/index.py`
as the "ours" contender runs it; the job's streaming stage is swapped in this process only.

`python -m benchmarks.contenders.fused --input DIR --output DIR [job flags...]`
"""

from __future__ import annotations

import sys

import numpy as np

PLAN_TASK_CPUS = 0.1
STACKED = ("frames", "frame_indices")


def collate(rows: list[dict]) -> dict[str, np.ndarray]:
    """Clip rows (DecodeUnit's) -> the numpy batch Ray Data would hand the inferencer."""
    return {
        k: np.stack([r[k] for r in rows]) if k in STACKED else np.asarray([r[k] for r in rows])
        for k in rows[0]
    }


class DecodeAndInfer:
    """Ray Data callable class: decode tasks (`{"units": [...]}`) -> result tables, decoded and
    inferred in this actor, `batch_size` clips per forward pass."""

    def __init__(self, decode, batch_size: int, **inferencer):
        from pipeline.models.inference import ClipInferencer
        from pipeline.video.decode import DecodeUnits

        self.decode = DecodeUnits(decode)
        self.infer = ClipInferencer(**inferencer)
        self.batch_size = batch_size

    def __call__(self, table):
        for row in table.to_pylist():
            clips = self.decode(row)
            for i in range(0, len(clips), self.batch_size):
                yield self.infer(collate(clips[i : i + self.batch_size]))


def fused_dataset(entries, cfg, sampling, spec, run_id, resources, book):
    """`pipeline.index.stream.streaming_dataset`'s signature, the pool's shape."""
    import ray

    from pipeline.index.stream import plan_dataset
    from pipeline.ray_env import cluster_cpus
    from pipeline.video.decode import DecodeUnit
    from pipeline.video.plan import PlanTasks, PlanVideo

    plan = PlanTasks(PlanVideo(sampling, cfg.plan, cfg.storage, book), book)
    decode = DecodeUnit(sampling, cfg.plan, cfg.storage, progress=book, book=book)
    actors = max(1, cluster_cpus())
    return (
        plan_dataset(entries, plan, num_cpus=PLAN_TASK_CPUS)
        .repartition(target_num_rows_per_block=1)
        .map_batches(
            DecodeAndInfer,
            fn_constructor_kwargs={
                "decode": decode,
                "batch_size": resources.batch_size,
                "spec": spec,
                "device": "cpu",
                "threads": 1,
                "run_id": run_id,
                "progress": book,
            },
            batch_size=1,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_cpus=(actors - PLAN_TASK_CPUS) / actors,
        )
    )


if __name__ == "__main__":
    from benchmarks.contenders import ours
    from pipeline.index import stream

    stream.streaming_dataset = fused_dataset
    sys.exit(ours.main(sys.argv[1:]))
