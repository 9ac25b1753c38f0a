"""A long run committed in parts: the videos to index cut into consecutive parts of at most
`--commit-every` videos, each indexed and committed as a run of its own.

A part's crash then loses that part's work alone, and the clip results held in Ray's object
store until the write stage are one part's, not the whole corpus's."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def split_parts(entries: Sequence[T], commit_every: int) -> list[list[T]]:
    """`entries` in listing order, cut every `commit_every` (0: one part). Always at least one
    part, empty when there is nothing to index: an empty run still commits its record."""
    if count_parts(len(entries), commit_every) == 1:
        return [list(entries)]
    return [list(entries[i : i + commit_every]) for i in range(0, len(entries), commit_every)]


def count_parts(videos: int, commit_every: int) -> int:
    """How many parts `split_parts` makes of `videos` videos."""
    return 1 if commit_every <= 0 or videos <= commit_every else -(-videos // commit_every)


def part_run_ids(run_id: str, parts: int) -> list[str]:
    """The run id of each part: `run_id` itself for a single part, else `<run_id>-001`,
    `-002`, ... (zero-padded to at least three digits, so that they sort in order)."""
    if parts == 1:
        return [run_id]
    width = max(3, len(str(parts)))
    return [f"{run_id}-{k:0{width}d}" for k in range(1, parts + 1)]


def listed_per_part(listed: int, parts: list[list]) -> list[tuple[int, int]]:
    """(listed, skipped) for each part's run record, so that each record keeps `listed` =
    `skipped` + `processed` + `failed` and the parts' sums are the whole run's: the first part
    carries the videos the selection skipped (incremental runs), every part its own."""
    skipped = listed - sum(len(p) for p in parts)
    first = [(len(parts[0]) + skipped, skipped)]
    return first + [(len(p), 0) for p in parts[1:]]
