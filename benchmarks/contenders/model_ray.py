"""Contender "model_ray": the job's stage 3 alone: `ClipInferencer` actors fed synthetic clips.

Clip rows with every column the job's decode stage emits (frames: fixed random uint8) come from
a cheap producer task and go through the object store into the job's inference actors, sized by
the job's own `inference_resources` from `--cpus-per-actor` / `--max-actors`, with
`--batch-size` clips per call, exactly as `decode_and_infer` does.

`python -m benchmarks.contenders.model_ray --clips N [--cpus-per-actor C] [--max-actors A]`
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from benchmarks.contenders.common import Workload, emit, op_remote_wall, self_sampler, start_ray


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
        "frame_indices": np.tile(np.arange(clip_frames, dtype=np.int32), (n, 1)),
        "frames": np.broadcast_to(clip, (n, *clip.shape)).copy(),
        "size_bytes": np.full(n, 1_000_000),
        "fingerprint": np.asarray(["synthetic"] * n),
    }
    for name in columns:
        rows.setdefault(name, np.zeros(n, dtype=np.int64))
    return rows


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--clips", type=int, required=True)
    p.add_argument("--cpus-per-actor", type=float, default=1.0)
    p.add_argument("--max-actors", type=int)
    Workload.add_flags(p)
    args = p.parse_args(argv)
    w = Workload.from_args(args)
    sampler = self_sampler()
    ray = start_ray()
    from pipeline.config import InferConfig
    from pipeline.decode import UNIT_META
    from pipeline.infer import PASS_THROUGH, ClipInferencer
    from pipeline.ray_env import inference_resources

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
    res = inference_resources(
        InferConfig(batch_size=w.batch_size, cpus_per_actor=args.cpus_per_actor,
                    max_actors=args.max_actors)
    )  # fmt: skip
    ds = (
        clips.map_batches(
            ClipInferencer,
            fn_constructor_kwargs={"spec": spec, "device": res.device, "threads": res.threads,
                                   "run_id": "bench"},
            batch_size=w.batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(min_size=1, max_size=res.max_actors),
            num_cpus=res.num_cpus,
        )
        .materialize()
    )  # fmt: skip
    n = ds.count()
    seconds = time.perf_counter() - t0
    task = op_remote_wall(ds.stats(), "ClipInferencer") or {}
    emit(sampler, contender="model_ray", frames=n * w.clip_frames, clips=n,
         seconds=round(seconds, 3), actors=res.max_actors, threads=res.threads,
         per_item_s=task.get("mean"), infer_tasks=task)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
