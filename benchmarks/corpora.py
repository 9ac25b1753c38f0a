"""Synthetic H.264 corpora for the benchmarks, generated once and cached under bench_out/corpora.

A frame is a smooth random texture that pans (a camera move, so P/B-frames carry real motion
vectors) with a few moving shapes on top. Frames are rendered and encoded one at a time, so a
20-minute 720p video costs no more memory than a 10-second one. The keyframe interval is exact:
x264's scene-cut detection is off and min-keyint = keyint.

Synthetic content compresses better and decodes faster than camera footage (smooth texture, few
details), so decoding is a smaller share of the work here than on real video: see the measured
decode speed in the report.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from fractions import Fraction
from multiprocessing import get_context
from pathlib import Path

import numpy as np

GENERATOR_VERSION = 1  # bump when the content changes: old caches are then ignored


@dataclass(frozen=True)
class CorpusSpec:
    """What a corpus is made of; its cache key is derived from every field."""

    name: str
    count: int  # videos
    seconds: float  # per video
    width: int = 640
    height: int = 360
    fps: int = 30
    keyframe_interval: int = 60  # frames between keyframes (60 = 2 s at 30 fps)
    preset: str = "veryfast"  # x264 preset: veryfast has CABAC and B-frames, like most files
    crf: int = 20

    @property
    def key(self) -> str:
        s = f"{self.seconds:g}".replace(".", "p")
        return (
            f"{self.name}-n{self.count}-{s}s-{self.width}x{self.height}-{self.fps}fps"
            f"-g{self.keyframe_interval}-{self.preset}-crf{self.crf}-v{GENERATOR_VERSION}"
        )

    @property
    def frames_per_video(self) -> int:
        return round(self.seconds * self.fps)

    def describe(self) -> str:
        length = f"{self.seconds / 60:g} min" if self.seconds >= 60 else f"{self.seconds:g} s"
        return (
            f"{self.count} x {length} H.264 {self.width}x{self.height} @ {self.fps} fps, "
            f"keyframe every {self.keyframe_interval} frames "
            f"({self.keyframe_interval / self.fps:g} s), x264 {self.preset} crf {self.crf}"
        )


@dataclass(frozen=True)
class Corpus:
    spec: CorpusSpec
    root: Path
    paths: tuple[str, ...]
    total_bytes: int
    generate_s: float  # 0 when read from the cache

    @property
    def frames(self) -> int:
        return self.spec.count * self.spec.frames_per_video

    def info(self) -> dict:
        return {
            "name": self.spec.name,
            "key": self.spec.key,
            "description": self.spec.describe(),
            "spec": asdict(self.spec),
            "videos": len(self.paths),
            "native_frames": self.frames,
            "total_mb": round(self.total_bytes / 2**20, 1),
            "generate_s": round(self.generate_s, 1),
        }


def _texture(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A smooth colour texture (bicubic-upsampled noise) with a little fine grain."""
    from PIL import Image

    small = rng.integers(0, 256, size=(height // 16 + 2, width // 16 + 2, 3), dtype=np.uint8)
    tex = np.asarray(Image.fromarray(small).resize((width, height), Image.BICUBIC))
    grain = rng.integers(-10, 11, size=tex.shape, dtype=np.int16)
    return np.clip(tex.astype(np.int16) + grain, 0, 255).astype(np.uint8)


def _triangle(i: int, period: int) -> int:
    """0 .. period .. 0: a pan that turns around instead of jumping (no scene cuts)."""
    m = i % (2 * period)
    return m if m <= period else 2 * period - m


def encode_one(spec: CorpusSpec, index: int, path: Path, threads: int) -> None:
    """Render and encode video `index` of `spec` to `path`, one frame at a time."""
    import av

    rng = np.random.default_rng([GENERATOR_VERSION, index, spec.width, spec.height])
    w, h = spec.width, spec.height
    pad_x, pad_y = max(64, w // 3), max(32, h // 3)
    tex = _texture(rng, w + pad_x, h + pad_y)
    vx, vy = int(rng.integers(1, 4)), int(rng.integers(0, 3))
    side = max(8, min(w, h) // 6)
    shapes = [
        (
            rng.integers(0, 256, size=3, dtype=np.uint8),
            int(rng.integers(0, w - side)),
            int(rng.integers(0, h - side)),
            int(rng.integers(2, 7)),
            int(rng.integers(-3, 4)),
        )
        for _ in range(3)
    ]
    keyint = spec.keyframe_interval
    options = {
        "preset": spec.preset,
        "crf": str(spec.crf),
        "x264-params": f"keyint={keyint}:min-keyint={keyint}:scenecut=0:threads={threads}",
    }
    tmp = path.with_name(f".part-{path.name}")
    with av.open(str(tmp), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(spec.fps), options=options)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.codec_context.gop_size = keyint
        for i in range(spec.frames_per_video):
            x0, y0 = _triangle(i * vx, pad_x), _triangle(i * vy, pad_y)
            frame = tex[y0 : y0 + h, x0 : x0 + w].copy()
            for color, sx, sy, dx, dy in shapes:
                px = _triangle(sx + i * dx, w - side)
                py = _triangle(sy + abs(i * dy), h - side)
                frame[py : py + side, px : px + side] = color
            vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
            vf.pts = i
            container.mux(stream.encode(vf))
        container.mux(stream.encode(None))
    os.replace(tmp, path)


def _encode_task(args: tuple) -> None:
    spec, index, path, threads = args
    encode_one(spec, index, Path(path), threads)


def ensure_corpus(spec: CorpusSpec, cache_root: Path, log=print) -> Corpus:
    """The corpus for `spec`, generated into `cache_root/<key>/` unless already there."""
    root = cache_root / spec.key
    done = root / "corpus.json"
    if done.exists():
        meta = json.loads(done.read_text())
        paths = tuple(str(root / p) for p in meta["files"])
        if all(Path(p).exists() for p in paths):
            return Corpus(spec, root, paths, meta["total_bytes"], 0.0)
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    names = [f"v{i:04d}.mp4" for i in range(spec.count)]
    t0 = time.perf_counter()
    workers = max(1, min(os.cpu_count() or 1, spec.count))
    threads = max(1, (os.cpu_count() or 1) // workers)
    log(f"generating corpus {spec.key}: {spec.describe()} ...")
    jobs = [(spec, i, str(root / n), threads) for i, n in enumerate(names)]
    if workers == 1:
        for job in jobs:
            _encode_task(job)
    else:
        with get_context("spawn").Pool(workers) as pool:
            list(pool.imap_unordered(_encode_task, jobs))
    elapsed = time.perf_counter() - t0
    total = sum((root / n).stat().st_size for n in names)
    done.write_text(
        json.dumps(
            {"spec": asdict(spec), "files": names, "total_bytes": total, "generate_s": elapsed}
        )
    )
    log(f"  generated in {elapsed:.1f} s ({total / 2**20:.1f} MiB)")
    return Corpus(spec, root, tuple(str(root / n) for n in names), total, elapsed)


def keyframe_positions(path: str) -> tuple[list[int], int]:
    """Indices (display order) of the keyframes of the first video stream, and the frame count.

    Reads packets only (no decoding). Display index = rank of the packet's pts.
    """
    import av

    with av.open(path) as container:
        stream = container.streams.video[0]
        pts, keys = [], []
        for packet in container.demux(stream):
            if packet.pts is None:
                continue
            pts.append(packet.pts)
            keys.append(bool(packet.is_keyframe))
    order = np.argsort(pts, kind="stable")
    rank = np.empty(len(pts), dtype=np.int64)
    rank[order] = np.arange(len(pts))
    return sorted(int(rank[i]) for i, k in enumerate(keys) if k), len(pts)
