"""Contender "decode_loop": a standalone decode loop, one process per core, no Ray, no model.

Each process takes video paths from a queue and does what the job's plan + decode stages do for
a video, written plainly: open one decord reader, read the header, find the job's sampled
frames, decode them with the job's frame reader (`pipeline.video.frames`: B-frames nobody
refers to are skipped) or, where it declines, decord's get_batch, and resize them (centre
square, PIL bilinear). It imports neither torch nor the rest of the pipeline package.

`python -m benchmarks.contenders.decode_loop --input DIR [--processes N] [workload flags]`
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from benchmarks.contenders.common import (
    Workload,
    decode_frames,
    emit,
    run_processes,
    self_sampler,
    video_paths,
)


def worker(workload: Workload, queue, results) -> None:
    frames = videos = 0
    busy = 0.0  # seconds spent decoding, for the per-video time (steady state)
    while (path := queue.get()) is not None:
        t0 = time.perf_counter()
        _, wanted, _ = decode_frames(path, workload.fps, workload.image_size)
        busy += time.perf_counter() - t0
        frames += len(wanted)
        videos += 1
    results.put((frames, videos, busy))


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--input", required=True)
    p.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    Workload.add_flags(p)
    args = p.parse_args(argv)
    w = Workload.from_args(args)
    sampler = self_sampler()
    t0 = time.perf_counter()
    done = run_processes(worker, [(w,)] * args.processes, work=video_paths(args.input))
    seconds = time.perf_counter() - t0
    videos = sum(d[1] for d in done)
    emit(sampler, contender="decode_loop", frames=sum(d[0] for d in done),
         seconds=round(seconds, 3), processes=args.processes, videos=videos,
         per_item_s=round(sum(d[2] for d in done) / max(videos, 1), 4))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
