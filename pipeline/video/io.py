"""Two calls for every reader: read a video's header (`probe`), and read chosen frames resized
(`read_frames_and_times`). decord reads the streams its FFmpeg decodes (with PyAV's fast path
for B-frame video, pipeline.video.frames), PyAV alone the others (pipeline.video.codecs)."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from pipeline.video import codecs
from pipeline.video import frames as frame_reader


@dataclass(frozen=True)
class VideoInfo:
    num_frames: int  # frames in the video stream
    fps: float
    width: int
    height: int
    # '' where decord reads the stream; "pyav: <why>" where PyAV reads it alone
    reader: str = ""
    has_audio: bool = False  # the header lists an audio stream

    @property
    def duration_s(self) -> float:
        return self.num_frames / self.fps if self.fps > 0 else 0.0


class UnreadableVideo(ValueError):
    """The file is not a video decord can open; the message says what FFmpeg saw."""


class UndecodableFrames(ValueError):
    """Frames the container lists cannot be decoded (corrupt frame data)."""


log = logging.getLogger("reelay.video")

_MP4_TOP_BOXES = {b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"uuid", b"moof", b"mfra"}
_DECORD_NOISE = re.compile(r"\[\d\d:\d\d:\d\d\] \S+?\.(?:cc|h|cpp):\d+: ")
# the FFmpeg error code decord prints as a bare number ("(-1094995529 vs. 0)")
_AVERROR_IN_TEXT = re.compile(r"\((-\d+) vs\. 0\)|failed with (-\d+)")


def mp4_truncation(path: Path) -> str:
    """For an MP4/MOV file: why its top-level boxes show it was cut short, else ''.

    A truncated MP4 either lacks its index (`moov` written at the end) or has one that names
    frames past the end of the file (`moov` at the start, "faststart"); FFmpeg says "Invalid
    data" in both cases, this says which."""
    size = path.stat().st_size
    with path.open("rb") as f:
        if f.read(8)[4:8] not in _MP4_TOP_BOXES:
            return ""  # not an MP4/MOV file: FFmpeg speaks for it
        pos, seen = 0, set()
        while pos + 8 <= size:
            f.seek(pos)
            header = f.read(16)
            box_size, kind = int.from_bytes(header[:4], "big"), header[4:8]
            if box_size == 1 and len(header) == 16:  # 64-bit size
                box_size = int.from_bytes(header[8:16], "big")
            elif box_size == 0:  # runs to the end of the file
                box_size = size - pos
            if box_size < 8:
                return ""  # not a box layout we understand: FFmpeg speaks for it
            if pos + box_size > size:
                name = kind.decode("latin-1")
                missing = "" if b"moov" in seen else ", before its 'moov' index"
                return (
                    f"truncated file: it ends at byte {size} inside its '{name}' box, "
                    f"which needs {pos + box_size} bytes{missing}"
                )
            seen.add(kind)
            pos += box_size
    return "" if b"moov" in seen else "no 'moov' box (the MP4 index): the file was not finished"


COPY_AGAIN = "copy it again from its source (an interrupted copy or a recording never finished)"


def diagnose(path: Path) -> str:
    """Why a file cannot be opened, for the errors table: an empty or truncated file, or
    FFmpeg's words (through PyAV, with FFmpeg's last error log line); '' when PyAV reads it."""
    if path.stat().st_size == 0:
        return f"empty file (0 bytes); {COPY_AGAIN}"
    truncated = mp4_truncation(path)
    if truncated:
        return f"{truncated}; {COPY_AGAIN}"
    import av
    import av.logging

    level = av.logging.get_level()
    av.logging.set_level(av.logging.ERROR)  # PyAV then adds FFmpeg's last error to messages
    try:
        with av.logging.Capture(), av.open(str(path)) as container:
            if not container.streams.video:
                kinds = ", ".join(sorted({s.type for s in container.streams})) or "none"
                return f"no video stream with frames (streams: {kinds})"
            next(container.decode(video=0), None)
    except EOFError as e:
        return f"the file ends before its first video frame ({frame_reader.ffmpeg_says(e)})"
    except Exception as e:  # the message is the diagnosis
        return frame_reader.ffmpeg_says(e)
    finally:
        av.logging.set_level(level)
    return ""


