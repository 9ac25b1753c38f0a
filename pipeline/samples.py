"""Small labeled sample videos (moving shapes) encoded with PyAV.

The classes "right"/"left" (and "down"/"up") are exact time reversals of each other for the
same seed, so they differ only in frame order: an order-blind mean of frames cannot separate
them, while a temporal model can.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

__all__ = [
    "CODECS",
    "DEFAULT_SPEC",
    "DIRECTIONS",
    "SHAPES",
    "VideoSpec",
    "encode_video",
    "extension_for",
    "main",
    "make_sample_corpus",
    "render_frames",
    "write_video",
]

SHAPES = ("square", "circle")
DIRECTIONS = ("right", "left", "down", "up")

# codec name -> (encoder, pixel format, default container extension, encoder options)
CODECS: dict[str, tuple[str, str, str, dict[str, str]]] = {
    "h264": ("libx264", "yuv420p", ".mp4", {"preset": "veryfast", "crf": "18"}),
    "vp9": (
        "libvpx-vp9",
        "yuv420p",
        ".webm",
        {"deadline": "realtime", "cpu-used": "8", "crf": "30", "b": "0", "lag-in-frames": "0"},
    ),
    "mjpeg": ("mjpeg", "yuvj420p", ".avi", {"flags": "+qscale", "global_quality": "354"}),
    "mpeg4": ("mpeg4", "yuv420p", ".mkv", {"flags": "+qscale", "global_quality": "354"}),
    # AV1 through SVT-AV1 (PyAV's wheels carry it; decord's FFmpeg cannot decode AV1)
    "av1": ("libsvtav1", "yuv420p", ".mkv", {"preset": "11", "crf": "35"}),
}
_CONTAINERS = {".mp4": "mp4", ".webm": "webm", ".avi": "avi", ".mkv": "matroska"}
_EVEN_DIMS = {"h264", "av1"}  # libx264 and SVT-AV1 refuse odd sizes with 4:2:0 chroma

_PALETTE: tuple[tuple[int, int, int], ...] = (
    (255, 64, 64),
    (64, 255, 64),
    (80, 120, 255),
    (255, 220, 40),
    (255, 64, 255),
    (40, 230, 230),
    (255, 255, 255),
    (255, 150, 40),
)


@dataclass(frozen=True)
class VideoSpec:
    """Parameters of one synthetic moving-shape video."""

    width: int = 160
    height: int = 96
    fps: int = 10
    seconds: float = 3.0
    codec: str = "h264"
    keyframe_interval: int | None = None
    shape: str = "square"
    direction: str = "right"
    color: tuple[int, int, int] = (255, 64, 64)
    seed: int = 0

    @property
    def num_frames(self) -> int:
        """Number of frames rendered (at least one)."""
        return max(1, round(self.fps * self.seconds))

    @property
    def extension(self) -> str:
        """Default container extension for this spec's codec."""
        return extension_for(self.codec)


DEFAULT_SPEC = VideoSpec()


def extension_for(codec: str) -> str:
    """Default container extension (with dot) for a codec name."""
    try:
        return CODECS[codec][2]
    except KeyError:
        raise ValueError(f"unknown codec {codec!r}; expected one of {sorted(CODECS)}") from None


def _validate(spec: VideoSpec) -> None:
    if spec.shape not in SHAPES:
        raise ValueError(f"unknown shape {spec.shape!r}; expected one of {SHAPES}")
    if spec.direction not in DIRECTIONS:
        raise ValueError(f"unknown direction {spec.direction!r}; expected one of {DIRECTIONS}")
    if spec.width < 8 or spec.height < 8:
        raise ValueError(f"frame size too small: {spec.width}x{spec.height}")
    if spec.fps <= 0 or spec.seconds <= 0:
        raise ValueError("fps and seconds must be positive")


