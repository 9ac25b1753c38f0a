"""The run's numbers for machines: Prometheus text format, as node_exporter's textfile
collector reads it (`*.prom`: HELP/TYPE lines, `name{labels} value`, a final newline)."""

from __future__ import annotations

from pipeline.report import stats

# name, type, help; the value comes from the record (see run_metrics)
METRICS = (
    ("reelay_videos_processed", "gauge", "Videos indexed by the run (whole or partial)."),
    ("reelay_videos_partial", "gauge", "Videos indexed in part: some work units failed."),
    ("reelay_videos_failed", "gauge", "Videos of which nothing was indexed in the run."),
    ("reelay_videos_skipped", "gauge", "Videos skipped by an incremental run (already indexed)."),
    ("reelay_clips_total", "counter", "Clips written by the run."),
    ("reelay_frames_per_second", "gauge", "Sampled frames per second of decode+inference."),
    ("reelay_stage_seconds", "gauge", "Wall-clock seconds of each stage of the run."),
    ("reelay_run_duration_seconds", "gauge", "Seconds from the run's start to its record."),
    ("reelay_run_success", "gauge", "1 when the run's status is ok, 0 otherwise."),
    ("reelay_run_timestamp_seconds", "gauge", "Unix time the run ended (its record was made)."),
)


def escape(value: str) -> str:
    """A label value: backslash, double quote and newline escaped."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def labels(**pairs: str) -> str:
    return "{" + ",".join(f'{k}="{escape(v)}"' for k, v in pairs.items()) + "}"


def number(value: float) -> str:
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


def run_metrics(record: dict) -> str:
    """The metrics of one run, every sample labelled with its run_id."""
    run_id = record.get("run_id", "")
    counts = record.get("counts", {})
    h = stats.headline(record)
    ended = stats.parse_time(record.get("ended_at"))
    values: dict[str, list[tuple[str, float]]] = {
        "reelay_videos_processed": [(labels(run_id=run_id), counts.get("processed", 0))],
        "reelay_videos_partial": [(labels(run_id=run_id), counts.get("partial", 0))],
        "reelay_videos_failed": [(labels(run_id=run_id), counts.get("failed", 0))],
        "reelay_videos_skipped": [(labels(run_id=run_id), counts.get("skipped", 0))],
        "reelay_clips_total": [(labels(run_id=run_id), counts.get("clips", 0))],
        "reelay_frames_per_second": [(labels(run_id=run_id), h.frames_per_s)],
        "reelay_stage_seconds": [
            (labels(run_id=run_id, stage=stage), seconds)
            for stage, seconds in (record.get("timings_s") or {}).items()
        ],
        "reelay_run_duration_seconds": [(labels(run_id=run_id), h.duration_s)]
        if h.duration_s is not None
        else [],
        "reelay_run_success": [(labels(run_id=run_id), 1 if h.ok else 0)],
        "reelay_run_timestamp_seconds": [(labels(run_id=run_id), ended.timestamp())]
        if ended
        else [],
    }
    lines = []
    for name, kind, help_ in METRICS:
        if not values[name]:
            continue
        lines += [f"# HELP {name} {help_}", f"# TYPE {name} {kind}"]
        lines += [f"{name}{lbl} {number(v)}" for lbl, v in values[name]]
    return "\n".join(lines) + "\n"
