"""The queries jobs/query.py runs, as frozen, validated dataclasses."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.config import ConfigError, StorageConfig
from pipeline.query.duplicates import DEFAULT_THRESHOLD
from pipeline.query.formats import FORMATS
from pipeline.query.vectors import BY, LEVELS

SEARCH_METHODS = ("auto", "exact", "ann")


def check_search(method: str) -> None:
    if method not in SEARCH_METHODS:
        raise ConfigError(
            f"--search must be one of {', '.join(SEARCH_METHODS)} (got {method!r}); auto "
            "searches exactly up to 100,000 rows and through the runs' graphs above"
        )


@dataclass(frozen=True)
class OutputConfig:
    """How a result is written: `format` to stdout, or to `out` (a path or s3:// URI)."""

    format: str = "table"
    out: str | None = None

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ConfigError(f"--format must be one of {', '.join(FORMATS)} (got {self.format!r})")


@dataclass(frozen=True)
class SqlQuery:
    """SQL over the views videos, clips, errors and runs of an index."""

    output_uri: str
    sql: str
    storage: StorageConfig = StorageConfig()


@dataclass(frozen=True)
class TextQuery:
    """The clips or videos nearest a text, through the text tower of the index's own CLIP."""

    output_uri: str
    text: str
    k: int = 10
    level: str = "video"
    search: str = "auto"  # exact, ann, or auto (pipeline.query.graphs.use_graphs)
    storage: StorageConfig = StorageConfig()

    def __post_init__(self) -> None:
        check_search(self.search)
        if not self.text.strip():
            raise ConfigError("--text needs some words, e.g. --text 'a dog running on a beach'")
        if self.k < 1:
            raise ConfigError(f"-k must be >= 1 (got {self.k})")
        if self.level not in LEVELS:
            raise ConfigError(f"--level must be one of {', '.join(LEVELS)} (got {self.level!r})")


@dataclass(frozen=True)
class SimilarQuery:
    """Nearest neighbours of an indexed video (`video_uri`) or of a new file (`file`)."""

    output_uri: str
    video_uri: str | None = None
    file: str | None = None
    k: int = 10
    level: str = "video"
    clip_index: int = 0  # the query clip at --level clip
    exclude_self: bool = False
    device: str = "cpu"  # where --similar-to-file runs the model
    search: str = "auto"  # exact, ann, or auto (pipeline.query.graphs.use_graphs)
    storage: StorageConfig = StorageConfig()
    by: str = "both"  # rank by picture, sound or both (pipeline.query.vectors.BY)

    def __post_init__(self) -> None:
        check_search(self.search)
        if self.by not in BY:
            raise ConfigError(f"--by must be one of {', '.join(BY)} (got {self.by!r})")
        if self.by != "both" and self.search == "ann":
            raise ConfigError(
                f"--by {self.by} compares a part of each embedding and searches exactly; the "
                "graphs (--search ann) hold whole embeddings: leave --search at auto or exact"
            )
        if (self.video_uri is None) == (self.file is None):
            raise ConfigError("give exactly one of --similar VIDEO_URI and --similar-to-file PATH")
        if self.k < 1:
            raise ConfigError(f"-k must be >= 1 (got {self.k})")
        if self.level not in LEVELS:
            raise ConfigError(f"--level must be one of {', '.join(LEVELS)} (got {self.level!r})")
        if self.clip_index < 0:
            raise ConfigError(f"--clip-index must be >= 0 (got {self.clip_index})")
        if self.device not in ("cpu", "cuda"):
            raise ConfigError(f"--device must be cpu or cuda (got {self.device!r})")


@dataclass(frozen=True)
class DuplicatesQuery:
    """Groups of videos that are copies of each other, from their stored frame hashes."""

    output_uri: str
    threshold: float = DEFAULT_THRESHOLD
    storage: StorageConfig = StorageConfig()

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold <= 1.0:
            raise ConfigError(
                f"--threshold must be in (0, 1] (got {self.threshold}): the share of the shorter "
                f"video's frames found in the other; {DEFAULT_THRESHOLD} by default"
            )
