"""Contender "pool": the same work written by hand, no Ray; the practical limit on one machine.

One process per core (torch with one thread each) pulls video paths from a queue, decodes the
job's sampled frames as the job does (`common.decode_frames`: the job's frame reader, decord
where it declines), resizes them like the job (centre square, PIL bilinear), runs the job's
model in batches of `--batch-size` clips under `inference_mode`, the CNN once per distinct
frame (as the job's CPU actors), and writes its own Parquet files of clips and videos (zstd),
as Ray Data's write tasks would. Nothing crosses a process boundary but paths and counts.

`python -m benchmarks.contenders.pool --input DIR --output DIR [--processes N] [workload flags]`
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.contenders.common import (
    Forward,
    Workload,
    decode_frames,
    emit,
    run_processes,
    self_sampler,
    video_paths,
)


def _fixed_size(values: np.ndarray):
    import pyarrow as pa

    flat = pa.array(np.ascontiguousarray(values, dtype=np.float32).reshape(-1))
    return pa.FixedSizeListArray.from_arrays(flat, values.shape[1])


def worker(wid: int, spec, workload: Workload, out_dir: str, queue, results) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.video.sampling import plan_clips

    sampling = workload.sampling()
    forward = Forward(spec, threads=1)
    clip_meta: list[tuple] = []  # (uri, clip_index, start_s, end_s, frame_indices)
    pending: list[np.ndarray] = []  # clip frames (T, S, S, 3) waiting for a batch
    pending_ids: list[np.ndarray] = []  # their (T,) frame ids: equal for equal frames
    embeddings, top_idx, top_val = [], [], []
    videos: dict[str, dict] = {}
    frames_done = 0

    def run_batch(n: int) -> None:
        batch = np.stack(pending[:n])
        ids = np.stack(pending_ids[:n])
        del pending[:n], pending_ids[:n]
        emb, idx, val = forward(batch, ids)
        embeddings.append(emb)
        top_idx.append(idx)
        top_val.append(val)

    while (path := queue.get()) is not None:
        info, wanted, frames = decode_frames(path, sampling.fps, sampling.image_size)
        clips = plan_clips(info["num_frames"], info["fps"], sampling)
        videos[path] = info | {"num_clips": len(clips)}
        position = {f: i for i, f in enumerate(wanted)}
        for c in clips:
            pending.append(frames[[position[f] for f in c.frame_indices]])
            pending_ids.append(np.asarray(c.frame_indices, np.int64) + (len(videos) << 32))
            clip_meta.append((path, c.clip_index, c.start_s, c.end_s, c.frame_indices))
        frames_done += len(wanted)
        while len(pending) >= workload.batch_size:
            run_batch(workload.batch_size)
    if pending:
        run_batch(len(pending))

    if clip_meta:
        emb = np.concatenate(embeddings)
        idx, val = np.concatenate(top_idx), np.concatenate(top_val)
        labels = forward.labels
        uris = [m[0] for m in clip_meta]
        clips = pa.table(
            {
                "video_uri": uris,
                "clip_index": pa.array([m[1] for m in clip_meta], pa.int32()),
                "start_s": [m[2] for m in clip_meta],
                "end_s": [m[3] for m in clip_meta],
                "frame_indices": pa.array([list(m[4]) for m in clip_meta], pa.list_(pa.int32())),
                "embedding": _fixed_size(emb),
                "label": labels[idx[:, 0]].tolist(),
                "score": pa.array(val[:, 0], pa.float32()),
                "topk_labels": [list(labels[i]) for i in idx],
                "topk_scores": pa.array(val.tolist(), pa.list_(pa.float32())),
            }
        )
        pq.write_table(clips, f"{out_dir}/clips/part-{wid}.parquet", compression="zstd")
        # videos: mean clip embedding, label of the best clip (per-video work, like the job's)
        order = {u: [] for u in videos}
        for i, u in enumerate(uris):
            order[u].append(i)
        rows = list(order.items())
        vid_emb = np.stack([emb[ix].mean(axis=0) for _, ix in rows])
        best = [ix[int(np.argmax(val[ix, 0]))] for _, ix in rows]
        table = pa.table(
            {
                "video_uri": [u for u, _ in rows],
                "num_frames": [videos[u]["num_frames"] for u, _ in rows],
                "fps": [videos[u]["fps"] for u, _ in rows],
                "duration_s": [videos[u]["duration_s"] for u, _ in rows],
                "num_clips": [videos[u]["num_clips"] for u, _ in rows],
                "embedding": _fixed_size(vid_emb),
                "label": labels[idx[best, 0]].tolist(),
                "score": pa.array(val[best, 0], pa.float32()),
            }
        )
        pq.write_table(table, f"{out_dir}/videos/part-{wid}.parquet", compression="zstd")
    results.put((wid, frames_done, len(clip_meta)))


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--input", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    Workload.add_flags(p)
    args = p.parse_args(argv)
    workload = Workload.from_args(args)
    sampler = self_sampler()
    t0 = time.perf_counter()
    spec = workload.model_spec()
    out = Path(args.output)
    for table in ("clips", "videos"):
        (out / table).mkdir(parents=True, exist_ok=True)
    paths = video_paths(args.input)
    worker_args = [(i, spec, workload, str(out)) for i in range(args.processes)]
    done = run_processes(worker, worker_args, work=paths)
    seconds = time.perf_counter() - t0
    emit(
        sampler,
        contender="pool",
        frames=sum(d[1] for d in done),
        clips=sum(d[2] for d in done),
        seconds=round(seconds, 3),
        processes=args.processes,
        videos=len(paths),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
