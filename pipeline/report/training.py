"""The training run's report: `<train output>/report.html` and its figures as `report_*.png`
(named apart from the training job's own files, e.g. its confusion_matrix.png)."""

from __future__ import annotations

import logging

from pipeline import storage
from pipeline.config import StorageConfig
from pipeline.report import html, stats, training_figures
from pipeline.report.sink import ReportFolder
from pipeline.report.training_inputs import TrainingInputs, load_training

log = logging.getLogger("reelay.report")

REPORT = "report.html"


def build_training_report(
    train_output_uri: str, storage_cfg: StorageConfig = storage.NO_OPTIONS
) -> str:
    """Write report.html + report_*.png into a training run's output folder; returns the
    report's URI. Any of the run's files may be missing; a folder with none of them (or no
    folder) raises ReportError."""
    inputs = load_training(train_output_uri, storage_cfg)
    folder = ReportFolder(train_output_uri, storage_cfg)
    page = training_page(inputs)
    for figure in page.figures:
        folder.write(figure.name, figure.png)
    uri = folder.write(REPORT, html.render(page))
    log.info("training report: %s", storage.redact(uri))
    return uri


def accuracy_of(inputs: TrainingInputs) -> float | None:
    for value in (inputs.evaluation.get("accuracy"), inputs.record.get("best_val_accuracy")):
        if value is not None:
            return float(value)
    return None


def figures_of(inputs: TrainingInputs) -> tuple[list[html.Figure], list[str]]:
    """The figures the files allow, and a note for each one they do not."""
    figures, notes = [], []
    accuracy = accuracy_of(inputs)
    if inputs.epochs:
        figures.append(
            html.Figure(
                "report_curves.png",
                "Loss and accuracy per epoch",
                "Training (solid) and validation (dashed) loss and accuracy after each epoch; "
                "the dotted line is the epoch kept as best.pt. Validation loss rising while "
                "training loss falls means over-fitting; both flat and high means the model is "
                "not learning.",
                training_figures.curves_png(inputs.epochs, inputs.best_epoch),
            )
        )
    else:
        notes.append("No metrics.parquet: the loss and accuracy curves are left out.")
    if inputs.confusion is not None:
        figures.append(
            html.Figure(
                "report_confusion.png",
                "Confusion matrix",
                "Validation clips by true label (rows) and predicted label (columns) for best.pt. "
                "Counts are in the cells; the colour is the share of the row, so a dark diagonal "
                "is good and a dark cell off it names the classes the model mixes up.",
                training_figures.confusion_png(
                    inputs.confusion.labels, inputs.confusion.matrix, accuracy
                ),
            )
        )
    else:
        notes.append("No confusion_matrix.parquet or evaluation.json: no confusion matrix.")
    if inputs.per_class:
        figures.append(
            html.Figure(
                "report_recall.png",
                "Per-class recall",
                "For each class, the share of its validation clips that best.pt labels right, "
                "with the number of clips (n). Classes far below the overall accuracy (dashed) "
                "need more or cleaner training videos.",
                training_figures.recall_png(inputs.per_class, accuracy),
            )
        )
    else:
        notes.append("No per-class numbers (per_class.parquet / evaluation.json).")
    if any(e.get("epoch_time_s") is not None for e in inputs.epochs):
        figures.append(
            html.Figure(
                "report_epoch_time.png",
                "Time per epoch",
                "Seconds of training and of validation in each epoch.",
                training_figures.epoch_time_png(inputs.epochs),
            )
        )
    return figures, notes


def status_of(inputs: TrainingInputs) -> html.Status:
    status = inputs.record.get("status")
    if status == "done":
        return html.Status(True, "DONE", "training finished; best.pt is ready for --checkpoint")
    if status is None:
        return html.Status(None, "UNKNOWN", "no train_run.json: the run's status is not known")
    return html.Status(
        False, "INCOMPLETE", f"status {status!r}: the run crashed or is still running"
    )


def training_page(inputs: TrainingInputs) -> html.Page:
    record, counts = inputs.record, inputs.record.get("counts", {})
    accuracy = accuracy_of(inputs)
    labels = record.get("labels") or (inputs.confusion.labels if inputs.confusion else [])
    skipped = counts.get("skipped_videos", len({r.get("video_uri") for r in inputs.skipped}))
    tiles = [
        html.Tile("val accuracy", f"{accuracy:.1%}" if accuracy is not None else "n/a"),
        html.Tile("best epoch", str(inputs.best_epoch) if inputs.best_epoch else "n/a"),
        html.Tile("epochs", str(record.get("epochs") or len(inputs.epochs) or "n/a")),
        html.Tile("classes", str(len(labels)) if labels else "n/a"),
        html.Tile(
            "train / val clips",
            f"{counts.get('train_clips', '?')} / {counts.get('val_clips', '?')}",
        ),
        html.Tile("videos skipped", str(skipped), alarm=bool(skipped)),
        html.Tile("duration", stats.format_duration(stats.duration_s(record))),
        html.Tile("model_version", str(record.get("model_version") or "n/a"), small=True),
    ]
    figures, notes = figures_of(inputs)
    model = record.get("model", {})
    return html.Page(
        title=f"reelay training run: {storage.redact(inputs.output_uri)}",
        status=status_of(inputs),
        tiles=tiles,
        subtitle=(
            f"started {stats.format_time(record.get('started_at'))} · data "
            f"{storage.redact(str(record.get('config', {}).get('data_uri', '?')))} · model "
            f"{model.get('encoder', '?')} + {model.get('temporal', '?')}"
        ),
        figures=figures,
        tables=[per_class_table(inputs.per_class), skipped_table(inputs.skipped)],
        details=[
            ("files found", ", ".join(inputs.found)),
            ("labels", ", ".join(map(str, labels))),
            ("split_source", str(record.get("split_source", "?"))),
            ("counts", str(counts)),
            ("timings_s", str(record.get("timings_s", {}))),
        ],
        notes=notes,
    )


def per_class_table(per_class: list[dict]) -> html.Table:
    return html.Table(
        "Per-class numbers (validation)",
        ["label", "precision", "recall", "f1", "clips"],
        [
            [
                str(r["label"]),
                f"{r.get('precision') or 0:.3f}",
                f"{r.get('recall') or 0:.3f}",
                f"{r.get('f1') or 0:.3f}",
                f"{int(r.get('support') or 0):,}",
            ]
            for r in per_class
        ],
        empty="no evaluation in this run's output",
    )


def skipped_table(skipped: list[dict]) -> html.Table:
    return html.Table(
        "Videos skipped (unreadable)",
        ["video", "split", "stage", "error type", "message"],
        [
            [
                storage.redact(str(r.get("video_uri", ""))),
                str(r.get("split", "")),
                str(r.get("error_stage", "")),
                str(r.get("error_type", "")),
                storage.redact(str(r.get("error_message", ""))),
            ]
            for r in skipped
        ],
        empty="none: every video was read",
    )
