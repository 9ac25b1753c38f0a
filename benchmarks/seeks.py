"""How many frames a decoder decodes per frame it keeps, for a video and a sampling.

Two ways, side by side:
- counted: decord's `get_batch` rule applied to the file's real keyframe positions (read with
  PyAV, packets only). For each sorted target t, with `cur` the next frame the decoder would
  return: when t is before `cur` or in a later GOP than `cur`, decord seeks to the keyframe at or
  before t and decodes forward to t (t - key + 1 frames); otherwise it decodes forward from `cur`
  (t - cur + 1 frames). B-frame reordering adds a frame or two per seek, not counted.
- timed: the CPU time of decord's `get_batch(targets)` divided by the CPU time per frame of
  decoding the whole video frame by frame (`next()`, RGB conversion included), in frames: what
  the seeks really cost, including each seek's fixed cost (flushing and restarting the decoder).
  CPU time, not wall time, so that other load on the machine does not skew it.
- the job's reader (`pipeline.video.frames`, video with B-frames): the frames it really had FFmpeg
  decode (it skips those neither wanted nor referenced), and its CPU time against decord's
  `get_batch` on the same targets, both without the resize.
- PyAV alone (`pipeline.video.frames.read_alone`, the reader of streams decord cannot decode,
  AV1): its CPU time against `get_batch` on the same H.264 targets, what an AV1 corpus costs in
  reading beside one decord reads (AV1's own decoder cost comes on top).
A pipeline that decodes everything (Ray Data's `read_videos`) decodes `native / kept` frames per
kept frame.
"""

from __future__ import annotations

import bisect
import time

from benchmarks.corpora import keyframe_positions


def counted_decodes(keyframes: list[int], targets: list[int]) -> int:
    decoded, cur = 0, 0
    for t in targets:
        key = keyframes[bisect.bisect_right(keyframes, t) - 1]
        key_cur = keyframes[bisect.bisect_right(keyframes, cur) - 1] if cur > 0 else 0
        if t < cur or key != key_cur:
            decoded += t - key + 1
        else:
            decoded += t - cur + 1
        cur = t + 1
    return decoded


def timed_decodes(path: str, targets: list[int], repeats: int = 3) -> tuple[float, float]:
    """(get_batch(targets) in frame-decode equivalents, CPU seconds per decoded frame)."""
    import decord

    best_full, best_sparse = float("inf"), float("inf")
    for _ in range(repeats):
        reader = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1)
        n = len(reader)
        t0 = time.process_time()
        for _ in range(n):
            reader.next()
        best_full = min(best_full, time.process_time() - t0)
        reader = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1)
        t0 = time.process_time()
        reader.get_batch(targets).asnumpy()
        best_sparse = min(best_sparse, time.process_time() - t0)
    per_frame = best_full / n
    return best_sparse / per_frame, per_frame


def analyse(path: str, fps: float, clip_frames: int, image_size: int = 112) -> dict:
    """Decoded frames per kept frame for the job's sampling of `path`."""
    import decord

    from pipeline.config import SamplingConfig
    from pipeline.video.sampling import plan_clips

    reader = decord.VideoReader(path, num_threads=1)
    native_fps, n = float(reader.get_avg_fps()), len(reader)
    keyframes = [int(k) for k in reader.get_key_indices()]  # what decord seeks to
    pyav_keyframes, pyav_frames = keyframe_positions(path)  # cross-check, packets only
    sampling = SamplingConfig(fps=fps, clip_frames=clip_frames, image_size=image_size)
    targets = sorted({f for c in plan_clips(n, native_fps, sampling) for f in c.frame_indices})
    timed, per_frame = timed_decodes(path, targets)
    counted = counted_decodes(keyframes, targets)
    gaps = [b - a for a, b in zip(keyframes, keyframes[1:], strict=False)]
    reader_decoded, reader_cpu = job_reader(path, targets, n)
    return {
        "video": path,
        "native_frames": n,
        "kept_frames": len(targets),
        "keyframes": len(keyframes),
        "keyframes_agree_with_pyav": keyframes == pyav_keyframes and n == pyav_frames,
        "mean_keyframe_interval": round(sum(gaps) / len(gaps), 1) if gaps else n,
        "decoded_per_kept_counted": round(counted / len(targets), 2),
        "decoded_per_kept_timed": round(timed / len(targets), 2),
        "decoded_per_kept_decode_all": round(n / len(targets), 2),
        "full_decode_fps_per_core": round(1 / per_frame, 1),
        "decoded_per_kept_job_reader": (
            round(reader_decoded / len(targets), 2) if reader_decoded is not None else None
        ),
        "job_reader_cpu_per_get_batch": reader_cpu,
        "pyav_alone_cpu_per_get_batch": pyav_alone(path, targets, n),
    }


def cpu_over_get_batch(read, path: str, targets: list[int], repeats: int = 3) -> float:
    """Best CPU time of `read()` over the best of decord's `get_batch(targets)` on `path`."""
    import decord

    best_read, best_decord = float("inf"), float("inf")
    for _ in range(repeats):
        t0 = time.process_time()
        read()
        best_read = min(best_read, time.process_time() - t0)
        t0 = time.process_time()
        decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1).get_batch(targets).asnumpy()
        best_decord = min(best_decord, time.process_time() - t0)
    return round(best_read / best_decord, 2)


def pyav_alone(path: str, targets: list[int], n: int) -> float:
    """CPU time of `read_alone` over decord's `get_batch` on the same targets (no resize)."""
    import numpy as np

    from pipeline.video.frames import read_alone

    blank = np.zeros((1, 1, 3), np.uint8)
    return cpu_over_get_batch(
        lambda: read_alone(path, targets, n, lambda f: f, blank), path, targets
    )


def job_reader(path: str, targets: list[int], n: int):
    """(frames the job's reader decoded, its CPU time / get_batch's), or (None, None) where it
    hands the video to decord."""
    from pipeline.video.frames import NotFastReadable, read_sampled

    def read():
        return read_sampled(path, targets, n, lambda f: f)

    try:
        decoded = read().frames_decoded
    except NotFastReadable:
        return None, None
    return decoded, cpu_over_get_batch(read, path, targets)
