"""Near-duplicate videos from their perceptual frame hashes (pipeline.video.fingerprint).

A copy (re-encoded, resized, trimmed, lightly cropped or colour-shifted) keeps most of its
frames' hashes within a few bits of the original's, in the same order; a different video that
merely looks alike matches a frame here and there. Two videos are compared by the fraction of
the shorter one's frames that match a frame of the other at one time offset (the shorter: a
trimmed copy lies wholly inside its original). Nothing is compared all-pairs:

1. candidates: the frame hashes are in faiss multi-index hash tables (`IndexBinaryMultiHash`,
   3 substrings of 21 bits, each looked up with up to 2 bits flipped): each index run builds
   one over its own clips (`_search/frames/`, pipeline.ann.hash_table), and one is built here
   for videos of runs that have none. Two hashes within
   CANDIDATE_DISTANCE bits agree within 2 bits on one substring (pigeonhole), so the range
   search finds every such frame pair, exactly, reading only the buckets it hits. Each frame is
   queried whole and zoomed (its crop hash) against the whole frames, so crops are found too.
   Not a k-NN graph (HNSW): it caps the neighbours per frame (a still scene fills them with its
   own frames) and missed a quarter of the close pairs at a million hashes; not a flat index:
   that compares all pairs.
2. verification: each candidate pair of videos gets its similarity from all their frames.
3. groups: each video, longest first, becomes the first member of a group of the videos not yet
   grouped that are similar to it; a video similar only to another member stays out of that
   group. Connected components would chain (a compilation links every clip it contains, and
   the clips to each other); here every listed similarity is a verified pair >= threshold.

Frames without structure (NO_HASH: black, flat) are left out, and a pair needs at least
`min_matched_frames` distinct matched frames whatever its fraction, so a still image, a video
of two seconds or a black one never groups. A run of near-identical consecutive frames (a
still scene) is looked up once.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline import ann
from pipeline.video.fingerprint import informative, popcount

__all__ = [
    "CANDIDATE_DISTANCE",
    "DEFAULT_THRESHOLD",
    "MAX_DISTANCE",
    "MIN_MATCHED_FRAMES",
    "PairScores",
    "Video",
    "as_video",
    "candidate_pairs",
    "find_duplicates",
    "group_pairs",
    "hashes_by_video",
    "informative",
    "pair_precision_recall",
    "pair_similarities",
    "similarity",
]

# Similarity (matched fraction of the shorter video) from which two videos are copies.
DEFAULT_THRESHOLD = 0.7
MAX_DISTANCE = 12  # bits: two frames match (of 64; unrelated frames differ in ~32)
CANDIDATE_DISTANCE = 8  # bits: a frame pair this close makes two videos a candidate pair
MIN_MATCHED_FRAMES = 3  # distinct matched frames a pair needs, whatever its fraction
# bits a frame may differ from the path between two consecutive samples, on the bits they
# share, and how far apart those two may be (half the hash: the path then fixes 32 bits or more)
BETWEEN_DISTANCE, BETWEEN_SPAN = 4, 32
COLLAPSE_DISTANCE = 3  # bits: a frame this close to the one before it adds weight, not a search
# The tables (pipeline.ann.hash_table): 3 substrings of 21 bits (2M buckets each; bit 63 is in
# none). Two hashes within CANDIDATE_DISTANCE = 8 bits agree within 2 bits on one substring:
# 3 x 232 buckets a query. At a million hashes this is 67 us a query on 2 cores (4 of 16 bits:
# 105 us for 7 bits).
QUERY_BATCH = 65_536  # range-search queries at a time: the result arrays stay small
COLUMNS = ("group_id", "video_uri", "similarity")
SCHEMA = pa.schema(
    [("group_id", pa.int64()), ("video_uri", pa.string()), ("similarity", pa.float64())]
)
PAIR_SCHEMA = pa.schema(
    [
        ("video_uri_a", pa.string()),
        ("video_uri_b", pa.string()),
        ("similarity", pa.float64()),
        ("matched_frames", pa.int64()),
    ]
)


@dataclass(frozen=True)
class Table:
    """A frame-hash table (pipeline.ann.hash_table) and the video position each of its ids
    stands for (`owner[id]`; -1: a row no video here takes part with, e.g. superseded)."""

    index: object
    owner: np.ndarray


@dataclass(frozen=True)
class Video:
    """One video's informative frames: their hashes, sample positions and runs."""

    uri: str
    frames: int  # sampled frames, informative or not: the video's length
    hashes: np.ndarray  # (F, Z) uint64; column 0 the whole frame, the others zoomed
    positions: np.ndarray  # (F,) int64: each frame's index among the video's samples
    runs: np.ndarray  # (F,) int64: which run of near-identical consecutive frames it is in

    @property
    def searched(self) -> np.ndarray:
        """The first frame of each run: the frames the candidate search looks up."""
        return np.flatnonzero(np.diff(self.runs, prepend=-1))


