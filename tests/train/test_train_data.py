"""The training job's decoded clips: failed units and clean clips per label, counted in one
pass (pipeline.train.data.decoded_summary)."""

from __future__ import annotations

import numpy as np
import ray

from pipeline.train.data import FRAMES, LABEL, decoded_summary


def _row(label: int, uri: str, stage: str = "") -> dict:
    return {
        FRAMES: np.full((2, 4, 4, 3), label, dtype=np.uint8),
        LABEL: label,
        "video_uri": uri,
        "error_stage": stage,
        "error_type": "DecodeError" if stage else "",
        "error_message": f"bad data in {uri}" if stage else "",
    }


def test_decoded_summary_splits_failed_units_from_clean_clips(ray_local) -> None:
    rows = [
        _row(0, "a.mp4"),
        _row(2, "b.mp4"),
        _row(1, "c.mp4", stage="decode"),
        _row(2, "b.mp4"),
        _row(0, "d.mp4", stage="decode"),
        _row(0, "a.mp4"),
    ]
    decoded = ray.data.from_items(rows, override_num_blocks=3).materialize()
    failures, counts = decoded_summary(decoded, num_labels=4)
    assert counts.tolist() == [2, 0, 2, 0]  # a failed unit's label is not counted
    assert sorted(f["video_uri"] for f in failures) == ["c.mp4", "d.mp4"]
    assert all(f["error_stage"] == "decode" and f["error_type"] == "DecodeError" for f in failures)
    assert set(failures[0]) == {"video_uri", "error_stage", "error_type", "error_message"}


def test_decoded_summary_of_clean_clips_has_no_failures(ray_local) -> None:
    decoded = ray.data.from_items([_row(1, "a.mp4"), _row(1, "b.mp4")]).materialize()
    failures, counts = decoded_summary(decoded, num_labels=2)
    assert failures == [] and counts.tolist() == [0, 2]
