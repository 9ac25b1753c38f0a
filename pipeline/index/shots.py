"""--clips shots, on the write side: the video's clip and shot numbers, and the shots table.

A decode task sees one work unit of a long video, so it numbers clips and shots from the unit's
start. Each unit's first row says how many clips it made and where its cuts are
(schema.UNIT_SHOT_COLUMNS); the staging tasks keep those, with the indexed clips per shot, in
small `_units` files. Once every unit is in, the driver turns them into offsets per unit, adds
them to the staged clips of videos cut into several units (the files of one-unit videos are
left as written), and writes the shots table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline import schema
from pipeline.aggregate import is_ok
from pipeline.index.commit import RunOutput

UNITS = "_units"  # staging folder of the units' summaries (read by the driver, never committed)

UNITS_SCHEMA = pa.schema(
    [
        ("video_uri", pa.string()),
        ("unit_index", pa.int32()),
        ("first_frame", pa.int64()),  # -1 on the rows that count clips per shot
        ("clips", pa.int32()),
        ("cuts", pa.list_(pa.int64())),
        ("cut_times", pa.list_(pa.float64())),
        ("duration_s", pa.float64()),
        ("shot", pa.int32()),  # -1 on a unit's row
        ("indexed", pa.int64()),  # indexed clips of (unit, shot)
    ]
)


def unit_summary(table: pa.Table) -> pa.Table:
    """A block of clip results -> its units' rows (from each unit's first row) and its indexed
    clips per (video, unit, shot in the unit). A unit's clips may span several blocks: the
    driver adds the counts up."""
    firsts = table.filter(pc.greater_equal(table["unit_first_frame"], 0))
    units = {
        "video_uri": firsts["video_uri"],
        "unit_index": firsts["unit_index"],
        "first_frame": firsts["unit_first_frame"],
        "clips": firsts["unit_clips"],
        "cuts": firsts["unit_cuts"],
        "cut_times": firsts["unit_cut_times"],
        "duration_s": firsts["duration_s"],
        "shot": pa.array(np.full(firsts.num_rows, -1), pa.int32()),
        "indexed": pa.array(np.zeros(firsts.num_rows, np.int64)),
    }
    ok = table.filter(is_ok(table))
    counts = (
        pa.table(
            {"video_uri": ok["video_uri"], "unit_index": ok["unit_index"], "shot": ok["shot_index"]}
        )  # fmt: skip
        .group_by(["video_uri", "unit_index", "shot"])
        .aggregate([("shot", "count")])
    )
    n = counts.num_rows
    per_shot = {
        "video_uri": counts["video_uri"],
        "unit_index": counts["unit_index"],
        "first_frame": pa.array(np.full(n, -1), pa.int64()),
        "clips": pa.array(np.zeros(n), pa.int32()),
        "cuts": pa.array([[]] * n, pa.list_(pa.int64())),
        "cut_times": pa.array([[]] * n, pa.list_(pa.float64())),
        "duration_s": pa.array(np.zeros(n)),
        "shot": counts["shot"],
        "indexed": counts["shot_count"],
    }
    return pa.concat_tables(
        [pa.table(units).cast(UNITS_SCHEMA), pa.table(per_shot).cast(UNITS_SCHEMA)]
    )


@dataclass(frozen=True)
class VideoUnits:
    """One video's units in order: where each starts and what to add to its clip and shot
    numbers."""

    first_frames: np.ndarray
    clip_offsets: np.ndarray
    shot_offsets: np.ndarray

    def offsets(self, clip_first_frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        unit = np.searchsorted(self.first_frames, clip_first_frames, side="right") - 1
        return self.clip_offsets[unit], self.shot_offsets[unit]


def number_units(summaries: pa.Table) -> tuple[dict[str, VideoUnits], pa.Table]:
    """The offsets of every video cut into several units, and the run's shots table."""
    units = summaries.filter(pc.greater_equal(summaries["first_frame"], 0)).to_pylist()
    counts = summaries.filter(pc.less(summaries["first_frame"], 0)).to_pylist()
    by_video: dict[str, list[dict]] = {}
    for unit in sorted(units, key=lambda u: (u["video_uri"], u["unit_index"])):
        by_video.setdefault(unit["video_uri"], []).append(unit)
    indexed: dict[tuple[str, int, int], int] = {}
    for c in counts:
        key = (c["video_uri"], c["unit_index"], c["shot"])
        indexed[key] = indexed.get(key, 0) + c["indexed"]
    offsets, rows = {}, []
    for uri, video in by_video.items():
        clips = np.cumsum([0] + [u["clips"] for u in video])
        shots = np.cumsum([0] + [len(u["cuts"]) for u in video])
        if len(video) > 1:
            offsets[uri] = VideoUnits(
                np.array([u["first_frame"] for u in video]), clips[:-1], shots[:-1]
            )
        per_shot = np.zeros(int(shots[-1]) + 1, dtype=np.int64)
        for k, unit in enumerate(video):
            for local in range(len(unit["cuts"]) + 1):
                per_shot[shots[k] + local] += indexed.get((uri, unit["unit_index"], local), 0)
        starts = [0.0] + [t for u in video for t in u["cut_times"]]
        ends = starts[1:] + [video[0]["duration_s"]]
        rows += [
            {"video_uri": uri, "shot_index": i, "start_s": a, "end_s": b, "num_clips": int(n)}
            for i, (a, b, n) in enumerate(zip(starts, ends, per_shot, strict=True))
        ]
    return offsets, pa.Table.from_pylist(rows)


def renumber_clips(out: RunOutput, offsets: dict[str, VideoUnits]) -> int:
    """Add the unit offsets to the staged clips of videos cut into several units; returns the
    files rewritten."""
    if not offsets:
        return 0
    fs, rewritten = out.fs, 0
    for path in out.staged_files(schema.CLIPS):
        with fs.open(path, "rb") as f:
            table = pq.read_table(f)
        uris = np.asarray(table["video_uri"].to_pylist(), dtype=object)
        cut = [uri for uri in set(uris) if uri in offsets]
        if not cut:
            continue
        clip_index = table["clip_index"].to_numpy().copy()
        shot_index = table["shot_index"].to_numpy(zero_copy_only=False).copy()
        first = pc.list_element(table["frame_indices"], 0).to_numpy()
        for uri in cut:
            rows = np.flatnonzero(uris == uri)
            add_clips, add_shots = offsets[uri].offsets(first[rows])
            clip_index[rows] += add_clips
            shot_index[rows] += add_shots
        table = table.set_column(
            table.schema.get_field_index("clip_index"), "clip_index",
            pa.array(clip_index, pa.int32()),
        ).set_column(
            table.schema.get_field_index("shot_index"), "shot_index",
            pa.array(shot_index.astype(np.int32), pa.int32()),
        )  # fmt: skip
        out.write_small_table(schema.CLIPS, table, path.rsplit("/", 1)[-1].removesuffix(".parquet"))
        rewritten += 1
    return rewritten
