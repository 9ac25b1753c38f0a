"""Odd and broken video fixture files for tests, built on ``pipeline.samples``."""

from __future__ import annotations

import struct
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from pipeline.samples import VideoSpec, encode_video, render_frames, write_video

# Keys of make_codec_zoo / make_broken_zoo, usable for test parametrization at collection time.
CODEC_ZOO_NAMES = (
    "h264",
    "vp9",
    "mjpeg",
    "mpeg4",
    "odd_size",
    "odd_dims",
    "single_frame",
    "portrait",
    "full_hd",
    "unicode_name",
)
BROKEN_ZOO_NAMES = ("empty", "random_bytes", "text", "truncated", "header_only", "audio_only")
# Keys of make_hostile_zoo.
TRUNCATE_AT = (25, 50, 90)  # percent of the file kept
# cut with the MP4 index at the end: nothing to read; with it first (faststart): partly read
CUT_BEFORE_INDEX_NAMES = tuple(f"truncated_moov_at_end_{pct}" for pct in TRUNCATE_AT)
CUT_AFTER_INDEX_NAMES = tuple(f"truncated_faststart_{pct}" for pct in TRUNCATE_AT)
TRUNCATED_NAMES = (*CUT_BEFORE_INDEX_NAMES, *CUT_AFTER_INDEX_NAMES)
CORRUPT_PAYLOAD_NAMES = (
    "bit_flips_mp4",
    "bit_flips_mp4_b",
    "byte_runs_mp4",
    "bit_flips_mkv",
    "byte_runs_mkv",
)
HOSTILE_ZOO_NAMES = (
    *TRUNCATED_NAMES,
    *CORRUPT_PAYLOAD_NAMES,
    "zero_frames_mp4",
    "zero_frames_mkv",
    "huge_dims_claimed",
    "huge_dims_real",
    "large_dims_4k",
    "vfr_mp4",
    "vfr_mkv",
    "rotated_90",
    "many_streams",
    "damaged_gop_mp4",
)
DAMAGED_FRAME = 22  # the frame whose packet write_damaged_gop breaks (of 40, a keyframe every 10)
HUGE_CLAIMED = 16384  # the size a tiny MJPEG/AVI file claims (past FFmpeg's limit of 2^28 px)
HUGE_REAL = 8192  # one real 8192x8192 frame: 200 MB of RGB from a ~200 KB file
LARGE_4K = (3840, 2160)  # one real 4K UHD frame
# Frame intervals of the variable-frame-rate videos (20 frames, 2.19 s, 4 to 50 frames/s).
VFR_INTERVALS_MS = (50, 100, 250, 250, 20, 20, 250, 250, 20, 50, 250, 50, 50, 250, 50, 50, 100)
VFR_INTERVALS_MS += (100, 20)
# The video streams of "many_streams", in file order: the biggest is not the first.
MANY_STREAMS_VIDEO = (
    VideoSpec(width=32, height=32, seconds=0.5, shape="circle", seed=3),
    VideoSpec(width=64, height=48, seconds=1.0, direction="left", seed=2),
    VideoSpec(width=160, height=96, seconds=2.0, seed=1),
)
MANY_STREAMS_AUDIO = 2
ROTATION = 90  # degrees counter-clockwise, as PyAV's VideoFrame.rotation reads it back
BITEXACT = {"fflags": "+bitexact"}  # no random UIDs or dates in the containers

UNICODE_NAME = "vidéo à tester 01.mp4"


def _specs() -> dict[str, tuple[VideoSpec, str]]:
    base = VideoSpec(seconds=2.0)
    return {
        "h264": (VideoSpec(seconds=2.0, codec="h264", seed=1), "h264.mp4"),
        "vp9": (VideoSpec(seconds=2.0, codec="vp9", shape="circle", seed=2), "vp9.webm"),
        "mjpeg": (VideoSpec(seconds=2.0, codec="mjpeg", direction="down", seed=3), "mjpeg.avi"),
        "mpeg4": (VideoSpec(seconds=2.0, codec="mpeg4", direction="left", seed=4), "mpeg4.mkv"),
        # Even but not a multiple of 16 (macroblock padding/cropping); h264 in mp4.
        "odd_size": (VideoSpec(width=162, height=98, seconds=2.0, seed=5), "odd_size_162x98.mp4"),
        # Truly odd dimensions: x264 refuses 4:2:0 at odd sizes, mpeg4 accepts them.
        "odd_dims": (
            VideoSpec(width=161, height=97, seconds=2.0, codec="mpeg4", seed=6),
            "odd_dims_161x97.mkv",
        ),
        "single_frame": (VideoSpec(seconds=0.1, seed=7), "single_frame.mp4"),
        "portrait": (
            VideoSpec(width=90, height=160, seconds=2.0, direction="up", seed=8),
            "portrait_90x160.mp4",
        ),
        "full_hd": (
            VideoSpec(width=1920, height=1080, fps=5, seconds=1.0, shape="circle", seed=9),
            "full_hd_1920x1080.mp4",
        ),
        "unicode_name": (base, UNICODE_NAME),
    }


