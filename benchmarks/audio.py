"""What a clip's sound costs beside its frames, on one generated video with sound: a panning
texture with moving squares (as benchmarks/corpora.py draws them), H.264 at 25 fps with a
keyframe every 2 s, and an AAC track (44.1 kHz stereo by default: a sweep on one channel, a
tone on the other, light noise) that the reader resamples to 16 kHz mono.

The clips are the job's: 2 sampled frames per second, 8 per clip (4 s). Per clip, best of
--repeats passes, the median over the video's clips:
- audio read: `pipeline.video.audio.read_audio` of the clip's 4 s (open, seek, decode,
  resample), at each clip's offset; and the whole video's sound in one read, per clip;
- log-mel: `pipeline.models.audio_features.log_mel` of a batch of 8 clips' 4 s at 16 kHz,
  per clip (torch threads as a CPU actor's);
- frames: the clip's 8 sampled frames through the job's reader
  (`pipeline.video.io.read_frames_and_times`, resized to --image-size), at each clip's offset;
  and the video's sampled frames in one read, per clip.
The audio's cost is then given as a fraction of the frames'.

    python -m benchmarks.audio [--seconds 60] [--audio-rate 44100] [--channels 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import numpy as np

FPS = 25
KEYFRAME_INTERVAL = 50  # 2 s, as the benchmark corpora
SAMPLES_PER_S = 2.0  # the job's sampling for the sound modality's clips
CLIP_FRAMES = 8


def soundtrack(seconds: float, rate: int, channels: int) -> np.ndarray:
    """(channels, N) float32: a repeated 300-1500 Hz sweep, a 440 Hz tone, light noise."""
    from pipeline.samples import sweep, tone

    rng = np.random.default_rng(0)
    voices = [sweep(seconds, 300.0, 1500.0, 0.5, rate, 0.4), tone(seconds, 440.0, rate, 0.3)]
    track = np.stack([voices[c % 2] for c in range(channels)])
    return (track + rng.normal(0, 0.01, track.shape)).astype(np.float32)


def write_video(
    path: Path,
    seconds: float = 60.0,
    width: int = 320,
    height: int = 240,
    audio_rate: int = 44_100,
    channels: int = 2,
) -> Path:
    """Render and encode the video one frame at a time, its sound interleaved."""
    import av

    from benchmarks.corpora import _texture, _triangle

    rng = np.random.default_rng([1, width, height])
    pad_x, pad_y = max(64, width // 3), max(32, height // 3)
    tex = _texture(rng, width + pad_x, height + pad_y)
    side = max(8, min(width, height) // 6)
    squares = [
        (rng.integers(0, 256, 3, dtype=np.uint8), *rng.integers(0, 200, 2), *rng.integers(2, 7, 2))
        for _ in range(3)
    ]
    sound = soundtrack(seconds, audio_rate, channels)
    layout = "mono" if channels == 1 else "stereo"
    options = {
        "preset": "veryfast",
        "crf": "20",
        "x264-params": f"keyint={KEYFRAME_INTERVAL}:min-keyint={KEYFRAME_INTERVAL}:scenecut=0",
    }
    with av.open(str(path), mode="w", format="mp4") as container:
        video = container.add_stream("libx264", rate=Fraction(FPS), options=options)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        audio = container.add_stream("aac", rate=audio_rate, layout=layout)
        audio.time_base = Fraction(1, audio_rate)
        sent = 0  # audio samples encoded so far
        for i in range(round(seconds * FPS)):
            x0, y0 = _triangle(i * 2, pad_x), _triangle(i, pad_y)
            frame = tex[y0 : y0 + height, x0 : x0 + width].copy()
            for color, sx, sy, dx, dy in squares:
                px = _triangle(int(sx) + i * int(dx), width - side)
                py = _triangle(int(sy) + i * int(dy), height - side)
                frame[py : py + side, px : px + side] = color
            vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
            vf.pts = i
            vf.time_base = Fraction(1, FPS)
            container.mux(video.encode(vf))
            while sent < min(sound.shape[1], (i + 1) * audio_rate / FPS):
                chunk = np.zeros((channels, 1024), np.float32)
                part = sound[:, sent : sent + 1024]
                chunk[:, : part.shape[1]] = part
                af = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
                af.sample_rate, af.pts, af.time_base = audio_rate, sent, Fraction(1, audio_rate)
                container.mux(audio.encode(af))
                sent += 1024
        container.mux(video.encode(None))
        container.mux(audio.encode(None))
    return path


def best_ms(fn: Callable[[], object], repeats: int) -> float:
    """The fastest of `repeats` calls, in milliseconds."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best * 1000


