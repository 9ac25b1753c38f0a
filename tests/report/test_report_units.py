"""The report's pure parts without Ray: numbers from records, Prometheus text, and reports of
hand-written records (an empty incremental run, a run over the failure threshold)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.report import ReportError, build_run_report, prometheus, run_figures, stats


def record(run_id: str, **extra) -> dict:
    base = {
        "run_id": run_id,
        "status": "ok",
        "started_at": "2026-03-01T02:00:00+00:00",
        "ended_at": "2026-03-01T02:01:30+00:00",
        "model_version": "seeded-x",
        "counts": {"listed": 0, "skipped": 0, "processed": 0, "failed": 0, "clips": 0},
        "timings_s": {"list": 0.1, "plan": 0.0, "decode_infer": 0.0, "write": 0.2},
        "throughput": {"frames_per_s": 0.0},
        "files": [],
    }
    return {**base, **extra}


def write_records(out: Path, *records: dict) -> Path:
    (out / "_runs").mkdir(parents=True)
    for r in records:
        (out / "_runs" / f"{r['run_id']}.json").write_text(json.dumps(r))
    return out


def test_throughput_is_the_difference_of_cumulative_samples() -> None:
    timeline = [
        {"t_s": 10.0, "decoded_frames": 100, "inferred_frames": 40},
        {"t_s": 10.0, "decoded_frames": 100, "inferred_frames": 40},  # no time passed: dropped
        {"t_s": 20.0, "decoded_frames": 300, "inferred_frames": 240},
        {"t_s": 25.0, "decoded_frames": 300, "inferred_frames": 300},
    ]
    tp = stats.throughput(timeline)
    assert tp.edges == [0.0, 10.0, 20.0, 25.0]
    assert tp.decode == [10.0, 20.0, 0.0] and tp.infer == [4.0, 20.0, 12.0]
    assert tp.average(tp.decode) == pytest.approx(300 / 25)


def test_one_sample_gives_the_average_and_none_gives_nothing() -> None:
    tp = stats.throughput([{"t_s": 4.0, "decoded_frames": 40, "inferred_frames": 48}])
    assert tp.single_interval and tp.decode == [10.0] and tp.infer == [12.0]
    assert stats.throughput([]).decode == []


def test_trend_stops_at_the_reported_run() -> None:
    history = [record(f"r{i}", counts={"processed": i, "failed": 1}) for i in range(40)]
    points = stats.trend(history, "r35")
    assert len(points) == stats.TREND_RUNS and points[-1].run_id == "r35"
    assert points[-1].videos_ok == 35 and points[-1].videos_failed == 1


def test_prometheus_text_escapes_label_values() -> None:
    text = prometheus.run_metrics(record('run"1\\x', counts={"processed": 2, "clips": 5}))
    assert 'reelay_videos_processed{run_id="run\\"1\\\\x"} 2' in text
    assert 'reelay_stage_seconds{run_id="run\\"1\\\\x",stage="write"} 0.2' in text
    assert "reelay_run_timestamp_seconds" in text and text.endswith("\n")
    assert "# TYPE reelay_clips_total counter" in text


def test_every_figure_draws_something_when_there_is_nothing() -> None:
    empty = stats.headline(record("r0"))
    for png in (
        run_figures.throughput_png(stats.throughput([])),
        run_figures.stages_png([]),
        run_figures.volume_png(empty),
        run_figures.failures_png([]),
        run_figures.labels_png([]),
        run_figures.slowest_png([]),
        run_figures.trend_png(stats.trend([record("r0")], "r0"), "r0"),
    ):
        pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
        assert pixels.std() > 2.0  # a message box at least


def test_report_of_an_empty_run(tmp_path) -> None:
    """An incremental night with nothing new: no files, no timeline; still a report."""
    out = write_records(tmp_path / "index", record("night-1"))
    uri = build_run_report(str(out))
    page = Path(uri).read_text()
    assert ">OK<" in page and page.count("data:image/png;base64,") == 7
    assert (out / "_runs" / "night-1" / "metrics.prom").exists()


def test_failed_threshold_run_is_red(tmp_path) -> None:
    bad = record(
        "night-2",
        status="failed_threshold",
        counts={"listed": 4, "processed": 1, "failed": 3, "clips": 2},
        config={"max_failure_fraction": 0.5},
    )
    out = write_records(tmp_path / "index", record("night-1"), bad)
    page = Path(build_run_report(str(out), "night-2")).read_text()
    assert "#c62828" in page.split('class="status"')[1][:40] and ">FAILED<" in page
    assert "3 of 4 videos failed" in page and "(50%)" in page


def test_missing_files_are_noted_not_fatal(tmp_path) -> None:
    gone = str(tmp_path / "old" / "errors" / "run_date=2026-03-01" / "night-1-00000.parquet")
    out = write_records(tmp_path / "index", record("night-1", files=[gone]))
    page = Path(build_run_report(str(out))).read_text()
    assert "1 file(s) listed by the run record are gone" in page


def test_bad_input_is_a_report_error(tmp_path) -> None:
    with pytest.raises(ReportError, match="does not exist"):
        build_run_report(str(tmp_path / "nothing"))
    with pytest.raises(ReportError, match="no committed run"):
        build_run_report(str(tmp_path))
    out = write_records(tmp_path / "index", record("night-1"))
    with pytest.raises(ReportError, match="'night-9' is not a committed run.*night-1"):
        build_run_report(str(out), "night-9")
    (out / "_runs" / "broken.json").write_text("{not json")
    with pytest.raises(ReportError, match="cannot read the run records"):
        build_run_report(str(out))
