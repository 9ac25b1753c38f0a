"""Contender "naive": the pipeline a Ray Data user writes first, with the same model.

`ray.data.read_videos(paths, fps=..., resize=(S, S), include_paths=True)` (decord inside: every
frame decoded, scaled in the decoder, one row per kept frame) -> `map_batches(Model)` on an actor
pool, which cuts each video's consecutive frames into clips of `--clip-frames` (the last one
padded, as the job does) and runs the job's model on them -> `write_parquet`.

`read_videos` takes a whole-number `fps` only; for sparser sampling (e.g. 0.25 fps) it reads at
1 fps and a filter keeps every k-th frame, k = native fps / fps, which is what a user would do.
`resize` squashes the frame to S x S (no centre crop): the same model input size and cost.

`python -m benchmarks.contenders.naive --input DIR --output DIR --native-fps 30 [flags]`
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from benchmarks.contenders.common import Forward, Workload, emit, self_sampler, start_ray


class ClipModel:
    """Frames of consecutive rows -> clips per video -> the job's model."""

    def __init__(self, spec, clip_frames: int, batch_size: int) -> None:
        import os

        self.forward = Forward(spec, threads=int(os.environ.get("OMP_NUM_THREADS", "1")))
        self.clip_frames, self.batch_size = clip_frames, batch_size

    def __call__(self, batch: dict) -> dict:
        paths, frames, index = batch["path"], batch["frame"], batch["frame_index"]
        clips, owners, starts = [], [], []
        start = 0
        while start < len(paths):  # runs of the same video
            end = start
            while end < len(paths) and paths[end] == paths[start]:
                end += 1
            for s in range(start, end, self.clip_frames):
                chunk = list(range(s, min(s + self.clip_frames, end)))
                chunk += [chunk[-1]] * (self.clip_frames - len(chunk))
                clips.append(np.stack([frames[i] for i in chunk]))
                owners.append(paths[s])
                starts.append(int(index[s]))
            start = end
        emb, top_idx, top_val = [], [], []
        for b in range(0, len(clips), self.batch_size):
            e, i, v = self.forward(np.stack(clips[b : b + self.batch_size]))
            emb.append(e)
            top_idx.append(i)
            top_val.append(v)
        emb, idx, val = np.concatenate(emb), np.concatenate(top_idx), np.concatenate(top_val)
        return {
            "video_uri": np.asarray(owners),
            "first_frame": np.asarray(starts, dtype=np.int64),
            "embedding": emb,
            "label": self.forward.labels[idx[:, 0]].astype(str),
            "score": val[:, 0],
            # the batch's frame count on its first row only: the column sums to the frames read
            "frames_in": np.asarray([len(paths)] + [0] * (len(owners) - 1), dtype=np.int64),
        }


def pc_sum(column) -> int:
    import pyarrow.compute as pc

    return pc.sum(column).as_py() or 0


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--input", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--native-fps", type=float, required=True, help="the corpus's frame rate")
    p.add_argument("--concurrency", type=int, default=1, help="model actors")
    Workload.add_flags(p)
    args = p.parse_args(argv)
    w = Workload.from_args(args)
    sampler = self_sampler()
    ray = start_ray()
    t0 = time.perf_counter()
    spec = w.model_spec()
    read_fps = max(1, round(w.fps))
    keep_every = max(1, round(args.native_fps / w.fps)) if w.fps < 1 else 1

    ds = ray.data.read_videos(
        args.input, fps=read_fps, resize=(w.image_size, w.image_size), include_paths=True
    )
    if keep_every > 1:
        ds = ds.filter(lambda row: row["frame_index"] % keep_every == 0)
    ds = ds.map_batches(
        ClipModel,
        fn_constructor_kwargs={"spec": spec, "clip_frames": w.clip_frames,
                               "batch_size": w.batch_size},
        batch_size=w.clip_frames * w.batch_size,
        concurrency=args.concurrency,
        num_cpus=1,
    )  # fmt: skip
    ds.write_parquet(f"{args.output}/clips")
    seconds = time.perf_counter() - t0
    # counted from the files with pyarrow: no further Ray execution inside the wall time
    import pyarrow.parquet as pq

    written = pq.read_table(f"{args.output}/clips", columns=["frames_in"])
    clips, frames = written.num_rows, int(pc_sum(written["frames_in"]))
    emit(sampler, contender="naive", frames=frames, clips=clips, seconds=round(seconds, 3),
         keep_every=keep_every, read_fps=read_fps)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
