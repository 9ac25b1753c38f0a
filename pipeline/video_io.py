"""decord behind two calls: read a video's header, and read chosen frames resized (CPU)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class VideoInfo:
    num_frames: int  # frames in the video stream
    fps: float
    width: int
    height: int

    @property
    def duration_s(self) -> float:
        return self.num_frames / self.fps if self.fps > 0 else 0.0


class UnreadableVideo(ValueError):
    """The file is not a video decord can open; the message says what FFmpeg saw."""


def diagnose(path: Path) -> str:
    """Why a file cannot be opened, in FFmpeg's words (through PyAV), for the errors table."""
    if path.stat().st_size == 0:
        return "empty file (0 bytes)"
    try:
        import av

        with av.open(str(path)) as container:
            if not container.streams.video:
                kinds = ", ".join(sorted({s.type for s in container.streams})) or "none"
                return f"no video stream (streams: {kinds})"
    except Exception as e:  # the message is the diagnosis
        return " ".join(str(e).split())
    return ""


def open_reader(path: Path):
    import decord  # worker-side import: native library, loaded where it is used

    return decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)


def probe(path: Path) -> VideoInfo:
    """Frame count, rate and size. Decodes the first frame to learn the size decord returns."""
    try:
        reader = open_reader(path)
    except Exception as e:
        reason = diagnose(path) or " ".join(str(e).split())
        raise UnreadableVideo(f"cannot open video: {reason}") from e
    num_frames = len(reader)
    if num_frames <= 0:
        raise ValueError("video stream has no frames")
    fps = float(reader.get_avg_fps())
    if not np.isfinite(fps) or fps <= 0:
        raise ValueError(f"video stream reports an invalid frame rate ({fps})")
    height, width = reader[0].shape[:2]
    return VideoInfo(num_frames=num_frames, fps=fps, width=int(width), height=int(height))


def center_crop_box(width: int, height: int) -> tuple[int, int, int, int]:
    """The centred square of a frame (short side), as a PIL box."""
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return left, top, left + side, top + side


def resize_frames(frames: np.ndarray, size: int) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, size, size, 3): centre square, then bilinear resize."""
    from PIL import Image

    box = center_crop_box(frames.shape[2], frames.shape[1])
    out = np.empty((len(frames), size, size, 3), dtype=np.uint8)
    for i, frame in enumerate(frames):
        out[i] = np.asarray(Image.fromarray(frame).resize((size, size), Image.BILINEAR, box=box))
    return out


def read_frames(
    path: Path, indices: list[int], size: int, native: VideoInfo, chunk_bytes: int
) -> np.ndarray:
    """Frames at sorted unique `indices`, resized; native-size frames are decoded in chunks so
    memory stays bounded by `chunk_bytes` whatever the resolution."""
    reader = open_reader(path)
    height, width = native.height, native.width
    per_chunk = max(1, chunk_bytes // (height * width * 3))
    out = np.empty((len(indices), size, size, 3), dtype=np.uint8)
    for start in range(0, len(indices), per_chunk):
        batch = reader.get_batch(indices[start : start + per_chunk]).asnumpy()  # (n, H, W, 3)
        out[start : start + len(batch)] = resize_frames(batch, size)
    return out