def per_clip_ms(fns: list[Callable[[], object]], repeats: int) -> float:
    """The median over clips of each clip's best of `repeats`; passes go over every clip in
    turn (a clip's read is not repeated back to back, out of a warm cache)."""
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for k, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            best[k] = min(best[k], time.perf_counter() - start)
    return statistics.median(best) * 1000


def measure(
    seconds: float = 60.0,
    width: int = 320,
    height: int = 240,
    audio_rate: int = 44_100,
    channels: int = 2,
    image_size: int = 112,
    batch: int = 8,
    threads: int = 2,
    repeats: int = 3,
    workdir: str | Path | None = None,
) -> dict:
    import av
    import torch

    from pipeline.config import PlanConfig, SamplingConfig
    from pipeline.models.audio_features import log_mel
    from pipeline.video.audio import RATE, read_audio
    from pipeline.video.io import probe, read_frames_and_times
    from pipeline.video.sampling import plan_clips

    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        path = Path(tmp) / "with_sound.mp4"
        start = time.perf_counter()
        write_video(path, seconds, width, height, audio_rate, channels)
        encode_s = time.perf_counter() - start
        info = probe(path)
        sampling = SamplingConfig(fps=SAMPLES_PER_S, clip_frames=CLIP_FRAMES, image_size=image_size)
        clip_s = CLIP_FRAMES / SAMPLES_PER_S
        clips = [
            c
            for c in plan_clips(info.num_frames, info.fps, sampling)
            if c.start_s + clip_s <= info.duration_s + 1e-6
        ]
        chunk_bytes = PlanConfig().chunk_bytes
        sampled = sorted({f for c in clips for f in c.frame_indices})

        def audio_of(c):
            return lambda: read_audio(path, c.start_s, c.start_s + clip_s)

        def frames_of(c):
            return lambda: read_frames_and_times(
                path, list(c.frame_indices), image_size, info, chunk_bytes
            )

        got = read_audio(path, clips[0].start_s, clips[0].start_s + clip_s)
        assert abs(got.seconds - clip_s) < 0.01 and got.rate == RATE, got.seconds
        frames_of(clips[0])()  # the frame reader's imports, out of the timings
        audio_ms = per_clip_ms([audio_of(c) for c in clips], repeats)
        frames_ms = per_clip_ms([frames_of(c) for c in clips], repeats)
        whole_audio_ms = best_ms(lambda: read_audio(path, 0.0, info.duration_s), repeats)
        whole_frames_ms = best_ms(
            lambda: read_frames_and_times(path, sampled, image_size, info, chunk_bytes), repeats
        )
        open_ms = best_ms(lambda: av.open(str(path)).close(), repeats)
        size_mb = path.stat().st_size / 2**20

    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    samples = torch.from_numpy(
        rng.uniform(-0.5, 0.5, (batch, round(clip_s * RATE))).astype(np.float32)
    )
    with torch.inference_mode():
        log_mel(samples, RATE)  # warm-up: the filter bank, the FFT plan
        mel_ms = best_ms(lambda: log_mel(samples, RATE), max(3 * repeats, 10)) / batch

    n = len(clips)
    return {
        "video": f"{seconds:g} s H.264 {width}x{height} @ {FPS} fps, keyframe every "
        f"{KEYFRAME_INTERVAL / FPS:g} s; AAC {audio_rate} Hz "
        f"{'mono' if channels == 1 else f'{channels} channels'}",
        "encode_s": round(encode_s, 2),
        "file_mb": round(size_mb, 2),
        "clips": n,
        "clip_s": clip_s,
        "frames_per_clip": CLIP_FRAMES,
        "image_size": image_size,
        "audio_rate_out": RATE,
        "torch_threads": threads,
        "mel_batch": batch,
        "repeats": repeats,
        "open_ms": round(open_ms, 3),
        "audio_read_ms_per_clip": round(audio_ms, 3),
        "log_mel_ms_per_clip": round(mel_ms, 3),
        "frames_ms_per_clip": round(frames_ms, 3),
        "audio_read_over_frames": round(audio_ms / frames_ms, 3),
        "audio_with_log_mel_over_frames": round((audio_ms + mel_ms) / frames_ms, 3),
        "whole_video_audio_read_ms_per_clip": round(whole_audio_ms / n, 3),
        "whole_video_frames_ms_per_clip": round(whole_frames_ms / n, 3),
        "whole_video_audio_over_frames": round(whole_audio_ms / whole_frames_ms, 3),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--audio-rate", type=int, default=44_100, help="the AAC track's rate")
    p.add_argument("--channels", type=int, default=2, choices=(1, 2))
    p.add_argument("--image-size", type=int, default=112)
    p.add_argument("--threads", type=int, default=2, help="torch threads for log-mel")
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    result = measure(
        a.seconds,
        a.width,
        a.height,
        a.audio_rate,
        a.channels,
        a.image_size,
        threads=a.threads,
        repeats=a.repeats,
    )
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
