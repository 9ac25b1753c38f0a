"""Contender "model_loop": a standalone `inference_mode` loop over the same synthetic clips.

`--processes` processes (the job's actor count) with `--threads` torch threads each (the job's
threads per actor) each run their share of `--clips` clips in batches of `--batch-size`, with
the job's model and normalisation. No Ray.

Each batch is one ready host array, reused (as the job's actors read theirs zero-copy from the
object store). On a GPU (`--device cuda`) the loop stages each batch through pinned memory as
the job must (its clips arrive in host memory); `--resident` keeps one batch on the GPU
instead, for the model's own rate, and `--cast` runs a model cast to the low-precision dtype,
not autocast.

`python -m benchmarks.contenders.model_loop --clips N [--processes P] [--threads T]
[--device cuda [--precision P] [--cast] [--resident]]`
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from benchmarks.contenders.common import (
    Forward,
    Workload,
    emit,
    run_processes,
    self_sampler,
    steady_rate,
)


def worker(n_clips: int, spec, w: Workload, threads: int, gpu: dict, results) -> None:
    forward = Forward(spec, threads=threads, **{k: gpu[k] for k in ("device", "precision", "cast")})
    rng = np.random.default_rng(0)
    clip = rng.integers(0, 256, (w.clip_frames, w.image_size, w.image_size, 3), dtype=np.uint8)
    ready = np.broadcast_to(clip, (w.batch_size, *clip.shape)).copy()
    resident = forward.to_device(ready) if gpu["resident"] else None
    done = batches = 0
    busy = 0.0  # seconds in full batches, for the per-batch time (steady state)
    marks = []  # (when a batch finished, this worker, its frames): the steady rate
    while done < n_clips:
        n = min(w.batch_size, n_clips - done)
        t0 = time.perf_counter()
        if resident is not None:
            forward(resident[:n])
        else:
            forward(ready[:n])
        if n == w.batch_size:
            busy += time.perf_counter() - t0
            batches += 1
        marks.append((time.monotonic(), os.getpid(), n * w.clip_frames))
        done += n
    results.put((done, batches, busy, marks))


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--clips", type=int, required=True)
    p.add_argument("--processes", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--precision", default="auto")
    p.add_argument("--cast", action="store_true")
    p.add_argument("--resident", action="store_true")
    Workload.add_flags(p)
    args = p.parse_args(argv)
    w = Workload.from_args(args)
    gpu = {"device": args.device, "precision": args.precision, "cast": args.cast,
           "resident": args.resident}  # fmt: skip
    sampler = self_sampler()
    t0 = time.perf_counter()
    spec = w.model_spec()
    if args.processes == 1:
        import queue

        results = queue.Queue()
        worker(args.clips, spec, w, args.threads, gpu, results)
        done = [results.get()]
    else:
        shares = [args.clips // args.processes + (i < args.clips % args.processes)
                  for i in range(args.processes)]  # fmt: skip
        done = run_processes(worker, [(s, spec, w, args.threads, gpu) for s in shares])
    seconds = time.perf_counter() - t0
    n = sum(d[0] for d in done)
    batches = sum(d[1] for d in done)
    emit(sampler, contender="model_loop", frames=n * w.clip_frames, clips=n,
         seconds=round(seconds, 3), processes=args.processes, threads=args.threads, **gpu,
         per_item_s=round(sum(d[2] for d in done) / max(batches, 1), 4),
         steady_fps=steady_rate([m for d in done for m in d[3]]))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