def decord_message(error: BaseException) -> str:
    """What decord's error means, in FFmpeg's words for the error code it carries; decord's own
    text (its source file, check expression and the bare code) goes to the log only."""
    text = _DECORD_NOISE.sub("", " ".join(str(error).split()))
    log.warning("decord: %s", text)
    for m in _AVERROR_IN_TEXT.finditer(text):
        words = _ffmpeg_error_words(int(m.group(1) or m.group(2)))
        if words:
            return words
    if "run_.load()" in text:  # decord's decoder thread died first and its reason was lost
        return "the decoder stopped on frame data it could not decode"
    return "decord could not read the video"


def _ffmpeg_error_words(code: int) -> str:
    """FFmpeg's description of an AVERROR code (PyAV's table), '' for an unknown code."""
    import av.error

    try:
        av.error.err_check(code)
    except av.FFmpegError as e:
        words = e.strerror or ""
        return "" if words.startswith("Error number") else words
    return ""


def decord_errors() -> tuple[type[BaseException], ...]:
    """What decord raises for data it cannot decode (not MemoryError and the like)."""
    import decord

    return (RuntimeError, decord.DECORDError)  # DECORDError is not a RuntimeError


def open_reader(path: Path):
    import decord  # worker-side import: native library, loaded where it is used

    return decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)


@dataclass(frozen=True)
class Header:
    """What the container header says of the video stream FFmpeg picks (`av_find_best_stream`,
    which decord picks too), nothing decoded."""

    size: tuple[int, int] | None  # (width, height) as coded; None when the header omits it
    codec: str  # FFmpeg's codec name: "h264", "av1"
    video_streams: int
    stream_index: int
    audio_streams: int = 0


def read_header(path: Path) -> Header | None:
    """The header of the file's best video stream; None when PyAV cannot read the header or
    finds no video stream (decord then speaks for the file)."""
    try:
        import av

        with av.open(str(path)) as container:
            stream = container.streams.best("video")
            if stream is None:
                return None
            context = stream.codec_context
            size = (context.width, context.height) if context.width and context.height else None
            codec = context.codec.canonical_name  # the codec ("av1"), not the decoder ("libdav1d")
            audio = len(container.streams.audio)
            return Header(size, codec, len(container.streams.video), stream.index, audio)
    except Exception:  # noqa: BLE001 (decord then speaks for the file)
        return None


CUT_SHORT = "pyav: the file was cut short"


def reader_for(path: Path, header: Header | None) -> str:
    """'' where decord reads the file, else "pyav: <why>": decord's FFmpeg has no decoder for
    the codec, or the MP4 was cut short (decord refuses it whole; PyAV reads the frames that
    are there)."""
    if header is None:
        return ""
    if not codecs.decord_decodes(header.codec):
        return f"pyav: decord has no {header.codec} decoder"
    if mp4_truncation(path):  # PyAV read the header: the index is there, the frames end early
        return CUT_SHORT
    return ""


def probe(path: Path, check_size: Callable[[int, int], None] | None = None) -> VideoInfo:
    """Frame count and rate (as decord numbers the frames, which every reader follows) and
    size, nothing decoded where the container header gives the size: that is the coded size,
    and decoding reports the size as displayed (`DecodedFrames.frame_size`: a rotation turns
    it). Only where PyAV cannot read the header is the first frame decoded for its size.
    `check_size(width, height)` may refuse the video before anything is decoded (the memory
    budget; a rotation does not change a frame's bytes)."""
    header = read_header(path)
    if check_size is not None and header is not None and header.size is not None:
        check_size(*header.size)
    if header is not None and header.video_streams > 1:
        log.warning(
            "%s has %d video streams: indexing stream #%d (FFmpeg's choice), %s",
            path.name, header.video_streams, header.stream_index, header.codec,
        )  # fmt: skip
    reader = reader_for(path, header)
    if reader:
        return probe_alone(path, header, reader)
    try:
        video = open_reader(path)
    except Exception as e:
        reason = diagnose(path) or decord_message(e)
        raise UnreadableVideo(f"cannot open video: {reason}") from None  # decord's text: logged
    num_frames = len(video)
    if num_frames <= 0:
        raise ValueError("video stream has no frames")
    fps = checked_fps(float(video.get_avg_fps()))
    if header is not None and header.size is not None:
        width, height = header.size
    else:  # a header only decord reads: the decoded first frame tells the size
        height, width = _first_frame_size(path, video)
        if check_size is not None:
            check_size(int(width), int(height))
    has_audio = header is not None and header.audio_streams > 0
    return VideoInfo(num_frames, fps, int(width), int(height), has_audio=has_audio)