def as_video(uri: str, hashes: np.ndarray) -> Video:
    """Keep the informative frames and number the runs of near-identical ones (each run
    within COLLAPSE_DISTANCE bits of its first frame, so a slow pan does not drift)."""
    hashes = np.asarray(hashes, dtype=np.uint64)
    if hashes.ndim == 1:
        hashes = hashes[:, None]
    if hashes.ndim != 2:
        raise ValueError(f"{uri}: expected (T,) or (T, Z) uint64 hashes, got {hashes.shape}")
    positions = np.flatnonzero(informative(hashes[:, 0]))
    kept = hashes[positions]
    if kept.shape[1] > 1:  # a zoomed hash without structure matches nothing
        kept[:, 1:][~informative(kept[:, 1:])] = 0
    runs = np.empty(len(kept), dtype=np.int64)
    run, first = -1, -1
    for i, value in enumerate(kept[:, 0].tolist()):
        if first < 0 or (value ^ first).bit_count() > COLLAPSE_DISTANCE:
            run, first = run + 1, value
        runs[i] = run
    return Video(uri, len(hashes), kept, positions, runs)


def hashes_by_video(table: pa.Table, column: str = "frame_hashes") -> dict[str, np.ndarray]:
    """uri -> (T,) or (T, Z) uint64 from rows (`video_uri`, `column`): list<uint64>, or
    list<fixed_size_list<uint64 or int64>[Z]>; null rows skipped. With a `frame_indices`
    column (the clips table: overlapping clips and padding repeat frames), each frame once, in
    frame order; without it, a video's rows joined in row order."""
    table = table.filter(pc.is_valid(table[column]))
    hashes = table[column].combine_chunks()
    lengths = pc.list_value_length(hashes).to_numpy(zero_copy_only=False).astype(np.int64)
    values = pc.list_flatten(hashes)
    if pa.types.is_fixed_size_list(values.type):
        width = values.type.list_size
        flat = pc.list_flatten(values).to_numpy(zero_copy_only=False).astype(np.uint64)
        flat = flat.reshape(-1, width)
    else:
        flat = values.to_numpy(zero_copy_only=False).astype(np.uint64)
    videos = pc.dictionary_encode(table["video_uri"]).combine_chunks()
    video = np.repeat(videos.indices.to_numpy(zero_copy_only=False).astype(np.int64), lengths)
    if "frame_indices" in table.column_names:
        frame = pc.list_flatten(table["frame_indices"]).to_numpy(zero_copy_only=False)
        key, first = np.unique((video << 32) | frame.astype(np.int64), return_index=True)
        flat, video = flat[first], key >> 32  # sorted by video, then frame
    else:
        order = np.argsort(video, kind="stable")
        flat, video = flat[order], video[order]
    starts = np.flatnonzero(np.diff(video, prepend=-1))
    names = videos.dictionary.to_pylist()
    return {
        names[int(video[a])]: flat[a:b]
        for a, b in zip(starts, [*starts[1:], len(video)], strict=True)
    }


def _videos(hashes: Mapping[str, np.ndarray] | pa.Table) -> list[Video]:
    if isinstance(hashes, pa.Table):
        hashes = hashes_by_video(hashes)
    return [as_video(uri, hashes[uri]) for uri in sorted(hashes)]


