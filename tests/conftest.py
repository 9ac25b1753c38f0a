"""Shared fixtures: one local Ray per session, a moto S3 server on 127.0.0.1, sample videos."""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def ray_local(s3_server):
    """One local Ray for the whole session (num_cpus=2, as on the CI machine).

    Started after the moto server so that Ray's workers inherit AWS_ENDPOINT_URL."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def s3_server():
    """A moto S3 server speaking HTTP on 127.0.0.1; AWS_* variables point every client at it."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    env = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield endpoint
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    server.stop()


@pytest.fixture()
def s3_bucket(s3_server):
    """A fresh, empty bucket name on the moto server."""
    import uuid

    import boto3

    name = f"test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def sample_corpus(tmp_path_factory) -> Path:
    """A small labeled corpus (right/left moving shapes), laid out <split>/<label>/*.mp4."""
    from pipeline.samples import make_sample_corpus

    return make_sample_corpus(tmp_path_factory.mktemp("corpus"), per_class=3)


@pytest.fixture()
def cli(ray_local, caplog, capsys):
    """jobs/index.py's main() in-process; returns (exit code, log text and stderr, stdout)."""
    from jobs.index import main

    def call(*argv: str) -> tuple[int, str, str]:
        caplog.clear()
        capsys.readouterr()
        with caplog.at_level(logging.INFO):
            code = main(list(argv))
        captured = capsys.readouterr()
        return code, caplog.text + captured.err, captured.out

    return call
