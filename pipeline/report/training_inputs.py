"""Inputs of a training report: what a training run's output folder holds, each file optional.

File names as pipeline/train/output.py writes them (not imported: that package pulls in torch
and Ray, which a report does not need).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field

import numpy as np
import pyarrow.parquet as pq

from pipeline import storage
from pipeline.config import StorageConfig
from pipeline.report.errors import ReportError

RUN_RECORD = "train_run.json"
METRICS = "metrics.parquet"
EVALUATION = "evaluation.json"
PER_CLASS = "per_class.parquet"
CONFUSION = "confusion_matrix.parquet"
SKIPPED = "skipped.parquet"
KNOWN = (RUN_RECORD, METRICS, EVALUATION, PER_CLASS, CONFUSION, SKIPPED)


@dataclass(frozen=True)
class Confusion:
    labels: list[str]
    matrix: np.ndarray  # (K, K) counts; rows true, columns predicted


@dataclass(frozen=True)
class TrainingInputs:
    output_uri: str
    record: dict  # train_run.json, {} when absent
    epochs: list[dict]  # metrics.parquet rows by epoch, [] when absent
    evaluation: dict  # evaluation.json, {} when absent
    confusion: Confusion | None
    per_class: list[dict]  # label, precision, recall, f1, support
    skipped: list[dict]  # unreadable videos
    found: list[str] = field(default_factory=list)  # which KNOWN files exist

    @property
    def best_epoch(self) -> int | None:
        for source in (self.record, self.evaluation):
            if source.get("best_epoch") is not None:
                return int(source["best_epoch"])
        scored = [e for e in self.epochs if e.get("val_accuracy") is not None]
        return int(max(scored, key=lambda e: e["val_accuracy"])["epoch"]) if scored else None


def load_training(output_uri: str, storage_cfg: StorageConfig = storage.NO_OPTIONS):
    where = storage.redact(output_uri)
    try:
        fs = storage.filesystem(output_uri, storage_cfg)
        root = storage.strip_scheme(output_uri).rstrip("/")
        if not fs.isdir(root):
            raise ReportError(f"no training run at {where}: the folder does not exist")
        found = [name for name in KNOWN if fs.exists(f"{root}/{name}")]
    except ReportError:
        raise
    except (ValueError, OSError) as e:
        raise ReportError(f"cannot read the training run at {where}: {e}") from e
    if not found:
        raise ReportError(
            f"no training run at {where}: none of {', '.join(KNOWN)} is there; point at the "
            "--output of jobs/train.py"
        )

    def read(name: str) -> bytes | None:
        return fs.cat_file(f"{root}/{name}") if name in found else None

    def rows(name: str) -> list[dict]:
        data = read(name)
        return pq.read_table(io.BytesIO(data)).to_pylist() if data else []

    try:
        record = json.loads(read(RUN_RECORD) or b"{}")
        evaluation = json.loads(read(EVALUATION) or b"{}")
        epochs = sorted(rows(METRICS), key=lambda r: r.get("epoch") or 0)
        confusion = confusion_of(rows(CONFUSION), evaluation, record)
        per_class = rows(PER_CLASS) or per_class_of(evaluation, confusion)
        skipped = rows(SKIPPED)
    except (ValueError, OSError) as e:  # bad JSON or Parquet
        raise ReportError(f"cannot read the training run at {where}: {e}") from e
    return TrainingInputs(
        output_uri, record, epochs, evaluation, confusion, per_class, skipped, found
    )


def confusion_of(long_rows: list[dict], evaluation: dict, record: dict) -> Confusion | None:
    """From confusion_matrix.parquet (true_label, predicted_label, count), else from
    evaluation.json's matrix; labels in the run's order."""
    labels = list(record.get("labels") or evaluation.get("labels") or [])
    if long_rows:
        for r in long_rows:
            for key in ("true_label", "predicted_label"):
                if r[key] not in labels:
                    labels.append(r[key])
        index = {label: i for i, label in enumerate(labels)}
        matrix = np.zeros((len(labels), len(labels)), dtype=np.int64)
        for r in long_rows:
            matrix[index[r["true_label"]], index[r["predicted_label"]]] += int(r["count"] or 0)
        return Confusion(labels, matrix)
    matrix = evaluation.get("confusion")
    if matrix and len(matrix) == len(evaluation.get("labels", [])):
        return Confusion(list(evaluation["labels"]), np.asarray(matrix, dtype=np.int64))
    return None


def per_class_of(evaluation: dict, confusion: Confusion | None) -> list[dict]:
    """Per-class numbers from evaluation.json, else recomputed from the confusion matrix."""
    if evaluation.get("per_class"):
        return [{"label": label, **v} for label, v in evaluation["per_class"].items()]
    if confusion is None:
        return []
    cm = confusion.matrix
    support, predicted, hits = cm.sum(axis=1), cm.sum(axis=0), np.diag(cm)
    out = []
    for i, label in enumerate(confusion.labels):
        p = hits[i] / predicted[i] if predicted[i] else 0.0
        r = hits[i] / support[i] if support[i] else 0.0
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        out.append(
            {"label": label, "precision": p, "recall": r, "f1": f1, "support": int(support[i])}
        )
    return out