def candidate_pairs(
    videos: list[Video], distance: int = CANDIDATE_DISTANCE, tables: Sequence[Table] = ()
) -> np.ndarray:
    """(P, 2) int64, a < b: the videos with a frame pair within `distance` bits (the whole
    frame of one, whole or zoomed frame of the other), from faiss multi-index hash tables:
    `tables` (each run's, with the video each id stands for), and one built here over the
    videos no table holds."""
    held = np.zeros(len(videos), dtype=bool)
    for table in tables:
        held[table.owner[table.owner >= 0]] = True
    owner = np.repeat(np.arange(len(videos)), [len(v.searched) for v in videos])
    if not len(owner):
        return np.zeros((0, 2), dtype=np.int64)
    searched = np.concatenate([v.hashes[v.searched] for v in videos])
    tables = list(tables)
    if not held.all():
        rows = np.flatnonzero(~held[owner])
        tables.append(Table(ann.hash_table(searched[rows, 0], rows), owner))
    found = []
    for table in tables:
        for column in range(searched.shape[1]):
            rows = np.flatnonzero(searched[:, column] != 0)
            for start in range(0, len(rows), QUERY_BATCH):
                batch = rows[start : start + QUERY_BATCH]
                codes = ann.hash_codes(searched[batch, column])
                limits, _, hits = table.index.range_search(codes, distance + 1)
                a = owner[np.repeat(batch, np.diff(limits.astype(np.int64)))]
                b = table.owner[hits]
                other = (b >= 0) & (a != b)
                low, high = np.minimum(a[other], b[other]), np.maximum(a[other], b[other])
                found.append(np.unique(low * len(videos) + high))
    keys = np.unique(np.concatenate(found)) if found else np.zeros(0, dtype=np.int64)
    return np.stack([keys // len(videos), keys % len(videos)], axis=1)


def _close(a: Video, b: Video, max_distance: int) -> np.ndarray:
    """(Fa, Fb) bool: frame pairs that match. Frame i of one video matches frame j of the
    other when they are within `max_distance` bits (whole to whole, or zoomed on either side
    to whole), or when i lies between j and the sample after it: within BETWEEN_DISTANCE bits
    on the bits those two agree on (a trimmed copy samples the original between its samples;
    the bits that change between two samples are the ones left free)."""
    ways = [(0, 0)]
    for zoom in range(1, min(a.hashes.shape[1], b.hashes.shape[1])):
        ways += [(zoom, 0), (0, zoom)]
    close = np.zeros((len(a.hashes), len(b.hashes)), dtype=bool)
    for i, j in ways:
        left, right = a.hashes[:, i], b.hashes[:, j]
        near = popcount(left[:, None] ^ right[None, :]) <= max_distance
        near &= (left != 0)[:, None] & (right != 0)[None, :]
        close |= near
    for frames, samples, matrix in ((a, b, close), (b, a, close.T)):
        whole = samples.hashes[:, 0]
        changed = whole[:-1] ^ whole[1:]
        spans = (np.diff(samples.positions) == 1) & (popcount(changed) <= BETWEEN_SPAN)
        for column in range(frames.hashes.shape[1]):
            values = frames.hashes[:, column]
            off = popcount((values[:, None] ^ whole[None, :-1]) & ~changed[None, :])
            matrix[:, :-1] |= (off <= BETWEEN_DISTANCE) & spans[None, :] & (values != 0)[:, None]
    return close


def _aligned(close: np.ndarray, short: Video, long: Video) -> tuple[int, int]:
    """Frames of `short` that match `long` at the best single time offset (within one sample
    either way: a trimmed copy's samples fall between the original's), and the runs they
    span."""
    i, j = np.nonzero(close)
    if not len(i):
        return 0, 0
    offsets = long.positions[j] - short.positions[i]
    low = offsets.min() - 1
    votes = np.zeros((len(short.positions), offsets.max() - low + 2), dtype=bool)
    for slack in (-1, 0, 1):
        votes[i, offsets - low + slack] = True
    matched = votes[:, np.argmax(votes.sum(axis=0))]
    return int(matched.sum()), len(np.unique(short.runs[matched]))


def similarity(a: Video, b: Video, max_distance: int = MAX_DISTANCE) -> tuple[float, int]:
    """The fraction of the shorter video's informative frames that have a frame of the other
    within `max_distance` bits at one time offset (order kept: a look-alike matches a frame
    here and there, a copy all along), and the distinct runs of frames that is (a still image
    is one). Equal lengths: the better of the two."""
    close = _close(a, b, max_distance)
    sides = []
    for short, long, matrix in ((a, b, close), (b, a, close.T)):
        matched, runs = _aligned(matrix, short, long)
        sides.append((len(short.positions), -matched / max(1, len(short.positions)), runs))
    _, fraction, runs = min(sides)
    return float(-fraction), runs


def pair_similarities(
    hashes: Mapping[str, np.ndarray] | pa.Table, max_distance: int = MAX_DISTANCE
) -> pa.Table:
    """Every candidate pair of videos with its similarity and matched frames (PAIR_SCHEMA),
    video_uri_a < video_uri_b: what `find_duplicates` thresholds and groups."""
    videos = _videos(hashes)
    return _pair_table(videos, _similarities(videos, max_distance))


def _similarities(
    videos: list[Video], max_distance: int, tables: Sequence[Table] = ()
) -> list[tuple[int, int, float, int]]:
    out = []
    for a, b in candidate_pairs(videos, tables=tables).tolist():
        value, matched = similarity(videos[a], videos[b], max_distance)
        out.append((a, b, value, matched))
    return out


def _pair_table(videos: list[Video], pairs: list[tuple[int, int, float, int]]) -> pa.Table:
    return pa.table(
        {
            "video_uri_a": [videos[a].uri for a, _, _, _ in pairs],
            "video_uri_b": [videos[b].uri for _, b, _, _ in pairs],
            "similarity": [s for _, _, s, _ in pairs],
            "matched_frames": [m for _, _, _, m in pairs],
        },
        schema=PAIR_SCHEMA,
    )


def group_pairs(
    pairs: pa.Table,
    lengths: Mapping[str, int],
    threshold: float = DEFAULT_THRESHOLD,
    min_matched_frames: int = MIN_MATCHED_FRAMES,
) -> pa.Table:
    """Groups (SCHEMA) from pair similarities: a pair counts when its similarity is at least
    `threshold` and it matched at least `min_matched_frames` frames. Videos are taken longest
    first (`lengths`: sampled frames), then the one similar to most, then by uri: each one not
    yet grouped that has similar videos not yet grouped becomes a group's first member
    (similarity 1.0), with them.

    The first member is the longest because copies are mostly shorter (trimmed) than what they
    copy, and among equals the one most videos resemble (an original resembles each of its
    copies more than they resemble each other): each member's similarity is then the share of
    it found in the first."""
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    similar: dict[str, dict[str, float]] = {}
    for a, b, value, matched in zip(
        *(pairs[c].to_pylist() for c in PAIR_SCHEMA.names), strict=True
    ):
        if value >= threshold and matched >= min_matched_frames:
            similar.setdefault(a, {})[b] = value
            similar.setdefault(b, {})[a] = value
    order = sorted(similar, key=lambda uri: (-lengths[uri], -len(similar[uri]), uri))
    grouped: set[str] = set()
    rows: list[tuple[int, str, float]] = []
    group = -1
    for first in order:
        if first in grouped:
            continue
        members = {uri: value for uri, value in similar[first].items() if uri not in grouped}
        if not members:
            continue
        group += 1
        grouped.update(members, (first,))
        rows.append((group, first, 1.0))
        rows += [
            (group, uri, members[uri]) for uri in sorted(members, key=lambda u: (-members[u], u))
        ]
    return pa.table(
        {name: [row[i] for row in rows] for i, name in enumerate(COLUMNS)}, schema=SCHEMA
    )


def find_duplicates(
    hashes: Mapping[str, np.ndarray] | pa.Table,
    threshold: float = DEFAULT_THRESHOLD,
    max_distance: int = MAX_DISTANCE,
    min_matched_frames: int = MIN_MATCHED_FRAMES,
    tables: Sequence[tuple[object, Sequence[str | None]]] = (),
) -> pa.Table:
    """Groups of copies: one row per video in a group (group_id, video_uri, similarity to the
    group's first member, the longest), by group, the first member on top, then by similarity
    descending. Videos without a copy are not listed.

    `hashes`: uri -> (T,) or (T, Z) uint64 frame hashes (`frame_fingerprints`), or a table
    `hashes_by_video` reads. `tables`: frame-hash tables already built (each index run's), with
    the video each id stands for (None: an id no video takes part with); the videos they do
    not hold get one built here."""
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    videos = _videos(hashes)
    where = {v.uri: i for i, v in enumerate(videos)}
    known = [
        Table(index, np.array([where.get(u, -1) if u else -1 for u in owners], dtype=np.int64))
        for index, owners in tables
    ]
    pairs = _pair_table(videos, _similarities(videos, max_distance, known))
    return group_pairs(pairs, {v.uri: v.frames for v in videos}, threshold, min_matched_frames)


@dataclass(frozen=True)
class PairScores:
    """Duplicate pairs found against the truth: a group of n stands for its n(n-1)/2 pairs."""

    precision: float
    recall: float
    true_pairs: int
    found_pairs: int
    correct_pairs: int


def _pairs_of(groups: Iterable[Iterable[str]]) -> set[tuple[str, str]]:
    return {pair for group in groups for pair in combinations(sorted(set(group)), 2)}


def pair_precision_recall(groups: pa.Table, truth: Mapping[str, Hashable]) -> PairScores:
    """Precision and recall of the duplicate pairs in `groups` (find_duplicates' table), given
    each video's true family (`truth`: uri -> label; copies share their original's label).
    Precision is 1.0 with nothing found, recall 1.0 with nothing to find."""
    found: dict[int, list[str]] = {}
    for group, uri in zip(
        groups["group_id"].to_pylist(), groups["video_uri"].to_pylist(), strict=True
    ):
        found.setdefault(group, []).append(uri)
    families: dict[Hashable, list[str]] = {}
    for uri, family in truth.items():
        families.setdefault(family, []).append(uri)
    found_pairs, true_pairs = _pairs_of(found.values()), _pairs_of(families.values())
    correct = len(found_pairs & true_pairs)
    return PairScores(
        precision=correct / len(found_pairs) if found_pairs else 1.0,
        recall=correct / len(true_pairs) if true_pairs else 1.0,
        true_pairs=len(true_pairs),
        found_pairs=len(found_pairs),
        correct_pairs=correct,
    )