def checked_fps(fps: float) -> float:
    if not np.isfinite(fps) or fps <= 0:
        raise ValueError(f"video stream reports an invalid frame rate ({fps})")
    return fps


def probe_alone(path: Path, header: Header, reader: str) -> VideoInfo:
    """`probe` through PyAV, for the streams it reads alone: the frames are the stream's
    packets, counted in one demuxer pass as decord counts them; a cut-short MP4 keeps the
    count its index lists (the frames past the cut are then missing, not absent)."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.best("video")
        listed = int(stream.frames or 0)
        counted = sum(1 for _ in frame_reader.readable_packets(container, stream))
        rate = stream.average_rate or stream.guessed_rate
    num_frames = max(listed, counted) if reader == CUT_SHORT else counted
    if counted <= 0:
        raise UnreadableVideo(f"cannot open video: {diagnose(path) or 'no video frames'}")
    fps = checked_fps(float(rate) if rate else 0.0)
    width, height = header.size or (0, 0)
    has_audio = header.audio_streams > 0
    return VideoInfo(num_frames, fps, int(width), int(height), reader=reader, has_audio=has_audio)


def _first_frame_size(path: Path, reader) -> tuple[int, int]:
    """(height, width) of the decoded first frame; a failure is tried again with a fresh
    reader (DECODE_ATTEMPTS), since damage far later in the file can fail it by read-ahead."""
    error = None
    for attempt in range(DECODE_ATTEMPTS):
        try:
            return (reader if attempt == 0 else open_reader(path))[0].shape[:2]
        except decord_errors() as e:
            error = e
    raise UndecodableFrames(f"cannot decode the first frame: {decord_message(error)}") from None


def center_crop_box(width: int, height: int) -> tuple[int, int, int, int]:
    """The centred square of a frame (short side), as a PIL box."""
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return left, top, left + side, top + side


def resize_frame(frame: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (size, size, 3): centre square, then bilinear resize."""
    from PIL import Image

    box = center_crop_box(frame.shape[1], frame.shape[0])
    return np.asarray(Image.fromarray(frame).resize((size, size), Image.BILINEAR, box=box))


def resize_frames(frames: np.ndarray, size: int) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, size, size, 3), each frame as `resize_frame`."""
    out = np.empty((len(frames), size, size, 3), dtype=np.uint8)
    for i, frame in enumerate(frames):
        out[i] = resize_frame(frame, size)
    return out


# decord's decoder thread reads ahead of the frames asked for: a damaged packet dozens of frames
# on can fail a read of good frames, or not, depending on timing. A failed read is tried again
# with a fresh reader before its frames count as undecodable.
DECODE_ATTEMPTS = 3


@dataclass(frozen=True)
class FrameFailure:
    """A run of requested frames that could not be decoded: positions [start, stop) in the
    request, and FFmpeg's reason."""

    start: int
    stop: int
    reason: str

    def message(self, indices: list[int], num_frames: int) -> str:
        """ "cannot decode frames a-b of n: reason", a-b the video's frame indices."""
        return (
            f"cannot decode frames {indices[self.start]}-{indices[self.stop - 1]} of "
            f"{num_frames}: {self.reason}"
        )


