"""Small labeled sample videos (moving shapes) encoded with PyAV.

The classes "right"/"left" (and "down"/"up") are exact time reversals of each other for the
same seed, so they differ only in frame order: an order-blind mean of frames cannot separate
them, while a temporal model can.

`sound_corpus` writes labelled videos with sound whose classes only the sound, only the
picture, or only both tell apart ("rising" and "falling" sweeps are exact time reversals
too); `write_broken_audio` a video whose pictures decode and whose sound does not.
"""

from __future__ import annotations

import argparse
import colorsys
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
    "HIGH_HZ",
    "LOW_HZ",
    "PICTURE_CLASSES",
    "SHAPES",
    "SHOT_ENTRANCES",
    "SOUND_CLASSES",
    "SOUND_CORPUS_KINDS",
    "SWEEP_HZ",
    "SWEEP_PERIOD_S",
    "ShotSpec",
    "Sound",
    "VideoSpec",
    "class_sound",
    "encode_video",
    "extension_for",
    "main",
    "make_sample_corpus",
    "render_frames",
    "render_shots",
    "scene_hue",
    "shot_corpus",
    "sound_corpus",
    "sound_corpus_labels",
    "sweep",
    "tone",
    "write_broken_audio",
    "write_copy",
    "write_shots",
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


@dataclass(frozen=True)
class Sound:
    """A mono audio track for a sample video: float samples in [-1, 1] at `rate`."""

    samples: np.ndarray
    rate: int = 16_000


def _sound_stream(container, sound: Sound):
    """An AAC mono stream, added with the video's before anything is written."""
    stream = container.add_stream("aac", rate=sound.rate, layout="mono")
    stream.time_base = Fraction(1, sound.rate)
    return stream


def _mux_sound(container, stream, sound: Sound) -> None:
    """The sound in 1024-sample frames (AAC's frame size)."""
    samples = np.asarray(sound.samples, dtype=np.float32).reshape(-1)
    for i, start in enumerate(range(0, len(samples), 1024)):
        chunk = np.zeros(1024, np.float32)
        part = samples[start : start + 1024]
        chunk[: len(part)] = part
        frame = av.AudioFrame.from_ndarray(chunk[None, :], format="fltp", layout="mono")
        frame.sample_rate = sound.rate
        frame.pts = i * 1024
        frame.time_base = Fraction(1, sound.rate)
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))


def tone(seconds: float, freq: float, rate: int = 16_000, amplitude: float = 0.5) -> np.ndarray:
    """A sine of `freq` Hz: the simplest sound a test can recognise by its spectrum."""
    t = np.arange(round(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


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
    frames: np.ndarray,
    path: Path,
    *,
    fps: int,
    codec: str,
    keyframe_interval: int | None,
    sound: Sound | None = None,
    mux_sound=None,
) -> None:
    """`mux_sound(container, stream, sound)` writes the sound's packets (default `_mux_sound`,
    its AAC encoding; `write_broken_audio` writes packets no decoder accepts)."""
    encoder, pix_fmt, _, options = CODECS[codec]
    _, height, width, _ = frames.shape
    kind = _CONTAINERS[path.suffix.lower()]
    with _scheduling_kept(), av.open(str(path), mode="w", format=kind) as container:
        stream = container.add_stream(encoder, rate=Fraction(fps), options=dict(options))
        stream.width = width
        stream.height = height
        stream.pix_fmt = pix_fmt
        stream.codec_context.time_base = Fraction(1, fps)
        if keyframe_interval is not None:
            stream.codec_context.gop_size = int(keyframe_interval)
        audio = _sound_stream(container, sound) if sound is not None else None
        for i, array in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
        if audio is not None:
            (mux_sound or _mux_sound)(container, audio, sound)


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
    sound: Sound | None = None,
) -> Path:
    """Encode (N, H, W, 3) uint8 RGB frames to ``path``, with `sound` as an AAC track when
    given; the container follows the extension."""
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
        _encode_frames(
            frames, path, fps=fps, codec=codec, keyframe_interval=keyframe_interval, sound=sound
        )
    except av.FFmpegError:
        # decord loads its bundled libavcodec/libvpx 6.4 with RTLD_GLOBAL; once it is imported
        # before PyAV, PyAV's libvpx-vp9 encoder binds to the old libvpx and fails to open.
        if codec != "vp9" or "decord" not in sys.modules or sound is not None:
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


