"""Frame encoders' throughput on this machine: the CLIP image tower (ViT-B/32, the size of
OpenAI's clip-vit-base-patch32) beside ResNet-18, at 224 px, as the inference actors run them
(the job's own encoder classes, eval, no grad; torch threads as a CPU actor's).

Weights are random (nothing is downloaded): speed does not depend on their values.

    python -m benchmarks.encoders [--image-size 224] [--batch 16] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import time


def frames_per_s(encoder, image_size: int, batch: int, seconds: float) -> float:
    """Frames per second of `encoder` on random frames, after one warm-up batch."""
    import torch

    x = torch.randn(batch, 3, image_size, image_size)
    with torch.inference_mode():
        encoder(x)
        frames, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            encoder(x)
            frames += batch
    return frames / (time.perf_counter() - start)


def measure(image_size: int = 224, batch: int = 16, threads: int = 2, seconds: float = 10.0):
    import torch
    from transformers import CLIPConfig, CLIPModel

    from pipeline.models.clip import ClipImageEncoder
    from pipeline.models.encoders import TorchvisionEncoder

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    resnet = TorchvisionEncoder("resnet18", 512, None, load_weights=False).eval()
    clip = ClipImageEncoder(CLIPModel(CLIPConfig())).eval()  # the defaults: ViT-B/32, 224 px
    result = {
        "image_size": image_size,
        "batch": batch,
        "torch_threads": threads,
        "resnet18_frames_per_s": round(frames_per_s(resnet, image_size, batch, seconds), 1),
        "clip_vit_b32_frames_per_s": round(frames_per_s(clip, image_size, batch, seconds), 1),
    }
    result["clip_over_resnet18"] = round(
        result["clip_vit_b32_frames_per_s"] / result["resnet18_frames_per_s"], 2
    )
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seconds", type=float, default=10.0)
    a = p.parse_args()
    print(json.dumps(measure(a.image_size, a.batch, a.threads, a.seconds), indent=1))


if __name__ == "__main__":
    main()
