"""Where the index job's model comes from: a training checkpoint, or a seeded/pretrained build.

The driver resolves a `ModelSpec` (labels, model_version, embedding size) once, before Ray
starts, so that a bad checkpoint or missing weights fail as a bad flag; each inference actor
rebuilds the model from it (`load_model`) and checks that it built the same weights. A
checkpoint's spec is read without building the model. torch is imported by the functions that
build or read a model, not by this module.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING

from pipeline import storage
from pipeline.config import ConfigError, IndexConfig, SamplingConfig, StorageConfig
from pipeline.models.config import ModelConfig
from pipeline.models.normalization import IMAGENET_MEAN, IMAGENET_STD
from pipeline.models.weights import (
    PretrainedFile,
    PretrainedFolder,
    WeightsError,
    fetch,
    is_weights_name,
    offline,
)

if TYPE_CHECKING:
    from pipeline.models import Checkpoint

CHECKPOINT_NAMES = ("best.pt", "checkpoint.pt")


@dataclass(frozen=True)
class ModelSpec:
    """Enough to rebuild the model anywhere in the cluster."""

    model: ModelConfig
    labels: tuple[str, ...]
    model_version: str
    embedding_dim: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    checkpoint_uri: str | None = None
    seed: int = 0
    storage: StorageConfig = StorageConfig()
    # the --weights file as the driver fetched it: it reaches the actors with the spec (one
    # copy in the object store), never fetched again by each node
    pretrained: PretrainedFile | PretrainedFolder | None = None
    zero_shot_labels: tuple[str, ...] = ()  # --labels: a CLIP model's classes, from text
    audio_pretrained: PretrainedFile | None = None  # the --audio-weights file, likewise
    audio_dim: int = 0  # the embedding's last `audio_dim` values are the sound's (0: none)


def resolve_checkpoint_uri(uri: str, storage_cfg: StorageConfig) -> str:
    """A checkpoint file, or a training run's folder holding best.pt."""
    fs = storage.filesystem(uri, storage_cfg)
    path = storage.strip_scheme(uri)
    if fs.isfile(path):
        return uri
    for name in CHECKPOINT_NAMES:
        if fs.isfile(f"{path.rstrip('/')}/{name}"):
            return storage.join(uri, name)
    raise ConfigError(
        f"--checkpoint {storage.redact(uri)}: no checkpoint file there (looked for "
        f"the file itself and {', '.join(CHECKPOINT_NAMES)} inside)"
    )


def read_checkpoint(uri: str, storage_cfg: StorageConfig) -> Checkpoint:
    from pipeline.models import load_checkpoint

    fs = storage.filesystem(uri, storage_cfg)
    with fs.open(storage.strip_scheme(uri), "rb") as f:
        return load_checkpoint(io.BytesIO(f.read()))


def environment() -> dict[str, str]:
    """The versions a seeded model's weights depend on, read without importing torch: the
    run record keeps them (`environment`) so that a later night can trust its model_version."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in ("torch", "torchvision"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = ""
    return found


def recorded_spec(cfg: IndexConfig, records: list[dict]) -> ModelSpec | None:
    """The spec of the flags' seeded model as the newest committed run made it, when that run
    had the same model flags, seed and sampling and the same torch and torchvision: the same
    weights, so the same model_version, without importing torch (0.6 GB on the driver) or
    building the model. It buys a nightly `--incremental` run with nothing new a driver of
    ~1.3 GB instead of ~1.9 GB; the inference actors still build the model and check its
    version against this one, so a wrong reuse fails the run, it never writes. None where
    anything differs, or the model comes from a file (--weights, --audio-weights, --labels)."""
    model = cfg.model
    if cfg.checkpoint_uri or model.pretrained_weights or model.audio_weights or cfg.labels:
        return None
    for record in reversed(records):
        config = record.get("config") or {}
        if not str(record.get("model_version", "")).startswith("seeded-"):
            continue
        same = (
            record.get("environment") == environment()
            and config.get("seed") == cfg.seed
            and config.get("model") == asdict(model)
            and record.get("sampling") == cfg.sampling.to_dict()
            and isinstance(record.get("embedding_dim"), int)
        )
        if not same:
            return None  # the newest seeded run decides: an older one may hold an older model
        labels = tuple(record.get("labels") or ())
        return ModelSpec(
            replace(model, num_classes=len(labels)),
            labels,
            record["model_version"],
            record["embedding_dim"],
            seed=cfg.seed,
            audio_dim=model.audio_dim,
        )
    return None


def resolve_model(
    cfg: IndexConfig, records: list[dict] | None = None
) -> tuple[ModelSpec, SamplingConfig]:
    """The model spec and the sampling to use: a checkpoint's own, else the flags'. `records`:
    the output's committed run records, whose seeded model may be this one (recorded_spec)."""
    if cfg.checkpoint_uri:
        uri = resolve_checkpoint_uri(cfg.checkpoint_uri, cfg.storage)
        try:
            ckpt = read_checkpoint(uri, cfg.storage)
            dim = ckpt.embedding_dim  # the model is built by the inference actors only
        except ValueError as e:  # not a checkpoint, tampered, or pickled code: refused
            raise ConfigError(f"--checkpoint {storage.redact(uri)}: {e}") from e
        # what the checkpoint was trained on, whatever the flags say: its sound included
        sampling = SamplingConfig.from_dict(
            {**cfg.sampling.to_dict(), **ckpt.sampling, "modalities": ckpt.model.modalities}
        )
        spec = ModelSpec(
            ckpt.model,
            tuple(ckpt.labels),
            f"ckpt-{ckpt.model_version}",
            dim,
            tuple(ckpt.normalization["mean"]),
            tuple(ckpt.normalization["std"]),
            checkpoint_uri=uri,
            storage=cfg.storage,
            audio_dim=ckpt.audio_dim,
        )
        return spec, sampling
    known = recorded_spec(cfg, records) if records else None
    if known is not None:
        return known, cfg.sampling
    return untrained_model(cfg)[1], cfg.sampling


