"""Flags shared by the jobs (sampling and model), turned into typed configs."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from pipeline.config import ConfigError, SamplingConfig
from pipeline.models import ModelConfig, list_encoders, list_temporal_heads
from pipeline.models.registry import BUILTIN_ENCODERS, BUILTIN_TEMPORAL


def exit_process(code: int) -> None:
    """End a job's process: shut Ray down gracefully, then exit without the interpreter's
    finalization.

    Ray's shutdown stops the processes a local Ray started (and cleans up after them); what
    remains is tearing down torch's and Ray's C++ state, about 1.2 s here and of no use to
    a job whose results are committed and whose output is flushed."""
    if "ray" in sys.modules:  # a usage error exits before Ray is even imported
        from pipeline.ray_env import shutdown_ray

        shutdown_ray()
    logging.shutdown()  # flush and close every handler
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def configure_logging() -> None:
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def add_sampling_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fps", type=float, default=1.0, help="frames sampled per second of video")
    p.add_argument("--clip-frames", type=int, default=16, help="sampled frames per clip")
    p.add_argument(
        "--clip-stride",
        type=int,
        help="sampled frames between clip starts (default: --clip-frames)",
    )
    p.add_argument("--image-size", type=int, default=112, help="square model input, pixels")


def add_model_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--encoder",
        default="small_cnn",
        help=f"per-frame CNN: {', '.join(sorted(BUILTIN_ENCODERS))}",
    )
    p.add_argument(
        "--temporal", default="mean", help=f"temporal head: {', '.join(sorted(BUILTIN_TEMPORAL))}"
    )
    p.add_argument("--num-classes", type=int, default=8, help="classes of an untrained model")
    p.add_argument("--hidden-dim", type=int, default=256, help="RNN / attention width")
    p.add_argument("--bidirectional", action="store_true", help="bidirectional LSTM/GRU")
    p.add_argument(
        "--weights",
        help="torchvision pretrained weights, e.g. DEFAULT or "
        "IMAGENET1K_V1 (must be in the torch cache; nothing is downloaded)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of an untrained model")


def sampling_config(args: argparse.Namespace) -> SamplingConfig:
    return SamplingConfig(
        fps=args.fps,
        clip_frames=args.clip_frames,
        clip_stride=args.clip_stride,
        image_size=args.image_size,
    )


def model_config(args: argparse.Namespace) -> ModelConfig:
    """The model flags as a config. Built-in names are checked without importing torch (1.9 s,
    which would delay everything after the flags); other names consult the full registry."""
    if args.encoder not in BUILTIN_ENCODERS and args.encoder not in list_encoders():
        raise ConfigError(
            f"--encoder {args.encoder!r} is unknown; known: {', '.join(list_encoders())}"
        )
    if args.temporal not in BUILTIN_TEMPORAL and args.temporal not in list_temporal_heads():
        raise ConfigError(
            f"--temporal {args.temporal!r} is unknown; known: {', '.join(list_temporal_heads())}"
        )
    for flag, value in (("--num-classes", args.num_classes), ("--hidden-dim", args.hidden_dim)):
        if value < 1:
            raise ConfigError(f"{flag} must be >= 1 (got {value})")
    heads = ModelConfig.attention_heads  # not a flag: the default of every model built here
    if args.temporal == "attention" and args.hidden_dim % heads:
        raise ConfigError(
            f"--hidden-dim must be a multiple of {heads} (the attention heads) with --temporal "
            f"attention (got {args.hidden_dim})"
        )
    try:
        return ModelConfig(
            encoder=args.encoder,
            temporal=args.temporal,
            num_classes=args.num_classes,
            hidden_dim=args.hidden_dim,
            bidirectional=args.bidirectional,
            pretrained_weights=args.weights,
        )
    except ValueError as e:
        raise ConfigError(str(e)) from e