def codec_zoo_specs() -> dict[str, VideoSpec]:
    """The spec behind each entry of ``make_codec_zoo``."""
    return {name: spec for name, (spec, _) in _specs().items()}


def make_codec_zoo(directory: str | Path) -> dict[str, Path]:
    """Write small valid videos in several codecs and odd shapes; return name -> path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    return {name: write_video(spec, directory / fn) for name, (spec, fn) in _specs().items()}


def _write_audio_only(path: Path, seconds: float = 1.0, rate: int = 44100) -> Path:
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("aac", rate=rate, layout="mono")
        n_per = stream.codec_context.frame_size or 1024
        total = int(seconds * rate)
        t = np.arange(total, dtype=np.float32) / rate
        wave = (0.3 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
        for i, start in enumerate(range(0, total, n_per)):
            chunk = np.zeros((1, n_per), dtype=np.float32)
            part = wave[start : start + n_per]
            chunk[0, : len(part)] = part
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
            frame.sample_rate = rate
            frame.pts = i * n_per
            frame.time_base = Fraction(1, rate)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def make_broken_zoo(directory: str | Path) -> dict[str, Path]:
    """Write files that are not decodable videos; return name -> path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    good = encode_video(
        render_frames(VideoSpec(seconds=2.0, seed=11)), directory / "_good_source.mp4", fps=10
    )
    data = good.read_bytes()
    good.unlink()
    out = {
        "empty": directory / "empty.mp4",
        "random_bytes": directory / "random_bytes.mp4",
        "text": directory / "text.mp4",
        "truncated": directory / "truncated_half.mp4",
        "header_only": directory / "header_only_2k.mp4",
        "audio_only": directory / "audio_only.mp4",
    }
    out["empty"].write_bytes(b"")
    out["random_bytes"].write_bytes(np.random.default_rng(0).bytes(16 * 1024))
    out["text"].write_text("this is not a video, just some text pretending to be one\n" * 20)
    # PyAV's mp4 muxer writes the moov index at the end, so the first half has no index.
    out["truncated"].write_bytes(data[: len(data) // 2])
    out["header_only"].write_bytes(data[:2048])
    _write_audio_only(out["audio_only"])
    return out


def _encode(
    path: Path,
    frames: np.ndarray,
    *,
    codec: str = "libx264",
    fps: int = 10,
    pts: list[int] | None = None,
    time_base: Fraction | None = None,
    container_options: dict[str, str] | None = None,
    rotation: int | None = None,
    keyframe_interval: int | None = None,
    preset: str = "ultrafast",
    x264_params: str | None = None,
) -> Path:
    """Encode with the given presentation times, container options and display rotation
    (x264's `preset`: "ultrafast" makes no B-frames, "veryfast" and slower make them).

    One encoder thread and bit-exact muxing: the same bytes on every machine and every run
    (the corrupt files flip bits at fixed offsets, so their outcome depends on it)."""
    time_base = time_base or Fraction(1, fps)
    options = {**BITEXACT, **(container_options or {})}
    codec_options = {"threads": "1"}
    if codec == "libx264":
        codec_options |= {"preset": preset, **({"x264-params": x264_params} if x264_params else {})}
    if codec == "libx265":
        codec_options |= {"preset": preset, "x265-params": "log-level=error"}
    with av.open(str(path), mode="w", options=options) as container:
        stream = container.add_stream(codec, rate=Fraction(fps), options=codec_options)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.codec_context.time_base = time_base
        if keyframe_interval is not None:
            stream.codec_context.gop_size = keyframe_interval
        if rotation is not None:
            stream.set_display_rotation(rotation)  # the container's display matrix
        for i, array in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            frame.pts = i if pts is None else pts[i]
            frame.time_base = time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def mp4_box(data: bytes, kind: bytes) -> tuple[int, int]:
    """(payload start, end) of the first top-level MP4 box of this kind."""
    pos = 0
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos : pos + 4], "big")
        if data[pos + 4 : pos + 8] == kind:
            return pos + 8, pos + size
        pos += size
    raise ValueError(f"no top-level {kind!r} box")


