"""Contender "decode_ray": the job's stages 1 and 2 (plan + decode) on Ray Data, model = identity.

The job's own streaming plan and decode tasks (`pipeline.index.stream.decode_dataset`:
PlanTasks, then
DecodeUnit tasks with num_cpus=1, as in the job), then an identity actor (num_cpus=0, so it
takes no core from decoding) that drops the frames, where the job has its inference actors:
frames still go through the object store as in the job.

`python -m benchmarks.contenders.decode_ray --input DIR [--unit-frames N] [workload flags]`
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from benchmarks.contenders.common import Workload, emit, op_remote_wall, self_sampler, start_ray


class DropFrames:
    def __call__(self, batch: dict) -> dict:
        unit_frames = np.asarray(batch["unit_frames"])
        return {
            "clips": np.asarray([len(batch["clip_index"])]),
            "frames": np.asarray([unit_frames.sum()]),
            "units": np.asarray([(unit_frames > 0).sum()]),
        }


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--input", required=True)
    p.add_argument("--unit-frames", type=int, default=128)
    p.add_argument("--stats", help="save ds.stats() here")
    Workload.add_flags(p)
    args = p.parse_args(argv)
    w = Workload.from_args(args)
    sampler = self_sampler()
    ray = start_ray()
    from pipeline.config import IndexConfig, PlanConfig
    from pipeline.index.stream import decode_dataset
    from pipeline.listing import list_videos
    from pipeline.video.decode import DecodeUnit
    from pipeline.video.guard import GuardBook
    from pipeline.video.plan import PlanTasks, PlanVideo

    cfg = IndexConfig(
        input_uri=args.input,
        output_uri="unused",
        sampling=w.sampling(),
        plan=PlanConfig(unit_frames=args.unit_frames),
    )
    t0 = time.perf_counter()
    entries = list_videos(cfg.input_uri, cfg.storage)
    book = ray.remote(num_cpus=0)(GuardBook).remote()  # as pipeline.video.guard.open_book
    plan = PlanTasks(PlanVideo(cfg.sampling, cfg.plan, cfg.storage, book))
    ds = (
        decode_dataset(entries, plan, DecodeUnit(cfg.sampling, cfg.plan, cfg.storage, book=book))
        .map_batches(
            DropFrames,
            batch_size=w.batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=1),
            num_cpus=0,
        )
        .materialize()
    )
    # the counts from the materialized rows (a few per batch): `ds.sum` per column was three
    # more executions, each with its own aggregation, counted in the "work"
    rows = ds.take_all()
    clips, frames, units = (
        sum(int(r[name]) for r in rows) for name in ("clips", "frames", "units")
    )
    seconds = time.perf_counter() - t0
    stats = ds.stats()
    if args.stats:
        with open(args.stats, "w") as f:
            f.write(stats)
    task = op_remote_wall(stats, "DecodeUnit") or {}
    # a task decodes several units (pipeline.video.plan.group_units): the time per unit (one video
    # here) is what compares with the loop's time per video
    per_unit = task["total"] / units if task.get("total") and units else None
    emit(sampler, contender="decode_ray", frames=frames, clips=clips, units=units,
         seconds=round(seconds, 3), per_item_s=per_unit, decode_tasks=task)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
