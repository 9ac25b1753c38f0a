"""Sampled frames through PyAV, decoding only the frames they depend on: the fast path of
pipeline.video.io.

To reach a frame, decord decodes every frame from the keyframe before it. In video with
B-frames most of those are frames no other frame refers to (about two in three with x264's
defaults); FFmpeg can skip decoding them (`skip_frame = NONREF`). This reader feeds the decoder
only the packets from the keyframe before each wanted frame, and asks it to skip the
non-reference frames it does not want. A range of an MP4 (a unit of a long video) costs only
its own keyframe intervals: the container's packet index says where they are.

What comes out is what decord gives: the same frames bit for bit (decoding is exact, and the
frame order is the same, presentation timestamps sorted) and the same times, but where
decord's older FFmpeg reads other packet durations (tests/test_frame_reader.py, a zoo of
B-frame files). It never judges a file: whatever it cannot vouch for (a frame count other
than the probe's, a packet without a timestamp, a display rotation, a decoding error, a
wanted frame that did not come out) raises
NotFastReadable, and pipeline.video.io reads the request with decord, whose salvage of damaged
data is the one error path.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np


def ffmpeg_says(error: BaseException) -> str:
    """A PyAV error in FFmpeg's words, with FFmpeg's last log line where PyAV kept it ("Invalid
    data found when processing input: moov atom not found"): no error number, no path, no C
    function name."""
    words = getattr(error, "strerror", None)
    if not words:
        return " ".join(str(error).split())
    log_line = getattr(error, "log", None)  # (level, component, message)
    said = " ".join(str(log_line[2]).split()) if log_line else ""
    return f"{words}: {said}" if said else words


class NotFastReadable(Exception):
    """This reader cannot vouch for the request; decord reads it instead."""


class OpenKeyframeInterval(NotFastReadable):
    """A range's border cuts an open keyframe interval: its frames can only be numbered from
    the whole stream."""


@dataclass(frozen=True)
class StreamIndex:
    """A video stream's packets in decode order: presentation timestamps, durations and
    keyframe flags, from one pass of the demuxer (nothing decoded)."""

    pts: np.ndarray  # (N,) int64, decode order
    durations: np.ndarray  # (N,) int64
    keyframe: np.ndarray  # (N,) bool
    time_base: float
    first_frame: int = 0  # the stream's frame number of the first frame shown here

    @cached_property
    def presentation(self) -> np.ndarray:
        """Decode positions in presentation order: frame first_frame + i is packet
        presentation[i]."""
        return np.argsort(self.pts, kind="stable")

    @cached_property
    def key_positions(self) -> np.ndarray:
        """Decode positions of the keyframes."""
        return np.flatnonzero(self.keyframe)

    def positions(self, frames: list[int]) -> np.ndarray:
        """Decode positions here of the stream's presentation-order `frames`."""
        local = np.asarray(frames, dtype=np.int64) - self.first_frame
        if local.min() < 0 or local.max() >= len(self.pts):
            raise NotFastReadable("a wanted frame outside the indexed packets")
        return self.presentation[local]

    def times(self, frames: list[int]) -> np.ndarray:
        """(N, 2) start and end seconds of presentation-order `frames` as decord gives them:
        the packet's timestamp and timestamp + duration, float32 seconds to the microsecond."""
        packets = self.positions(frames)
        start = self.pts[packets]
        ticks = np.stack([start, start + self.durations[packets]], axis=1)
        return (ticks * self.time_base).astype(np.float32).astype(np.float64).round(6)

    def start_for(self, position: int) -> int | None:
        """The decode position to start decoding at to reach the packet at `position`: the
        last keyframe at or before it in decode order that is not shown after it. A frame shown
        at or after its keyframe needs nothing before that keyframe, even in an open interval
        (HEVC: trailing pictures never refer across their keyframe); one shown before it (a
        leading frame of an open interval) starts at an earlier keyframe. None: no such
        keyframe."""
        keys = self.key_positions[: np.searchsorted(self.key_positions, position, side="right")]
        for key in keys[::-1]:
            if self.pts[key] <= self.pts[position]:
                return int(key)
        return None


def index_stream(container, stream) -> StreamIndex:
    """One demuxer pass over `stream` (decord makes the same pass when it opens a file)."""
    timings = [_timing(p) for p in container.demux(stream) if p.size]  # size 0: end of stream
    return _index_of(timings, float(stream.time_base))


def whole_stream(container, stream, num_frames: int) -> StreamIndex:
    """`index_stream`, which must find the probe's `num_frames` packets."""
    index = index_stream(container, stream)
    if len(index.pts) != num_frames:
        raise NotFastReadable(f"{len(index.pts)} packets for {num_frames} frames")
    return index


def _timing(packet) -> tuple[int, int, bool]:
    """(pts, duration, keyframe) of a packet."""
    if packet.pts is None:
        raise NotFastReadable("a packet without a presentation timestamp")
    return packet.pts, packet.duration or 0, packet.is_keyframe


def _index_of(timings: list[tuple[int, int, bool]], time_base: float, first_frame: int = 0):
    """A StreamIndex of packets' `_timing`s, in decode order."""
    if not timings:
        raise NotFastReadable("no packets")
    pts, durations, keyframe = (np.asarray(column) for column in zip(*timings, strict=True))
    if len(np.unique(pts)) != len(pts):
        raise NotFastReadable("two packets share a presentation timestamp")
    return StreamIndex(
        pts.astype(np.int64),
        durations.astype(np.int64),
        keyframe.astype(bool),
        time_base,
        first_frame,
    )


def index_region(container, stream, frames: list[int], num_frames: int) -> StreamIndex | None:
    """The packets of the keyframe intervals that hold presentation-order `frames` (sorted),
    and of the intervals before them (at least REORDER_LIMIT packets): where they are from
    the container's own index (MP4: an entry per packet, in decode order, read with the
    header), their timestamps from a demuxer pass over just those intervals, so a unit of a
    long video costs its own packets, not the file's. None where the container's index cannot
    say (MKV lists keyframes only): then index_stream.

    A frame's number is its interval's first plus its rank there. That holds where nothing
    before the region's first interval is shown inside it, and nothing after its last one:
    checked on both sides, with the packets of the intervals before (all shown before the
    region; an open first interval's leading frames, shown before its keyframe, are then
    numbered right, and decoded from the keyframe before) and the REORDER_LIMIT packets after
    the last interval (all shown after it)."""
    entries = stream.index_entries
    if len(entries) != num_frames:
        return None
    listed = [(e.is_keyframe, e.is_discard) for e in entries]
    if any(discard for _, discard in listed):
        return None  # an edit list hides packets: the entries are not the frames
    keys = np.flatnonzero([key for key, _ in listed])
    if len(keys) == 0 or keys[0] != 0:
        return None
    first = int(keys[np.searchsorted(keys, frames[0], side="right") - 1])
    # lead: the intervals before, at least REORDER_LIMIT packets of them (packets further back
    # are never shown inside the region), or all of them
    lead = int(keys[max(np.searchsorted(keys, first - REORDER_LIMIT, side="right") - 1, 0)])
    after = np.searchsorted(keys, frames[-1], side="right")
    end = int(keys[after]) if after < len(keys) else num_frames
    stop = min(num_frames, end + REORDER_LIMIT)
    start = entries[lead]
    # the entries' timestamps are decode times and MP4 seeks by presentation time: this lands
    # at or before the keyframe (at most an interval before), the packets up to it are skipped
    container.seek(int(start.timestamp), stream=stream, backward=True, any_frame=False)
    timings, skipped = [], 0
    for packet in container.demux(stream):
        if packet.size == 0:
            break
        if not timings and packet.pos != start.pos:
            skipped += 1
            if skipped > lead:
                raise NotFastReadable("the seek did not reach the keyframe the index names")
            continue
        timings.append(_timing(packet))
        if len(timings) == stop - lead:
            break
    if len(timings) != stop - lead:
        raise NotFastReadable("the stream ends before its index does")
    index = _index_of(timings[: end - lead], float(stream.time_base), first_frame=lead)
    before, inside = index.pts[: first - lead], index.pts[first - lead :]
    beyond = [pts for pts, _, _ in timings[end - lead :]]
    if first == 0:  # the stream's first keyframe: nothing before it, it is shown first
        if inside.min() != inside[0]:
            raise OpenKeyframeInterval("the first keyframe is not the first frame shown")
    elif before.max() >= inside.min():
        raise OpenKeyframeInterval("a frame before the region is shown inside it")
    if beyond and min(beyond) <= index.pts.max():
        raise OpenKeyframeInterval("an open keyframe interval: frames shown across its border")
    return index


# Packets read past a region's last keyframe interval to see that none is shown inside it
# (H.264 reorders at most 16 frames).
REORDER_LIMIT = 16


def decode_spans(index: StreamIndex, frames: list[int]) -> list[tuple[int, int]]:
    """Decode-order packet spans [first, last] that reach presentation-order `frames`: from
    the keyframe each wanted packet can be decoded from (`StreamIndex.start_for`) to the last
    wanted packet after it; spans that touch or overlap are one (the decoder then runs on
    without a break)."""
    spans: list[tuple[int, int]] = []
    targets = []
    for position in index.positions(frames).tolist():
        start = index.start_for(position)
        if start is None:
            raise NotFastReadable("a wanted frame comes before every keyframe it could follow")
        targets.append((start, position))
    for start, stop in sorted(targets):
        if spans and start <= spans[-1][1] + 1:
            spans[-1] = (spans[-1][0], max(spans[-1][1], stop))
        else:
            spans.append((start, stop))
    return spans


@dataclass(frozen=True)
class SampledFrames:
    """What `read_sampled` read: the converted frames, their (start, end) seconds, and how
    much of the stream it took (packets indexed, given to the decoder, frames it decoded)."""

    frames: np.ndarray
    times: np.ndarray  # (N, 2) float64
    packets_fed: int
    frames_decoded: int
    packets_indexed: int  # packets numbered: the intervals a range needs, or the whole stream
    frame_size: tuple[int, int] | None = None  # (width, height) of the decoded frames
    # runs of requested positions [start, stop) that did not decode, and why (read_alone only)
    missing: tuple[tuple[int, int, str], ...] = ()


def read_sampled(path: Path, frames: list[int], num_frames: int, convert) -> SampledFrames:
    """Presentation-order `frames` (sorted, unique) of the file's best video stream, each passed
    through `convert` ((H, W, 3) uint8 RGB -> the array kept) as soon as it is decoded.
    `num_frames` is the probe's count, which the stream must match. Raises NotFastReadable
    where decord should read the request instead."""
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.best("video")
            if stream is None:
                raise NotFastReadable("no video stream")
            if not stream.codec_context.has_b_frames:
                raise NotFastReadable("no frame reordering: no B-frames to skip")
            try:
                index = index_region(container, stream, frames, num_frames)
            except OpenKeyframeInterval:
                # whatever the cost: decord numbers open intervals' frames wrongly after a seek;
                # a fresh container, since the region's pass moved this one's demuxer
                with av.open(str(path)) as whole:
                    index = whole_stream(whole, whole.streams[stream.index], num_frames)
            else:
                if index is None:  # no packet index, and nothing demuxed yet
                    if num_frames > INDEX_PASS_LIMIT * (frames[-1] - frames[0] + 1):
                        raise NotFastReadable("a short range of a long video with no packet index")
                    index = whole_stream(container, stream, num_frames)
            wanted_pts = index.pts[index.positions(frames)]
            slot = {int(p): i for i, p in enumerate(wanted_pts)}
            out: list = [None] * len(frames)
            decoder = _SpanDecoder(container, stream, index, slot, convert, out)
            for span in decode_spans(index, frames):
                decoder.run(*span)
    except av.FFmpegError as e:
        raise NotFastReadable(f"FFmpeg: {e}") from e
    if any(o is None for o in out):
        raise NotFastReadable("a wanted frame did not come out of the decoder")
    return SampledFrames(
        np.stack(out),
        index.times(frames),
        decoder.fed,
        decoder.decoded,
        len(index.pts),
        decoder.frame_size,
    )


def read_alone(
    path: Path, frames: list[int], num_frames: int, convert, blank, cut_reason: str = ""
) -> SampledFrames:
    """`read_sampled` for the streams PyAV reads alone (`pipeline.video.codecs`: a codec
    decord's FFmpeg lacks, a cut-short MP4), keeping what decodes: any stream, B-frames or
    not; a display rotation applied as decord applies it; a packet the decoder refuses costs
    the frames that do not come out, not the request. Frames that did not decode are `blank`
    and listed in `missing` as runs of positions with the reason.

    A stream whose packets end before `num_frames` (the file was cut) numbers the frames no
    lost packet can be shown before: all but the decoder's reorder delay from the end; the
    frames after say where the stream ends, and `cut_reason`.
    Raises NotFastReadable where the packets cannot be numbered at all (no timestamps)."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.best("video")
        if stream is None:
            raise NotFastReadable("no video stream")
        reorder = max(int(stream.codec_context.has_b_frames or 0), 0)
        try:
            index = index_region(container, stream, frames, num_frames)
        except (NotFastReadable, av.FFmpegError):  # cut short, open intervals: the whole stream
            index = None
    with av.open(str(path)) as container:
        stream = container.streams.best("video")
        numbered = num_frames
        if index is None:
            index = _readable_packets(container, stream)
            if len(index.pts) < num_frames:  # cut short: the last `reorder` may be misnumbered
                numbered = len(index.pts) - reorder
        readable = [i for i, f in enumerate(frames) if index.first_frame <= f < numbered]
        out: list = [None] * len(frames)
        decoder = None
        if readable:
            wanted = [frames[i] for i in readable]
            wanted_pts = index.pts[index.positions(wanted)]
            slot = {int(p): i for i, p in zip(readable, wanted_pts, strict=True)}
            decoder = _SpanDecoder(container, stream, index, slot, convert, out, alone=True)
            for span in decode_spans(index, wanted):
                decoder.run(*span)
        fps = float(stream.guessed_rate or 0)  # read while the container is open
    times = _times_or_estimates(index, frames, numbered, fps)
    ended = f"the stream ends after frame {numbered - 1}" if numbered > 0 else "no frames"
    ended += f"; {cut_reason}" if cut_reason else ""
    missing = []
    for i, o in enumerate(out):
        if o is None:
            reason = ended if not index.first_frame <= frames[i] < numbered else ""
            reason = reason or (decoder.errors[-1] if decoder and decoder.errors else "")
            reason = reason or "the decoder gave no frame for it"
            if missing and missing[-1][1] == i and missing[-1][2] == reason:
                missing[-1] = (missing[-1][0], i + 1, reason)
            else:
                missing.append((i, i + 1, reason))
            out[i] = blank
    return SampledFrames(
        np.stack(out),
        times,
        decoder.fed if decoder else 0,
        decoder.decoded if decoder else 0,
        len(index.pts),
        decoder.frame_size if decoder else None,
        tuple(missing),
    )


def readable_packets(container, stream, errors: list[str] | None = None):
    """The stream's packets in decode order from where the demuxer stands, up to its end or
    the first packet the demuxer cannot read (a cut file: why, into `errors` when given)."""
    import av

    packets = container.demux(stream)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            return
        except av.FFmpegError as e:
            if errors is not None:
                errors.append(f"the file cannot be read on from there: {ffmpeg_says(e)}")
            return
        if packet.size == 0:  # the end of the stream
            return
        yield packet


def _readable_packets(container, stream) -> StreamIndex:
    """`index_stream` of the `readable_packets`."""
    timings = [_timing(packet) for packet in readable_packets(container, stream)]
    return _index_of(timings, float(stream.time_base))


def _times_or_estimates(index: StreamIndex, frames: list[int], numbered: int, fps: float):
    """(N, 2) seconds of `frames`: the packets' where numbered, else index / fps."""
    times = np.zeros((len(frames), 2), dtype=np.float64)
    inside = [i for i, f in enumerate(frames) if index.first_frame <= f < numbered]
    if inside:
        times[inside] = index.times([frames[i] for i in inside])
    outside = sorted(set(range(len(frames))) - set(inside))
    if outside and fps > 0:
        start = np.asarray([frames[i] for i in outside], dtype=np.float64) / fps
        times[outside] = np.stack([start, start + 1.0 / fps], axis=1)
    return times


# Without the container's index, the index pass reads every packet of the file (about 40 us
# each through PyAV): a request spanning less than 1/INDEX_PASS_LIMIT of such a video (a unit
# of a long MKV) stays with decord.
INDEX_PASS_LIMIT = 4
# Packets between two spans read and dropped rather than sought over.
SEEK_GAP = 64


class _SpanDecoder:
    """Feeds the decoder spans of packets, skipping the non-reference frames nobody wants. A
    span starts at a keyframe: the decoder is drained and reset between spans.

    `alone` (read_alone): nothing is handed on, so every frame of a span is decoded, a display
    rotation is applied here, and a packet the demuxer or decoder refuses is noted in `errors`
    and passed over."""

    def __init__(
        self, container, stream, index: StreamIndex, slot: dict, convert, out: list, alone=False
    ):
        self.container, self.stream, self.slot = container, stream, slot
        self.convert, self.out, self.alone = convert, out, alone
        self.errors: list[str] = []
        self.codec = stream.codec_context
        self.codec.thread_type = "NONE"  # one thread per decode task, as decord is opened
        self.position_of = {int(p): i for i, p in enumerate(index.pts)}
        self.pts = index.pts
        self.next_position = None  # where the demuxer stands, None before the first seek
        self.fed = self.decoded = 0
        self.frame_size = None  # (width, height) of the first frame kept

    def run(self, first: int, last: int) -> None:
        sought = self.next_position is None or not 0 <= first - self.next_position <= SEEK_GAP
        if sought:
            self.container.seek(
                int(self.pts[first]), stream=self.stream, backward=True, any_frame=False
            )
        codec = self.codec
        for packet in self._packets():
            position = self.position_of.get(packet.pts)
            if position is None or (sought and position > first):
                raise NotFastReadable("the demuxer is not where the index says")
            sought = False
            self.next_position = position + 1
            if position < first:
                continue
            # alone, every frame is decoded: skipping is proven on H.264 and HEVC only (AV1's
            # dav1d applies it to the frames it outputs later, not to this packet's)
            wanted = self.alone or packet.pts in self.slot
            codec.skip_frame = "DEFAULT" if wanted else "NONREF"
            self.fed += 1
            self._decode(packet)
            if position >= last:
                break
        codec.skip_frame = "DEFAULT"
        self._decode(None)  # drain the frames held back for reordering
        codec.flush_buffers()

    def _packets(self):
        """The stream's packets from where the demuxer stands, to its end; alone, to the first
        packet it cannot read (`readable_packets`), else a demuxer error is raised."""
        if self.alone:
            return readable_packets(self.container, self.stream, self.errors)
        return itertools.takewhile(lambda p: p.size, self.container.demux(self.stream))

    def _decode(self, packet) -> None:
        import av

        try:
            decoded = self.codec.decode(packet)
        except av.FFmpegError as e:
            if not self.alone:
                raise
            self.errors.append(ffmpeg_says(e))
            return
        for frame in decoded:
            self.decoded += 1
            if frame.rotation and not self.alone:
                raise NotFastReadable("a display rotation, which decord applies")
            i = self.slot.get(frame.pts)
            if i is not None and self.out[i] is None:
                image = frame.to_ndarray(format="rgb24")
                if frame.rotation:  # as decord turns it: the frame as displayed
                    image = np.ascontiguousarray(np.rot90(image, frame.rotation // 90))
                self.frame_size = self.frame_size or (image.shape[1], image.shape[0])
                self.out[i] = self.convert(image)