def untrained_model(cfg: IndexConfig):
    """(the model, its spec) of a seeded or pretrained build from the flags (no checkpoint),
    built once on the driver: the spec's model_version hashes its weights."""
    check_model_flags(cfg.model, cfg.labels)
    pretrained = fetch_pretrained(cfg.model, cfg.storage, cfg.offline)
    audio = fetch_audio_weights(cfg.model, cfg.storage, cfg.offline)
    # checked against the audio encoder here, so that a file that does not fit is a bad flag
    sound = audio_state(cfg.model, audio) if audio is not None else None
    try:
        model, labels = _build_untrained(cfg.model, cfg.seed, pretrained, cfg.labels, sound)
        mean, std = normalization(cfg.model, pretrained)
    except (WeightsError, ValueError) as e:  # unreadable, or not this encoder's weights
        if not cfg.model.pretrained_weights:
            raise
        raise weights_flag_error(cfg.model, e) from e
    config = replace(cfg.model, num_classes=len(labels))
    version = _untrained_version(model, config, labels, cfg.seed)
    spec = ModelSpec(
        config,
        tuple(labels),
        version,
        model.embedding_dim,
        mean,
        std,
        seed=cfg.seed,
        pretrained=pretrained,
        zero_shot_labels=tuple(cfg.labels),
        audio_pretrained=audio,
        audio_dim=model.audio_dim,
    )
    return model, spec


def weights_flag_error(model: ModelConfig, error: Exception) -> ConfigError:
    """A --weights problem as a bad flag: one line, exit 2."""
    return ConfigError(f"--weights {storage.redact(model.pretrained_weights)}: {error}")


def fetch_audio_weights(
    model: ModelConfig, storage_cfg: StorageConfig, offline_flag: bool
) -> PretrainedFile | None:
    """The --audio-weights file (a local path, s3:// or http(s):// URL), fetched once on the
    driver; None without the flag. A failure is a bad flag."""
    value = model.audio_weights
    if not value:
        return None
    if is_weights_name(value):
        raise ConfigError(
            f"--audio-weights {storage.redact(value)}: give the weights file's path or URI (a "
            "local path, s3:// or http(s)://)"
        )
    try:
        return fetch(value, model.audio_encoder, storage_cfg, no_network=offline(offline_flag))
    except WeightsError as e:
        raise ConfigError(f"--audio-weights {e}") from None


def audio_state(model: ModelConfig, audio: PretrainedFile) -> dict:
    """The --audio-weights file's state dict, checked against the audio encoder: ConfigError
    where it is not a state dict or does not fit."""
    import pipeline.models.audio_encoders  # noqa: F401 (registers the audio encoders)
    from pipeline.models.registry import get_audio_encoder_builder

    try:
        state = audio.payload()
        get_audio_encoder_builder(model.audio_encoder)(out_dim=model.audio_dim, weights=state)
    except (WeightsError, ValueError) as e:
        raise ConfigError(f"--audio-weights {audio.source}: {storage.one_line(e)}") from e
    return state


def check_model_flags(model: ModelConfig, labels: tuple[str, ...]) -> None:
    """A CLIP encoder needs its folder; --labels names classes through a CLIP model's text
    tower, compared with the `mean` head's embedding: only there do they mean anything."""
    if model.encoder == "clip" and not model.pretrained_weights:
        raise ConfigError(
            "--encoder clip needs --weights: a Hugging Face CLIPModel folder (local or "
            "s3://), as CLIPModel.save_pretrained and its processor's save_pretrained write it"
        )
    if labels and ((model.encoder, model.temporal) != ("clip", "mean") or model.hears):
        raise ConfigError(
            "--labels gives zero-shot labels from a CLIP model's text: use it with "
            f"--encoder clip --temporal mean (got --encoder {model.encoder} --temporal "
            f"{model.temporal}); other models get their labels from training (--checkpoint)"
        )


