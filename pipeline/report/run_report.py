"""The index run's report: `_runs/<run_id>/report.html`, its figures as PNG, metrics.prom."""

from __future__ import annotations

import json
import logging

from pipeline import schema, storage
from pipeline.config import StorageConfig
from pipeline.report import html, prometheus, run_figures, stats
from pipeline.report.runs import RunInputs, load_run
from pipeline.report.sink import ReportFolder

log = logging.getLogger("reelay.report")

REPORT = "report.html"
METRICS = "metrics.prom"
MAX_ERROR_ROWS = 50


def report_folder(output_uri: str, run_id: str, storage_cfg: StorageConfig) -> ReportFolder:
    return ReportFolder(storage.join(output_uri, schema.RUNS, run_id), storage_cfg)


def build_run_report(
    output_uri: str, run_id: str | None = None, storage_cfg: StorageConfig = storage.NO_OPTIONS
) -> str:
    """Write the report of run `run_id` (default: the latest committed run) under
    `<output>/_runs/<run_id>/`; returns the report's URI. Raises ReportError on bad input."""
    inputs = load_run(output_uri, run_id, storage_cfg)
    folder = report_folder(output_uri, inputs.run_id, storage_cfg)
    page = run_page(inputs)
    for figure in page.figures:
        folder.write(figure.name, figure.png)
    folder.write(METRICS, prometheus.run_metrics(inputs.record))
    uri = folder.write(REPORT, html.render(page))  # last: its presence means the rest is there
    log.info("run report: %s", storage.redact(uri))
    return uri


def run_figures_of(inputs: RunInputs) -> list[html.Figure]:
    record, run_id = inputs.record, inputs.run_id
    h = stats.headline(record)
    labels = stats.label_stats(inputs.videos)
    failures = stats.failure_counts(inputs.errors)
    return [
        html.Figure(
            "throughput.png",
            "Throughput over time",
            "Frames decoded per second (top) and run through the model per second (bottom) "
            "between two progress samples (about every 10 s), from the start of decoding; the "
            "dotted line is the average. Inference waiting at zero while decoding runs means "
            "the model actors were starting; inference below decoding all along means it is the "
            "bottleneck. Inference counts clip frames, so it can exceed decoding when short "
            "clips repeat their last frame. One step per panel: a single sample, the average.",
            run_figures.throughput_png(
                stats.throughput(record.get("progress", {}).get("timeline", []) or [])
            ),
        ),
        html.Figure(
            "stages.png",
            "Time per stage",
            "Wall-clock seconds of each stage and its share of the run. Decode and inference "
            "stream together, so they are one bar. Plan dominating means container headers are "
            "slow to read (object storage latency); write dominating means many small files.",
            run_figures.stages_png(stats.stage_times(record)),
        ),
        html.Figure(
            "volume.png",
            "Videos and clips",
            "Videos listed by the run: indexed without error (ok), failed (see Failures), or "
            "skipped by an incremental run because this model already indexed them; and the "
            "clips and sampled frames written.",
            run_figures.volume_png(h),
        ),
        html.Figure(
            "failures.png",
            "Failures by stage and error type",
            "Rows of errors/ for this run (one per failed work unit), grouped by the stage that "
            "failed (plan: the file could not be opened; decode: frames could not be read) and "
            "the exception type; the number of distinct videos is in brackets.",
            run_figures.failures_png(failures),
        ),
        html.Figure(
            "labels.png",
            "Label distribution",
            "Videos per predicted label (the class with the highest mean clip probability) and "
            "the score of those videos. Low scores everywhere mean an untrained or mismatched "
            "model; one label taking everything is a warning sign too.",
            run_figures.labels_png(labels),
        ),
        html.Figure(
            "slowest.png",
            "Slowest videos",
            "Seconds spent decoding each of the slowest videos (all its work units). A video far "
            "above the rest is long, high-resolution, or has sparse keyframes.",
            run_figures.slowest_png(stats.slowest_videos(record)),
        ),
        html.Figure(
            "trend.png",
            "Comparison with previous runs",
            "Committed runs of this output up to this one, oldest left: videos indexed, failed "
            "videos and throughput per run. This run is in full colour.",
            run_figures.trend_png(stats.trend(inputs.history, run_id), run_id),
        ),
    ]


def _number(value) -> str:
    if isinstance(value, int | float):
        return f"{value:g}"
    return "?"


def status_of(h: stats.Headline) -> html.Status:
    if h.ok:
        failed = (
            f"; {h.videos_failed} failed, within the allowed fraction" if h.videos_failed else ""
        )
        return html.Status(True, "OK", f"committed {h.videos_ok:,} videos{failed}")
    if h.status == "failed_threshold":
        limit = f" ({h.max_failure_fraction:.0%})" if h.max_failure_fraction is not None else ""
        return html.Status(
            False,
            "FAILED",
            f"{h.videos_failed:,} of {h.videos_ok + h.videos_failed:,} videos failed, more than "
            f"the allowed fraction{limit}; the good videos were committed",
        )
    return html.Status(False, h.status.upper(), "the run did not end as ok")


