"""--weights from where the user keeps them: a real HTTP server on 127.0.0.1 and a moto S3
bucket each serve the same torchvision-format state dict; both index runs load it, record the
same model_version, label with ImageNet's classes, and fetch the file once (on the driver);
broken files and unknown names are one-line errors, exit 2. Nothing is downloaded from the
internet: the torch cache is a temporary folder and the runs that would need it are offline."""

from __future__ import annotations

import functools
import http.server
import re
import threading
from pathlib import Path

import boto3
import pyarrow.parquet as pq
import pytest
import torch

from pipeline.models import ModelConfig
from pipeline.samples import VideoSpec, write_video

ENCODER = "mobilenet_v3_small"  # the smallest torchvision backbone here: a 10 MB state dict
FLAGS = ["--encoder", ENCODER, "--fps", "2", "--clip-frames", "2", "--image-size", "32"]


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory) -> Path:
    """A state dict in torchvision's format for the encoder (seeded, not trained), and a copy
    of it cut short."""
    import torchvision

    folder = tmp_path_factory.mktemp("weights")
    torch.manual_seed(7)
    torch.save(torchvision.models.mobilenet_v3_small(weights=None).state_dict(), folder / "w.pth")
    data = (folder / "w.pth").read_bytes()
    (folder / "cut.pth").write_bytes(data[: len(data) // 2])
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), folder / "resnet18.pth")
    return folder


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("pretrained-corpus")
    for i in range(2):
        write_video(VideoSpec(width=64, height=48, seconds=1.0, seed=i), folder / f"v{i}.mp4")
    return folder


class CountingHandler(http.server.SimpleHTTPRequestHandler):
    requests: list[str]

    def do_GET(self):  # noqa: N802 (http.server's name)
        self.requests.append(self.path)
        super().do_GET()

    def log_message(self, *args):  # quiet
        pass


@pytest.fixture()
def http_url(weights_dir):
    """(base URL of a real HTTP server over weights_dir, the paths it was asked for)."""
    requests: list[str] = []
    handler = type("Handler", (CountingHandler,), {"requests": requests})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(weights_dir))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", requests
    server.shutdown()
    server.server_close()


@pytest.fixture()
def offline_cache(tmp_path, monkeypatch):
    """An empty torch cache, and no way to the internet."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("REELAY_OFFLINE", "1")


def index(cli, corpus: Path, out: Path, weights: str | None = None) -> tuple[int, str, str]:
    """jobs/index.py on the corpus with the test's flags (and --weights)."""
    extra = ["--weights", weights] if weights else []
    return cli("--input", str(corpus), "--output", str(out), *extra, *FLAGS)


def model_versions(out: Path) -> set[str]:
    return set(pq.read_table(out / "videos", columns=["model_version"]).column(0).to_pylist())


def labels(out: Path) -> set[str]:
    return set(pq.read_table(out / "clips", columns=["label"]).column(0).to_pylist())


def test_the_same_file_from_http_s3_and_disk_is_the_same_model(
    cli, corpus, weights_dir, http_url, s3_server, s3_bucket, tmp_path, offline_cache, monkeypatch
):
    """One run from the URL (the driver fetches the file once, the actors never); the driver's
    model from S3 and from disk, built as the run builds it, is the same model."""
    import torchvision

    from pipeline.config import IndexConfig, SamplingConfig
    from pipeline.models.source import untrained_model

    base, requests = http_url
    s3 = boto3.client("s3", endpoint_url=s3_server)
    s3.upload_file(str(weights_dir / "w.pth"), s3_bucket, "models/w.pth")
    monkeypatch.delenv("REELAY_OFFLINE")  # an HTTP URL is a download: this run is online
    out = tmp_path / "http"
    code, log, _ = cli("--input", str(corpus), "--output", str(out), "--weights", f"{base}/w.pth",
                       *FLAGS)  # fmt: skip
    assert code == 0, log[-3000:]
    (version,) = model_versions(out)
    imagenet = set(torchvision.models.MobileNet_V3_Small_Weights.DEFAULT.meta["categories"])
    assert labels(out) <= imagenet  # the mean head keeps the ImageNet classifier
    assert version.startswith(f"pretrained-{ENCODER}-mean-s0-")
    assert requests == ["/w.pth"]  # fetched once, by the driver, not by each actor

    def driver_version(weights: str | None) -> str:
        model = ModelConfig(encoder=ENCODER, pretrained_weights=weights)
        sampling = SamplingConfig(fps=2, clip_frames=2, image_size=32)
        cfg = IndexConfig(input_uri="in", output_uri="out", sampling=sampling, model=model)
        return untrained_model(cfg)[1].model_version

    assert driver_version(f"s3://{s3_bucket}/models/w.pth") == version
    assert driver_version(str(weights_dir / "w.pth")) == version
    assert driver_version(None) != version  # seeded: another model


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ("cut.pth", r"cut\.pth is not a readable PyTorch weights file \("),
        ("resnet18.pth", r"the weights do not fit mobilenet_v3_small: \d+ missing keys"),
        ("missing.pth", r"missing\.pth: no such file"),
        ("IMAGENET9K", r"unknown weights 'IMAGENET9K' for mobilenet_v3_small; known: "),
        ("DEFAULT", r"are not in the torch cache \(expected .*\) and this run is offline"),
    ],
)
def test_weights_that_cannot_be_had_are_one_line_and_exit_2(
    cli, corpus, weights_dir, tmp_path, offline_cache, weights, message
):
    source = weights if weights.isupper() else str(weights_dir / weights)
    code, log, _ = index(cli, corpus, tmp_path / "o", source)
    assert code == 2, log[-3000:]
    (line,) = [ln for ln in log.splitlines() if "reelay index: error:" in ln]
    assert re.search(rf"--weights {re.escape(source)}: .*{message}", line), line
    assert "Traceback" not in log


