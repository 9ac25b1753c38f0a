"""Tests for pipeline.samples and the fixture zoo in tests.videos."""

from __future__ import annotations

import csv
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import av
import decord
import numpy as np
import pytest

from pipeline.samples import (
    CODECS,
    VideoSpec,
    encode_video,
    extension_for,
    main,
    make_sample_corpus,
    render_frames,
    write_video,
)
from tests.videos import (
    BROKEN_ZOO_NAMES,
    CODEC_ZOO_NAMES,
    UNICODE_NAME,
    codec_zoo_specs,
    make_broken_zoo,
    make_codec_zoo,
    pyav_frame_count,
    pyav_frames,
)

REPO_ROOT = Path(__file__).resolve().parent.parent

# What decord.VideoReader raises for each broken file. Note DECORDError is NOT a RuntimeError.
BROKEN_EXCEPTIONS: dict[str, type[Exception]] = {
    "empty": RuntimeError,
    "random_bytes": RuntimeError,
    "text": RuntimeError,
    "truncated": RuntimeError,
    "header_only": RuntimeError,
    "audio_only": decord.DECORDError,
}


@pytest.fixture(scope="module")
def codec_zoo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_codec_zoo(tmp_path_factory.mktemp("codec_zoo"))


@pytest.fixture(scope="module")
def broken_zoo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_broken_zoo(tmp_path_factory.mktemp("broken_zoo"))


def _centroid(frame: np.ndarray) -> tuple[float, float]:
    bright = frame.max(axis=-1) > 128
    ys, xs = np.nonzero(bright)
    return float(ys.mean()), float(xs.mean())


# --- (a) rendering -------------------------------------------------------------------------


def test_render_is_deterministic_and_well_formed() -> None:
    spec = VideoSpec(seed=3, shape="circle")
    a, b = render_frames(spec), render_frames(spec)
    assert a.shape == (30, 96, 160, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, render_frames(replace(spec, seed=4)))
    assert not np.array_equal(a, render_frames(replace(spec, shape="square")))
    assert render_frames(VideoSpec(seconds=0.1)).shape[0] == 1


@pytest.mark.parametrize(("reverse", "forward"), [("left", "right"), ("up", "down")])
def test_reverse_classes_are_exact_time_reversal(reverse: str, forward: str) -> None:
    spec = VideoSpec(seed=7, color=(40, 230, 230))
    fwd = render_frames(replace(spec, direction=forward))
    rev = render_frames(replace(spec, direction=reverse))
    np.testing.assert_array_equal(rev, fwd[::-1])
    # Order-blind statistics cannot tell them apart.
    np.testing.assert_array_equal(rev.mean(axis=0), fwd.mean(axis=0))
    assert not np.array_equal(rev, fwd)


@pytest.mark.parametrize(
    ("direction", "axis", "sign"),
    [("right", 1, 1), ("left", 1, -1), ("down", 0, 1), ("up", 0, -1)],
)
def test_shape_moves_in_direction(direction: str, axis: int, sign: int) -> None:
    frames = render_frames(VideoSpec(direction=direction, seed=1))
    first, last = _centroid(frames[0]), _centroid(frames[-1])
    assert sign * (last[axis] - first[axis]) > 40
    assert abs(last[1 - axis] - first[1 - axis]) < 1e-6


def test_encode_video_validation(tmp_path: Path) -> None:
    frames = render_frames(VideoSpec(width=162, height=98, seconds=0.3))
    with pytest.raises(ValueError, match="even"):
        encode_video(frames[:, :97, :161], tmp_path / "odd.mp4", fps=10)
    with pytest.raises(ValueError, match="extension"):
        encode_video(frames, tmp_path / "x.mov", fps=10)
    with pytest.raises(ValueError, match="codec"):
        encode_video(frames, tmp_path / "x.mp4", fps=10, codec="prores")
    with pytest.raises(ValueError):
        render_frames(VideoSpec(direction="sideways"))


