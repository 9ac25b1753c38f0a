"""Contender "model_ray": the job's stage 3 alone: `ClipInferencer` actors fed synthetic clips.

Clip rows with every column the job's decode stage emits (frames: fixed random uint8) come from
a cheap producer task and go through the object store into the job's inference actors, sized by
the job's own `inference_resources` from `--cpus-per-actor` / `--max-actors`, with
`--batch-size` clips per call, exactly as `index_stream` does.

On a GPU machine the actors take `--gpus-per-actor` of a GPU each, as the job's do;
`--in-process` calls one `ClipInferencer` in this process instead (no Ray, no object store),
which splits the inferencer's own cost from Ray Data's.

`python -m benchmarks.contenders.model_ray --clips N [--cpus-per-actor C] [--max-actors A]
[--device D] [--precision P] [--gpus-per-actor G] [--calls-per-actor N] [--in-process]`
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import pyarrow as pa

from benchmarks.contenders.common import (
    Workload,
    emit,
    op_remote_wall,
    self_sampler,
    start_ray,
    steady_rate,
)
from pipeline.models.inference import ClipInferencer


def make_rows(batch: dict, clip_frames: int, size: int, columns: tuple[str, ...]) -> dict:
    """Clip rows as the decode stage emits them; `columns` are the ones the job's inferencer
    passes through (any this file does not know get zeros)."""
    n = len(batch["id"])
    rng = np.random.default_rng(0)
    clip = rng.integers(0, 256, size=(clip_frames, size, size, 3), dtype=np.uint8)
    rows = {
        "video_uri": np.asarray([f"/synthetic/{i // 2}.mp4" for i in batch["id"]]),
        "clip_index": batch["id"] % 2,
        "start_s": np.zeros(n),
        "end_s": np.full(n, 8.0),
        "num_frames": np.full(n, 300),
        "fps": np.full(n, 30.0),
        "duration_s": np.full(n, 10.0),
        "width": np.full(n, 640),
        "height": np.full(n, 360),
        "num_clips": np.full(n, 2),
        "error_stage": np.asarray([""] * n),
        "error_type": np.asarray([""] * n),
        "error_message": np.asarray([""] * n),
        # clip k of a video holds its frames k*T .. k*T+T-1: distinct frames, as real clips
        # (the job's actors run the CNN once per distinct video frame)
        "frame_indices": (
            np.arange(clip_frames, dtype=np.int32)[None, :]
            + (np.asarray(batch["id"]) % 2).astype(np.int32)[:, None] * clip_frames
        ),
        "frames": np.broadcast_to(clip, (n, *clip.shape)).copy(),
        "size_bytes": np.full(n, 1_000_000),
        "fingerprint": np.asarray(["synthetic"] * n),
    }
    for name in columns:
        rows.setdefault(name, np.zeros(n, dtype=np.int64))
    return rows


class TimedInferencer(ClipInferencer):
    """The job's inferencer, each output row also stamped with when its batch finished and
    in which actor (for the steady rate; the job's own columns are untouched)."""

    def __call__(self, batch: dict) -> pa.Table:
        table = super().__call__(batch)
        n = table.num_rows
        table = table.append_column("t_done", pa.array([time.monotonic()] * n, pa.float64()))
        return table.append_column("worker", pa.array([os.getpid()] * n, pa.int64()))


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--clips", type=int, required=True)
    p.add_argument("--cpus-per-actor", type=float, default=1.0)
    p.add_argument("--max-actors", type=int)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--precision", default="auto")
    p.add_argument("--gpus-per-actor", type=float, default=1.0)
    p.add_argument("--calls-per-actor", type=int)
    p.add_argument("--in-process", action="store_true")
    Workload.add_flags(p)
    args = p.parse_args(argv)
    w = Workload.from_args(args)
    sampler = self_sampler()
    if args.in_process:
        return in_process(args, w, sampler)
    ray = start_ray()
    from pipeline.models.inference import PASS_THROUGH
    from pipeline.ray_env import inference_resources
    from pipeline.video.decode import UNIT_META

    # The clips are made beforehand and sit in the object store, as decoded clips do in the job
    # (made in the same pipeline, Ray Data would fuse the producer into the actor).
    clips = (
        ray.data.range(args.clips, override_num_blocks=max(1, args.clips // w.batch_size))
        .map_batches(make_rows, fn_kwargs={"clip_frames": w.clip_frames, "size": w.image_size,
                                           "columns": (*UNIT_META, *PASS_THROUGH)})
        .materialize()
    )  # fmt: skip
    t0 = time.perf_counter()
    spec = w.model_spec()
    res = inference_resources(infer_config(args, w))
    ds = (
        clips.map_batches(
            TimedInferencer,
            fn_constructor_kwargs={"spec": spec, "device": res.device, "threads": res.threads,
                                   "run_id": "bench", "precision": args.precision},
            batch_size=w.batch_size,
            batch_format="numpy",
            compute=res.actor_pool(),
            num_cpus=res.num_cpus,
            num_gpus=res.num_gpus,
        )
        .materialize()
    )  # fmt: skip
    n = ds.count()
    seconds = time.perf_counter() - t0
    stamps = ds.select_columns(["t_done", "worker"]).to_arrow_refs()
    marks = {}  # (t_done, worker) -> clips in that batch
    for table in ray.get(stamps):
        for key in zip(*(table.column(c).to_pylist() for c in ("t_done", "worker")), strict=True):
            marks[key] = marks.get(key, 0) + 1
    steady = steady_rate([(t, worker, c * w.clip_frames) for (t, worker), c in marks.items()])
    task = op_remote_wall(ds.stats(), "TimedInferencer") or {}
    emit(sampler, contender="model_ray", frames=n * w.clip_frames, clips=n,
         seconds=round(seconds, 3), actors=res.max_actors, threads=res.threads,
         calls_per_actor=res.calls_per_actor,
         device=res.device, gpus_per_actor=res.num_gpus, steady_fps=steady,
         per_item_s=task.get("mean"), infer_tasks=task)  # fmt: skip
    return 0


def infer_config(args: argparse.Namespace, w: Workload):
    from pipeline.config import InferConfig

    return InferConfig(
        batch_size=w.batch_size, device=args.device, precision=args.precision,
        gpus_per_actor=args.gpus_per_actor, cpus_per_actor=args.cpus_per_actor,
        max_actors=args.max_actors, calls_per_actor=args.calls_per_actor,
    )  # fmt: skip


def in_process(args: argparse.Namespace, w: Workload, sampler) -> int:
    """One ClipInferencer called directly on ready batches: the stage without Ray."""
    import torch

    from pipeline.models.inference import PASS_THROUGH
    from pipeline.ray_env import size_inference
    from pipeline.video.decode import UNIT_META

    cfg = infer_config(args, w)
    # the job's device and torch threads for this machine's CPUs and GPUs
    res = size_inference(cfg, os.cpu_count() or 1, torch.cuda.device_count())
    device, threads = res.device, res.threads
    t0 = time.perf_counter()
    inferencer = ClipInferencer(w.model_spec(), device, threads, "bench", precision=cfg.precision)
    # one ready batch, reused (as rows read zero-copy from the object store would be)
    full = make_rows({"id": np.arange(w.batch_size)}, w.clip_frames, w.image_size,
                     (*UNIT_META, *PASS_THROUGH))  # fmt: skip
    done, marks = 0, []
    while done < args.clips:
        n = min(w.batch_size, args.clips - done)
        inferencer(full if n == w.batch_size else {k: v[:n] for k, v in full.items()})
        marks.append((time.monotonic(), 0, n * w.clip_frames))
        done += n
    seconds = time.perf_counter() - t0
    emit(sampler, contender="model_inproc", frames=done * w.clip_frames, clips=done,
         seconds=round(seconds, 3), device=device, threads=threads,
         steady_fps=steady_rate(marks))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
