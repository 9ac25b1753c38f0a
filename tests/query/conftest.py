"""Fixtures of the query tests: one small real index (built once, ~15 s) and the CLI in-process.

The index is the sample corpus (6 videos, 2 clips each at fps=2, clip_frames=4) plus one
unreadable file, so `errors` and a failed `videos` row (no embedding) exist too.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SAMPLING = dict(fps=2, clip_frames=4, image_size=32)
BROKEN_NAME = "broken.mp4"


@dataclass(frozen=True)
class BuiltIndex:
    output_uri: str
    corpus: Path
    record: dict

    @property
    def run_id(self) -> str:
        return self.record["run_id"]

    def video_uris(self) -> list[str]:
        return sorted(str(p) for p in self.corpus.rglob("*.mp4") if p.name != BROKEN_NAME)

    @property
    def broken_uri(self) -> str:
        return str(self.corpus / BROKEN_NAME)


def build_index(corpus: Path, output_uri: str) -> dict:
    """Run the real index job; returns the committed run record."""
    from pipeline import storage
    from pipeline.config import IndexConfig, SamplingConfig
    from pipeline.index import run

    summary = run(
        IndexConfig(
            input_uri=str(corpus), output_uri=output_uri, sampling=SamplingConfig(**SAMPLING)
        )
    )
    fs = storage.filesystem(output_uri)
    path = storage.strip_scheme(storage.join(output_uri, "_runs", f"{summary.run_id}.json"))
    return json.loads(fs.cat_file(path))


@pytest.fixture(scope="session")
def index_builder():
    """build_index(corpus, output_uri) -> record, for tests that need their own index."""
    return build_index


@pytest.fixture(scope="session")
def query_corpus(sample_corpus, tmp_path_factory) -> Path:
    """The sample corpus plus one file that is not a video inside."""
    corpus = tmp_path_factory.mktemp("query-corpus") / "corpus"
    shutil.copytree(sample_corpus, corpus, ignore=shutil.ignore_patterns("*.csv"))
    (corpus / BROKEN_NAME).write_bytes(b"this is not an mp4 file" * 10)
    return corpus


@pytest.fixture(scope="session")
def local_index(ray_local, query_corpus, tmp_path_factory) -> BuiltIndex:
    out = tmp_path_factory.mktemp("query-index") / "index"
    return BuiltIndex(str(out), query_corpus, build_index(query_corpus, str(out)))


@pytest.fixture()
def index_copy(local_index, tmp_path) -> BuiltIndex:
    """A private copy of the index that a test may change (its records still name the old
    paths: readers must re-root them under the copy)."""
    out = tmp_path / "index-copy"
    shutil.copytree(local_index.output_uri, out)
    return BuiltIndex(str(out), local_index.corpus, local_index.record)


def _load_job():
    spec = importlib.util.spec_from_file_location("reelay_jobs_query", ROOT / "jobs" / "query.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class CliResult:
    code: int
    out: str
    err: str

    def json(self):
        return json.loads(self.out)


@pytest.fixture(scope="session")
def query_job():
    return _load_job()


@pytest.fixture()
def cli(query_job, capsys):
    """Run `jobs/query.py` in-process: cli(*argv) -> CliResult(code, stdout, stderr)."""

    def call(*argv: str) -> CliResult:
        capsys.readouterr()
        code = query_job.main([str(a) for a in argv])
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return call