@pytest.mark.parametrize("codec", sorted(CODECS))
def test_keyframe_interval_sets_gop(tmp_path: Path, codec: str) -> None:
    spec = VideoSpec(codec=codec, keyframe_interval=5)
    path = write_video(spec, tmp_path / f"gop{extension_for(codec)}")
    with av.open(str(path)) as container:
        packets = [p for p in container.demux(video=0) if p.size]
    keyframes = [i for i, p in enumerate(packets) if p.is_keyframe]
    expected = list(range(30)) if codec == "mjpeg" else list(range(0, 30, 5))
    assert keyframes == expected


def test_vp9_encode_survives_decord_imported_first(tmp_path: Path) -> None:
    out = tmp_path / "after_decord.webm"
    code = (
        "import sys, decord\n"
        "from pipeline.samples import VideoSpec, write_video\n"
        "write_video(VideoSpec(codec='vp9', seconds=1.0), sys.argv[1])\n"
    )
    subprocess.run([sys.executable, "-c", code, str(out)], cwd=REPO_ROOT, check=True)
    assert pyav_frame_count(out) == 10


# --- (b, c) codec zoo decodes with decord --------------------------------------------------


def test_codec_zoo_names(codec_zoo: dict[str, Path]) -> None:
    assert tuple(codec_zoo) == CODEC_ZOO_NAMES
    assert codec_zoo["unicode_name"].name == UNICODE_NAME
    assert all(p.is_file() and p.stat().st_size > 0 for p in codec_zoo.values())


@pytest.mark.parametrize("name", CODEC_ZOO_NAMES)
def test_decord_frame_count_matches_pyav(codec_zoo: dict[str, Path], name: str) -> None:
    path = codec_zoo[name]
    spec = codec_zoo_specs()[name]
    expected = pyav_frame_count(path)
    assert expected == spec.num_frames
    vr = decord.VideoReader(str(path), num_threads=1)
    assert len(vr) == expected
    assert vr.get_avg_fps() == pytest.approx(spec.fps)
    last = vr[len(vr) - 1].asnumpy()
    assert last.shape == (spec.height, spec.width, 3)


@pytest.mark.parametrize("name", CODEC_ZOO_NAMES)
def test_decoded_pixels_match_rendered(codec_zoo: dict[str, Path], name: str) -> None:
    spec = codec_zoo_specs()[name]
    ref = render_frames(spec).astype(np.int16)
    vr = decord.VideoReader(str(codec_zoo[name]), num_threads=1)
    got = vr.get_batch(list(range(len(vr)))).asnumpy().astype(np.int16)
    assert got.shape == ref.shape
    assert np.abs(got - ref).mean() < 12
    pyav = pyav_frames(codec_zoo[name]).astype(np.int16)
    if name == "odd_dims":
        # Odd-width 4:2:0 chroma is upsampled differently by decord's bundled FFmpeg 4.1
        # swscale and PyAV's: ~3% of pixels (shape edges) differ, by up to ~50 levels.
        assert np.abs(pyav - got).mean() < 1.0
    else:
        np.testing.assert_array_equal(pyav, got)  # bit-exact across the two decoders


def test_h264_pixels_close_to_render(codec_zoo: dict[str, Path]) -> None:
    ref = render_frames(codec_zoo_specs()["h264"]).astype(np.int16)
    vr = decord.VideoReader(str(codec_zoo["h264"]), num_threads=1)
    got = vr.get_batch(list(range(len(vr)))).asnumpy().astype(np.int16)
    err = np.abs(got - ref).mean(axis=(1, 2, 3))
    assert err.max() < 12, err


# --- (d) corpus ----------------------------------------------------------------------------