def normalization(model: ModelConfig, pretrained) -> tuple[tuple, tuple]:
    """The frames' (mean, std): the CLIP folder's own, else ImageNet's."""
    if isinstance(pretrained, PretrainedFolder):
        return pretrained.payload().normalization()
    return IMAGENET_MEAN, IMAGENET_STD


def fetch_pretrained(
    model: ModelConfig, storage_cfg: StorageConfig, offline_flag: bool
) -> PretrainedFile | None:
    """The --weights file, fetched once on the driver (None without --weights); a failure is
    a bad flag (ConfigError: exit 2, one line)."""
    if not model.pretrained_weights:
        return None
    try:
        return fetch(
            model.pretrained_weights, model.encoder, storage_cfg, no_network=offline(offline_flag)
        )
    except WeightsError as e:
        raise weights_flag_error(model, e) from None


def pretrained_state(model: ModelConfig, storage_cfg: StorageConfig, offline_flag: bool):
    """The --weights file's state dict, fetched on the driver and checked against the encoder
    (None without --weights): training hands it to its workers. ConfigError if it cannot be
    had or does not fit."""
    pretrained = fetch_pretrained(model, storage_cfg, offline_flag)
    if pretrained is None:
        return None
    import pipeline.models.encoders  # noqa: F401 (registers the encoders)
    from pipeline.models.registry import get_encoder_builder

    try:
        state = pretrained.payload()
        get_encoder_builder(model.encoder)(
            pretrained_weights=model.pretrained_weights, pretrained_state=state
        )
    except (WeightsError, ValueError) as e:
        raise weights_flag_error(model, e) from e
    return state


def _untrained_version(model, config: ModelConfig, labels: list[str], seed: int) -> str:
    """A seeded or pretrained model's version: how it was made, and a hash of its weights."""
    from pipeline.models import model_version

    kind = "pretrained" if config.pretrained_weights or config.audio_weights else "seeded"
    parts = [config.encoder, config.temporal] if config.sees else []
    parts += [config.audio_encoder] if config.hears else []
    prefix = f"{kind}-{'-'.join(parts)}-s{seed}-"
    if config.pretrained_weights and not is_weights_name(config.pretrained_weights):
        # a file's weights are hashed with the model; where the file was is not: the same
        # bytes from a path, S3 or HTTP are the same model
        config = replace(config, pretrained_weights="file")
    if config.audio_weights:
        config = replace(config, audio_weights="file")
    return prefix + model_version(model, config, labels)


def _build_untrained(
    model_cfg: ModelConfig,
    seed: int,
    pretrained,
    zero_shot: tuple[str, ...] = (),
    sound: dict | None = None,
):
    """A seeded model; with ImageNet weights and a `mean` head, the ImageNet classifier and
    its category names are used, so labels mean something without training; with a CLIP
    model and `zero_shot` labels, a classifier made from their text (`clip.zero_shot`)."""
    from pipeline.models import build_model

    payload = pretrained.payload() if pretrained is not None else None
    if zero_shot:
        model_cfg = replace(model_cfg, num_classes=len(zero_shot))
    model = build_model(
        model_cfg,
        seed=seed,
        pretrained_state=payload,
        audio_state=sound,  # the --audio-weights state dict
    )
    if zero_shot:
        from pipeline.models.clip import zero_shot_classifier

        model.classifier = zero_shot_classifier(model.encoder, payload, list(zero_shot))
        return model.eval(), list(zero_shot)
    head = getattr(model.encoder, "imagenet_head", None)
    categories = getattr(model.encoder, "categories", None)
    if head is not None and categories and model_cfg.temporal == "mean" and not model_cfg.hears:
        model.classifier = head
        return model.eval(), list(categories)
    return model.eval(), [f"class_{i}" for i in range(model_cfg.num_classes)]


def load_model(spec: ModelSpec):
    """Rebuild the spec's model in eval mode (called once per inference actor)."""
    if spec.checkpoint_uri:
        ckpt = read_checkpoint(spec.checkpoint_uri, spec.storage)
        if f"ckpt-{ckpt.model_version}" != spec.model_version:
            raise RuntimeError(
                f"checkpoint {storage.redact(spec.checkpoint_uri)} changed during "
                "the run; rerun the job"
            )
        return ckpt.build_model()
    sound = spec.audio_pretrained.payload() if spec.audio_pretrained is not None else None
    model, labels = _build_untrained(
        spec.model, spec.seed, spec.pretrained, spec.zero_shot_labels, sound
    )
    built = _untrained_version(model, spec.model, labels, spec.seed)
    if built != spec.model_version:
        raise RuntimeError(
            f"this node built model {built} from the flags that gave {spec.model_version} on "
            "the driver: the cluster's nodes differ in torch or torchvision; install the same "
            "versions everywhere, or index with a --checkpoint"
        )
    return model