def _corrupt(data: bytes, start: int, end: int, *, seed: int, flips: int, runs: int) -> bytes:
    """Flip single bits and overwrite 32-byte runs with random bytes, all in [start, end)."""
    out = bytearray(data)
    rng = np.random.default_rng(seed)
    for pos in rng.integers(start, end, flips):
        out[pos] ^= 1 << int(rng.integers(0, 8))
    for pos in rng.integers(start, end - 32, runs):
        out[pos : pos + 32] = rng.bytes(32)
    return bytes(out)


def _write_no_frames(path: Path, fmt: str) -> Path:
    """A container with one H.264 video stream and not a single frame."""
    with av.open(str(path), mode="w", format=fmt, options=BITEXACT) as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        container.start_encoding()
        container.mux(stream.encode(None))
    return path


def _write_huge_claim(path: Path) -> Path:
    """A ~10 KB MJPEG/AVI whose headers and JPEG frames all claim HUGE_CLAIMED square pixels."""
    small_frames = render_frames(VideoSpec(width=64, height=64, seconds=0.5, seed=6))
    small = encode_video(small_frames, path, fps=10, codec="mjpeg")
    data = bytearray(small.read_bytes())
    side = HUGE_CLAIMED
    avih, strh, strf = data.find(b"avih"), data.find(b"strh"), data.find(b"strf")
    struct.pack_into("<ii", data, avih + 8 + 32, side, side)  # dwWidth, dwHeight
    struct.pack_into("<hhhh", data, strh + 8 + 48, 0, 0, side - 1, side - 1)  # rcFrame
    struct.pack_into("<ii", data, strf + 8 + 4, side, side)  # BITMAPINFOHEADER size
    sof, patched = data.find(b"movi"), 0
    while (sof := data.find(b"\xff\xc0\x00\x11\x08", sof + 1)) >= 0:  # JPEG start of frame
        struct.pack_into(">HH", data, sof + 5, side, side)
        patched += 1
    assert patched == 5, patched  # one per frame
    path.write_bytes(bytes(data))
    return path


def _write_many_streams(path: Path, rate: int = 16000) -> Path:
    """MKV with the MANY_STREAMS_VIDEO streams and MANY_STREAMS_AUDIO sine-wave AAC streams."""
    with av.open(str(path), mode="w", options=BITEXACT) as container:
        video = []
        for spec in MANY_STREAMS_VIDEO:
            stream = container.add_stream("libx264", rate=spec.fps, options={"preset": "ultrafast"})
            stream.width, stream.height, stream.pix_fmt = spec.width, spec.height, "yuv420p"
            video.append((stream, spec))
        audio = [
            container.add_stream("aac", rate=rate, layout="mono") for _ in range(MANY_STREAMS_AUDIO)
        ]
        for stream, spec in video:
            for i, array in enumerate(render_frames(spec)):
                frame = av.VideoFrame.from_ndarray(array, format="rgb24")
                frame.pts, frame.time_base = i, Fraction(1, spec.fps)
                container.mux(stream.encode(frame))
            container.mux(stream.encode(None))
        for k, stream in enumerate(audio):
            n = stream.codec_context.frame_size or 1024
            for start in range(0, 2 * rate, n):
                t = np.arange(start, start + n, dtype=np.float32) / rate
                wave = (0.2 * np.sin(2 * np.pi * (300 + 200 * k) * t)).astype(np.float32)
                frame = av.AudioFrame.from_ndarray(wave[None], format="fltp", layout="mono")
                frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
                container.mux(stream.encode(frame))
            container.mux(stream.encode(None))
    return path


