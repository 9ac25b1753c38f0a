"""The run's mode: end to end on decoded frames, or the head on an index's frame features.

end_to_end  the flags' model and sampling; ImageNet normalisation; everything trains
features    (--features-from) the index run's encoder, sampling and normalisation, the flags'
            temporal head; only the head and the classifier train (see index_source.py)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from pipeline.config import ConfigError, SamplingConfig
from pipeline.models import ModelConfig
from pipeline.models.normalization import IMAGENET_MEAN, IMAGENET_STD
from pipeline.train.config import TrainConfig
from pipeline.train.index_source import FeatureSource, find_features

log = logging.getLogger("reelay.train")

END_TO_END, FEATURES = "end_to_end", "features"


@dataclass(frozen=True)
class TrainMode:
    name: str  # END_TO_END | FEATURES
    model: ModelConfig  # num_classes = number of labels
    sampling: SamplingConfig  # the clips' sampling, stored in the checkpoint
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    source: FeatureSource | None = None  # FEATURES: the index runs and their model

    @property
    def clip_bytes(self) -> int:
        """Bytes of one training clip: uint8 frames (and float32 sound), or float32 (T, D)
        features."""
        if self.source is not None:
            t, d = self.source.shape
            return t * d * 4
        s = self.sampling
        sound = 4 * s.audio_samples if s.hears else 0
        return s.clip_frames * s.image_size * s.image_size * 3 + sound

    def identity(self, labels: tuple[str, ...]) -> dict:
        """What a --resume must find unchanged in the run it continues."""
        now = {"model": self.model.to_dict(), "sampling": self.sampling.to_dict()}
        now["labels"] = list(labels)
        if self.source is not None:
            now["index_model_version"] = self.source.model_version
        return now

    def to_dict(self) -> dict:
        """For the run record and the checkpoint's `extra`."""
        out: dict = {"mode": self.name}
        if self.source is not None:
            out["features"] = self.source.to_dict()
        return out


def train_mode(cfg: TrainConfig, num_labels: int) -> TrainMode:
    """Resolve the mode; with --features-from this reads the index's run records (fail fast)."""
    if not cfg.features_from:
        model = replace(cfg.model, num_classes=num_labels)
        return TrainMode(END_TO_END, model, cfg.sampling, IMAGENET_MEAN, IMAGENET_STD)
    source = find_features(cfg.features_from, cfg.storage)
    model = source.model_config(cfg.model, num_labels)
    if (cfg.model.encoder, cfg.model.pretrained_weights) != (
        model.encoder,
        model.pretrained_weights,
    ):
        log.warning(
            "--encoder %s (weights %s) is not used: the features were computed by the index "
            "run's encoder %s (weights %s), which the trained model keeps",
            cfg.model.encoder,
            cfg.model.pretrained_weights,
            model.encoder,
            model.pretrained_weights,
        )
    if cfg.sampling != source.sampling:
        log.info(
            "sampling is the index run's %s (--fps/--clip-frames/--image-size are not used "
            "with --features-from)",
            source.sampling.to_dict(),
        )
    if source.sampling.clip_frames > model.max_frames:
        raise ConfigError(
            f"the index run's clips have {source.sampling.clip_frames} frames, more than the "
            f"head's max_frames ({model.max_frames})"
        )
    spec = source.spec
    return TrainMode(FEATURES, model, source.sampling, spec.mean, spec.std, source)
