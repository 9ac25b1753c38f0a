"""Odd and broken video fixture files for tests, built on ``pipeline.samples``."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from pipeline.samples import VideoSpec, encode_video, render_frames, write_video

# Keys of make_codec_zoo / make_broken_zoo, usable for test parametrization at collection time.
CODEC_ZOO_NAMES = (
    "h264",
    "vp9",
    "mjpeg",
    "mpeg4",
    "odd_size",
    "odd_dims",
    "single_frame",
    "portrait",
    "full_hd",
    "unicode_name",
)
BROKEN_ZOO_NAMES = ("empty", "random_bytes", "text", "truncated", "header_only", "audio_only")

UNICODE_NAME = "vidéo à tester 01.mp4"


def _specs() -> dict[str, tuple[VideoSpec, str]]:
    base = VideoSpec(seconds=2.0)
    return {
        "h264": (VideoSpec(seconds=2.0, codec="h264", seed=1), "h264.mp4"),
        "vp9": (VideoSpec(seconds=2.0, codec="vp9", shape="circle", seed=2), "vp9.webm"),
        "mjpeg": (VideoSpec(seconds=2.0, codec="mjpeg", direction="down", seed=3), "mjpeg.avi"),
        "mpeg4": (VideoSpec(seconds=2.0, codec="mpeg4", direction="left", seed=4), "mpeg4.mkv"),
        # Even but not a multiple of 16 (macroblock padding/cropping); h264 in mp4.
        "odd_size": (VideoSpec(width=162, height=98, seconds=2.0, seed=5), "odd_size_162x98.mp4"),
        # Truly odd dimensions: x264 refuses 4:2:0 at odd sizes, mpeg4 accepts them.
        "odd_dims": (
            VideoSpec(width=161, height=97, seconds=2.0, codec="mpeg4", seed=6),
            "odd_dims_161x97.mkv",
        ),
        "single_frame": (VideoSpec(seconds=0.1, seed=7), "single_frame.mp4"),
        "portrait": (
            VideoSpec(width=90, height=160, seconds=2.0, direction="up", seed=8),
            "portrait_90x160.mp4",
        ),
        "full_hd": (
            VideoSpec(width=1920, height=1080, fps=5, seconds=1.0, shape="circle", seed=9),
            "full_hd_1920x1080.mp4",
        ),
        "unicode_name": (base, UNICODE_NAME),
    }


def codec_zoo_specs() -> dict[str, VideoSpec]:
    """The spec behind each entry of ``make_codec_zoo``."""
    return {name: spec for name, (spec, _) in _specs().items()}


def make_codec_zoo(directory: str | Path) -> dict[str, Path]:
    """Write small valid videos in several codecs and odd shapes; return name -> path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    return {name: write_video(spec, directory / fn) for name, (spec, fn) in _specs().items()}


def _write_audio_only(path: Path, seconds: float = 1.0, rate: int = 44100) -> Path:
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("aac", rate=rate, layout="mono")
        n_per = stream.codec_context.frame_size or 1024
        total = int(seconds * rate)
        t = np.arange(total, dtype=np.float32) / rate
        wave = (0.3 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
        for i, start in enumerate(range(0, total, n_per)):
            chunk = np.zeros((1, n_per), dtype=np.float32)
            part = wave[start : start + n_per]
            chunk[0, : len(part)] = part
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
            frame.sample_rate = rate
            frame.pts = i * n_per
            frame.time_base = Fraction(1, rate)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def make_broken_zoo(directory: str | Path) -> dict[str, Path]:
    """Write files that are not decodable videos; return name -> path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    good = encode_video(
        render_frames(VideoSpec(seconds=2.0, seed=11)), directory / "_good_source.mp4", fps=10
    )
    data = good.read_bytes()
    good.unlink()
    out = {
        "empty": directory / "empty.mp4",
        "random_bytes": directory / "random_bytes.mp4",
        "text": directory / "text.mp4",
        "truncated": directory / "truncated_half.mp4",
        "header_only": directory / "header_only_2k.mp4",
        "audio_only": directory / "audio_only.mp4",
    }
    out["empty"].write_bytes(b"")
    out["random_bytes"].write_bytes(np.random.default_rng(0).bytes(16 * 1024))
    out["text"].write_text("this is not a video, just some text pretending to be one\n" * 20)
    # PyAV's mp4 muxer writes the moov index at the end, so the first half has no index.
    out["truncated"].write_bytes(data[: len(data) // 2])
    out["header_only"].write_bytes(data[:2048])
    _write_audio_only(out["audio_only"])
    return out


def pyav_frame_count(path: str | Path) -> int:
    """Decode every video frame with PyAV and count them (golden reference)."""
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def pyav_frames(path: str | Path) -> np.ndarray:
    """Decode every video frame with PyAV to an (N, H, W, 3) uint8 RGB array."""
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
