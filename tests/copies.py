"""Near-duplicate fixtures: originals, real copies of their encoded files, and look-alikes.

Originals are `pipeline.samples` videos (a shape crossing a dark noisy background) with soft
light and dark blobs over the background and a few more shapes bouncing over it, so that every
video looks alike in kind (the same shapes, palette family and background texture) while seeds
make them different videos. Things move less than a tenth of the frame a second, as in most
footage, so frames sampled a second apart still share most of their layout. A copy is made the
way copies are made: decode the original's file, transform the frames, encode again.
Look-alikes share one part of an original (its background, or its objects) and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from pipeline.samples import DIRECTIONS, SHAPES, VideoSpec, encode_video, render_frames
from pipeline.video.io import resize_frame
from pipeline.video.sampling import sampled_frame_indices

INDEX_FPS = 1.0  # the index job's default --fps
INDEX_SIZE = 112  # the index job's default frame size


@dataclass(frozen=True)
class Scene:
    """An original: a `pipeline.samples` video (`base`) with `objects` bouncing shapes on top,
    placed and moved by `objects_seed`."""

    base: VideoSpec
    objects: int = 2
    objects_seed: int = 0
    # where objects move differently from `objects_seed` but keep its shapes, sizes, colours
    motion_seed: int | None = None
    # the base shape crosses the frame once in `base.seconds`; rendered `stretch` times longer
    # from `start` (a fraction of that) it moves slower and starts elsewhere, as seeds choose
    stretch: float = 1.0
    start: float = 0.0
    texture: float = 40.0  # amplitude (grey levels) of the background's blobs (base.seed's)
    speed: tuple[float, float] = (0.3, 1.2)  # pixels per frame, per axis, of the shapes


def _texture(rng: np.random.Generator, h: int, w: int, amplitude: float) -> np.ndarray:
    """(H, W, 1) int16: a few large soft blobs, light and dark: the background's layout."""
    yy, xx = np.mgrid[0:h, 0:w]
    out = np.zeros((h, w), dtype=np.float64)
    for _ in range(6):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        radius = rng.uniform(0.15, 0.4) * min(h, w)
        out += rng.uniform(-1, 1) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * radius**2))
    return np.rint(amplitude * out / max(1e-9, np.abs(out).max()))[..., None].astype(np.int16)


def scene(seed: int, *, seconds: float = 16.0, width: int = 192, height: int = 108) -> Scene:
    """A seeded original: shape, colour, direction and object count drawn from the seed."""
    rng = np.random.default_rng([7, seed])
    base = VideoSpec(
        width=width,
        height=height,
        fps=10,
        seconds=seconds,
        shape=SHAPES[int(rng.integers(len(SHAPES)))],
        direction=DIRECTIONS[int(rng.integers(len(DIRECTIONS)))],
        color=_bright_colour(rng),
        seed=int(rng.integers(2**31)),
    )
    objects, objects_seed = int(rng.integers(1, 4)), int(rng.integers(2**31))
    stretch = float(rng.uniform(1.0, 3.0))
    start = float(rng.uniform(0.0, 1.0 - 1.0 / stretch))
    return Scene(base, objects, objects_seed, stretch=stretch, start=start)


def _bright_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    """A saturated colour: one channel high, one low, one anywhere (the samples' palette)."""
    channels = rng.permutation(3)
    colour = np.empty(3, dtype=int)
    colour[channels[0]] = rng.integers(200, 256)
    colour[channels[1]] = rng.integers(30, 90)
    colour[channels[2]] = rng.integers(30, 256)
    return int(colour[0]), int(colour[1]), int(colour[2])