@dataclass(frozen=True)
class DecodedFrames:
    """Frames at the requested indices (zeros where undecodable), their (start, end) seconds,
    and the runs of frames that could not be decoded."""

    frames: np.ndarray  # (N, S, S, 3) uint8
    times: np.ndarray  # (N, 2) float64
    failures: tuple[FrameFailure, ...] = ()
    decord_because: str = ""  # why frame_reader handed the request to decord; '' if it read it
    frame_size: tuple[int, int] | None = None  # (width, height) as decoded, before the resize
    alone: str = ""  # VideoInfo.reader: "pyav: <why>" where PyAV read the stream alone

    @property
    def reader(self) -> str:
        """Which reader read the frames, as the run record counts units: `frame_reader`,
        decord with frame_reader's reason for handing the request over, or "pyav: <why>"."""
        if self.alone:
            return self.alone
        return f"decord: {self.decord_because}" if self.decord_because else "frame_reader"

    def decoded(self) -> np.ndarray:
        """(N,) bool: which requested frames were decoded."""
        ok = np.ones(len(self.frames), dtype=bool)
        for f in self.failures:
            ok[f.start : f.stop] = False
        return ok


def read_frames(
    path: Path, indices: list[int], size: int, native: VideoInfo, chunk_bytes: int
) -> np.ndarray:
    """Frames at sorted unique `indices`, resized; native-size frames are decoded in chunks so
    memory stays bounded by `chunk_bytes` whatever the resolution. Raises UndecodableFrames
    if any cannot be decoded."""
    got = read_frames_and_times(path, indices, size, native, chunk_bytes)
    if got.failures:
        raise _undecodable(indices, got.failures[0], native)
    return got.frames


def frame_times(reader, indices: list[int], native: VideoInfo) -> np.ndarray:
    """(N, 2) start and end seconds of frames from their presentation timestamps (container
    index, nothing decoded): true times for variable-frame-rate video. Where the container
    gives none, index / average fps."""
    try:
        times = np.asarray(reader.get_frame_timestamp(list(indices)), dtype=np.float64)
        if times.shape == (len(indices), 2) and np.isfinite(times).all():
            return times.round(6)  # decord gives float32 seconds: to the microsecond
    except decord_errors():
        pass
    start = np.asarray(indices, dtype=np.float64) / native.fps
    return np.stack([start, start + 1.0 / native.fps], axis=1)


def read_frames_and_times(
    path: Path, indices: list[int], size: int, native: VideoInfo, chunk_bytes: int
) -> DecodedFrames:
    """`read_frames`, plus each frame's (start, end) seconds (`frame_times`), keeping what
    decodes: a chunk that fails is read again GOP by GOP, so damaged data costs the frames of
    its keyframe interval, not the whole request. Raises UndecodableFrames if nothing decodes.

    Video with B-frames is read by `frame_reader` first (the same frames, fewer decoded); a
    request it cannot vouch for is read here with decord. A stream decord cannot read
    (`native.reader`) is read by PyAV alone (`read_alone`)."""
    if native.reader:
        return read_alone(path, indices, size, native)
    try:
        got = frame_reader.read_sampled(
            path, indices, native.num_frames, lambda frame: resize_frame(frame, size)
        )
        return DecodedFrames(got.frames, got.times, frame_size=got.frame_size)
    except frame_reader.NotFastReadable as e:
        because = str(e)
    # outside the except: decord's errors are not "caused by" the fast path's refusal
    return replace(
        read_with_decord(path, indices, size, native, chunk_bytes), decord_because=because
    )


def read_alone(path: Path, indices: list[int], size: int, native: VideoInfo) -> DecodedFrames:
    """`read_frames_and_times` through PyAV alone (`frame_reader.read_alone`): what decodes is
    kept, each run of frames that does not is a failure with its reason; where the file was
    cut short, the reason says where."""
    blank = np.zeros((size, size, 3), dtype=np.uint8)
    cut = mp4_truncation(path)
    try:
        got = frame_reader.read_alone(
            path,
            indices,
            native.num_frames,
            lambda frame: resize_frame(frame, size),
            blank,
            cut_reason=f"{cut}; {COPY_AGAIN}" if cut else "",
        )
    except frame_reader.NotFastReadable as e:
        raise UndecodableFrames(f"cannot number the frames of the video stream ({e})") from None
    failures = tuple(FrameFailure(start, stop, why) for start, stop, why in got.missing)
    if failures and failures[0].start == 0 and failures[0].stop == len(indices):
        raise _undecodable(indices, failures[0], native)
    return DecodedFrames(
        got.frames, got.times, failures, frame_size=got.frame_size, alone=native.reader
    )