def make_hostile_zoo(directory: str | Path) -> dict[str, Path]:
    """Write hostile and odd files (HOSTILE_ZOO_NAMES); return name -> path.

    - truncated_{moov_at_end,faststart}_{25,50,90}: a 4 s H.264 MP4 cut after that percent of
      its bytes, with the index (moov) after the frames (PyAV's default) or before them;
    - bit_flips_* / byte_runs_*: single bit flips, or 32-byte random runs, inside the frame
      data of a valid 4 s file (after the MP4 mdat header, between the first MKV cluster
      and the cues), headers intact;
    - zero_frames_{mp4,mkv}: a video stream and no frame at all;
    - huge_dims_claimed: a tiny MJPEG/AVI that claims HUGE_CLAIMED x HUGE_CLAIMED pixels;
    - huge_dims_real / large_dims_4k: one real HUGE_REAL x HUGE_REAL / LARGE_4K H.264 frame;
    - vfr_{mp4,mkv}: 20 frames with the irregular VFR_INTERVALS_MS between them;
    - rotated_90: 160x96 coded frames with a display matrix rotating them by ROTATION degrees;
    - many_streams: MKV with three video streams (MANY_STREAMS_VIDEO) and two audio streams.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    frames = render_frames(VideoSpec(seconds=4.0, seed=31))  # 40 frames, 160x96
    for where, options in (("moov_at_end", None), ("faststart", {"movflags": "faststart"})):
        source = _encode(directory / f"_{where}.mp4", frames, container_options=options)
        data = source.read_bytes()
        source.unlink()
        for pct in TRUNCATE_AT:
            out[f"truncated_{where}_{pct}"] = directory / f"truncated_{where}_{pct}.mp4"
            out[f"truncated_{where}_{pct}"].write_bytes(data[: len(data) * pct // 100])

    mp4 = _encode(directory / "_source.mp4", frames).read_bytes()
    start, end = mp4_box(mp4, b"mdat")
    start += 1024  # leave the first frame's parameter sets alone
    mkv = _encode(directory / "_source.mkv", frames, codec="mpeg4").read_bytes()
    mkv_start = mkv.find(bytes.fromhex("1F43B675")) + 64  # first Cluster, past its header
    mkv_end = mkv.rfind(bytes.fromhex("1C53BB6B"))  # Cues
    for name, data, lo, hi, seed, flips, runs in (
        ("bit_flips_mp4", mp4, start, end, 0, 100, 0),
        ("bit_flips_mp4_b", mp4, start, end, 1, 100, 0),
        ("byte_runs_mp4", mp4, start, end, 0, 0, 6),
        ("bit_flips_mkv", mkv, mkv_start, mkv_end, 0, 100, 0),
        ("byte_runs_mkv", mkv, mkv_start, mkv_end, 1, 0, 6),
    ):
        suffix = ".mp4" if data is mp4 else ".mkv"
        out[name] = directory / f"{name}{suffix}"
        out[name].write_bytes(_corrupt(data, lo, hi, seed=seed, flips=flips, runs=runs))
    (directory / "_source.mp4").unlink()
    (directory / "_source.mkv").unlink()

    out["zero_frames_mp4"] = _write_no_frames(directory / "zero_frames.mp4", "mp4")
    out["zero_frames_mkv"] = _write_no_frames(directory / "zero_frames.mkv", "matroska")
    out["huge_dims_claimed"] = _write_huge_claim(directory / f"huge_claims_{HUGE_CLAIMED}.avi")
    big = np.zeros((1, HUGE_REAL, HUGE_REAL, 3), np.uint8)
    big[0, HUGE_REAL // 8 : HUGE_REAL // 2, HUGE_REAL // 4 : HUGE_REAL // 2] = (255, 64, 64)
    out["huge_dims_real"] = encode_video(big, directory / f"huge_{HUGE_REAL}.mp4", fps=10)
    large = np.zeros((1, LARGE_4K[1], LARGE_4K[0], 3), np.uint8)
    large[0, 500:1500, 1000:3000] = (64, 255, 64)
    out["large_dims_4k"] = encode_video(large, directory / "large_3840x2160.mp4", fps=10)
    vfr_frames = render_frames(VideoSpec(seconds=2.0, seed=32))  # 20 frames
    vfr_pts = [0, *np.cumsum(VFR_INTERVALS_MS).tolist()]
    for ext in ("mp4", "mkv"):
        out[f"vfr_{ext}"] = _encode(
            directory / f"vfr.{ext}", vfr_frames, pts=vfr_pts, time_base=Fraction(1, 1000)
        )
    rotated = render_frames(VideoSpec(width=160, height=96, seconds=2.0, seed=33))
    out["rotated_90"] = _encode(directory / "rotated_90.mp4", rotated, rotation=ROTATION)
    out["many_streams"] = _write_many_streams(directory / "many_streams.mkv")
    out["damaged_gop_mp4"] = write_damaged_gop(directory / "damaged_gop.mp4", frames)
    assert tuple(out) == HOSTILE_ZOO_NAMES, tuple(out)
    return out


BFRAME_ZOO_NAMES = (
    "mp4",
    "mkv",
    "faststart",
    "open_gop",
    "slow_preset",
    "vfr_mp4",
    "vfr_mkv",
    "hevc",
    "long_mp4",
    "short_gop_hevc",
)


def make_bframe_zoo(directory: str | Path) -> dict[str, Path]:
    """H.264 with B-frames (x264's "veryfast" and "slow" presets: frames reordered, most of
    them referenced by none), the files frame_reader reads; return name -> path.

    - mp4 / mkv / faststart: 4 s at 30 fps, a keyframe every 30 frames;
    - open_gop: the same with x264's open GOPs (frames after a keyframe in decode order that
      are shown before it and refer to the interval before);
    - slow_preset: x264's "slow" (more B-frames, more references), a keyframe every 45 frames;
    - vfr_{mp4,mkv}: 20 frames with the irregular VFR_INTERVALS_MS between them;
    - long_mp4: 20 s at 30 fps (600 frames), a keyframe every 30: ranges of it, as units of a
      long video ask for, are read from the MP4's packet index without a pass over the file;
    - hevc: H.265 (x265 "veryfast") in MP4, a keyframe every 30: x265's keyframes are CRA, open
      intervals whose first frames in decode order are shown before the keyframe;
    - short_gop_hevc: the same with a keyframe every 10 frames: intervals shorter than the
      reordering a range's border is checked over, so a range is numbered from several
      intervals before it.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    frames = render_frames(VideoSpec(width=160, height=96, seconds=4.0, fps=30, seed=41))
    veryfast = {"fps": 30, "preset": "veryfast", "keyframe_interval": 30}
    vfr_frames = render_frames(VideoSpec(seconds=2.0, seed=32))
    vfr = {"pts": [0, *np.cumsum(VFR_INTERVALS_MS).tolist()], "time_base": Fraction(1, 1000)}
    out = {
        "mp4": _encode(directory / "bframes.mp4", frames, **veryfast),
        "mkv": _encode(directory / "bframes.mkv", frames, **veryfast),
        "faststart": _encode(
            directory / "faststart.mp4",
            frames,
            container_options={"movflags": "faststart"},
            **veryfast,
        ),
        "open_gop": _encode(
            directory / "open_gop.mp4", frames, x264_params="open-gop=1", **veryfast
        ),
        "slow_preset": _encode(
            directory / "slow.mp4", frames, fps=30, preset="slow", keyframe_interval=45
        ),
        "vfr_mp4": _encode(directory / "vfr.mp4", vfr_frames, preset="veryfast", **vfr),
        "vfr_mkv": _encode(directory / "vfr.mkv", vfr_frames, preset="veryfast", **vfr),
        "hevc": _encode(directory / "hevc.mp4", frames, codec="libx265", **veryfast),
        "long_mp4": _encode(
            directory / "long.mp4",
            render_frames(VideoSpec(width=64, height=48, seconds=20.0, fps=30, seed=42)),
            **veryfast,
        ),
        "short_gop_hevc": _encode(
            directory / "short_gop.mp4",
            frames,
            codec="libx265",
            **(veryfast | {"keyframe_interval": 10}),
        ),
    }
    assert tuple(out) == BFRAME_ZOO_NAMES, tuple(out)
    return out


