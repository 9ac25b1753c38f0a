"""The training run's output folder (local or s3://): names, and small writes through fsspec.

<output>/best.pt                  best checkpoint by val accuracy (reelay checkpoint format)
<output>/metrics.parquet          one row per epoch: train/val loss and accuracy, times
<output>/evaluation.json          best model on the val split: accuracy, per class, confusion
<output>/per_class.parquet        label, precision, recall, f1, support
<output>/confusion_matrix.parquet true_label, predicted_label, count (every pair)
<output>/confusion_matrix.png
<output>/skipped.parquet          unreadable videos: video_uri, split, error_stage/type/message
<output>/train_run.json           config, labels, counts, timings, best epoch
<output>/checkpoints/             Ray Train's run folder: per-epoch checkpoints (for --resume)
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import storage
from pipeline.config import StorageConfig

BEST = "best.pt"
METRICS = "metrics.parquet"
EVALUATION = "evaluation.json"
PER_CLASS = "per_class.parquet"
CONFUSION = "confusion_matrix.parquet"
CONFUSION_PNG = "confusion_matrix.png"
SKIPPED = "skipped.parquet"
RUN_RECORD = "train_run.json"
CHECKPOINTS = "checkpoints"  # RunConfig(name=...) under storage_path=<output>

SKIPPED_SCHEMA = pa.schema(
    [
        ("video_uri", pa.string()),
        ("split", pa.string()),
        ("error_stage", pa.string()),
        ("error_type", pa.string()),
        ("error_message", pa.string()),
    ]
)


@dataclass(frozen=True)
class TrainOutput:
    output_uri: str
    storage: StorageConfig

    @property
    def fs(self):
        return storage.filesystem(self.output_uri, self.storage)

    def uri(self, name: str) -> str:
        return storage.join(self.output_uri, name)

    def path(self, name: str = "") -> str:
        """The fsspec path (no scheme) of a file in the output."""
        return storage.strip_scheme(self.uri(name) if name else self.output_uri)

    def exists(self, name: str) -> bool:
        return self.fs.exists(self.path(name))

    def write_bytes(self, name: str, data: bytes) -> None:
        # whole or not at all: a rerun replaces best.pt while an index run may be loading it
        storage.write_whole(self.fs, self.path(name), data)

    def read_bytes(self, name: str) -> bytes:
        with self.fs.open(self.path(name), "rb") as f:
            return f.read()

    def write_json(self, name: str, value: dict) -> None:
        self.write_bytes(name, json.dumps(value, indent=2, sort_keys=True, default=str).encode())

    def read_json(self, name: str) -> dict:
        return json.loads(self.read_bytes(name))

    def write_table(self, name: str, table: pa.Table) -> None:
        buf = io.BytesIO()
        pq.write_table(table, buf, compression="zstd")
        self.write_bytes(name, buf.getvalue())

    # Ray Train's view of the output: storage_path (+ a pyarrow filesystem for s3://)
    def ray_storage(self) -> tuple[str, object | None]:
        if storage.is_remote(self.output_uri):
            return self.path(), storage.arrow_filesystem(self.output_uri, self.storage)
        return self.path(), None