def render_scene(spec: Scene) -> np.ndarray:
    """(N, H, W, 3) uint8: the base sample video with the bouncing shapes drawn over it."""
    n = spec.base.num_frames
    longer = render_frames(replace(spec.base, seconds=spec.base.seconds * spec.stretch))
    first = min(int(round(spec.start * len(longer))), len(longer) - n)
    frames = longer[first : first + n]
    _, h, w, _ = frames.shape
    if spec.texture:
        blobs = _texture(np.random.default_rng([5, spec.base.seed]), h, w, spec.texture)
        frames = np.clip(frames + blobs[None], 0, 255).astype(np.uint8)
    looks = np.random.default_rng([11, spec.objects_seed])
    moves = np.random.default_rng(
        [13, spec.objects_seed if spec.motion_seed is None else spec.motion_seed]
    )
    for _ in range(spec.objects):
        size = int(looks.integers(min(h, w) // 6, min(h, w) // 3 + 1))
        circle = SHAPES[int(looks.integers(len(SHAPES)))] == "circle"
        colour = np.asarray(_bright_colour(looks), dtype=np.uint8)
        yy, xx = np.mgrid[0:size, 0:size]
        r = (size - 1) / 2
        mask = (yy - r) ** 2 + (xx - r) ** 2 <= (r + 0.25) ** 2 if circle else yy >= 0
        position = moves.uniform([0, 0], [h - size, w - size])
        velocity = moves.uniform(*spec.speed, size=2) * moves.choice([-1, 1], size=2)
        for i in range(n):
            y0, x0 = np.rint(position).astype(int)
            frames[i, y0 : y0 + size, x0 : x0 + size][mask] = colour
            position += velocity
            for axis, limit in ((0, h - size), (1, w - size)):  # bounce off the edges
                if not 0 <= position[axis] <= limit:
                    velocity[axis] = -velocity[axis]
                    position[axis] = np.clip(position[axis], 0, limit)
    return frames


def write_scene(spec: Scene, path: str | Path) -> Path:
    """Render and encode an original (H.264, the samples' settings)."""
    return encode_video(render_scene(spec), path, fps=spec.base.fps, codec=spec.base.codec)


def decode(path: str | Path) -> tuple[np.ndarray, float]:
    """Every frame of the file as (N, H, W, 3) uint8 RGB, and its average frame rate."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(stream)])
        return frames, float(stream.average_rate)


def sampled_frames(path: str | Path, fps: float = INDEX_FPS, size: int = INDEX_SIZE) -> np.ndarray:
    """(T, size, size, 3): the frames the index job samples and resizes (its own functions)."""
    frames, native_fps = decode(path)
    indices = sampled_frame_indices(len(frames), native_fps, fps)
    return np.stack([resize_frame(frames[i], size) for i in indices])


# ---- transforms: (N, H, W, 3) uint8 -> (N', H', W', 3) uint8 ----


def _even(n: float) -> int:
    """H.264 and 4:2:0 chroma need even sizes."""
    return max(2, int(n) // 2 * 2)


def resize(frames: np.ndarray, scale: float) -> np.ndarray:
    """Scale both sides (aspect kept), bilinear."""
    h, w = frames.shape[1:3]
    size = (_even(w * scale), _even(h * scale))
    return np.stack([np.asarray(Image.fromarray(f).resize(size, Image.BILINEAR)) for f in frames])


def crop(frames: np.ndarray, left: float, top: float, right: float, bottom: float) -> np.ndarray:
    """Cut these fractions of the width/height off each side."""
    h, w = frames.shape[1:3]
    x0, y0 = round(w * left), round(h * top)
    x1, y1 = x0 + _even(w * (1 - left - right)), y0 + _even(h * (1 - top - bottom))
    return np.ascontiguousarray(frames[:, y0:y1, x0:x1])


def trim(frames: np.ndarray, start: float, keep: float) -> np.ndarray:
    """Keep `keep` of the frames from `start` (fractions of the video): a part of it."""
    n = len(frames)
    first = int(round(n * start))
    return frames[first : first + max(1, int(round(n * keep)))]


# RGB <-> YIQ: hue is the angle of (I, Q), saturation its length, brightness Y.
_TO_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


def colour_shift(
    frames: np.ndarray, hue_degrees: float = 0.0, saturation: float = 1.0, brightness: float = 0.0
) -> np.ndarray:
    """Rotate hue, scale saturation, add brightness (0-255 levels), as a colour grade does."""
    angle = np.deg2rad(hue_degrees)
    rotate = np.array(
        [
            [1.0, 0.0, 0.0],
            [0.0, np.cos(angle) * saturation, -np.sin(angle) * saturation],
            [0.0, np.sin(angle) * saturation, np.cos(angle) * saturation],
        ]
    )
    matrix = np.linalg.inv(_TO_YIQ) @ rotate @ _TO_YIQ
    out = frames.astype(np.float32) @ matrix.T.astype(np.float32) + brightness
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def change_rate(frames: np.ndarray, fps: float, new_fps: float) -> np.ndarray:
    """Resample to another frame rate (nearest frame in time), as a frame-rate conversion."""
    count = max(1, int(round(len(frames) * new_fps / fps)))
    times = np.arange(count) / new_fps
    return frames[np.minimum(np.rint(times * fps).astype(int), len(frames) - 1)]


# ---- encoding a copy ----


def encode_lossy(frames: np.ndarray, path: str | Path, *, fps: float, crf: int = 30) -> Path:
    """H.264 at a chosen quality (the samples' own settings are near lossless, crf 18)."""
    path = Path(path)
    with av.open(str(path), mode="w") as container:
        options = {"preset": "veryfast", "crf": str(crf), "threads": "1"}
        rate = Fraction(fps).limit_denominator(1000)
        stream = container.add_stream("libx264", rate=rate, options=options)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for array in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")))
        container.mux(stream.encode(None))
    return path


@dataclass(frozen=True)
class CopyKind:
    """How one copy is made: a transform of the decoded frames, then an encoder."""

    name: str
    transform: Callable[[np.ndarray], np.ndarray] = field(compare=False)
    codec: str = "h264"  # a pipeline.samples codec, or "h264_lossy"
    fps: float | None = None  # a new frame rate, else the original's
    crf: int = 30


COPY_KINDS: dict[str, CopyKind] = {
    k.name: k
    for k in (
        CopyKind("reencode_vp9", lambda f: f, codec="vp9"),
        CopyKind("reencode_mpeg4", lambda f: f, codec="mpeg4"),
        CopyKind("reencode_lossy", lambda f: f, codec="h264_lossy", crf=34),
        CopyKind("resize_half", lambda f: resize(f, 0.5)),
        CopyKind("resize_up", lambda f: resize(f, 1.5), codec="mjpeg"),
        CopyKind("trim_middle", lambda f: trim(f, 0.2, 0.6)),
        CopyKind("trim_start", lambda f: trim(f, 0.035, 0.55), codec="h264_lossy"),
        CopyKind("crop_5", lambda f: crop(f, 0.05, 0.05, 0.05, 0.05)),
        CopyKind("crop_10", lambda f: crop(f, 0.1, 0.06, 0.08, 0.1)),
        CopyKind("hue_shift", lambda f: colour_shift(f, hue_degrees=40)),
        CopyKind("colour_grade", lambda f: colour_shift(f, 0, saturation=0.6, brightness=25)),
        CopyKind("rate_change", lambda f: f, fps=24.0, codec="h264_lossy"),
        CopyKind(
            "trim_crop_hue",
            lambda f: colour_shift(crop(trim(f, 0.3, 0.6), 0.06, 0.05, 0.06, 0.05), 25, 0.8, -15),
            codec="h264_lossy",
        ),
        CopyKind(
            "resize_colour_mpeg4",
            lambda f: colour_shift(resize(f, 0.75), -30, 1.2, 10),
            codec="mpeg4",
        ),
    )
}


def make_copy(source: str | Path, kind: CopyKind, path: str | Path) -> Path:
    """Decode `source`, transform its frames and encode them to `path` (the extension
    follows the codec's default container)."""
    frames, fps = decode(source)
    fps_out = kind.fps or fps
    frames = kind.transform(frames)
    if kind.fps:
        frames = change_rate(frames, fps, kind.fps)
    path = Path(path)
    if kind.codec == "h264_lossy":
        return encode_lossy(frames, path.with_suffix(".mp4"), fps=fps_out, crf=kind.crf)
    spec = VideoSpec(codec=kind.codec)
    return encode_video(
        frames, path.with_suffix(spec.extension), fps=round(fps_out), codec=kind.codec
    )


# ---- look-alikes: one part of an original, nothing else ----


def same_background(spec: Scene, seed: int) -> Scene:
    """The same background (base seed: tint, noise and blobs: "the same camera") with another
    base motion and other objects."""
    direction = DIRECTIONS[(DIRECTIONS.index(spec.base.direction) + 2) % len(DIRECTIONS)]
    rng = np.random.default_rng([17, seed])
    return replace(
        spec,
        base=replace(spec.base, direction=direction, color=_bright_colour(rng)),
        objects_seed=int(rng.integers(2**31)),
    )


def same_objects(spec: Scene, seed: int) -> Scene:
    """The same shapes, sizes and colours on another background, moving elsewhere."""
    rng = np.random.default_rng([19, seed])
    return replace(
        spec,
        base=replace(spec.base, seed=int(rng.integers(2**31))),
        motion_seed=int(rng.integers(2**31)),
    )


def same_kind(spec: Scene, seed: int) -> Scene:
    """The same generator settings (shape, colour, direction, object count), another seed."""
    rng = np.random.default_rng([23, seed])
    return replace(
        spec,
        base=replace(spec.base, seed=int(rng.integers(2**31))),
        objects_seed=int(rng.integers(2**31)),
    )


# ---- a corpus: originals, copies of mixed kinds, look-alikes, low-information videos ----

LOOKALIKES: dict[str, Callable[[Scene, int], Scene]] = {
    "same_background": same_background,
    "same_objects": same_objects,
    "same_kind": same_kind,
}


@dataclass(frozen=True)
class CorpusVideo:
    """A file of the corpus, its family (an original and its copies share one; every other
    video is alone in its own) and how it was made."""

    path: Path
    family: str
    kind: str  # "original", a COPY_KINDS name, "lookalike:<how>", or "low:<what>"


def make_corpus(
    root: str | Path,
    originals: int = 10,
    copies: int = 25,
    lookalikes: int = 6,
    low_information: bool = True,
    seconds: float = 16.0,
) -> list[CorpusVideo]:
    """Write the corpus under `root`. Copy c copies original c % originals, of kind
    c % len(COPY_KINDS), so every kind appears and no original gets one kind twice; look-alike
    k is a LOOKALIKES variant of original k. Low-information videos: two black ones, a still
    image and its re-encode, a two-second clip and its re-encode (none may group)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    out: list[CorpusVideo] = []
    scenes = [scene(seed, seconds=seconds) for seed in range(originals)]
    for seed, spec in enumerate(scenes):
        out.append(
            CorpusVideo(write_scene(spec, root / f"original_{seed}.mp4"), f"f{seed}", "original")
        )
    kinds = list(COPY_KINDS.values())
    for c in range(copies):
        seed, kind = c % originals, kinds[c % len(kinds)]
        path = make_copy(out[seed].path, kind, root / f"copy_{seed}_{kind.name}")
        out.append(CorpusVideo(path, f"f{seed}", kind.name))
    variants = list(LOOKALIKES.items())
    for k in range(lookalikes):
        how, variant = variants[k % len(variants)]
        spec = variant(scenes[k % originals], 1000 + k)
        path = write_scene(spec, root / f"lookalike_{k}_{how}.mp4")
        out.append(CorpusVideo(path, f"lookalike_{k}", f"lookalike:{how}"))
    if low_information:
        out += _low_information(root, scenes[0])
    return out


def _low_information(root: Path, spec: Scene) -> list[CorpusVideo]:
    """Videos with too little to go on: each is its own family."""
    black = np.zeros((80, 108, 192, 3), dtype=np.uint8)
    still = np.repeat(render_scene(replace(spec, base=replace(spec.base, seconds=0.1))), 80, axis=0)
    short = render_scene(replace(spec, base=replace(spec.base, seconds=2.0), objects_seed=5))
    made = [
        ("black_a", encode_video(black, root / "black_a.mp4", fps=10)),
        ("black_b", encode_video(black, root / "black_b.mkv", fps=10, codec="mpeg4")),
        ("still", encode_video(still, root / "still.mp4", fps=10)),
        ("still_copy", encode_lossy(still, root / "still_copy.mp4", fps=10)),
        ("short", encode_video(short, root / "short.mp4", fps=10)),
        ("short_copy", encode_lossy(short, root / "short_copy.mp4", fps=10)),
    ]
    return [CorpusVideo(path, f"low_{name}", f"low:{name}") for name, path in made]
