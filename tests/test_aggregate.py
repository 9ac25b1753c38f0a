"""Per-video aggregation as sums in parts: any split of the clips into blocks gives the mean."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from pipeline import schema
from pipeline.aggregate import block_summary, merge_sums, sums_rows, videos_table
from pipeline.models.inference import fixed_size_lists

LABELS = ["a", "b", "c"]
META = {"num_frames": 300, "fps": 30.0, "duration_s": 10.0, "width": 64, "height": 48,
        "has_audio": True, "size_bytes": 1000, "fingerprint": "f"}  # fmt: skip


def clip_results(uris: list[str], emb: np.ndarray, probs: np.ndarray, errors: list[str]):
    ok = np.array([e == "" for e in errors])
    n = len(uris)
    return pa.table(
        {
            "video_uri": uris,
            **{k: [v] * n for k, v in META.items()},
            "embedding": fixed_size_lists(emb, ok),
            schema.CLIP_PROBS: fixed_size_lists(probs, ok),
            "unit_frames": [4 if i % 3 == 0 else 0 for i in range(n)],  # a unit every 3 rows
            "error_stage": errors,
            "error_type": ["DecodeError" if e else "" for e in errors],
            "error_message": ["bad frames" if e else "" for e in errors],
        }
    )


def videos(sums: pa.Table, errored=frozenset()) -> dict[str, dict]:
    table = videos_table(
        sums, labels=LABELS, errored=errored, model_version="m", run_id="r",
        indexed_at=datetime(2026, 1, 1, tzinfo=UTC),
    )  # fmt: skip
    assert table.schema.equals(schema.videos_schema(sums["embedding_sum"].type.list_size))
    return {row["video_uri"]: row for row in table.to_pylist()}


@pytest.mark.parametrize("blocks", [1, 2, 5])
def test_sums_in_blocks_merge_to_the_mean_of_the_good_clips(blocks: int):
    rng = np.random.default_rng(blocks)
    uris = list(rng.choice(["v1", "v2", "v3"], size=30))
    errors = ["" if i % 7 else "decode" for i in range(30)]  # every 7th clip failed
    emb = rng.normal(size=(30, 8)).astype(np.float32)
    probs = rng.dirichlet(np.ones(3), size=30).astype(np.float32)
    table = clip_results(uris, emb, probs, errors)
    cuts = np.linspace(0, 30, blocks + 1).astype(int)
    summaries = pa.concat_tables(
        [block_summary(table.slice(a, b - a)) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
    )
    failed = summaries.filter(pc.not_equal(summaries["error_stage"], ""))
    assert failed.num_rows == sum(1 for e in errors if e)
    assert set(failed["error_type"].to_pylist()) == {"DecodeError"}
    merged = merge_sums(sums_rows(summaries))
    # planned frames and units add up over good and failed rows alike
    for name, expected in (("sampled_frames", 4 * 10), ("units", 10)):
        assert pc.sum(merged[name]).as_py() + pc.sum(failed[name]).as_py() == expected
    rows = videos(merged, errored=frozenset({"v2"}))
    for uri in ("v1", "v2", "v3"):
        good = [i for i in range(30) if uris[i] == uri and not errors[i]]
        row = rows[uri]
        assert row["num_clips"] == len(good)
        np.testing.assert_allclose(row["embedding"], emb[good].mean(axis=0), rtol=1e-6)
        mean_probs = probs[good].mean(axis=0)
        assert row["label"] == LABELS[int(np.argmax(mean_probs))]
        assert row["score"] == pytest.approx(float(mean_probs.max()), rel=1e-6)
        assert row["fingerprint"] == "f" and row["num_frames"] == 300
        assert row["status"] == ("partial" if uri == "v2" else "ok")


def test_a_block_of_failures_only_gives_error_rows_and_no_sums():
    table = clip_results(["v1", "v1"], np.zeros((2, 4)), np.zeros((2, 3)), ["decode", "plan"])
    summary = block_summary(table)
    assert sums_rows(summary).num_rows == 0
    assert summary["error_stage"].to_pylist() == ["decode", "plan"]
    assert summary["embedding_sum"].null_count == 2