def run_page(inputs: RunInputs) -> html.Page:
    record = inputs.record
    h = stats.headline(record)
    cluster = record.get("cluster", {})
    config = record.get("config", {})
    tiles = [
        html.Tile("videos ok", f"{h.videos_ok:,}"),
        html.Tile("videos partial", f"{h.videos_partial:,}", alarm=h.videos_partial > 0),
        html.Tile("videos failed", f"{h.videos_failed:,}", alarm=h.videos_failed > 0),
        html.Tile("videos skipped", f"{h.videos_skipped:,}"),
        html.Tile("clips", f"{h.clips:,}"),
        html.Tile("frames/s", f"{h.frames_per_s:,.1f}"),
        html.Tile("duration", stats.format_duration(h.duration_s)),
        html.Tile("model_version", h.model_version, small=True),
    ]
    input_uri = storage.redact(str(config.get("input_uri", "?")))
    subtitle = (
        f"started {stats.format_time(h.started_at)} · input {input_uri} · output "
        f"{storage.redact(inputs.output_uri)} · cluster {cluster.get('nodes', '?')} node(s), "
        f"{_number(cluster.get('CPU'))} CPU, {_number(cluster.get('GPU'))} GPU"
    )
    notes = []
    if inputs.missing_files:
        notes.append(
            f"{len(inputs.missing_files)} file(s) listed by the run record are gone (expired "
            "or moved); the label and failure figures leave their rows out."
        )
    mode = config.get("mode", {})
    return html.Page(
        title=f"reelay index run {h.run_id}",
        status=status_of(h),
        tiles=tiles,
        subtitle=subtitle,
        figures=run_figures_of(inputs),
        tables=[
            nodes_table(record),
            readers_table(record),
            slowest_table(record),
            errors_table(inputs),
        ],
        details=[
            ("run_id", h.run_id),
            ("status", h.status),
            ("started_at", str(record.get("started_at", ""))),
            ("ended_at", str(record.get("ended_at", ""))),
            ("mode", ", ".join(k for k, v in mode.items() if v) or "full"),
            ("sampling", json.dumps(record.get("sampling", {}))),
            ("labels", f"{len(record.get('labels', []))} classes"),
            ("counts", json.dumps(record.get("counts", {}))),
            ("timings_s", json.dumps(record.get("timings_s", {}))),
            ("schema_version", str(record.get("schema_version", "?"))),
        ],
        notes=notes,
    )


def nodes_table(record: dict) -> html.Table:
    nodes = record.get("progress", {}).get("nodes", []) or []
    rows = [
        [
            n["node_id"][:12],
            n.get("address", ""),
            f"{n['decoded_units']:,}",
            stats.format_duration(n["decode_s"]),
            f"{n['inferred_clips']:,}",
            stats.format_duration(n["infer_s"]),
            "" if n.get("alive", True) else "lost",
        ]
        for n in nodes
    ]
    return html.Table(
        "Work per node",
        [
            "node",
            "address",
            "decode units",
            "decode time",
            "clips inferred",
            "inference time",
            "state",
        ],  # fmt: skip
        rows,
        caption=(
            "What each Ray node's decode tasks and inference actors did (seconds summed over "
            "its workers). A node lost during the run counts the work it did before it went; "
            "that work was done again elsewhere."
        ),
        empty="no per-node figures in the run record",
    )


def readers_table(record: dict) -> html.Table:
    readers = (record.get("progress") or {}).get("readers") or {}
    rows = [[reader, f"{units:,}"] for reader, units in readers.items()]
    return html.Table(
        "Frame readers",
        ["reader", "work units"],
        rows,
        caption=(
            "Which reader decoded the work units: frame_reader (PyAV, decoding only the frames "
            "the samples depend on), decord (with why the fast path handed it over), or PyAV "
            "alone where decord cannot decode the stream (pyav: why). The ten most frequent."
        ),
        empty="no reader counts in the run record",
    )


def slowest_table(record: dict) -> html.Table:
    rows = [
        [storage.redact(uri), f"{seconds:.2f} s"]
        for uri, seconds in stats.slowest_videos(record, top=20)
    ]
    return html.Table(
        "Slowest videos to decode",
        ["video", "decode time"],
        rows,
        caption="Total decode seconds per video, slowest first (the run keeps the top 20).",
        empty="no decode timings in the run record",
    )


def errors_table(inputs: RunInputs) -> html.Table:
    errors = inputs.errors.slice(0, MAX_ERROR_ROWS).to_pylist()
    more = inputs.errors.num_rows - len(errors)
    caption = "One row per failed work unit"
    caption += f"; the first {MAX_ERROR_ROWS} of {inputs.errors.num_rows} shown." if more else "."
    return html.Table(
        "Failures",
        ["video", "stage", "error type", "message"],
        [
            [
                storage.redact(e["video_uri"] or ""),
                e["stage"] or "",
                e["error_type"] or "",
                storage.redact(e["message"] or ""),
            ]
            for e in errors
        ],
        caption=caption,
        empty="no failures",
    )