def render_frames(spec: VideoSpec) -> np.ndarray:
    """Render a spec to a deterministic (N, H, W, 3) uint8 array."""
    _validate(spec)
    if spec.direction in ("left", "up"):
        forward = "right" if spec.direction == "left" else "down"
        return render_frames(replace(spec, direction=forward))[::-1].copy()

    h, w, n = spec.height, spec.width, spec.num_frames
    rng = np.random.default_rng(spec.seed)
    # Solid dark background with a mild static noise texture and a per-seed tint.
    base = rng.integers(16, 48, size=3)
    noise = rng.integers(-6, 7, size=(h, w, 1))
    background = np.clip(base[None, None, :] + noise, 0, 255).astype(np.uint8)

    size = max(4, min(h, w) // 3)
    margin = max(1, min(h, w) // 16)
    horizontal = spec.direction == "right"
    along, across = (w, h) if horizontal else (h, w)
    # Jitter the position across the motion axis so videos with different seeds differ.
    lo_across, hi_across = margin, max(margin, across - size - margin)
    offset = int(rng.integers(lo_across, hi_across + 1))
    start, stop = margin, max(margin, along - size - margin)
    positions = np.rint(np.linspace(start, stop, n)).astype(int) if n > 1 else np.array([start])

    yy, xx = np.mgrid[0:size, 0:size]
    if spec.shape == "circle":
        r = (size - 1) / 2
        mask = (yy - r) ** 2 + (xx - r) ** 2 <= (r + 0.25) ** 2
    else:
        mask = np.ones((size, size), dtype=bool)
    color = np.asarray(spec.color, dtype=np.uint8)

    frames = np.empty((n, h, w, 3), dtype=np.uint8)
    for i, pos in enumerate(positions):
        frame = frames[i]
        frame[...] = background
        y0, x0 = (offset, pos) if horizontal else (pos, offset)
        patch = frame[y0 : y0 + size, x0 : x0 + size]
        patch[mask[: patch.shape[0], : patch.shape[1]]] = color
    return frames


def _encode(
    frames: np.ndarray, path: Path, *, fps: int, codec: str, keyframe_interval: int | None
) -> None:
    with _scheduling_kept():
        _encode_frames(frames, path, fps=fps, codec=codec, keyframe_interval=keyframe_interval)


@contextlib.contextmanager
def _scheduling_kept():
    """SVT-AV1 moves the thread that opens it to real-time scheduling (SCHED_FIFO, priority 99)
    where it may (as root): put the caller's policy back, or every thread it starts after
    inherits a real-time priority."""
    if not hasattr(os, "sched_getscheduler"):
        yield
        return
    policy, param = os.sched_getscheduler(0), os.sched_getparam(0)
    try:
        yield
    finally:
        if (os.sched_getscheduler(0), os.sched_getparam(0)) != (policy, param):
            os.sched_setscheduler(0, policy, param)


def _encode_frames(
    frames: np.ndarray, path: Path, *, fps: int, codec: str, keyframe_interval: int | None
) -> None:
    encoder, pix_fmt, _, options = CODECS[codec]
    _, height, width, _ = frames.shape
    with av.open(str(path), mode="w", format=_CONTAINERS[path.suffix.lower()]) as container:
        stream = container.add_stream(encoder, rate=Fraction(fps), options=dict(options))
        stream.width = width
        stream.height = height
        stream.pix_fmt = pix_fmt
        stream.codec_context.time_base = Fraction(1, fps)
        if keyframe_interval is not None:
            stream.codec_context.gop_size = int(keyframe_interval)
        for i, array in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


_CHILD_CODE = """
import sys
import av  # noqa: F401  (load PyAV's own codec libraries before anything else)
import numpy as np
from pipeline.samples import encode_video
npy, out, fps, gop = sys.argv[1:5]
encode_video(np.load(npy), out, fps=int(fps), codec="vp9", keyframe_interval=int(gop) or None)
"""


def _encode_in_fresh_interpreter(
    frames: np.ndarray, path: Path, *, fps: int, keyframe_interval: int | None
) -> None:
    """Encode VP9 in a clean Python process, away from decord's global libvpx."""
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    with tempfile.TemporaryDirectory() as tmp:
        npy = Path(tmp) / "frames.npy"
        np.save(npy, frames)
        args = [str(npy), str(path), str(fps), str(keyframe_interval or 0)]
        proc = subprocess.run(
            [sys.executable, "-c", _CHILD_CODE, *args], env=env, capture_output=True, text=True
        )
    if proc.returncode != 0:
        raise RuntimeError(f"VP9 encode in a fresh interpreter failed: {proc.stderr[-2000:]}")


def encode_video(
    frames: np.ndarray,
    path: str | Path,
    *,
    fps: int,
    codec: str = "h264",
    keyframe_interval: int | None = None,
) -> Path:
    """Encode (N, H, W, 3) uint8 RGB frames to ``path``; the container follows the extension."""
    path = Path(path)
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected (N, H, W, 3) uint8 frames, got {frames.shape} {frames.dtype}")
    if len(frames) == 0:
        raise ValueError("no frames to encode")
    if codec not in CODECS:
        raise ValueError(f"unknown codec {codec!r}; expected one of {sorted(CODECS)}")
    fmt = _CONTAINERS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"unsupported extension {path.suffix!r}; use one of {sorted(_CONTAINERS)}")
    _, height, width, _ = frames.shape
    if codec in _EVEN_DIMS and (width % 2 or height % 2):
        raise ValueError(f"{codec} with 4:2:0 chroma needs even dimensions, got {width}x{height}")

    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        _encode(frames, path, fps=fps, codec=codec, keyframe_interval=keyframe_interval)
    except av.FFmpegError:
        # decord loads its bundled libavcodec/libvpx 6.4 with RTLD_GLOBAL; once it is imported
        # before PyAV, PyAV's libvpx-vp9 encoder binds to the old libvpx and fails to open.
        if codec != "vp9" or "decord" not in sys.modules:
            raise
        path.unlink(missing_ok=True)
        _encode_in_fresh_interpreter(frames, path, fps=fps, keyframe_interval=keyframe_interval)
    return path


def write_video(spec: VideoSpec, path: str | Path) -> Path:
    """Render ``spec`` and encode it to ``path``."""
    return encode_video(
        render_frames(spec),
        path,
        fps=spec.fps,
        codec=spec.codec,
        keyframe_interval=spec.keyframe_interval,
    )


def make_sample_corpus(
    root: str | Path,
    *,
    per_class: int = 4,
    classes: Sequence[str] = ("right", "left"),
    spec: VideoSpec = DEFAULT_SPEC,
    val_per_class: int = 1,
    seed: int = 0,
) -> Path:
    """Write ``<root>/<split>/<label>/<label>_<i><ext>`` plus ``<root>/manifest.csv``.

    Each class gets ``per_class`` videos in total; the last ``val_per_class`` of them go to
    "val", the rest to "train". Shape, color and seed vary with the video index ``i`` but not
    with the label, so e.g. ``right_3`` and ``left_3`` are exact time reversals of each other.
    """
    if per_class < 1 or not 0 <= val_per_class <= per_class:
        raise ValueError("need per_class >= 1 and 0 <= val_per_class <= per_class")
    classes = tuple(classes)
    if not classes or len(set(classes)) != len(classes):
        raise ValueError(f"classes must be non-empty and unique, got {classes}")
    for label in classes:
        if label not in DIRECTIONS:
            raise ValueError(f"unknown class {label!r}; expected directions from {DIRECTIONS}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    ext = spec.extension
    rows: list[tuple[str, str, str]] = []
    for i in range(per_class):
        rng = np.random.default_rng([seed, i])
        shape = SHAPES[int(rng.integers(len(SHAPES)))]
        color = _PALETTE[int(rng.integers(len(_PALETTE)))]
        video_seed = int(rng.integers(2**31))
        split = "train" if i < per_class - val_per_class else "val"
        for label in classes:
            rel = Path(split) / label / f"{label}_{i}{ext}"
            vspec = replace(spec, shape=shape, color=color, seed=video_seed, direction=label)
            write_video(vspec, root / rel)
            rows.append((rel.as_posix(), label, split))
    rows.sort(key=lambda r: (r[2] != "train", r[1], r[0]))
    with open(root / "manifest.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["uri", "label", "split"])
        writer.writerows(rows)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: write a sample corpus and print a one-line summary."""
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.samples", description="Write a labeled sample video corpus."
    )
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--per-class", type=int, default=4, help="videos per class (total)")
    parser.add_argument("--val-per-class", type=int, default=1)
    parser.add_argument("--classes", default="right,left", help="comma-separated directions")
    parser.add_argument("--seconds", type=float, default=VideoSpec.seconds)
    parser.add_argument("--width", type=int, default=VideoSpec.width)
    parser.add_argument("--height", type=int, default=VideoSpec.height)
    parser.add_argument("--fps", type=int, default=VideoSpec.fps)
    parser.add_argument("--codec", default=VideoSpec.codec, choices=sorted(CODECS))
    parser.add_argument("--keyframe-interval", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    classes = tuple(c.strip() for c in args.classes.split(",") if c.strip())
    spec = VideoSpec(
        width=args.width,
        height=args.height,
        fps=args.fps,
        seconds=args.seconds,
        codec=args.codec,
        keyframe_interval=args.keyframe_interval,
    )
    t0 = time.perf_counter()
    try:
        root = make_sample_corpus(
            args.out_dir,
            per_class=args.per_class,
            classes=classes,
            spec=spec,
            val_per_class=args.val_per_class,
            seed=args.seed,
        )
    except ValueError as exc:
        parser.error(str(exc))
    n_val = args.val_per_class * len(classes)
    n_total = args.per_class * len(classes)
    print(
        f"wrote {n_total} videos (train={n_total - n_val}, val={n_val}; "
        f"classes={','.join(classes)}; {spec.width}x{spec.height}@{spec.fps}fps, "
        f"{spec.num_frames} frames, {spec.codec}) to {root} with manifest "
        f"{root / 'manifest.csv'} in {time.perf_counter() - t0:.2f}s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
