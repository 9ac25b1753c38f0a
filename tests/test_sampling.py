"""Pure sampling and planning logic: no Ray, no I/O."""

import numpy as np
import pytest

from pipeline.config import ConfigError, SamplingConfig
from pipeline.video.sampling import clip_windows, group_clips, plan_clips, sampled_frame_indices


def test_sampling_at_one_fps_from_30fps_takes_every_30th_frame():
    idx = sampled_frame_indices(300, 30.0, 1.0)
    assert idx.tolist() == list(range(0, 300, 30))


def test_sampling_handles_fractional_rates_and_stays_increasing():
    idx = sampled_frame_indices(1000, 29.97, 2.0)
    assert np.all(np.diff(idx) > 0)
    assert idx[-1] < 1000
    # about 2 samples per second of video
    assert abs(len(idx) - 1000 / 29.97 * 2) <= 1


def test_target_rate_above_native_is_capped_at_every_frame():
    assert sampled_frame_indices(5, 10.0, 50.0).tolist() == [0, 1, 2, 3, 4]


def test_empty_video_and_bad_fps():
    assert sampled_frame_indices(0, 30.0, 1.0).size == 0
    with pytest.raises(ValueError, match="frame rate"):
        sampled_frame_indices(10, 0.0, 1.0)


def test_clip_windows_cover_the_tail():
    assert clip_windows(10, 4, 4) == [(0, 4), (4, 8), (6, 10)]
    assert clip_windows(8, 4, 4) == [(0, 4), (4, 8)]
    assert clip_windows(3, 4, 4) == [(0, 3)]
    assert clip_windows(10, 4, 2) == [(0, 4), (2, 6), (4, 8), (6, 10)]


def test_short_video_gives_one_padded_clip():
    clips = plan_clips(1, 25.0, SamplingConfig(fps=1, clip_frames=4))
    assert len(clips) == 1
    assert clips[0].frame_indices == (0, 0, 0, 0)
    assert clips[0].start_s == 0.0
    assert clips[0].end_s == pytest.approx(1 / 25)


def test_clip_times_follow_frames():
    clips = plan_clips(300, 30.0, SamplingConfig(fps=2, clip_frames=4))
    assert [c.clip_index for c in clips] == list(range(len(clips)))
    assert clips[0].frame_indices == (0, 15, 30, 45)
    assert clips[0].start_s == 0.0 and clips[0].end_s == pytest.approx(46 / 30)
    assert all(len(c.frame_indices) == 4 for c in clips)
    assert clips[-1].frame_indices[-1] == 285


def test_group_clips_bounds_frames_per_unit():
    clips = plan_clips(30 * 600, 30.0, SamplingConfig(fps=1, clip_frames=16))  # 10 minutes
    ranges = group_clips(clips, max_frames=64)
    assert ranges[0] == (0, 4)
    assert ranges[-1][1] == len(clips)
    covered = [i for a, b in ranges for i in range(a, b)]
    assert covered == list(range(len(clips)))
    for a, b in ranges:
        frames = {f for c in clips[a:b] for f in c.frame_indices}
        assert len(frames) <= 64


def test_group_clips_keeps_at_least_one_clip_per_unit():
    clips = plan_clips(300, 30.0, SamplingConfig(fps=2, clip_frames=8))
    assert group_clips(clips, max_frames=3) == [(i, i + 1) for i in range(len(clips))]


def test_sampling_config_validates():
    with pytest.raises(ConfigError, match="--fps"):
        SamplingConfig(fps=0)
    with pytest.raises(ConfigError, match="--clip-frames"):
        SamplingConfig(clip_frames=0)
