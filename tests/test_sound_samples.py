"""Sample videos with sound (pipeline.samples.sound_corpus) and one whose sound cannot be
decoded (write_broken_audio): what the sound modality's tests train and read."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from pipeline.config import StorageConfig
from pipeline.samples import (
    HIGH_HZ,
    LOW_HZ,
    PICTURE_CLASSES,
    SOUND_CLASSES,
    SWEEP_HZ,
    class_sound,
    sound_corpus,
    sound_corpus_labels,
    write_broken_audio,
)
from pipeline.video.audio import RATE, read_audio
from pipeline.video.io import probe, read_frames_and_times

SECONDS = 8.0  # sound_corpus's default length


@pytest.fixture(scope="module")
def sound(tmp_path_factory) -> dict[str, list[Path]]:
    return sound_corpus(tmp_path_factory.mktemp("sound"), "sound", 2)


@pytest.fixture(scope="module")
def picture(tmp_path_factory) -> dict[str, list[Path]]:
    return sound_corpus(tmp_path_factory.mktemp("picture"), "picture", 2)


def whole_sound(path: Path) -> np.ndarray:
    return read_audio(path, 0.0, 100.0).samples


def frames_of(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def dominant_hz(samples: np.ndarray, rate: int = RATE) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[np.argmax(spectrum)])


def band_spectrum(samples: np.ndarray, rate: int = RATE, band_hz: float = 50.0) -> np.ndarray:
    """Magnitude spectrum summed in `band_hz` bands up to 4 kHz, unit length."""
    spectrum = np.abs(np.fft.rfft(samples))
    freqs = np.fft.rfftfreq(len(samples), 1 / rate)
    bands = np.bincount((freqs[freqs < 4000] // band_hz).astype(int), spectrum[freqs < 4000])
    return bands / np.linalg.norm(bands)


def pitch_track(samples: np.ndarray, window: int = 1024, hop: int = 512) -> np.ndarray:
    """The dominant frequency of each `window` samples, every `hop` samples."""
    return np.array(
        [dominant_hz(samples[a : a + window]) for a in range(0, len(samples) - window, hop)]
    )


def share_rising(track: np.ndarray) -> float:
    """Of the steps between consecutive windows within one sweep (a sweep starting again
    jumps by ~1 kHz), the share that go up."""
    steps = np.diff(track)
    steps = steps[(np.abs(steps) < 400) & (steps != 0)]
    return float(np.mean(steps > 0))


def test_every_label_has_its_videos_with_sound_for_whole_clips(sound):
    assert tuple(sound) == SOUND_CLASSES
    for label, paths in sound.items():
        assert [p.parent.name for p in paths] == [label] * 2
        for path in paths:
            info = probe(path)
            assert info.has_audio and info.width == info.height == 64
            assert info.duration_s >= 4.0  # a full clip of 8 frames at 2 per second
            assert abs(len(whole_sound(path)) / RATE - info.duration_s) < 0.1  # sound throughout


def test_training_lists_the_folder_with_its_labels(sound):
    from pipeline.train.inputs import list_labeled

    root = sound["low"][0].parent.parent
    data = list_labeled(str(root), StorageConfig(), 0.5, 0)
    assert data.labels == tuple(sorted(SOUND_CLASSES))
    assert len(data.videos) == 8 and data.split_source == "seeded"


def test_tones_are_where_they_should_be(sound):
    for path in sound["low"]:
        assert abs(dominant_hz(whole_sound(path)) - LOW_HZ) <= 0.05 * LOW_HZ + 1
    for path in sound["high"]:
        assert abs(dominant_hz(whole_sound(path)) - HIGH_HZ) <= 0.05 * HIGH_HZ + 1


def test_rising_and_falling_share_a_spectrum_and_differ_in_time(sound):
    rising, falling = whole_sound(sound["rising"][0]), whole_sound(sound["falling"][0])
    low = whole_sound(sound["low"][0])
    same = float(band_spectrum(rising) @ band_spectrum(falling))
    assert same > 0.98, same  # one spectrum overall, as decoded from AAC
    assert float(band_spectrum(rising) @ band_spectrum(low)) < 0.7  # what a different one gives
    up, down = pitch_track(rising), pitch_track(falling)
    lo, hi = SWEEP_HZ
    for track in (up, down):  # the sweep's range, within the 5 % the videos vary by
        assert 0.9 * lo < np.percentile(track, 5) and np.percentile(track, 95) < 1.1 * hi
    assert share_rising(up) > 0.9 and share_rising(down) < 0.1
    # in a sample the pitch only goes one way or the other, a reversal of the other (exactly)
    np.testing.assert_array_equal(
        class_sound("falling", 2.0, seed=5), class_sound("rising", 2.0, seed=5)[::-1]
    )


def test_the_picture_does_not_tell_the_sound_class(sound):
    """Video i of every class has the same picture: the picture cannot tell the class, not
    even by chance over a few videos; videos i and j differ (the check could fail)."""
    for i in range(2):
        first = frames_of(sound[SOUND_CLASSES[0]][i])
        for label in SOUND_CLASSES[1:]:
            np.testing.assert_array_equal(frames_of(sound[label][i]), first)
    a, b = frames_of(sound["low"][0]), frames_of(sound["low"][1])
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 5


def test_picture_classes_differ_in_colour_and_share_their_sound(picture):
    assert tuple(picture) == PICTURE_CLASSES
    for i in range(2):
        mean = {label: frames_of(picture[label][i]).reshape(-1, 3).mean(0) for label in picture}
        red_minus_blue = mean["red"] - mean["blue"]
        assert red_minus_blue[0] > 10 and red_minus_blue[2] < -10
        assert mean["green"][1] - mean["red"][1] > 10
        assert mean["yellow"][2] < mean["blue"][2] - 10
        reference = whole_sound(picture["red"][i])
        for label in PICTURE_CLASSES[1:]:
            np.testing.assert_allclose(whole_sound(picture[label][i]), reference, atol=1e-3)


def test_both_labels_need_the_picture_and_the_sound(tmp_path):
    corpus = sound_corpus(tmp_path, "both", 1, seconds=5.0)
    assert tuple(corpus) == sound_corpus_labels("both")
    assert set(corpus) == {"red_rising", "red_falling", "blue_rising", "blue_falling"}
    red_up, red_down, blue_up = (corpus[k][0] for k in ("red_rising", "red_falling", "blue_rising"))
    np.testing.assert_allclose(whole_sound(red_up), whole_sound(blue_up), atol=1e-3)
    assert share_rising(pitch_track(whole_sound(red_down))) < 0.1
    np.testing.assert_array_equal(frames_of(red_up), frames_of(red_down))
    assert not np.array_equal(frames_of(red_up), frames_of(blue_up))


@pytest.mark.parametrize("extension", [".mp4", ".mkv"])
def test_a_broken_sound_track_raises_while_the_frames_decode(tmp_path, extension):
    path = write_broken_audio(tmp_path / f"broken{extension}", seconds=3.0, fps=8)
    info = probe(path)
    assert info.has_audio and info.num_frames == 24
    with pytest.raises(av.FFmpegError):
        read_audio(path, 0.0, 2.0)
    with pytest.raises(av.FFmpegError):
        read_audio(path, 1.0, 2.0)  # after a seek too
    got = read_frames_and_times(path, list(range(24)), 64, info, 16 * 2**20)
    assert not got.failures and got.frames.shape == (24, 64, 64, 3)
    assert got.frames.reshape(-1, 3).max(0).max() > 200  # the shape is there, not a blank
    assert len(frames_of(path)) == 24
