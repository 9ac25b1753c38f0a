"""The fast frame reader (pipeline.video.frames) on video with B-frames: the frames it returns
are the true ones (every frame decoded in order by PyAV), its times are decord's, it decodes
fewer frames than it is given, and it hands anything it cannot vouch for back to decord."""

from __future__ import annotations

import av
import decord  # noqa: F401  (imported first, as in a worker: decord's FFmpeg is loaded globally)
import numpy as np
import pytest

from pipeline.samples import VideoSpec, render_frames
from pipeline.video.frames import NotFastReadable, read_sampled
from pipeline.video.io import open_reader, probe, read_frames_and_times, read_with_decord
from tests.videos import (
    BFRAME_ZOO_NAMES,
    DAMAGED_FRAME,
    _encode,
    keyframes,
    make_bframe_zoo,
    pyav_frames,
    write_damaged_gop,
)

PATTERNS = {
    "every_frame": lambda n: list(range(n)),
    "every_4th": lambda n: list(range(0, n, 4)),
    "every_15th": lambda n: list(range(0, n, 15)),  # a gap of a keyframe interval and more
    "scattered": lambda n: sorted({1, 7, n // 2, n // 2 + 1, n - 2}),
    "first_and_last": lambda n: [0, n - 1],
}


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    files = make_bframe_zoo(tmp_path_factory.mktemp("bframes"))
    return {name: (path, pyav_frames(path)) for name, path in files.items()}


def identity(frame: np.ndarray) -> np.ndarray:
    return frame.copy()


@pytest.mark.parametrize("pattern", sorted(PATTERNS))
@pytest.mark.parametrize("name", BFRAME_ZOO_NAMES)
def test_frames_are_the_true_frames_and_times_are_decords(zoo, name: str, pattern: str):
    path, truth = zoo[name]
    wanted = PATTERNS[pattern](len(truth))
    got = read_sampled(path, wanted, len(truth), identity)
    assert np.array_equal(got.frames, truth[wanted])
    decord_times = np.asarray(open_reader(path).get_frame_timestamp(wanted), dtype=np.float64)
    assert np.array_equal(got.times[:, 0], decord_times[:, 0].round(6))
    if name != "vfr_mp4":  # decord's older FFmpeg reads other durations there (below)
        assert np.array_equal(got.times[:, 1], decord_times[:, 1].round(6))
    assert got.frames_decoded <= got.packets_fed <= len(truth)


RANGES = {  # (first, last, step) as fractions of the video: the units of a long one
    "middle_interval": (0.45, 0.55, 1),
    "two_frames": (0.5, 0.52, 100),
    "a_third_sparse": (0.3, 0.63, 7),
    "the_end": (0.9, 1.0, 3),
}


@pytest.mark.parametrize("window", sorted(RANGES))
@pytest.mark.parametrize("name", BFRAME_ZOO_NAMES)
def test_a_range_is_read_from_the_mp4_index(zoo, name: str, window: str):
    """A range of the video (a unit of a long one): MP4 files are read from their packet
    index, over the keyframe intervals the range needs and the one before; the frames are
    still the true ones. Open intervals too (x264's open GOPs, x265's CRA keyframes, whose
    leading frames are shown before their keyframe and refer to the interval before): decord,
    which seeks to the keyframe it lists in decode order, returns other frames there."""
    path, truth = zoo[name]
    n = len(truth)
    lo, hi, step = RANGES[window]
    wanted = sorted(set(range(int(lo * (n - 1)), int(hi * (n - 1)) + 1, step)))
    try:
        got = read_sampled(path, wanted, n, identity)
    except NotFastReadable as e:
        assert name.endswith("mkv"), (name, e)  # no packet index: a short range is decord's
        return
    assert np.array_equal(got.frames, truth[wanted])
    assert got.frame_size == (truth.shape[2], truth.shape[1])  # (width, height) decoded
    if window in ("middle_interval", "the_end") and len(keyframes(path)) > 2:
        # from a keyframe near the range, open intervals too: not from the start
        assert got.packets_fed < n / 2, (name, got.packets_fed, n)
        # and numbered without a pass over the whole stream
        assert got.packets_indexed < n, (name, got.packets_indexed, n)
    if name == "long_mp4":  # the intervals it needs, not the file
        keys = keyframes(path)
        first = max(k for k in keys if k <= wanted[0])
        last = min([k for k in keys if k > wanted[-1]] + [n])
        assert got.packets_fed <= last - first < n / 2


def test_vfr_starts_are_the_presentation_times(zoo):
    """Where decord's older FFmpeg reads other durations (this MP4's reordered VFR frames: the
    container's durations are decode-order steps), the starts still agree with the frames'
    true presentation times; each end is the start plus the duration FFmpeg reads."""
    for name in ("vfr_mp4", "vfr_mkv"):
        path, truth = zoo[name]
        with av.open(str(path)) as container:
            shown = [float(f.time) for f in container.decode(video=0)]
        got = read_sampled(path, list(range(len(truth))), len(truth), identity)
        assert np.allclose(got.times[:, 0], shown, atol=1e-6), name
        assert (got.times[:, 1] > got.times[:, 0]).all(), name


@pytest.mark.parametrize("name", ["mp4", "slow_preset", "mkv"])
def test_unwanted_frames_nobody_refers_to_are_not_decoded(zoo, name: str):
    path, truth = zoo[name]
    wanted = PATTERNS["every_15th"](len(truth))
    got = read_sampled(path, wanted, len(truth), identity)
    # decord decodes every frame from a keyframe to the last frame wanted after it
    assert got.frames_decoded < 0.8 * got.packets_fed, (got.frames_decoded, got.packets_fed)
    everything = read_sampled(path, list(range(len(truth))), len(truth), identity)
    assert everything.frames_decoded == everything.packets_fed == len(truth)


def test_the_job_reads_b_frame_video_with_it(zoo):
    """read_frames_and_times takes the fast path (same frames, resized) and agrees with a read
    through decord alone."""
    path, truth = zoo["mp4"]
    info = probe(path)
    wanted = PATTERNS["every_15th"](info.num_frames)
    fast = read_frames_and_times(path, wanted, 32, info, 2**30)
    slow = read_with_decord(path, wanted, 32, info, 2**30)
    assert fast.failures == slow.failures == ()
    assert np.array_equal(fast.frames, slow.frames)
    assert np.array_equal(fast.times, slow.times)


def test_it_declines_what_it_cannot_vouch_for(zoo, tmp_path):
    path, truth = zoo["mp4"]
    n = len(truth)
    with pytest.raises(NotFastReadable, match="packets for"):
        read_sampled(path, [0, n - 2], n - 1, identity)  # not the probe's frame count
    mkv, truth = zoo["mkv"]
    with pytest.raises(NotFastReadable, match="short range of a long video with no packet index"):
        read_sampled(mkv, [40, 41], len(truth), identity)
    frames = render_frames(VideoSpec(width=64, height=48, seconds=1.0, seed=3))
    plain = _encode(tmp_path / "no_b_frames.mp4", frames, preset="ultrafast")
    with pytest.raises(NotFastReadable, match="no B-frames"):
        read_sampled(plain, [0, 5], len(frames), identity)


def test_rotated_video_is_read_by_decord_as_displayed(tmp_path):
    frames = render_frames(VideoSpec(width=160, height=96, seconds=1.0, seed=33))
    path = _encode(tmp_path / "rotated.mp4", frames, rotation=90, preset="veryfast")
    with pytest.raises(NotFastReadable, match="rotation"):
        read_sampled(path, [0, 9], len(frames), identity)
    info = probe(path)
    assert (info.width, info.height) == (160, 96)  # coded: the probe decodes nothing
    got = read_frames_and_times(path, [0, 9], 32, info, 2**30)
    assert got.frame_size == (96, 160)  # as displayed
    assert np.array_equal(got.frames, read_with_decord(path, [0, 9], 32, info, 2**30).frames)


def test_damaged_b_frame_video_loses_only_its_keyframe_interval(tmp_path):
    """A packet FFmpeg refuses sends the request to decord's salvage: the frames around the
    damage come back bit for bit as from the intact file, the damaged interval is reported."""
    frames = render_frames(VideoSpec(seconds=4.0, seed=31))
    good = write_damaged_gop(tmp_path / "good.mp4", frames, damage=False, preset="veryfast")
    bad = write_damaged_gop(tmp_path / "bad.mp4", frames, preset="veryfast")
    keys = keyframes(bad)
    end = min(k for k in [*keys, 40] if k > DAMAGED_FRAME)
    info = probe(bad)
    wanted = np.arange(0, 40, 3)
    expected = read_frames_and_times(good, wanted.tolist(), 32, info, 2**20)
    got = read_frames_and_times(bad, wanted.tolist(), 32, info, 2**20)
    decoded = got.decoded()
    assert not decoded[(wanted >= DAMAGED_FRAME) & (wanted < end)].all()
    assert decoded[wanted >= end].all()
    assert np.array_equal(got.frames[decoded], expected.frames[decoded])
    assert not got.frames[~decoded].any()
