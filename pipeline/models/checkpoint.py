"""Checkpoints as plain data: saved with torch.save, loaded weights-only (never code)."""

from __future__ import annotations

import os
import pickle
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import IO, Any

import torch
from torch import nn

from pipeline.models.config import ModelConfig
from pipeline.models.normalization import IMAGENET_MEAN, IMAGENET_STD
from pipeline.models.video_model import VideoModel, build_model, state_dict_version

FORMAT = "reelay.checkpoint"
FORMAT_VERSION = 1
_KEYS = ("model", "labels", "sampling", "normalization", "state_dict", "model_version", "extra")

PathOrFile = str | os.PathLike[str] | IO[bytes]


def _check_plain(value: Any, where: str) -> None:
    """Reject anything a weights-only load could not read back (plain JSON-like data only)."""
    if value is None or isinstance(value, bool | int | float | str):
        return
    if isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _check_plain(v, f"{where}[{i}]")
    elif isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise ValueError(f"{where}: keys must be str, got {k!r}")
            _check_plain(v, f"{where}[{k!r}]")
    else:
        raise ValueError(f"{where}: {type(value).__name__} is not plain data")


@dataclass(frozen=True)
class Checkpoint:
    """Everything needed to rebuild and run a trained model; `model` is its config."""

    model: ModelConfig
    labels: list[str]
    sampling: dict[str, Any]
    normalization: dict[str, list[float]]
    state_dict: dict[str, torch.Tensor]
    model_version: str
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.labels) != self.model.num_classes:
            raise ValueError(
                f"checkpoint has {len(self.labels)} labels but "
                f"model.num_classes={self.model.num_classes}"
            )
        _check_plain(self.labels, "labels")
        _check_plain(self.sampling, "sampling")
        _check_plain(self.extra, "extra")
        norm = self.normalization
        if set(norm) != {"mean", "std"} or any(len(norm[k]) != 3 for k in norm):
            raise ValueError(f"normalization must be {{'mean': [3], 'std': [3]}}, got {norm!r}")

    @classmethod
    def from_model(
        cls,
        model: nn.Module,
        config: ModelConfig,
        labels: Sequence[str],
        *,
        sampling: dict[str, Any],
        normalization: dict[str, list[float]] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> Checkpoint:
        """Snapshot `model` (CPU copy of its weights) and stamp its model_version."""
        state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        norm = normalization or {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
        return cls(
            model=config,
            labels=list(labels),
            sampling=dict(sampling),
            normalization={"mean": list(norm["mean"]), "std": list(norm["std"])},
            state_dict=state,
            model_version=state_dict_version(state, config, labels),
            extra=dict(extra or {}),
        )

    @property
    def embedding_dim(self) -> int:
        """The temporal head's output size, read off the classifier's weights (a VideoModel's
        classifier is Linear(embedding, classes)) without building the model, so without
        importing torchvision: the index job's driver only needs the checkpoint's sizes."""
        weight = self.state_dict.get("classifier.weight")
        if weight is None or weight.ndim != 2:
            raise ValueError("no classifier.weight of 2 dimensions: not a reelay VideoModel")
        return int(weight.shape[1])

    @property
    def audio_dim(self) -> int:
        """How many of the embedding's last values are the sound's (0: a model that does not
        hear; pipeline.models.fusion)."""
        return self.model.audio_dim

    def build_model(self) -> VideoModel:
        """Rebuild the architecture (no pretrained file read), load weights strictly; eval."""
        model = build_model(self.model, load_pretrained=False)
        model.load_state_dict(self.state_dict, strict=True)
        return model.eval()

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "model": self.model.to_dict(),
            "labels": list(self.labels),
            "sampling": self.sampling,
            "normalization": self.normalization,
            "state_dict": self.state_dict,
            "model_version": self.model_version,
            "extra": self.extra,
        }


def _name(f: PathOrFile) -> str:
    return os.fspath(f) if isinstance(f, str | os.PathLike) else getattr(f, "name", "<file>")


def _verify(ckpt: Checkpoint, name: str) -> None:
    actual = state_dict_version(ckpt.state_dict, ckpt.model, ckpt.labels)
    if actual != ckpt.model_version:
        raise ValueError(
            f"{name}: checkpoint is corrupt or was modified: stored model_version "
            f"{ckpt.model_version} != recomputed {actual}"
        )


def save_checkpoint(ckpt: Checkpoint, f: PathOrFile) -> None:
    """Write `ckpt` as a plain dict to a path or binary file object."""
    _verify(ckpt, "save_checkpoint")
    torch.save(ckpt.to_dict(), f)


def load_checkpoint(f: PathOrFile) -> Checkpoint:
    """Read a checkpoint from a path or binary file object, refusing anything but plain data."""
    name = _name(f)
    try:
        data = torch.load(f, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        lines = [ln.strip() for ln in str(e).splitlines()] or [""]
        detail = next((ln for ln in lines if "unsupported" in ln.lower()), lines[0])
        raise ValueError(
            f"{name} is not a reelay checkpoint: it contains objects that are not plain data "
            f"(refused to unpickle); checkpoints hold only configs, labels and tensors "
            f"[{detail}]"
        ) from e
    except (RuntimeError, EOFError) as e:
        raise ValueError(f"{name} is not a reelay checkpoint: unreadable ({e})") from e
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        fmt = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"{name} is not a reelay checkpoint (format {fmt!r}, expected {FORMAT!r})")
    if data.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{name}: unsupported checkpoint format_version {data.get('format_version')!r} "
            f"(this version of reelay reads {FORMAT_VERSION})"
        )
    missing = [k for k in _KEYS if k not in data]
    if missing:
        raise ValueError(f"{name}: checkpoint is missing keys: {', '.join(missing)}")
    fields = {k: data[k] for k in _KEYS}
    ckpt = Checkpoint(**{**fields, "model": ModelConfig.from_dict(data["model"])})
    _verify(ckpt, name)
    return ckpt
