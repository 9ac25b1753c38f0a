"""Where a report goes: a folder URI (local or s3://) written through pipeline.storage."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline import storage
from pipeline.config import StorageConfig


@dataclass(frozen=True)
class ReportFolder:
    uri: str
    storage: StorageConfig = storage.NO_OPTIONS

    def uri_of(self, name: str) -> str:
        return storage.join(self.uri, name)

    def write(self, name: str, data: bytes | str) -> str:
        """Write one file, replacing it whole (never half-written); returns its URI."""
        fs = storage.filesystem(self.uri, self.storage)
        content = data.encode() if isinstance(data, str) else data
        storage.write_whole(fs, storage.strip_scheme(self.uri_of(name)), content)
        return self.uri_of(name)
