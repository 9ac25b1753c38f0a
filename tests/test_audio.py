"""The audio track: read for a time range, resampled to one rate, mono (pipeline.video.audio)."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.samples import Sound, VideoSpec, encode_video, render_frames, tone
from pipeline.video.audio import RATE, read_audio
from pipeline.video.io import probe


def dominant_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[np.argmax(spectrum)])


@pytest.fixture(scope="module")
def two_tones(tmp_path_factory):
    """4 s of video whose sound is 440 Hz for 2 s, then 880 Hz, recorded at 44.1 kHz."""
    frames = render_frames(VideoSpec(seconds=4.0, fps=10))
    sound = np.concatenate([tone(2.0, 440, 44_100), tone(2.0, 880, 44_100)])
    return encode_video(
        frames, tmp_path_factory.mktemp("audio") / "tones.mp4", fps=10, sound=Sound(sound, 44_100)
    )


def test_the_header_says_whether_there_is_sound(two_tones):
    assert probe(two_tones).has_audio


def test_a_range_is_resampled_to_one_rate_mono(two_tones):
    track = read_audio(two_tones, 0.5, 1.5)
    assert track.rate == RATE and track.samples.ndim == 1 and track.samples.dtype == np.float32
    assert abs(track.seconds - 1.0) < 0.02
    assert abs(dominant_hz(track.samples, RATE) - 440) < 5
    assert abs(track.rms() - 0.5 / np.sqrt(2)) < 0.03  # a sine of amplitude 0.5


def test_the_range_is_where_it_says(two_tones):
    late = read_audio(two_tones, 2.2, 3.2)
    assert abs(dominant_hz(late.samples, RATE) - 880) < 5
    assert abs(late.start_s - 2.2) < 0.01
    whole = read_audio(two_tones, 0.0, 4.0).between(2.2, 3.2)[:8000]
    a, b = whole - whole.mean(), late.samples[:8000] - late.samples[:8000].mean()
    lags = range(-8, 9)  # a seek and a whole read agree to within a sample (the resampler's phase)
    best = max(lags, key=lambda k: float(np.dot(np.roll(a, k), b)))
    assert abs(best) <= 1


def test_a_video_without_sound_is_a_fact(tmp_path):
    path = encode_video(render_frames(VideoSpec(seconds=1.0)), tmp_path / "silent.mp4", fps=10)
    assert not probe(path).has_audio
    track = read_audio(path, 0.0, 1.0)
    assert len(track.samples) == 0 and track.rms() == 0.0


def test_log_mel_puts_a_tone_in_its_band_and_silence_at_the_floor():
    import torch

    from pipeline.models.audio_features import FLOOR, N_MELS, hz_to_mel, log_mel, mel_to_hz

    rate = RATE
    sound = torch.from_numpy(np.stack([tone(1.0, 440, rate), np.zeros(rate, np.float32)]))
    mel = log_mel(sound, rate)
    assert mel.shape == (2, N_MELS, 101)  # 1 s at a 10 ms hop
    centres = mel_to_hz(np.linspace(0, hz_to_mel(rate / 2), N_MELS + 2))[1:-1]
    loudest = int(mel[0].mean(dim=1).argmax())
    assert abs(centres[loudest] - 440) < 60  # the band the tone falls in
    assert torch.allclose(mel[1], torch.full_like(mel[1], float(np.log(FLOOR))), atol=1e-3)
    np.testing.assert_allclose(mel_to_hz(hz_to_mel(440.0)), 440.0)


# The decode stage: each clip's sound beside its frames (pipeline.video.decode), no Ray.


def decode_rows(path, modalities: str, fps: float = 2.0, clip_frames: int = 4) -> list[dict]:
    from dataclasses import asdict

    from pipeline.config import PlanConfig, SamplingConfig, StorageConfig
    from pipeline.listing import list_videos
    from pipeline.video.decode import DecodeUnit
    from pipeline.video.plan import PlanVideo

    sampling = SamplingConfig(
        fps=fps, clip_frames=clip_frames, image_size=32, modalities=modalities
    )
    plan, storage_cfg = PlanConfig(unit_frames=3), StorageConfig()
    [entry] = list_videos(str(path), storage_cfg)
    units = PlanVideo(sampling, plan, storage_cfg)(asdict(entry))
    return [row for unit in units for row in DecodeUnit(sampling, plan, storage_cfg)(unit)]


def test_each_clip_carries_the_sound_of_its_own_time(two_tones):
    rows = decode_rows(two_tones, "video,audio")  # 2 samples/s, 4 a clip: 2 s clips
    clips = [r for r in rows if not r["error_stage"]]
    assert [r["clip_index"] for r in clips] == [0, 1]
    for row, hz in zip(clips, (440, 880), strict=True):
        assert row["audio"].shape == (32_000,) and row["audio"].dtype == np.float32
        assert abs(dominant_hz(row["audio"], RATE) - hz) < 5  # 0-2 s is 440 Hz, 2-4 s 880 Hz
        assert abs(row["audio_rms"] - 0.5 / np.sqrt(2)) < 0.03


def test_a_picture_model_reads_no_sound(two_tones):
    rows = decode_rows(two_tones, "video")
    assert rows and not any("audio" in r or "audio_rms" in r for r in rows)


def test_a_padded_clip_hears_only_its_own_time(tmp_path):
    """1.5 s of video at 2 samples/s is 3 samples, one clip of 4 (the last repeated): it
    hears the 1.5 s its samples stand for, then zeros to the 2 s a full clip lasts."""
    frames = render_frames(VideoSpec(seconds=1.5, fps=10))
    path = encode_video(frames, tmp_path / "short.mp4", fps=10, sound=Sound(tone(1.5, 440)))
    [clip] = [r for r in decode_rows(path, "video,audio") if not r["error_stage"]]
    heard = np.flatnonzero(np.abs(clip["audio"]) > 1e-3)
    assert len(clip["audio"]) == 2 * RATE
    assert len(heard) > 1.4 * RATE and heard[-1] < 1.52 * RATE


def test_no_audio_stream_is_silence_not_an_error(tmp_path):
    path = encode_video(render_frames(VideoSpec(seconds=2.0)), tmp_path / "mute.mp4", fps=10)
    rows = decode_rows(path, "audio")
    assert rows and not any(r["error_stage"] for r in rows)
    assert all(np.isnan(r["audio_rms"]) and not r["audio"].any() for r in rows)


def test_a_broken_audio_stream_costs_the_sound_or_the_clips(tmp_path):
    from pipeline.samples import write_broken_audio

    path = write_broken_audio(tmp_path / "broken.mp4", seconds=4.0)
    # a model of both: the clips are indexed on their pictures, and a row says why not the sound
    rows = decode_rows(path, "video,audio")
    clips = [r for r in rows if not r["error_stage"]]
    errors = [r for r in rows if r["error_stage"]]
    assert clips and all(np.isnan(r["audio_rms"]) and not r["audio"].any() for r in clips)
    assert {(e["error_stage"], e["error_type"]) for e in errors} == {("decode", "UnreadableAudio")}
    assert "indexed on their pictures" in errors[0]["error_message"]
    # a model of sound alone: nothing to index, the unit is an error row
    rows = decode_rows(path, "audio")
    assert rows and all(r["error_type"] == "UnreadableAudio" for r in rows)
    assert all(r["clip_index"] == -1 for r in rows)
