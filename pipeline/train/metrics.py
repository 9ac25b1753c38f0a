"""Pure classification metrics: confusion matrix, accuracy, per-class precision/recall/F1."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa


@dataclass(frozen=True)
class Evaluation:
    labels: tuple[str, ...]
    confusion: np.ndarray  # (K, K) counts; rows = true class, columns = predicted class

    @classmethod
    def from_predictions(
        cls, y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[str]
    ) -> Evaluation:
        k = len(labels)
        cm = np.zeros((k, k), dtype=np.int64)
        np.add.at(cm, (np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)), 1)
        return cls(tuple(labels), cm)

    @property
    def count(self) -> int:
        return int(self.confusion.sum())

    @property
    def accuracy(self) -> float:
        return float(np.trace(self.confusion) / max(self.count, 1))

    @property
    def support(self) -> np.ndarray:
        return self.confusion.sum(axis=1)  # (K,) true clips per class

    @property
    def precision(self) -> np.ndarray:
        predicted = self.confusion.sum(axis=0)
        return np.divide(
            np.diag(self.confusion), predicted, out=np.zeros(len(self.labels)), where=predicted > 0
        )

    @property
    def recall(self) -> np.ndarray:
        support = self.support
        return np.divide(
            np.diag(self.confusion), support, out=np.zeros(len(self.labels)), where=support > 0
        )

    @property
    def f1(self) -> np.ndarray:
        p, r = self.precision, self.recall
        return np.divide(2 * p * r, p + r, out=np.zeros(len(self.labels)), where=(p + r) > 0)

    def per_class_table(self) -> pa.Table:
        return pa.table(
            {
                "label": pa.array(self.labels, pa.string()),
                "precision": pa.array(self.precision, pa.float64()),
                "recall": pa.array(self.recall, pa.float64()),
                "f1": pa.array(self.f1, pa.float64()),
                "support": pa.array(self.support, pa.int64()),
            }
        )

    def confusion_table(self) -> pa.Table:
        """Long form: one row per (true, predicted) pair, zeros included."""
        k = len(self.labels)
        true_idx, pred_idx = np.divmod(np.arange(k * k), k)
        return pa.table(
            {
                "true_label": pa.array([self.labels[i] for i in true_idx], pa.string()),
                "predicted_label": pa.array([self.labels[j] for j in pred_idx], pa.string()),
                "count": pa.array(self.confusion.reshape(-1), pa.int64()),
            }
        )

    def to_dict(self) -> dict:
        return {
            "clips": self.count,
            "accuracy": self.accuracy,
            "labels": list(self.labels),
            "per_class": {
                label: {
                    "precision": float(self.precision[i]),
                    "recall": float(self.recall[i]),
                    "f1": float(self.f1[i]),
                    "support": int(self.support[i]),
                }
                for i, label in enumerate(self.labels)
            },
            "confusion": self.confusion.tolist(),
        }
