"""The GPU benchmark: `python -m benchmarks.gpu [--out DIR] [--quick]` on a machine with a GPU.

The job's inference stage on one GPU (ResNet-50 at 224 px, bf16 autocast, channels_last, uint8
batches staged through pinned memory) against a standalone `inference_mode` loop on the same GPU
doing the same work, each contender a fresh process (benchmarks/contenders/). A rate is the steady
one: frames per second once every worker has finished its first batch (CUDA's start, the model's
build and cuDNN's autotuning stay out), from the time each batch finished.

Contenders (batch = 8 clips x 16 frames = 128 images unless named b32):
  loop_resident       the loop on one batch kept on the GPU: the model's own rate
  loop_resident_cast  the same with the weights cast to bf16 instead of autocast (headroom)
  loop                the standalone loop, each batch copied host -> pinned -> GPU
  inproc              the job's ClipInferencer called in-process (no Ray)
  ray                 the job's ClipInferencer actors under Ray Data, one per GPU
  ray_2_per_gpu       the same with --gpus-per-actor 0.5: two actors share the GPU
  loop_b32, ray_b32   loop and ray at --batch-size 32 (512 images per forward pass); ray's
                      actors take two Ray Data calls at once (the job's GPU default)
  ray_b32_1_call      ray_b32 with --calls-per-actor 1: batching waits for the model
  ray_b32_2_per_gpu   ray_b32 with two actors per GPU
Then the whole job (`jobs/index.py --device auto`) on a generated corpus: it must pick the GPU.

Results: DIR/gpu.json and a table on stdout (copied into docs/benchmarks.md by hand: GPU machines
are lent, not owned).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.contenders.common import Workload
from benchmarks.corpora import CorpusSpec, ensure_corpus
from benchmarks.procs import REPO, run_contender

WORKLOAD = Workload(encoder="resnet50", image_size=224, batch_size=8)
LOOP = "benchmarks.contenders.model_loop"
RAY = "benchmarks.contenders.model_ray"
CONTENDERS: dict[str, tuple[str, list[str], Workload]] = {  # in the order they run
    "loop_resident": (LOOP, ["--device", "cuda", "--resident"], WORKLOAD),
    "loop": (LOOP, ["--device", "cuda"], WORKLOAD),
    "inproc": (RAY, ["--device", "cuda", "--in-process"], WORKLOAD),
    "ray": (RAY, ["--device", "cuda"], WORKLOAD),
    "ray_2_per_gpu": (RAY, ["--device", "cuda", "--gpus-per-actor", "0.5"], WORKLOAD),
    "loop_b32": (LOOP, ["--device", "cuda"], replace(WORKLOAD, batch_size=32)),
    "ray_b32": (RAY, ["--device", "cuda"], replace(WORKLOAD, batch_size=32)),
    "ray_b32_1_call": (
        RAY,
        ["--device", "cuda", "--calls-per-actor", "1"],
        replace(WORKLOAD, batch_size=32),
    ),
    "ray_b32_2_per_gpu": (
        RAY,
        ["--device", "cuda", "--gpus-per-actor", "0.5"],
        replace(WORKLOAD, batch_size=32),
    ),
    "loop_resident_cast": (LOOP, ["--device", "cuda", "--resident", "--cast"], WORKLOAD),
}
RATIOS = {  # name: (numerator, denominator)
    "ray / loop": ("ray", "loop"),
    "ray_2_per_gpu / loop": ("ray_2_per_gpu", "loop"),
    "inproc / loop": ("inproc", "loop"),
    "loop / loop_resident": ("loop", "loop_resident"),
    "loop_resident_cast / loop_resident": ("loop_resident_cast", "loop_resident"),
    "ray_b32 / loop_b32": ("ray_b32", "loop_b32"),
    "ray_b32_1_call / loop_b32": ("ray_b32_1_call", "loop_b32"),
    "ray_b32_2_per_gpu / loop_b32": ("ray_b32_2_per_gpu", "loop_b32"),
}


def log(msg: str) -> None:
    print(f"[gpu {datetime.now():%H:%M:%S}] {msg}", flush=True)


def run(out: Path, name: str, clips: int) -> dict:
    module, args, w = CONTENDERS[name]
    rec = run_contender(
        module,
        ["--clips", str(clips), *args, *w.job_flags()],
        timeout_s=600,
        log_path=out / "logs" / f"{name}-{clips}.log",
    )
    log(f"  {name} x {clips} clips: {rec['status']}, {rec.get('seconds')} s work")
    return rec


def gpu_info() -> dict:
    import torch

    props = torch.cuda.get_device_properties(0)
    return {
        "gpu": props.name,
        "gpu_memory_gib": round(props.total_memory / 2**30, 1),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--out", type=Path, default=REPO / "bench_out" / "gpu")
    p.add_argument("--quick", action="store_true", help="fewer clips and videos")
    p.add_argument("--only", help="comma-separated contenders (default: all)")
    p.add_argument("--videos", type=int, help="videos in the end-to-end corpus (0: skip it)")
    a = p.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("benchmarks.gpu needs a CUDA GPU (make bench measures the CPU path)", file=sys.stderr)
        return 2
    a.out.mkdir(parents=True, exist_ok=True)
    clips = 320 if a.quick else 1280
    names = a.only.split(",") if a.only else list(CONTENDERS)
    videos = a.videos if a.videos is not None else (24 if a.quick else 120)
    result: dict = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
                    "machine": gpu_info(), "clips": clips,
                    "workload": WORKLOAD.job_flags(), "contenders": {}}  # fmt: skip
    log(f"{result['machine']}")
    for i, name in enumerate(names):
        if i == 4 and videos:  # the end-to-end run before the variants
            result["end_to_end"] = end_to_end(a.out, videos)
            (a.out / "gpu.json").write_text(json.dumps(result, indent=1))
        rec = run(a.out, name, clips)
        result["contenders"][name] = rec
        log(f"{name}: {rec.get('steady_fps') and round(rec['steady_fps'])} images/s")
        rates = {k: v.get("steady_fps") for k, v in result["contenders"].items()}
        result["ratios"] = {
            label: round(rates[n] / rates[d], 3)
            for label, (n, d) in RATIOS.items()
            if rates.get(n) and rates.get(d)
        }
        (a.out / "gpu.json").write_text(json.dumps(result, indent=1))  # what is done so far
    if videos and "end_to_end" not in result:
        result["end_to_end"] = end_to_end(a.out, videos)
        (a.out / "gpu.json").write_text(json.dumps(result, indent=1))
    print_table(result)
    return 0


def end_to_end(out: Path, videos: int) -> dict:
    """The whole job on `videos` 10 s 640x360 videos with --device auto and the job's own batch
    size for the device it picks (the workload's, less --batch-size)."""
    corpus = ensure_corpus(CorpusSpec("gpu", count=videos, seconds=10), out / "corpora", log=log)
    flags = WORKLOAD.job_flags()
    i = flags.index("--batch-size")
    del flags[i : i + 2]
    rec = run_contender(
        "benchmarks.contenders.ours",
        ["--input", str(corpus.root), "--output", str(out / "e2e"), *flags, "--device", "auto"],
        timeout_s=600,
        log_path=out / "logs" / "e2e.log",
    )
    log(f"end to end: {rec['status']}, {rec.get('frames')} frames, {rec.get('wall_s')} s wall, "
        f"inference {rec.get('inference')}")  # fmt: skip
    return rec


def print_table(result: dict) -> None:
    print(f"\n{result['machine']['gpu']}, torch {result['machine']['torch']}, "
          f"{result['machine']['cpus']} CPUs; ResNet-50 at 224 px, bf16 autocast")  # fmt: skip
    print(f"{'contender':<22}{'images/s':>10}")
    for name, c in result["contenders"].items():
        print(f"{name:<22}{c.get('steady_fps') or float('nan'):>10.0f}")
    for label, value in result["ratios"].items():
        print(f"{label:<40}{value:>7.3f}")
    e2e = result.get("end_to_end")
    if e2e:
        print(f"end to end: {e2e.get('status')}, {e2e.get('frames')} frames in "
              f"{e2e.get('wall_s')} s wall ({e2e.get('seconds')} s work), "
              f"timings {e2e.get('timings_s')}, inference {e2e.get('inference')}")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
