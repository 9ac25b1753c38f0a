"""What the four jobs share at the command line: flags turned into typed configs, logging, and
how a job fails.

Tools fail with one line on stderr and an exit code, never a traceback: 0 success, 2 bad usage
or input, 1 an unexpected failure (REELAY_DEBUG=1 re-raises it with its traceback), 130
interrupted. Messages pass through `storage.redact`.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Callable

from pipeline.config import ConfigError, InputError, OutputError, SamplingConfig
from pipeline.models import ModelConfig, list_audio_encoders, list_encoders, list_temporal_heads


def configure_logging() -> None:
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("faiss").setLevel(logging.WARNING)  # its loader's CPU-feature probing


def add_sampling_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fps", type=float, default=1.0, help="frames sampled per second of video")
    p.add_argument("--clip-frames", type=int, default=16, help="sampled frames per clip")
    p.add_argument(
        "--clip-stride",
        type=int,
        help="sampled frames between clip starts (default: --clip-frames)",
    )
    p.add_argument("--image-size", type=int, default=112, help="square model input, pixels")
    p.add_argument(
        "--clips",
        default="windows",
        help="windows (fixed windows, default) or shots: windows of at most --clip-frames "
        "inside each shot, never across a hard cut",
    )
    p.add_argument(
        "--modalities",
        default="video",
        help="what the model takes: video (the frames; default), audio (the sound track, "
        "16 kHz mono) or video,audio (both, fused before the classifier)",
    )


def add_model_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--encoder",
        default="small_cnn",
        help=f"per-frame CNN: {', '.join(list_encoders())}",
    )
    p.add_argument(
        "--temporal", default="mean", help=f"temporal head: {', '.join(list_temporal_heads())}"
    )
    p.add_argument("--num-classes", type=int, default=8, help="classes of an untrained model")
    p.add_argument("--hidden-dim", type=int, default=256, help="RNN / attention width")
    p.add_argument("--bidirectional", action="store_true", help="bidirectional LSTM/GRU")
    p.add_argument(
        "--weights",
        help="pretrained encoder weights: a torchvision weights name (DEFAULT, IMAGENET1K_V1; "
        "downloaded into the torch cache when missing), or a file in torchvision's format for "
        "the encoder: a local path, s3:// or http(s):// URL. Fetched once, by the driver",
    )
    p.add_argument(
        "--offline",
        action="store_true",
        help="never download --weights (also REELAY_OFFLINE=1 or HF_HUB_OFFLINE=1): a name "
        "must be in the torch cache",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of an untrained model")
    p.add_argument(
        "--audio-encoder",
        default="audio_cnn",
        help=f"the sound's encoder, with --modalities audio or video,audio: "
        f"{', '.join(list_audio_encoders())} (cnn14: PANNs' network, for --audio-weights)",
    )
    p.add_argument(
        "--fusion",
        default="concat",
        help="how --modalities video,audio joins picture and sound: concat (the two "
        "embeddings side by side; default) or attention (one transformer over the frames' "
        "and the sound's tokens)",
    )
    p.add_argument(
        "--audio-weights",
        help="pretrained audio encoder weights: a local path, s3:// or http(s):// URL (for "
        "cnn14, PANNs' Cnn14_16k_mAP=0.438.pth; for audio_cnn, a state dict of it)",
    )


def sampling_config(args: argparse.Namespace) -> SamplingConfig:
    return SamplingConfig(
        fps=args.fps,
        clip_frames=args.clip_frames,
        clip_stride=args.clip_stride,
        image_size=args.image_size,
        clips=args.clips,
        modalities=args.modalities,
    )


def model_config(args: argparse.Namespace) -> ModelConfig:
    """The model flags as a config (names checked by the registry, without torch)."""
    if args.encoder not in list_encoders():
        raise ConfigError(
            f"--encoder {args.encoder!r} is unknown; known: {', '.join(list_encoders())}"
        )
    if args.temporal not in list_temporal_heads():
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
            modalities=args.modalities,
            audio_encoder=args.audio_encoder,
            fusion=args.fusion,
            audio_weights=args.audio_weights,
        )
    except ValueError as e:
        flag = str(e).startswith(("modalities", "fusion"))  # these name their flag
        raise ConfigError(f"--{e}" if flag else str(e)) from e


EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
# what the index and training jobs report as bad usage or input (exit 2)
JOB_USAGE_ERRORS = (ConfigError, InputError, OutputError)


class UsageError(Exception):
    """Bad flags or input: the message says what to do; exit 2."""


class OneLineParser(argparse.ArgumentParser):
    """argparse that raises UsageError instead of printing usage and exiting."""

    def error(self, message: str):
        raise UsageError(f"{message} (see --help)")


def _redacted(message: str) -> str:
    return _redacted_lines(" ".join(message.split()))


def _redacted_lines(text: str) -> str:
    try:
        from pipeline.storage import redact

        return redact(text)
    except Exception:  # noqa: BLE001 (the import itself may be what failed)
        return "(message withheld: it could not be checked for credentials)"


def run_job(prog: str, body: Callable[[list[str] | None], int], argv: list[str] | None) -> int:
    """The index and training jobs: logging to stderr, then `body(argv)` under `run_tool`. An
    unexpected failure's traceback goes to their log too: a cluster job is read afterwards."""
    configure_logging()
    return run_tool(prog, lambda: body(argv), JOB_USAGE_ERRORS, log_traceback=True)


def run_tool(
    prog: str,
    body: Callable[[], int],
    usage_errors: tuple[type, ...] = (),
    log_traceback: bool = False,
) -> int:
    """Run a tool's body; `usage_errors` (and UsageError) become exit 2 with their message.
    `log_traceback`: an unexpected failure's traceback is logged (credentials redacted) before
    its one line."""

    def fail(message: str, code: int) -> int:
        print(f"{prog}: error: {message}", file=sys.stderr, flush=True)
        return code

    try:
        return body()
    except (UsageError, *usage_errors) as e:
        return fail(_redacted(str(e)), EXIT_USAGE)
    except BrokenPipeError:  # `| head`: the reader left; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except KeyboardInterrupt:
        return fail("interrupted", EXIT_INTERRUPTED)
    except Exception as e:  # never a traceback for the user; REELAY_DEBUG=1 shows it
        if os.environ.get("REELAY_DEBUG"):
            raise
        if log_traceback:
            logging.getLogger("reelay").error(
                "%s", _redacted_lines("".join(traceback.format_exception(e)))
            )
        return fail(f"unexpected {type(e).__name__}: {_redacted(str(e))}", EXIT_FAILURE)