def write_copy(
    source: str | Path,
    path: str | Path,
    *,
    scale: float = 0.75,
    keep: tuple[float, float] = (0.2, 0.8),
) -> Path:
    """A near-duplicate of `source`, as copies on the web are: resized by `scale`, trimmed to
    the fraction `keep` of its length, re-encoded (H.264 at another quality)."""
    with av.open(str(source)) as container:
        stream = container.streams.video[0]
        fps = int(round(float(stream.average_rate or 24)))
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    first, last = int(len(frames) * keep[0]), int(len(frames) * keep[1])
    height, width = frames[0].shape[:2]
    size = (2 * round(width * scale / 2), 2 * round(height * scale / 2))
    resized = [
        av.VideoFrame.from_ndarray(f, format="rgb24")
        .reformat(width=size[0], height=size[1])
        .to_ndarray(format="rgb24")
        for f in frames[first:last]
    ]
    return encode_video(np.stack(resized), path, fps=fps)


# Multi-shot videos with known hard cuts, for shot-cut detection (pipeline.video.shots).

SHOT_ENTRANCES = ("cut", "dissolve", "fade_black")
_GOLDEN = 0.6180339887


@dataclass(frozen=True)
class ShotSpec:
    """One shot of a multi-shot video (`render_shots`).

    Only an entrance of "cut" is a hard cut. A dissolve or a fade through black, a fast camera
    pan and white flashes change the picture too: they are what a cut detector must not report.
    """

    scene: int = 0  # the scene filmed: its hue, texture and shapes follow from this id
    seconds: float = 3.0
    pan: float = 0.0  # camera speed across the scene, frame widths per second (sign: direction)
    entrance: str = "cut"  # how the shot replaces the one before it (ignored for the first)
    entrance_seconds: float = 1.0  # a dissolve's or fade's length, within this shot's seconds
    flashes: tuple[float, ...] = ()  # seconds into the shot at which a white flash begins
    flash_frames: int = 3


def scene_hue(scene: int) -> float:
    """Base hue of a scene in [0, 1): golden-ratio steps, so neighbouring ids differ in hue."""
    return (scene * _GOLDEN) % 1.0


def _hsv_rgb(hue: float, saturation: float, value: float) -> np.ndarray:
    return np.asarray(colorsys.hsv_to_rgb(hue % 1.0, saturation, value), dtype=np.float32) * 255


