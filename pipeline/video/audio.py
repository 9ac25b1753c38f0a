"""The audio track of a video, as the decode stage will read it beside the frames (PyAV).

Audio is decoded for a time range only (a clip's, or a work unit's), resampled by FFmpeg's
resampler to one rate, mono, float32 in [-1, 1]: memory follows the range, not the video. A
video without an audio stream is a fact (`AudioTrack.absent`), not an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

RATE = 16_000  # samples per second: what speech and sound-event models take


def rms(samples: np.ndarray) -> float:
    """Loudness: the root mean square of the samples (0 for silence or none)."""
    if not len(samples):
        return 0.0
    return float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))


class UnreadableAudio(RuntimeError):
    """A video's audio stream could not be decoded (its pictures may still be fine)."""


@dataclass(frozen=True)
class UnitSound:
    """What a work unit's sound read gave: the track over its frames' span (empty where the
    video has none), or why the stream could not be decoded."""

    track: AudioTrack
    error: str = ""

    def clip(self, start_s: float, end_s: float, length: int) -> tuple[np.ndarray, float]:
        """A clip's `length` samples (its own span, zero-padded after: a short clip is not
        given its neighbour's sound) and its loudness (NaN: no sound to measure)."""
        samples = self.track.between(start_s, end_s)[:length]
        out = np.zeros(length, np.float32)
        out[: len(samples)] = samples
        if not len(self.track.samples) or not len(samples):
            return out, float("nan")
        return out, rms(samples)


def read_unit_sound(path: str | Path, start_s: float, end_s: float, rate: int) -> UnitSound:
    """The sound of a unit's span; a stream that fails to decode is reported, not raised, so
    that the unit's pictures are kept where the model can do without the sound."""
    try:
        return UnitSound(read_audio(path, start_s, end_s, rate))
    except Exception as e:  # av.FFmpegError and what a damaged stream makes PyAV raise
        why = " ".join(str(e).split()) or type(e).__name__
        return UnitSound(AudioTrack.absent(rate), f"{type(e).__name__}: {why}"[:500])


@dataclass(frozen=True)
class AudioTrack:
    """A range of a video's sound: mono float32 samples at `rate`, from `start_s`."""

    samples: np.ndarray
    rate: int
    start_s: float

    @classmethod
    def absent(cls, rate: int = RATE) -> AudioTrack:
        return cls(np.zeros(0, np.float32), rate, 0.0)

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.rate

    def rms(self) -> float:
        return rms(self.samples)

    def between(self, start_s: float, end_s: float) -> np.ndarray:
        """The samples of [start_s, end_s) (a clip's part of a unit's range)."""
        a = max(0, round((start_s - self.start_s) * self.rate))
        b = max(a, round((end_s - self.start_s) * self.rate))
        return self.samples[a:b]


def read_audio(path: str | Path, start_s: float, end_s: float, rate: int = RATE) -> AudioTrack:
    """The sound of [start_s, end_s): the container's best audio stream, decoded from the
    packet before `start_s` on and resampled to `rate`, mono. `AudioTrack.absent()` for a
    video without sound. Raises av.FFmpegError where the stream cannot be decoded."""
    with av.open(str(path)) as container:
        if not container.streams.audio:
            return AudioTrack.absent(rate)
        stream = container.streams.best("audio")
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        if start_s > 0:  # the demuxer's index: the nearest packet at or before start_s
            container.seek(int(start_s / stream.time_base), stream=stream, backward=True)
        chunks, first = [], None
        for frame in container.decode(stream):
            if frame.pts is None:
                continue
            t = float(frame.pts * frame.time_base)
            if t >= end_s:
                break
            for out in resampler.resample(frame):
                if first is None:
                    first = t
                chunks.append(out.to_ndarray().reshape(-1))
        for out in resampler.resample(None):  # what the resampler still holds
            chunks.append(out.to_ndarray().reshape(-1))
    if first is None:
        return AudioTrack(np.zeros(0, np.float32), rate, start_s)
    track = AudioTrack(np.concatenate(chunks).astype(np.float32), rate, first)
    return AudioTrack(track.between(start_s, end_s).copy(), rate, max(start_s, first))
