"""Contender "model_loop": a standalone `inference_mode` loop over the same synthetic clips.

`--processes` processes (the job's actor count) with `--threads` torch threads each (the job's
threads per actor) each run their share of `--clips` clips in batches of `--batch-size`, with
the job's model and normalisation. No Ray.

`python -m benchmarks.contenders.model_loop --clips N [--processes P] [--threads T]`
"""

from __future__ import annotations

import argparse
import sys
import time
from multiprocessing import get_context

import numpy as np

from benchmarks.contenders.common import Forward, Workload, emit, self_sampler


def worker(n_clips: int, spec, w: Workload, threads: int, results) -> None:
    forward = Forward(spec, threads=threads)
    rng = np.random.default_rng(0)
    clip = rng.integers(0, 256, (w.clip_frames, w.image_size, w.image_size, 3), dtype=np.uint8)
    done = batches = 0
    busy = 0.0  # seconds in full batches, for the per-batch time (steady state)
    while done < n_clips:
        n = min(w.batch_size, n_clips - done)
        t0 = time.perf_counter()
        forward(np.broadcast_to(clip, (n, *clip.shape)).copy())
        if n == w.batch_size:
            busy += time.perf_counter() - t0
            batches += 1
        done += n
    results.put((done, batches, busy))


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--clips", type=int, required=True)
    p.add_argument("--processes", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    Workload.add_flags(p)
    args = p.parse_args(argv)
    w = Workload.from_args(args)
    sampler = self_sampler()
    t0 = time.perf_counter()
    spec = w.model_spec()
    if args.processes == 1:
        import queue

        results = queue.Queue()
        worker(args.clips, spec, w, args.threads, results)
        done = [results.get()]
    else:
        ctx = get_context("spawn")
        results = ctx.Queue()
        shares = [args.clips // args.processes + (i < args.clips % args.processes)
                  for i in range(args.processes)]  # fmt: skip
        procs = [ctx.Process(target=worker, args=(s, spec, w, args.threads, results))
                 for s in shares]  # fmt: skip
        for proc in procs:
            proc.start()
        done = [results.get() for _ in procs]
        for proc in procs:
            proc.join()
    seconds = time.perf_counter() - t0
    n = sum(d[0] for d in done)
    batches = sum(d[1] for d in done)
    emit(sampler, contender="model_loop", frames=n * w.clip_frames, clips=n,
         seconds=round(seconds, 3), processes=args.processes, threads=args.threads,
         per_item_s=round(sum(d[2] for d in done) / max(batches, 1), 4))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
