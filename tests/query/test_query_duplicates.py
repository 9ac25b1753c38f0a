"""jobs/query.py --duplicates over a real index: the hashes the index job stores find the copies
(re-encoded, resized, trimmed, cropped, colour-shifted) and leave look-alikes out."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow as pa
import pytest

from pipeline.config import IndexConfig, RunMode
from pipeline.index import run as index
from pipeline.query import DuplicatesQuery, run
from pipeline.query.duplicates import pair_precision_recall
from tests import copies


@pytest.fixture(scope="module")
def copies_index(ray_local, tmp_path_factory):
    """4 originals, 8 copies of 8 kinds, 3 look-alikes, indexed at the job's defaults."""
    root = tmp_path_factory.mktemp("copies")
    corpus = copies.make_corpus(
        root / "corpus", originals=4, copies=8, lookalikes=3, low_information=False, seconds=12
    )
    out = root / "index"
    index(IndexConfig(input_uri=str(root / "corpus"), output_uri=str(out)))
    return corpus, out


def test_copies_are_grouped_and_lookalikes_are_not(copies_index, cli):
    corpus, out = copies_index
    got = cli(out, "--duplicates", "--format", "json")
    assert got.code == 0, got.err
    rows = got.json()
    assert rows and set(rows[0]) == {"group_id", "video_uri", "similarity"}
    groups = pa.Table.from_pylist(rows)
    truth = {str(v.path): v.family for v in corpus}
    scores = pair_precision_recall(groups, truth)
    assert scores.precision >= 0.95 and scores.recall >= 0.95, scores
    listed = {r["video_uri"] for r in rows}
    assert not any("lookalike" in uri for uri in listed)  # no copy: not listed
    for group in {r["group_id"] for r in rows}:
        members = [r for r in rows if r["group_id"] == group]
        assert members[0]["similarity"] == 1.0 and len(members) >= 2
        assert all(0.5 <= r["similarity"] <= 1.0 for r in members)


def test_the_runs_own_frame_tables_find_what_a_table_built_at_query_time_finds(
    copies_index, tmp_path
):
    _, out = copies_index
    with_tables = run(DuplicatesQuery(str(out)))
    moved = tmp_path / "index"
    shutil.copytree(out, moved)
    (record_path,) = (moved / "_runs").glob("*.json")
    record = json.loads(record_path.read_text())
    assert any("/_search/frames/" in f for f in record["files"])
    record["files"] = [f for f in record["files"] if "/_search/frames/" not in f]
    record_path.write_text(json.dumps(record))  # as a run from before the tables existed
    assert run(DuplicatesQuery(str(moved))).to_pylist() == with_tables.to_pylist()


def test_a_higher_threshold_keeps_fewer_pairs(copies_index):
    _, out = copies_index
    loose = run(DuplicatesQuery(str(out), threshold=0.5)).num_rows
    strict = run(DuplicatesQuery(str(out), threshold=0.99)).num_rows
    assert strict <= loose


def test_a_video_takes_part_with_its_newest_run(copies_index, tmp_path):
    corpus, out = copies_index
    moved = tmp_path / "index"
    shutil.copytree(out, moved)
    copy = next(v for v in corpus if v.kind not in ("original",) and "lookalike" not in v.kind)
    replaced = copies.write_scene(copies.scene(99, seconds=12), tmp_path / "other.mp4")
    backup = copy.path.read_bytes()
    try:  # the copy's file now holds another video: the next run indexes it again
        shutil.copyfile(replaced, copy.path)
        index(
            IndexConfig(
                input_uri=str(copy.path.parent),
                output_uri=str(moved),
                mode=RunMode(incremental=True),
            )
        )
        listed = run(DuplicatesQuery(str(moved)))["video_uri"].to_pylist()
        assert str(copy.path) not in listed
    finally:
        copy.path.write_bytes(backup)


def test_bad_threshold_fails_fast(copies_index, cli):
    _, out = copies_index
    got = cli(out, "--duplicates", "--threshold", "0")
    assert got.code == 2 and "--threshold must be in (0, 1]" in got.err


def test_each_sampled_frame_counts_once_in_frame_order():
    from pipeline.query.duplicates import hashes_by_video

    def pairs(*values):
        return [[v, -v] for v in values]

    clips = pa.table(
        {
            "video_uri": ["b", "a", "a"],
            "frame_indices": [[0, 5, 5], [10, 20, 30], [20, 30, 30]],  # overlap, padding
            "frame_hashes": [pairs(1, 2, 2), pairs(7, 8, 9), pairs(8, 9, 9)],
        },
        schema=pa.schema(
            [
                ("video_uri", pa.string()),
                ("frame_indices", pa.list_(pa.int32())),
                ("frame_hashes", pa.list_(pa.list_(pa.int64(), 2))),
            ]
        ),
    )
    got = hashes_by_video(clips)
    assert sorted(got) == ["a", "b"]
    assert got["a"][:, 0].tolist() == [7, 8, 9] and got["b"][:, 0].tolist() == [1, 2]
    assert got["a"].dtype == np.uint64 and got["a"][0, 1] == np.int64(-7).astype(np.uint64)
