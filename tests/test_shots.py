"""Shot-cut detection (pipeline.video.shots) on real encoded videos with known cuts
(pipeline.samples.render_shots), read and sampled as the decode stage reads them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.samples import ShotSpec, render_shots, shot_corpus, write_shots
from pipeline.video.io import probe, read_frames_and_times
from pipeline.video.sampling import sampled_frame_indices
from pipeline.video.shots import (
    CONTEXT_AFTER,
    CONTEXT_BEFORE,
    colour_histograms,
    cut_positions,
    detect_cuts,
    score_cuts,
    shot_windows,
)

IMAGE_SIZE = 112
RATES = (2.0, 4.0)  # samples per second; 1 s dissolves need 2 or more (see test_one_per_second)
DEFAULT_RATE = 1.0  # the index job's --fps default
NO_CUT_VIDEOS = ("pan_only", "fade_only", "flash_only")
MIN_F1 = 0.95


class Sampled:
    """One corpus video as a unit of the index job sees it: samples and the true cuts."""

    def __init__(self, path: Path, shots: tuple[ShotSpec, ...], cuts: list[int], rate: float):
        native = probe(path)
        self.indices = sampled_frame_indices(native.num_frames, native.fps, rate)
        got = read_frames_and_times(path, [int(i) for i in self.indices], IMAGE_SIZE, native, 2**24)
        assert not got.failures
        self.frames = got.frames
        self.shots = shots
        self.truth = cut_positions(self.indices, cuts)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, float], Sampled]:
    """Every corpus video at every rate in RATES (written and decoded once per module)."""
    root = tmp_path_factory.mktemp("shots")
    out = {}
    for name, shots in shot_corpus().items():
        path = root / f"{name}.mp4"
        cuts = write_shots(shots, path)
        for rate in (*RATES, DEFAULT_RATE):
            out[name, rate] = Sampled(path, shots, cuts, rate)
    return out


def test_corpus_has_cuts_and_every_kind_of_non_cut(corpus):
    shots = [s for (name, rate), v in corpus.items() if rate == RATES[0] for s in v.shots]
    cuts = sum(len(v.truth) for (name, rate), v in corpus.items() if rate == RATES[0])
    assert cuts >= 30
    assert sum(s.entrance == "dissolve" for s in shots) >= 4
    assert sum(s.entrance == "fade_black" for s in shots) >= 4
    assert sum(abs(s.pan) >= 1.0 for s in shots) >= 8
    assert sum(len(s.flashes) for s in shots) >= 8


@pytest.mark.parametrize("rate", RATES)
def test_cut_f1_over_corpus(corpus, rate):
    """F1 of the corpus's counts (not a mean of per-video F1s), one sample's tolerance."""
    scores = [
        score_cuts(detect_cuts(v.frames), v.truth) for (_, r), v in corpus.items() if r == rate
    ]
    total = sum(scores[1:], scores[0])
    assert total.true_positives >= 30
    assert total.f1 >= MIN_F1, total


@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("name", NO_CUT_VIDEOS)
def test_no_cut_in_pans_fades_and_flashes(corpus, name, rate):
    video = corpus[name, rate]
    assert video.truth == []
    assert detect_cuts(video.frames) == []


def _units(frames: np.ndarray, bounds: list[int]) -> list[int]:
    """Cuts found unit by unit over [bounds[k], bounds[k+1]), each unit given its context."""
    cuts = []
    for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
        previous = frames[max(0, start - CONTEXT_BEFORE) : start] if start else None
        following = frames[stop : stop + CONTEXT_AFTER] if stop < len(frames) else None
        cuts += [start + c for c in detect_cuts(frames[start:stop], previous, following=following)]
    return cuts


@pytest.mark.parametrize("unit", [1, 2, 3, 5, 8])
def test_units_find_the_cuts_of_the_whole_video(corpus, unit):
    for (_, rate), video in corpus.items():
        if rate == RATES[0]:
            bounds = [*range(0, len(video.frames), unit), len(video.frames)]
            assert _units(video.frames, bounds) == detect_cuts(video.frames)


def test_unit_starting_at_a_cut_finds_it_and_boundaries_invent_none(corpus):
    """Units split at every true cut and at every flash, fade and pan sample: position 0 of a
    unit that starts on a cut is a cut, and of one that does not is not."""
    for (name, rate), video in corpus.items():
        if rate != RATES[0]:
            continue
        whole = detect_cuts(video.frames)
        bounds = sorted({0, len(video.frames), *video.truth, *range(0, len(video.frames), 3)})
        assert _units(video.frames, bounds) == whole, name
        for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
            if start == 0:
                continue
            previous = video.frames[max(0, start - CONTEXT_BEFORE) : start]
            following = video.frames[stop : stop + CONTEXT_AFTER]
            found = detect_cuts(video.frames[start:stop], previous, following=following)
            assert (0 in found) == (start in whole), (name, start)


def test_first_sample_is_a_cut_only_given_the_previous_one(corpus):
    video = corpus["mixed_0", RATES[0]]
    cut = video.truth[0]
    after = video.frames[cut : cut + 4]
    assert 0 not in detect_cuts(after)
    assert detect_cuts(after, previous=video.frames[cut - 1]) == [0]  # one frame, (H, W, 3)
    assert detect_cuts(after, previous=video.frames[cut - 3 : cut]) == [0]


def _scene(value: int, size: int = 32) -> np.ndarray:
    """A frame of random pixels around one colour: a scene the detector can tell apart."""
    rng = np.random.default_rng(value)
    base = np.asarray([value, 255 - value, (value * 7) % 256], dtype=np.int32)
    return np.clip(base + rng.integers(-10, 11, (size, size, 3)), 0, 255).astype(np.uint8)


def test_flash_at_a_units_last_sample_needs_the_look_ahead():
    """A flash in the last sample looks like a cut until the next sample shows the scene
    again: without `following` it is reported (as at a video's end), with it not."""
    a, white = _scene(40), np.full((32, 32, 3), 250, np.uint8)
    unit = np.stack([a, a, a, white])
    assert detect_cuts(unit) == [3]
    assert detect_cuts(unit, following=a) == []
    assert detect_cuts(np.stack([a, a, a, white, a, a])) == []


def test_cut_next_to_a_flash_is_found_once():
    a, b, white = _scene(40), _scene(200), np.full((32, 32, 3), 250, np.uint8)
    assert detect_cuts(np.stack([a, a, a, b, white, b, b])) == [3]
    assert detect_cuts(np.stack([a, a, white, a, b, b, b])) == [4]


def test_one_per_second_finds_the_cuts_but_may_take_short_fades_for_cuts(corpus):
    """At the job's default 1 sample/s a 1 s dissolve can fall between two samples: it cannot
    be told from a cut then. The hard cuts are still found, and pans and flashes ignored."""
    videos = {name: v for (name, rate), v in corpus.items() if rate == DEFAULT_RATE}
    scores = [score_cuts(detect_cuts(v.frames), v.truth) for v in videos.values()]
    assert sum(scores[1:], scores[0]).recall >= MIN_F1
    assert detect_cuts(videos["pan_only"].frames) == []
    assert detect_cuts(videos["flash_only"].frames) == []


def test_render_shots_marks_the_frames_where_cuts_happen():
    shots = (
        ShotSpec(scene=0, seconds=1.0),
        ShotSpec(scene=1, seconds=1.0),
        ShotSpec(scene=2, seconds=1.0, entrance="dissolve", entrance_seconds=0.5),
        ShotSpec(scene=3, seconds=1.0, entrance="fade_black", entrance_seconds=0.5),
        ShotSpec(scene=4, seconds=1.5, pan=1.0, flashes=(0.5,)),
    )
    frames, cuts = render_shots(shots, width=64, height=48, fps=10)
    assert frames.shape == (55, 48, 64, 3) and frames.dtype == np.uint8
    assert cuts == [10, 40]  # only the shots entered by a cut
    hist = colour_histograms(frames)
    change = 0.5 * np.abs(np.diff(hist, axis=0)).sum(axis=1)
    assert change[9] > 0.5 and change[39] > 0.5  # frames 9 -> 10 and 39 -> 40
    # the dissolve's middle frame lies between the scenes before and after it
    mid = frames[22].astype(float).mean(axis=(0, 1))
    lo = np.minimum(frames[19].mean(axis=(0, 1)), frames[29].mean(axis=(0, 1)))
    hi = np.maximum(frames[19].mean(axis=(0, 1)), frames[29].mean(axis=(0, 1)))
    assert np.all((lo - 8 <= mid) & (mid <= hi + 8))
    assert frames[32:33].mean() < 10  # the fade through black is black halfway
    assert frames[45].mean() > 240  # the flash starts white
    with pytest.raises(ValueError, match="entrance"):
        render_shots([ShotSpec(entrance="wipe")])


def test_shot_windows_tile_each_shot_from_its_start():
    assert shot_windows(10, [], 4) == [(0, 4, 0), (4, 8, 0), (8, 10, 0)]
    assert shot_windows(10, [3, 7], 4) == [(0, 3, 0), (3, 7, 1), (7, 10, 2)]
    assert shot_windows(10, [5], 2) == [
        (0, 2, 0),
        (2, 4, 0),
        (4, 5, 0),
        (5, 7, 1),
        (7, 9, 1),
        (9, 10, 1),
    ]


def test_shot_windows_number_shots_by_the_cuts_before_them():
    # a unit starting on a cut starts with shot 1: shot 0 (running before it) has no samples
    assert shot_windows(6, [0, 3, 3, 6, 9, -1], 8) == [(0, 3, 1), (3, 6, 2)]
    assert shot_windows(0, [], 4) == []
    assert shot_windows(3, [1, 2], 1) == [(0, 1, 0), (1, 2, 1), (2, 3, 2)]
    with pytest.raises(ValueError):
        shot_windows(3, [], 0)


@pytest.mark.parametrize("seed", range(20))
def test_shot_windows_never_cross_a_cut(seed):
    rng = np.random.default_rng(seed)
    n, clip = int(rng.integers(1, 40)), int(rng.integers(1, 9))
    cuts = sorted(set(rng.integers(0, n + 1, size=int(rng.integers(0, 6))).tolist()))
    windows = shot_windows(n, cuts, clip)
    assert [s for s, _, _ in windows] == sorted(s for s, _, _ in windows)
    covered = [i for s, e, _ in windows for i in range(s, e)]
    assert covered == list(range(n))  # every sample once, in order
    inside = [c for c in cuts if c < n]
    for start, end, shot in windows:
        assert 1 <= end - start <= clip
        assert not any(start < c < end for c in inside)
        assert shot == sum(c <= start for c in inside)


def test_score_cuts_matches_within_the_tolerance_once_each():
    s = score_cuts([4, 10, 11, 30], [5, 10, 20])
    assert (s.true_positives, s.false_positives, s.false_negatives) == (2, 2, 1)
    assert s.precision == 0.5 and s.recall == pytest.approx(2 / 3)
    assert s.f1 == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert score_cuts([6], [5], tolerance=0).f1 == 0.0
    assert score_cuts([], []).f1 == 1.0
    total = score_cuts([1], [1]) + score_cuts([3], [])
    assert (total.true_positives, total.false_positives, total.precision) == (1, 1, 0.5)


def test_cut_positions_are_the_first_sample_after_each_cut():
    samples = [0, 12, 24, 36, 48]
    assert cut_positions(samples, [12, 13, 30, 48, 60]) == [1, 2, 3, 4]
    assert cut_positions(samples, [0]) == []  # before the first sample: no cut between samples
