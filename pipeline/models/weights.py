"""Pretrained weights from where the user keeps them (`--weights`): a torchvision weights name
(`DEFAULT`, `IMAGENET1K_V1`: the torch cache, downloaded into it when missing unless offline),
a local file, an `s3://` URI or an `http(s)://` URL (a state dict in torchvision's format for
the architecture).

The driver fetches the file once; its bytes travel to the inference actors and training
workers with the model's spec, through Ray's object store, so a hundred nodes do not each ask
the download host. Every file is read with `torch.load(weights_only=True)`: data, never code.
"""

from __future__ import annotations

import io
import logging
import os
import re
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from pipeline import storage
from pipeline.config import StorageConfig

log = logging.getLogger("reelay.models")

OFFLINE_ENV = ("REELAY_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
HTTP_TIMEOUT_S = 60


class WeightsError(ValueError):
    """The weights named cannot be had or read; the message says why and what to do."""


@dataclass(frozen=True)
class PretrainedFile:
    """A weights file as fetched on the driver: where from (credentials removed) and its bytes."""

    source: str
    data: bytes = field(repr=False)

    def payload(self) -> dict:
        """What the encoder's builder takes: the file's state dict (a weights-only load);
        WeightsError if it is not one."""
        import torch

        try:
            state = torch.load(io.BytesIO(self.data), map_location="cpu", weights_only=True)
        except Exception as e:  # truncated, corrupt, or not a PyTorch file
            raise WeightsError(
                f"{self.source} is not a readable PyTorch weights file ({storage.one_line(e)})"
            ) from None
        if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
            raise WeightsError(f"{self.source} holds no state dict (name -> tensor)")
        return state


def is_weights_name(value: str) -> bool:
    """A torchvision weights name (`DEFAULT`, `IMAGENET1K_V2`), not a path or URI."""
    return re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", value) is not None


def offline(flag: bool = False) -> bool:
    """--offline, or one of the usual offline environment variables set to a true value."""
    return flag or any(os.environ.get(k, "").lower() in ("1", "true", "yes") for k in OFFLINE_ENV)


@dataclass(frozen=True)
class PretrainedFolder:
    """A model folder as fetched on the driver (`--encoder clip`): its files' bytes."""

    source: str
    files: dict = field(repr=False)

    def payload(self):
        """What the encoder's builder takes: the folder (a ClipFolder)."""
        from pipeline.models.clip import ClipFolder

        try:
            return ClipFolder(self.files)
        except ValueError as e:
            raise WeightsError(f"{self.source}: {e}") from None


FOLDER_ENCODERS = ("clip",)


def fetch(value: str, arch: str, storage_cfg: StorageConfig, *, no_network: bool):
    """The weights `value` names for `arch`: a PretrainedFile, or a PretrainedFolder for the
    encoders that load a model folder; WeightsError where they cannot be had."""
    if arch in FOLDER_ENCODERS:
        return _folder(value, storage_cfg)
    if is_weights_name(value):
        return _torchvision_file(value, arch, no_network)
    source = storage.redact(value)
    if value.startswith(("http://", "https://")):
        if no_network:
            raise WeightsError(f"{source}: offline, so nothing is downloaded; give a local path")
        return PretrainedFile(source, _download(value))
    try:
        fs = storage.filesystem(value, storage_cfg)
        return PretrainedFile(source, fs.cat_file(storage.strip_scheme(value)))
    except FileNotFoundError:
        raise WeightsError(f"{source}: no such file") from None
    except OSError as e:
        raise WeightsError(f"{source}: cannot read it ({storage.one_line(e)})") from None


def _folder(value: str, storage_cfg: StorageConfig) -> PretrainedFolder:
    """The files of a model folder (local, or s3:// and other fsspec URIs) that the model
    reads (pipeline.models.clip: REQUIRED_FILES and OPTIONAL_FILES)."""
    from pipeline.models.clip import OPTIONAL_FILES, REQUIRED_FILES

    source = storage.redact(value)
    fs = storage.filesystem(value, storage_cfg)
    root = storage.strip_scheme(value).rstrip("/")
    try:
        if not fs.isdir(root):
            raise WeightsError(f"{source}: not a folder (a Hugging Face CLIPModel folder)")
        files = {}
        for name in (*REQUIRED_FILES, *OPTIONAL_FILES):
            if fs.isfile(f"{root}/{name}"):
                files[name] = fs.cat_file(f"{root}/{name}")
    except OSError as e:
        raise WeightsError(f"{source}: cannot read it ({storage.one_line(e)})") from None
    return PretrainedFolder(source, files)


def _torchvision_file(name: str, arch: str, no_network: bool) -> PretrainedFile:
    """torchvision's file for weights `name` of `arch`, from the torch cache, downloaded into
    it first (with progress, checked against the hash in its name) when missing."""
    import torch
    import torchvision

    try:
        enum = torchvision.models.get_model_weights(arch)
    except ValueError:
        raise WeightsError(f"{arch} has no torchvision pretrained weights") from None
    if name not in enum.__members__:
        raise WeightsError(
            f"unknown weights {name!r} for {arch}; known: {', '.join(enum.__members__)}; "
            "or give a file: a local path, s3:// or http(s):// URL"
        )
    weights = enum[name]
    path = cached_weights_path(weights.url)
    if not path.is_file():
        if no_network:
            raise WeightsError(
                f"{arch} weights {name} are not in the torch cache (expected {path}) and this "
                f"run is offline: copy {weights.url} there, or give --weights a local path"
            )
        log.info("downloading %s into the torch cache (%s)", weights.url, path.parent)
        path.parent.mkdir(parents=True, exist_ok=True)
        match = torch.hub.HASH_REGEX.search(path.name)
        try:
            torch.hub.download_url_to_file(
                weights.url, str(path), match.group(1) if match else None, progress=True
            )
        except Exception as e:  # network, hash mismatch
            raise WeightsError(f"cannot download {weights.url}: {storage.one_line(e)}") from None
    return PretrainedFile(f"{arch} {name} ({path})", path.read_bytes())


def cached_weights_path(url: str) -> Path:
    """Where torch.hub caches the file of `url` (honours TORCH_HOME)."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urllib.request.urlparse(url).path).name


def _download(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S) as response:
            data = response.read()
    except Exception as e:  # HTTP errors, refused connections, timeouts
        raise WeightsError(
            f"{storage.redact(url)}: cannot download it ({storage.one_line(e)})"
        ) from None
    log.info("downloaded %s (%.1f MB)", storage.redact(url), len(data) / 1e6)
    return data