def _read_manifest(root: Path) -> list[dict[str, str]]:
    with open(root / "manifest.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_make_sample_corpus_layout_and_manifest(tmp_path: Path) -> None:
    spec = VideoSpec(seconds=1.0)
    root = make_sample_corpus(tmp_path / "c", per_class=3, spec=spec, val_per_class=1, seed=5)
    rows = _read_manifest(root)
    assert list(rows[0]) == ["uri", "label", "split"]
    files = {p.relative_to(root).as_posix() for p in root.rglob("*.mp4")}
    assert {r["uri"] for r in rows} == files
    assert len(rows) == 6
    for r in rows:
        split, label, fname = r["uri"].split("/")
        assert (split, label) == (r["split"], r["label"])
        assert fname.startswith(f"{label}_") and fname.endswith(".mp4")
    splits = [(r["split"], r["label"]) for r in rows]
    assert splits.count(("train", "right")) == 2 and splits.count(("val", "left")) == 1
    # right_i / left_i share shape, color and seed: decoded means agree, order differs.
    right = pyav_frames(root / "train/right/right_0.mp4").astype(np.float64)
    left = pyav_frames(root / "train/left/left_0.mp4").astype(np.float64)
    assert np.abs(right.mean(axis=0) - left.mean(axis=0)).mean() < 1.0
    assert np.abs(right - left[::-1]).mean() < 3.0
    assert np.abs(right - left).mean() > 3 * np.abs(right - left[::-1]).mean()
    # Videos vary across indices.
    other = pyav_frames(root / "train/right/right_1.mp4").astype(np.float64)
    assert np.abs(right - other).mean() > 3.0


def test_make_sample_corpus_deterministic_and_codec_ext(tmp_path: Path) -> None:
    spec = VideoSpec(seconds=0.5, codec="mjpeg")
    kwargs = {"per_class": 2, "classes": ("down", "up"), "spec": spec, "seed": 1}
    a = make_sample_corpus(tmp_path / "a", **kwargs)
    b = make_sample_corpus(tmp_path / "b", **kwargs)
    assert _read_manifest(a) == _read_manifest(b)
    assert {r["uri"] for r in _read_manifest(a)} == {
        "train/down/down_0.avi",
        "train/up/up_0.avi",
        "val/down/down_1.avi",
        "val/up/up_1.avi",
    }
    for r in _read_manifest(a):
        np.testing.assert_array_equal(pyav_frames(a / r["uri"]), pyav_frames(b / r["uri"]))
    with pytest.raises(ValueError):
        make_sample_corpus(tmp_path / "bad", per_class=1, val_per_class=2)


def test_cli_writes_corpus(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    args = [str(out), "--per-class", "2", "--classes", "right,left", "--seconds", "0.5"]
    assert main([*args, "--width", "64", "--height", "48", "--fps", "8"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and "wrote 4 videos" in lines[0]
    rows = _read_manifest(out)
    assert len(rows) == 4
    vr = decord.VideoReader(str(out / rows[0]["uri"]), num_threads=1)
    assert len(vr) == 4 and vr[0].shape == (48, 64, 3)


# --- (e) broken files ----------------------------------------------------------------------


def test_broken_zoo_names(broken_zoo: dict[str, Path]) -> None:
    assert tuple(broken_zoo) == BROKEN_ZOO_NAMES
    assert broken_zoo["empty"].stat().st_size == 0
    assert broken_zoo["header_only"].stat().st_size == 2048


@pytest.mark.parametrize("name", BROKEN_ZOO_NAMES)
def test_broken_files_make_decord_raise(broken_zoo: dict[str, Path], name: str) -> None:
    with pytest.raises(Exception) as info:  # noqa: B017 - the exact type is asserted below
        decord.VideoReader(str(broken_zoo[name]), num_threads=1)
    assert type(info.value) is BROKEN_EXCEPTIONS[name], repr(info.value)
    assert isinstance(info.value, RuntimeError | decord.DECORDError)


@pytest.mark.parametrize("name", BROKEN_ZOO_NAMES)
def test_broken_files_make_pyav_raise(broken_zoo: dict[str, Path], name: str) -> None:
    expected = IndexError if name == "audio_only" else av.error.InvalidDataError
    with pytest.raises(expected):
        pyav_frame_count(broken_zoo[name])