def read_with_decord(
    path: Path, indices: list[int], size: int, native: VideoInfo, chunk_bytes: int
) -> DecodedFrames:
    """`read_frames_and_times` through decord alone."""
    reader = open_reader(path)
    times = frame_times(reader, indices, native)
    per_chunk = max(1, chunk_bytes // (native.height * native.width * 3))
    out = np.zeros((len(indices), size, size, 3), dtype=np.uint8)
    failures: list[FrameFailure] = []
    frame_size = None
    for start in range(0, len(indices), per_chunk):
        stop = min(start + per_chunk, len(indices))
        try:
            reader = reader or open_reader(path)
            batch = reader.get_batch(indices[start:stop]).asnumpy()  # (n, H, W, 3)
            frame_size = frame_size or _batch_frame_size(batch)
            out[start:stop] = resize_frames(batch, size)
            continue
        except decord_errors():
            reader = None  # its decoder may be stuck in its error: the next chunk opens anew
        lost, salvaged_size = _salvage(path, indices, start, stop, size, out)
        failures += lost
        frame_size = frame_size or salvaged_size
    failures = _merge(failures)
    if failures and failures[0].start == 0 and failures[0].stop == len(indices):
        raise _undecodable(indices, failures[0], native)
    return DecodedFrames(out, times, tuple(failures), frame_size=frame_size)


def _batch_frame_size(batch: np.ndarray) -> tuple[int, int]:
    """(width, height) of a decord batch, (n, H, W, 3)."""
    return int(batch.shape[2]), int(batch.shape[1])


def _salvage(
    path: Path, indices: list[int], start: int, stop: int, size: int, out: np.ndarray
) -> tuple[list[FrameFailure], tuple[int, int] | None]:
    """Read positions [start, stop) of `indices` one keyframe interval at a time, each with
    fresh readers (DECODE_ATTEMPTS); returns the positions that still fail, and the (width,
    height) of the frames decoded (None if none were)."""
    failures, frame_size = [], None
    for lo, hi in _gop_spans(path, indices, start, stop):
        reason = ""
        for _ in range(DECODE_ATTEMPTS):
            try:
                batch = open_reader(path).get_batch(indices[lo:hi]).asnumpy()
                frame_size = frame_size or _batch_frame_size(batch)
                out[lo:hi] = resize_frames(batch, size)
                break
            except decord_errors() as e:
                reason = decord_message(e)
        else:
            failures.append(FrameFailure(lo, hi, reason))
    return failures, frame_size


def _gop_spans(path: Path, indices: list[int], start: int, stop: int) -> list[tuple[int, int]]:
    """Positions [start, stop) of `indices` cut where a new keyframe interval begins (the whole
    range when the container lists no keyframes)."""
    try:
        keys = np.asarray(open_reader(path).get_key_indices(), dtype=np.int64)
    except decord_errors():
        keys = np.zeros(0, dtype=np.int64)
    if len(keys) == 0:
        return [(start, stop)]
    gop = np.searchsorted(keys, np.asarray(indices[start:stop]), side="right")
    cuts = [start + int(i) for i in np.flatnonzero(np.diff(gop)) + 1]
    edges = [start, *cuts, stop]
    return list(zip(edges[:-1], edges[1:], strict=True))


def _merge(failures: list[FrameFailure]) -> list[FrameFailure]:
    """Adjacent failed runs as one (the first run's reason)."""
    merged: list[FrameFailure] = []
    for f in sorted(failures, key=lambda f: f.start):
        if merged and merged[-1].stop == f.start:
            merged[-1] = FrameFailure(merged[-1].start, f.stop, merged[-1].reason)
        else:
            merged.append(f)
    return merged


def _undecodable(indices: list[int], failure: FrameFailure, native: VideoInfo) -> UndecodableFrames:
    return UndecodableFrames(failure.message(indices, native.num_frames))
