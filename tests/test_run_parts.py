"""How a long run is cut into parts (pipeline.index.job); the parts' runs themselves are
tested end to end in tests/test_exactly_once.py."""

from __future__ import annotations

import pytest

from pipeline.index.job import count_parts, listed_per_part, part_run_ids, split_parts


@pytest.mark.parametrize(
    "videos, every, sizes",
    [
        (0, 0, [0]),  # an empty run is one empty part: it still commits its record
        (0, 5, [0]),
        (7, 0, [7]),  # 0: one commit at the end
        (7, 7, [7]),
        (7, 10, [7]),
        (7, 3, [3, 3, 1]),
        (9, 3, [3, 3, 3]),
        (5, 1, [1, 1, 1, 1, 1]),
    ],
)
def test_parts_keep_the_order_and_lose_nothing(videos: int, every: int, sizes: list[int]):
    entries = [f"v{i}" for i in range(videos)]
    parts = split_parts(entries, every)
    assert [len(p) for p in parts] == sizes
    assert [e for p in parts for e in p] == entries
    assert count_parts(videos, every) == len(parts)


def test_part_run_ids_sort_in_order():
    assert part_run_ids("r", 1) == ["r"]  # a single part is the run itself
    assert part_run_ids("r", 3) == ["r-001", "r-002", "r-003"]
    ids = part_run_ids("r", 1200)
    assert ids[0] == "r-0001" and ids[-1] == "r-1200"
    assert sorted(ids) == ids


def test_counts_per_part_add_up_to_the_run():
    """The first part carries the videos an incremental run skipped; each record keeps
    listed = skipped + its own videos, and the sums are the whole listing."""
    parts = split_parts(list(range(7)), 3)
    counts = listed_per_part(10, parts)  # 10 listed, 3 skipped by the ledger, 7 to index
    assert counts == [(6, 3), (3, 0), (1, 0)]
    assert sum(listed for listed, _ in counts) == 10
    assert [listed - skipped for listed, skipped in counts] == [len(p) for p in parts]
    assert listed_per_part(4, [[]]) == [(4, 4)]  # nothing new: one empty part, all skipped


def test_one_summary_for_the_parts():
    from pipeline.index.job import RunSummary, combined

    def part(run_id: str, processed: int, failed: int, frames: int, seconds: float, status="ok"):
        counts = {"listed": processed + failed, "skipped": 0, "processed": processed}
        counts |= {"failed": failed, "sampled_frames": frames, "clips": frames // 4}
        timings = {"decode_infer": seconds, "write": 1.0}
        return RunSummary(run_id, "out", "m1", counts, timings, frames / seconds, status)

    one = part("r", 3, 0, 40, 2.0)
    assert combined("r", [one]) is one  # a single part is the run itself
    whole = combined("r", [part("r-001", 3, 1, 40, 2.0), part("r-002", 2, 0, 20, 4.0)])
    assert whole.parts == ["r-001", "r-002"]
    assert whole.counts == {
        "listed": 6, "skipped": 0, "processed": 5, "failed": 1, "sampled_frames": 60, "clips": 15
    }  # fmt: skip
    assert whole.timings_s == {"decode_infer": 6.0, "write": 2.0}
    assert whole.frames_per_s == 10.0  # over the parts' decode + infer time, not their mean
    assert whole.status == "ok"
    assert "in 2 commits (r-001 to r-002): 5 videos ok, 1 failed" in whole.line()
    worst = combined(
        "r", [part("r-001", 3, 0, 40, 2.0), part("r-002", 0, 2, 0, 1.0, "failed_threshold")]
    )
    assert worst.status == "failed_threshold"
