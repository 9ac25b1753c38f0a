"""What the contenders share: the model and its settings, the clip plan, one JSON line out.

Every contender is a fresh process (`python -m benchmarks.contenders.<name> ...`) that prints one
JSON line: `frames` (distinct sampled frames, the unit of every frames/s figure), `seconds` (its
work time, after interpreter and Ray start-up), `peak_rss_mb` (its own process tree, sampled).
The harness adds the process's wall time and its own sample of the tree's memory.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass
from multiprocessing import get_context

import numpy as np

from benchmarks.procs import TreeSampler

T_PROCESS = time.perf_counter()  # as close to interpreter start as an import gets


@dataclass(frozen=True)
class Workload:
    """The sampling and model every contender uses (the job's flags of the same names)."""

    encoder: str = "resnet18"
    temporal: str = "mean"
    image_size: int = 112
    fps: float = 2.0
    clip_frames: int = 16
    batch_size: int = 8
    seed: int = 0

    def job_flags(self) -> list[str]:
        return [
            "--encoder", self.encoder, "--temporal", self.temporal,
            "--image-size", str(self.image_size), "--fps", f"{self.fps:g}",
            "--clip-frames", str(self.clip_frames), "--batch-size", str(self.batch_size),
            "--seed", str(self.seed),
        ]  # fmt: skip

    @classmethod
    def add_flags(cls, p: argparse.ArgumentParser) -> None:
        d = cls()
        p.add_argument("--encoder", default=d.encoder)
        p.add_argument("--temporal", default=d.temporal)
        p.add_argument("--image-size", type=int, default=d.image_size)
        p.add_argument("--fps", type=float, default=d.fps)
        p.add_argument("--clip-frames", type=int, default=d.clip_frames)
        p.add_argument("--batch-size", type=int, default=d.batch_size)
        p.add_argument("--seed", type=int, default=d.seed)

    @classmethod
    def from_args(cls, a: argparse.Namespace) -> Workload:
        return cls(a.encoder, a.temporal, a.image_size, a.fps, a.clip_frames, a.batch_size, a.seed)

    def sampling(self):
        from pipeline.config import SamplingConfig

        return SamplingConfig(
            fps=self.fps, clip_frames=self.clip_frames, image_size=self.image_size
        )

    def model_spec(self):
        """The job's own ModelSpec for these flags (same seeded weights, labels, version)."""
        from pipeline.config import IndexConfig
        from pipeline.models import ModelConfig
        from pipeline.models.source import resolve_model

        cfg = IndexConfig(
            input_uri="unused",
            output_uri="unused",
            sampling=self.sampling(),
            model=ModelConfig(encoder=self.encoder, temporal=self.temporal),
            seed=self.seed,
        )
        spec, _ = resolve_model(cfg)
        return spec


class Forward:
    """The inference the job does, written plainly: uint8 clips -> embeddings, top-k scores.

    On a GPU, as a careful hand-written loop would: a reused pinned staging buffer, a
    non-blocking uint8 copy, normalisation on the GPU, autocast to the job's dtype for
    `precision`, and cuDNN autotuning; `cast=True` casts the weights instead of autocasting
    (the headroom a pure low-precision model would have)."""

    def __init__(
        self, spec, threads: int, device: str = "cpu", precision: str = "auto", cast: bool = False
    ) -> None:
        import torch

        from pipeline.models.inference import compute_dtype
        from pipeline.models.source import load_model

        torch.set_num_threads(max(1, threads))
        self.torch = torch
        self.device = torch.device(device)
        self.dtype = compute_dtype(self.device, precision)
        self.cast = cast and self.dtype is not None
        # channels_last, as the job's actors: a memory layout, not a pipeline trick; every
        # contender runs the model the same way, so the ratios compare the pipelines
        model = load_model(spec).eval().to(self.device, memory_format=torch.channels_last)
        self.model = model.to(self.dtype) if self.cast else model
        self.mean = torch.tensor(spec.mean, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(spec.std, device=self.device).view(1, 3, 1, 1)
        self.labels = np.asarray(spec.labels, dtype=object)
        self.staging = None  # pinned host buffer, reused while the batch shape holds
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True

    def to_device(self, frames: np.ndarray):
        """uint8 host frames -> uint8 tensor on the device (through pinned memory on a GPU)."""
        torch = self.torch
        x = torch.from_numpy(np.ascontiguousarray(frames))
        if self.device.type != "cuda":
            return x
        if self.staging is None or self.staging.shape != x.shape:
            self.staging = torch.empty(x.shape, dtype=torch.uint8, pin_memory=True)
        self.staging.copy_(x)
        return self.staging.to(self.device, non_blocking=True)

    def __call__(self, frames, frame_ids=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(B, T, H, W, 3) uint8 (host array, or a tensor already on the device) ->
        embeddings (B, E), top-5 indices and scores (B, 5). With `frame_ids` ((B, T), equal
        for equal frames) the CNN runs once per distinct frame, as the job's CPU actors do."""
        torch = self.torch
        x = frames if isinstance(frames, torch.Tensor) else self.to_device(frames)
        b, t = x.shape[:2]
        x = x.flatten(0, 1)
        spread = None
        if frame_ids is not None:
            _, first, spread = np.unique(frame_ids, return_index=True, return_inverse=True)
            x = x[torch.from_numpy(first)]
        x = x.permute(0, 3, 1, 2).float().div_(255).sub_(self.mean).div_(self.std)
        x = x.contiguous(memory_format=torch.channels_last)
        if self.cast:
            x = x.to(self.dtype)
        autocast = self.dtype is not None and not self.cast
        with (
            torch.inference_mode(),
            torch.autocast(self.device.type, dtype=self.dtype or torch.float32, enabled=autocast),
        ):
            feats = self.model.encode_images(x)
            if spread is not None:
                feats = feats[torch.from_numpy(spread.reshape(-1))]
            emb, logits = self.model.forward_features(feats.reshape(b, t, -1))
            probs = torch.softmax(logits.float(), dim=1)
            top = torch.topk(probs, k=min(5, probs.shape[1]), dim=1)
        return emb.float().cpu().numpy(), top.indices.cpu().numpy(), top.values.cpu().numpy()


def steady_rate(marks: list[tuple[float, int, int]]) -> float | None:
    """Frames/s once every worker is past its first batch (CUDA's, cuDNN's and oneDNN's
    warm-up): `marks` are (time.monotonic() when a batch finished, worker id, its frames).
    The monotonic clock is one per machine, so workers in other processes compare."""
    firsts: dict[int, float] = {}
    for t, worker, _ in sorted(marks):
        firsts.setdefault(worker, t)
    if not firsts:
        return None
    start = max(firsts.values())
    after = [(t, frames) for t, _, frames in marks if t > start]
    if not after:
        return None
    return sum(f for _, f in after) / (max(t for t, _ in after) - start)


def sampled_indices(num_frames: int, native_fps: float, target_fps: float) -> list[int]:
    """The frames the job samples (pipeline.video.sampling.sampled_frame_indices, restated here so
    that the decode-only loop does not import pipeline.config, which imports torch)."""
    step = max(native_fps / target_fps, 1.0)
    count = int(np.floor((num_frames - 1) / step + 1e-9)) + 1
    return np.floor(np.arange(count) * step + 1e-9).astype(np.int64).tolist()


def decode_frames(path: str, fps: float, size: int) -> tuple[dict, list[int], np.ndarray]:
    """One decord reader per video for the header; the job's sampled frames read with the
    job's reader (`pipeline.video.frames`: B-frames nobody refers to are skipped), else with
    decord's get_batch (it seeks to a later GOP's keyframe, else decodes forward); resized
    (centre square, PIL bilinear) as the job does. The union of the job's clips' frames is
    exactly the sampled frames (the last clip pads by repeating)."""
    import decord

    from pipeline.video.frames import NotFastReadable, read_sampled

    reader = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1)
    num_frames, native_fps = len(reader), float(reader.get_avg_fps())
    wanted = sampled_indices(num_frames, native_fps, fps)
    try:
        frames = read_sampled(path, wanted, num_frames, lambda f: resize(f[None], size)[0]).frames
    except NotFastReadable:
        frames = resize(reader.get_batch(wanted).asnumpy(), size)
    info = {"num_frames": num_frames, "fps": native_fps, "duration_s": num_frames / native_fps}
    return info, wanted, frames


def resize(frames: np.ndarray, size: int) -> np.ndarray:
    """(N, H, W, 3) -> (N, size, size, 3): centre square, PIL bilinear (the job's resize)."""
    from PIL import Image

    h, w = frames.shape[1:3]
    side = min(h, w)
    box = ((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side)
    out = np.empty((len(frames), size, size, 3), dtype=np.uint8)
    for i, f in enumerate(frames):
        out[i] = np.asarray(Image.fromarray(f).resize((size, size), Image.BILINEAR, box=box))
    return out


def self_sampler() -> TreeSampler:
    """RSS of this contender's own process tree, once a second (the harness samples it too)."""
    return TreeSampler(os.getpid(), interval_s=1.0, pss_every=0).start()


def emit(sampler: TreeSampler | None, **fields) -> None:
    """Print the contender's one JSON line."""
    if sampler is not None:
        sampler.stop()
        fields |= sampler.result()
    fields.setdefault("process_s", round(time.perf_counter() - T_PROCESS, 2))
    print(json.dumps(fields), flush=True)


_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0}


def op_remote_wall(stats: str, operator: str) -> dict | None:
    """From a Ray Data `ds.stats()` text: the operator's tasks and their remote wall time
    (min/max/mean/total, seconds). `operator` is a substring of its name, e.g. "DecodeUnit"."""
    import re

    lines = stats.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("Operator ") and operator in line:
            tasks = re.search(r": (\d+) tasks executed", line)
            for follow in lines[i + 1 : i + 12]:
                if "Remote wall time" in follow:
                    vals = re.findall(r"([\d.]+)(us|ms|min|s) (min|max|mean|total)", follow)
                    out = {k: float(v) * _UNITS[u] for v, u, k in vals}
                    out["tasks"] = int(tasks.group(1)) if tasks else None
                    return out
    return None


def video_paths(corpus_dir: str) -> list[str]:
    return sorted(os.path.join(corpus_dir, n) for n in os.listdir(corpus_dir) if n.endswith(".mp4"))


def start_ray():
    """A private local Ray with every core, like the job's ensure_ray() on a laptop."""
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(address="local", include_dashboard=False)
    return ray


def run_processes(target, worker_args: list[tuple], work: list | None = None) -> list:
    """One spawned process per `worker_args` entry (never forked: torch may be loaded here),
    each called as `target(*args, [work queue,] results queue)` and putting one result on the
    results queue; returns the results once every process has ended. `work`, when given, is
    shared through a queue, one None per process after it to say that it is empty."""
    ctx = get_context("spawn")
    results = ctx.Queue()
    queue = None
    if work is not None:
        queue = ctx.Queue()
        for item in [*work, *[None] * len(worker_args)]:
            queue.put(item)
    shared = (queue,) if queue is not None else ()
    procs = [ctx.Process(target=target, args=(*args, *shared, results)) for args in worker_args]
    for proc in procs:
        proc.start()
    done = [results.get() for _ in procs]
    for proc in procs:
        proc.join()
    if any(proc.exitcode != 0 for proc in procs):
        raise RuntimeError("a worker process failed")
    return done