def write_damaged_gop(
    path: Path,
    frames: np.ndarray,
    *,
    damage: bool = True,
    preset: str = "ultrafast",
    frame: int = DAMAGED_FRAME,
) -> Path:
    """H.264 MP4 with a keyframe every 10 frames whose `frame` packet has its first NAL length
    overwritten: FFmpeg refuses that packet, so every read that reaches it fails, while the
    frames of the other keyframe intervals are intact. `damage=False`: the intact file."""
    _encode(path, frames, keyframe_interval=10, preset=preset)
    if not damage:
        return path
    pos = _packets(path)[frame].pos
    data = bytearray(path.read_bytes())
    data[pos : pos + 4] = b"\x7f\xff\xff\xff"  # a NAL 2 GB long, in a packet of ~600 bytes
    path.write_bytes(bytes(data))
    return path


def _packets(path: str | Path) -> list:
    """The video packets in presentation order (one per frame), from the container."""
    with av.open(str(path)) as container:
        return sorted((p for p in container.demux(video=0) if p.size), key=lambda p: p.pts)


def keyframes(path: str | Path) -> list[int]:
    """Frame indices of the key frames (from the container, nothing decoded)."""
    return [i for i, p in enumerate(_packets(path)) if p.is_keyframe]


def pyav_frame_count(path: str | Path) -> int:
    """Decode every video frame with PyAV and count them (golden reference)."""
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def pyav_frames(path: str | Path) -> np.ndarray:
    """Decode every video frame with PyAV to an (N, H, W, 3) uint8 RGB array."""
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