class _Scene:
    """A scene a camera films: a panorama wide enough for its pans (a textured background in
    the scene's colours, lighter towards the bottom) and shapes moving across the view."""

    def __init__(self, scene: int, seed: int, width: int, height: int, pan_px: int) -> None:
        from PIL import Image

        rng = np.random.default_rng([seed, scene, 5])
        self.width, self.height = width, height
        hue = scene_hue(scene)
        value = float(rng.uniform(0.55, 1.0))
        palette = np.stack(
            [
                _hsv_rgb(hue, 0.75, 0.85 * value),
                _hsv_rgb(hue + 0.06, 0.45, 0.55 * value),
                _hsv_rgb(hue - 0.05, 0.9, 0.35 * value),
                _hsv_rgb(hue + 0.5, 0.3, 0.95 * value),  # a sparse accent colour
            ]
        )
        wide = width + pan_px
        # Texture features far smaller than the view: its colour mix holds steady under a pan.
        cell = int(rng.integers(6, 14))
        if rng.random() < 0.5:  # blobs: smooth noise cut into colour levels
            coarse = rng.random((height // cell + 2, wide // cell + 2)).astype(np.float32)
            field = Image.fromarray(coarse).resize(
                (wide + 2 * cell, height + 2 * cell), Image.BICUBIC
            )
            smooth = np.asarray(field)[cell : cell + height, cell : cell + wide]
        else:  # bricks: rows of segments of random widths, one colour each (a wall, shelves)
            smooth = np.empty((height, wide), dtype=np.float32)
            top = 0
            while top < height:
                rows = int(rng.integers(cell, 2 * cell + 1))
                widths = rng.integers(cell // 2 + 1, 2 * cell, size=wide // (cell // 2 + 1) + 1)
                smooth[top : top + rows] = np.repeat(rng.random(len(widths)), widths)[:wide]
                top += rows
        levels = np.quantile(smooth, [0.4, 0.75, 0.95])
        index = np.searchsorted(levels, smooth)
        shade = 0.8 + 0.4 * np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
        grain = rng.normal(0, 4, size=(height, wide, 1)).astype(np.float32)
        self.panorama = np.clip(palette[index] * shade + grain, 0, 255)

        # (mask, colour, start (y, x), velocity (y, x) in pixels per second) of each shape
        self.shapes: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        for _ in range(int(rng.integers(1, 4))):
            size = int(rng.integers(height // 6, height // 3))
            yy, xx = np.mgrid[0:size, 0:size]
            r = (size - 1) / 2
            round_shape = rng.random() < 0.5
            mask = (yy - r) ** 2 + (xx - r) ** 2 <= (r + 0.25) ** 2 if round_shape else yy >= 0
            color = np.asarray(_PALETTE[int(rng.integers(len(_PALETTE)))], dtype=np.float32)
            start = rng.uniform(0, 1, 2) * (height - size, width - size)
            velocity = rng.uniform(-0.5, 0.5, 2) * (height, width)  # pixels per second
            self.shapes.append((mask, color, start, velocity))

    def view(self, t: float, pan: float) -> np.ndarray:
        """(H, W, 3) float32 frame at `t` seconds into a shot panning at `pan` widths/s."""
        room = self.panorama.shape[1] - self.width
        shift = round(abs(pan) * self.width * t)
        x0 = min(shift, room) if pan >= 0 else max(room - shift, 0)
        frame = self.panorama[:, x0 : x0 + self.width].copy()
        for mask, color, start, velocity in self.shapes:
            size = mask.shape[0]
            limits = np.asarray((self.height - size, self.width - size), dtype=np.float64)
            y, x = np.rint(_bounce(start + velocity * t, limits)).astype(int)
            frame[y : y + size, x : x + size][mask] = color
        return frame


def _bounce(position: np.ndarray, limit: np.ndarray) -> np.ndarray:
    """Positions reflected into [0, limit]: shapes bounce off the frame's edges."""
    limit = np.maximum(limit, 1e-9)
    folded = np.mod(position, 2 * limit)
    return np.where(folded > limit, 2 * limit - folded, folded)


def _validate_shots(shots: Sequence[ShotSpec], width: int, height: int, fps: int) -> None:
    if not shots:
        raise ValueError("no shots to render")
    if width < 16 or height < 16 or width % 2 or height % 2:
        raise ValueError(f"frame size must be even and at least 16x16, got {width}x{height}")
    if fps <= 0:
        raise ValueError("fps must be positive")
    for shot in shots:
        if shot.entrance not in SHOT_ENTRANCES:
            raise ValueError(f"unknown entrance {shot.entrance!r}; expected {SHOT_ENTRANCES}")
        if shot.seconds <= 0 or not 0 < shot.entrance_seconds <= shot.seconds:
            raise ValueError(f"need 0 < entrance_seconds <= seconds, got {shot}")
        if shot.flash_frames < 1 or not all(0 <= t < shot.seconds for t in shot.flashes):
            raise ValueError(f"flashes must start within the shot, a frame or more, got {shot}")


def render_shots(
    shots: Sequence[ShotSpec], *, width: int = 160, height: int = 120, fps: int = 24, seed: int = 0
) -> tuple[np.ndarray, list[int]]:
    """Render shots back to back: (N, H, W, 3) uint8 frames, and the index of the first frame
    of each shot entered by a hard cut (the ground truth of a cut detector).

    A dissolve or fade takes the first `entrance_seconds` of its shot, while the scene before it
    plays on; a flash blends a few frames towards white, fading back to the scene."""
    _validate_shots(shots, width, height, fps)
    counts = [max(1, round(shot.seconds * fps)) for shot in shots]
    blends = [0] * len(shots)  # frames of each shot's dissolve or fade
    for k, shot in enumerate(shots[1:], start=1):
        if shot.entrance != "cut":
            blends[k] = min(counts[k], max(1, round(shot.entrance_seconds * fps)))
    scenes = []
    for k, shot in enumerate(shots):
        played = counts[k] + (blends[k + 1] if k + 1 < len(shots) else 0)  # frames on screen
        pan_px = int(np.ceil(abs(shot.pan) * width * played / fps)) + 1
        scenes.append(_Scene(shot.scene, seed, width, height, pan_px))

    frames = np.empty((sum(counts), height, width, 3), dtype=np.uint8)
    cuts: list[int] = []
    first = 0
    for k, shot in enumerate(shots):
        if k > 0 and shot.entrance == "cut":
            cuts.append(first)
        flash_starts = {round(s * fps) for s in shot.flashes}
        flash_left = 0
        for j in range(counts[k]):
            t = j / fps
            image = scenes[k].view(t, shot.pan)
            if j < blends[k]:
                before = scenes[k - 1].view((counts[k - 1] + j) / fps, shots[k - 1].pan)
                w = (j + 0.5) / blends[k]
                if shot.entrance == "dissolve":
                    image = (1 - w) * before + w * image
                else:  # through black: out to black over the first half, in over the second
                    image = before * max(0.0, 1 - 2 * w) + image * max(0.0, 2 * w - 1)
            if j in flash_starts:
                flash_left = shot.flash_frames
            if flash_left:  # full white first, fading back towards the scene
                white = 0.5 + 0.5 * flash_left / shot.flash_frames
                image = image * (1 - white) + 255 * white
                flash_left -= 1
            frames[first + j] = np.clip(np.rint(image), 0, 255).astype(np.uint8)
        first += counts[k]
    return frames, cuts


def write_shots(
    shots: Sequence[ShotSpec],
    path: str | Path,
    *,
    width: int = 160,
    height: int = 120,
    fps: int = 24,
    seed: int = 0,
    codec: str = "h264",
) -> list[int]:
    """Render `shots` (`render_shots`), encode them to `path`, and return the cut frames."""
    frames, cuts = render_shots(shots, width=width, height=height, fps=fps, seed=seed)
    encode_video(frames, path, fps=fps, codec=codec)
    return cuts


def shot_corpus(videos: int = 12, seed: int = 0) -> dict[str, tuple[ShotSpec, ...]]:
    """Named shot lists for cut-detection tests and benchmarks: a pan-only, a fade-only and a
    flash-only video (no cut at all), and `videos` videos mixing hard cuts with dissolves,
    fades through black, fast pans and flashes. Shots last 2.5-4.5 s; consecutive shots are
    scenes at least 0.15 apart in hue, so every cut changes the colours on screen."""
    corpus: dict[str, tuple[ShotSpec, ...]] = {
        "pan_only": (ShotSpec(scene=1, seconds=8.0, pan=1.5),),
        "fade_only": (
            ShotSpec(scene=2, seconds=3.0, pan=0.6),
            ShotSpec(scene=3, seconds=3.5, entrance="dissolve", entrance_seconds=1.5),
            ShotSpec(scene=4, seconds=3.0, entrance="fade_black", entrance_seconds=1.0),
            ShotSpec(scene=5, seconds=3.5, entrance="dissolve", entrance_seconds=1.0, pan=-1.0),
            ShotSpec(scene=6, seconds=3.0, entrance="fade_black", entrance_seconds=1.5),
        ),
        "flash_only": (
            ShotSpec(scene=7, seconds=9.0, pan=0.3, flashes=(1.0, 3.2, 5.1, 7.4), flash_frames=4),
        ),
    }
    rng = np.random.default_rng([seed, 7])
    for v in range(videos):
        shots: list[ShotSpec] = []
        scene = int(rng.integers(100))
        for k in range(int(rng.integers(4, 7))):
            if k:
                hue = scene_hue(scene)
                while abs((scene_hue(scene) - hue + 0.5) % 1.0 - 0.5) < 0.15:
                    scene = int(rng.integers(100))
            seconds = round(float(rng.uniform(2.5, 4.5)), 2)
            entrance = "cut" if k == 0 else str(rng.choice(SHOT_ENTRANCES, p=[0.7, 0.15, 0.15]))
            entrance_seconds = round(float(rng.uniform(1.0, 1.5)), 2)
            pan = round(float(rng.choice([-1, 1]) * rng.uniform(0.8, 1.5)), 2)
            calm = entrance_seconds + 0.5 if entrance != "cut" else 0.8
            flashes = ()
            if rng.random() < 0.3 and seconds - 0.8 > calm:
                flashes = (round(float(rng.uniform(calm, seconds - 0.8)), 2),)
            shots.append(
                ShotSpec(
                    scene=scene,
                    seconds=seconds,
                    pan=pan if rng.random() < 0.35 else 0.0,
                    entrance=entrance,
                    entrance_seconds=entrance_seconds,
                    flashes=flashes,
                )
            )
        corpus[f"mixed_{v}"] = tuple(shots)
    return corpus


# Labelled videos with sound, for the sound modality: classes told apart by the sound alone, by
# the picture alone, or only by the two together.

SOUND_CLASSES = ("low", "high", "rising", "falling")
PICTURE_CLASSES = ("red", "green", "blue", "yellow")
SOUND_CORPUS_KINDS = ("sound", "picture", "both")
LOW_HZ, HIGH_HZ = 300.0, 1200.0  # the tones of "low" and "high"
SWEEP_HZ = (300.0, 1500.0)  # "rising" sweeps up through these, "falling" down
SWEEP_PERIOD_S = 0.5  # one sweep, repeated: a clip of a few seconds holds several
_PICTURE_COLORS = dict(zip(PICTURE_CLASSES, _PALETTE[:4], strict=True))
_BOTH_COLORS = ("red", "blue")  # the pictures of the "both" kind


def sweep(
    seconds: float,
    f0: float,
    f1: float,
    period: float,
    rate: int = 16_000,
    amplitude: float = 0.5,
    offset_s: float = 0.0,
    taper_s: float = 0.005,
) -> np.ndarray:
    """A linear frequency sweep from `f0` to `f1` Hz, started again every `period` seconds.

    Sample n is (n / rate + offset_s) mod period into its sweep, whose phase starts at 0; the
    first and last `taper_s` of every sweep fade in and out (no click where it starts again).
    The array reversed sweeps from `f1` down to `f0` with the same spectrum overall."""
    if seconds <= 0 or period <= 0 or rate <= 0:
        raise ValueError("seconds, period and rate must be positive")
    u = np.mod(np.arange(round(seconds * rate)) / rate + offset_s, period)  # time into the sweep
    phase = 2 * np.pi * (f0 * u + (f1 - f0) * u * u / (2 * period))
    edge = np.clip(np.minimum(u, period - u) / max(taper_s, 1e-9), 0.0, 1.0)
    envelope = np.sin(0.5 * np.pi * edge) ** 2
    return (amplitude * envelope * np.sin(phase)).astype(np.float32)


def class_sound(label: str, seconds: float, *, rate: int = 16_000, seed: int = 0) -> np.ndarray:
    """The sound of a class of `SOUND_CLASSES`, mono float32 at `rate`, varied by `seed`:
    amplitude 0.2-0.6, frequencies within 5 %, a random phase (tones) or place in the sweep
    (sweeps), light white noise. The variation follows from `seed` alone, whatever the label:
    "falling" is exactly the time reverse of "rising" of the same seed (noise included), so the
    two have the same magnitude spectrum and only the order in time tells them apart."""
    if label not in SOUND_CLASSES:
        raise ValueError(f"unknown sound class {label!r}; expected one of {SOUND_CLASSES}")
    rng = np.random.default_rng([seed, 11])
    amplitude = float(rng.uniform(0.2, 0.6))
    scale = float(rng.uniform(0.95, 1.05))
    phase = float(rng.uniform(0, 2 * np.pi))
    offset_s = float(rng.uniform(0, SWEEP_PERIOD_S))
    noise_std = float(rng.uniform(0.005, 0.02))
    n = round(seconds * rate)
    noise = rng.normal(0.0, noise_std, n).astype(np.float32)
    if label in ("low", "high"):
        freq = (LOW_HZ if label == "low" else HIGH_HZ) * scale
        wave = amplitude * np.sin(2 * np.pi * freq * np.arange(n) / rate + phase)
        return (wave + noise).astype(np.float32)
    f0, f1 = (f * scale for f in SWEEP_HZ)
    rising = sweep(seconds, f0, f1, SWEEP_PERIOD_S, rate, amplitude, offset_s)[:n] + noise
    return (rising if label == "rising" else rising[::-1]).copy()


def sound_corpus_labels(kind: str) -> tuple[str, ...]:
    """The labels `sound_corpus` writes for a kind."""
    if kind == "sound":
        return SOUND_CLASSES
    if kind == "picture":
        return PICTURE_CLASSES
    if kind == "both":
        return tuple(f"{c}_{s}" for c in _BOTH_COLORS for s in ("rising", "falling"))
    raise ValueError(f"unknown kind {kind!r}; expected one of {SOUND_CORPUS_KINDS}")


def sound_corpus(
    root: str | Path,
    kind: str = "sound",
    videos_per_class: int = 8,
    *,
    seed: int = 0,
    seconds: float = 8.0,
    size: int = 64,
    fps: int = 8,
    rate: int = 16_000,
) -> dict[str, list[Path]]:
    """Write `videos_per_class` H.264 videos with an AAC mono sound track for every label of
    `kind` to ``<root>/<label>/<label>_<i>.mp4`` (the folder layout training reads; no split
    folders, so training draws a seeded split), and return {label: paths}.

    The picture is `render_frames`' moving shape (`size` x `size` px at `fps`) on a per-seed
    tint; the sound is `class_sound`'s, as long as the picture. Kinds:
      - "sound": labels `SOUND_CLASSES`, told apart by the sound alone: the picture's shape,
        colour (any of the palette's), direction and tint are drawn at random;
      - "picture": labels `PICTURE_CLASSES`, the colour of the shape; its sound is one of the
        sound classes drawn at random;
      - "both": labels "<red|blue>_<rising|falling>": neither the picture nor the sound alone
        tells the label.
    Everything but what the label decides is drawn once per index i and shared by the labels:
    in a "sound" corpus `low_3`, `high_3`, `rising_3` and `falling_3` have the same picture
    (and `falling_3`'s sound is `rising_3`'s reversed); in a "picture" corpus `red_3` and
    `blue_3` have the same sound and differ in the shape's colour only.
    """
    labels = sound_corpus_labels(kind)
    if videos_per_class < 1:
        raise ValueError(f"need videos_per_class >= 1, got {videos_per_class}")
    if size < 16 or size % 2:
        raise ValueError(f"size must be even and at least 16 (H.264, 4:2:0), got {size}")
    root = Path(root)
    out: dict[str, list[Path]] = {label: [] for label in labels}
    for i in range(videos_per_class):
        rng = np.random.default_rng([seed, i, 23])
        shape = SHAPES[int(rng.integers(len(SHAPES)))]
        direction = DIRECTIONS[int(rng.integers(len(DIRECTIONS)))]
        color = _PALETTE[int(rng.integers(len(_PALETTE)))]
        picture_seed, sound_seed = (int(x) for x in rng.integers(2**31, size=2))
        random_sound = SOUND_CLASSES[int(rng.integers(len(SOUND_CLASSES)))]
        spec = VideoSpec(
            width=size,
            height=size,
            fps=fps,
            seconds=seconds,
            shape=shape,
            direction=direction,
            color=color,
            seed=picture_seed,
        )
        for label in labels:
            if kind == "sound":
                picture, sound_class = color, label
            elif kind == "picture":
                picture, sound_class = _PICTURE_COLORS[label], random_sound
            else:
                name, sound_class = label.split("_")
                picture = _PICTURE_COLORS[name]
            frames = render_frames(replace(spec, color=picture))
            samples = class_sound(sound_class, len(frames) / fps, rate=rate, seed=sound_seed)
            path = root / label / f"{label}_{i}.mp4"
            out[label].append(encode_video(frames, path, fps=fps, sound=Sound(samples, rate)))
    return out


def _mux_undecodable(container, stream, sound: Sound, seed: int = 0) -> None:
    """Packets of random bytes in place of the sound's AAC frames, with the frames' timestamps:
    each is checked against an AAC decoder (with the stream's own configuration) and drawn
    again in the rare case it decodes."""
    checker = av.CodecContext.create("aac", "r")
    checker.extradata = stream.codec_context.extradata
    rng = np.random.default_rng([seed, 31])
    frames = -(-len(np.asarray(sound.samples).reshape(-1)) // 1024)
    for i in range(frames):
        while True:
            data = rng.integers(0, 256, int(rng.integers(64, 256)), dtype=np.uint8).tobytes()
            try:
                checker.decode(av.Packet(data))
            except av.FFmpegError:
                break
        packet = av.Packet(data)
        packet.stream = stream
        packet.pts = packet.dts = i * 1024
        packet.duration = 1024
        packet.time_base = Fraction(1, sound.rate)
        container.mux(packet)


def write_broken_audio(
    path: str | Path,
    *,
    seconds: float = 3.0,
    size: int = 64,
    fps: int = 8,
    rate: int = 16_000,
    seed: int = 0,
) -> Path:
    """A video whose picture decodes and whose sound does not: an H.264 picture
    (`render_frames`) and an AAC stream declared as any other (rate, channels, the encoder's
    configuration) whose packets are random bytes the AAC decoder refuses, timed as
    `seconds` of 1024-sample frames. `pipeline.video.audio.read_audio` then raises
    av.InvalidDataError (an av.FFmpegError). MP4 (default) or Matroska, by the extension."""
    path = Path(path)
    if path.suffix.lower() not in (".mp4", ".mkv"):
        raise ValueError(f"AAC sound needs an .mp4 or .mkv file, got {path.suffix!r}")
    frames = render_frames(VideoSpec(width=size, height=size, fps=fps, seconds=seconds, seed=seed))
    sound = Sound(np.zeros(round(len(frames) / fps * rate), np.float32), rate)
    path.parent.mkdir(parents=True, exist_ok=True)
    _encode_frames(
        frames,
        path,
        fps=fps,
        codec="h264",
        keyframe_interval=None,
        sound=sound,
        mux_sound=lambda container, stream, s: _mux_undecodable(container, stream, s, seed),
    )
    return path


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