def test_an_http_url_is_refused_offline(cli, corpus, http_url, tmp_path, offline_cache):
    base, requests = http_url
    code, log, _ = index(cli, corpus, tmp_path / "o", f"{base}/w.pth")
    assert code == 2 and "offline, so nothing is downloaded" in log
    assert requests == []


def test_training_workers_get_the_drivers_weights(weights_dir, tmp_path, offline_cache):
    """jobs/train.py's driver fetches and checks the file; its workers build from that state."""
    from pipeline.config import ConfigError, StorageConfig
    from pipeline.models import ModelConfig, build_model
    from pipeline.models.source import pretrained_state

    cfg = ModelConfig(encoder=ENCODER, pretrained_weights=str(weights_dir / "w.pth"))
    state = pretrained_state(cfg, StorageConfig(), offline_flag=True)
    model = build_model(cfg, seed=0, pretrained_state=state)
    saved = torch.load(weights_dir / "w.pth", weights_only=True)
    torch.testing.assert_close(
        model.encoder.backbone.features[0][0].weight, saved["features.0.0.weight"]
    )
    with pytest.raises(ConfigError, match="do not fit mobilenet_v3_small"):
        pretrained_state(
            ModelConfig(encoder=ENCODER, pretrained_weights=str(weights_dir / "resnet18.pth")),
            StorageConfig(),
            offline_flag=True,
        )


class FakeWeightsEnum(dict):
    """What torchvision.models.get_model_weights returns, enough for the fetch: members with
    a `url`, by name."""

    @property
    def __members__(self):
        return self


def test_a_weights_name_missing_from_the_cache_is_downloaded_into_it_once(
    weights_dir, http_url, tmp_path, monkeypatch
):
    """As torchvision names them (<arch>-<sha256 prefix>.pth): downloaded into the torch
    cache, the hash in the name checked, and read from the cache the next time; a file whose
    bytes do not match its name's hash is refused."""
    import hashlib
    import types

    import torchvision

    from pipeline.config import StorageConfig
    from pipeline.models.weights import WeightsError, fetch

    base, requests = http_url
    data = (weights_dir / "w.pth").read_bytes()
    good = f"mnv3-{hashlib.sha256(data).hexdigest()[:8]}.pth"
    (weights_dir / good).write_bytes(data)
    (weights_dir / "mnv3-00000000.pth").write_bytes(data)  # a name whose hash it fails
    fake = FakeWeightsEnum(
        DEFAULT=types.SimpleNamespace(url=f"{base}/{good}"),
        BROKEN=types.SimpleNamespace(url=f"{base}/mnv3-00000000.pth"),
    )
    monkeypatch.setattr(torchvision.models, "get_model_weights", lambda arch: fake)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    for _ in range(2):
        got = fetch("DEFAULT", ENCODER, StorageConfig(), no_network=False)
        assert got.data == data
    assert (tmp_path / "torch" / "hub" / "checkpoints" / good).read_bytes() == data
    assert requests == [f"/{good}"]  # the second fetch read the cache
    with pytest.raises(WeightsError, match="cannot download .*mnv3-00000000.pth"):
        fetch("BROKEN", ENCODER, StorageConfig(), no_network=False)
    assert not (tmp_path / "torch" / "hub" / "checkpoints" / "mnv3-00000000.pth").exists()
