"""Per-frame encoders `(N, 3, H, W) -> (N, D)`: a small CNN and torchvision backbones.

torchvision is imported only to build one of its backbones: its import pulls in
`torch._dynamo` (through `torchvision.ops.roi_align`), 2-3 s on a 2-core machine, which a
process that builds the small CNN (an inference actor, a training worker) does not need.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from pipeline.models.registry import register_encoder

if TYPE_CHECKING:
    import torchvision


class SmallCNN(nn.Module):
    """Plain frame CNN; 4x4 pooling keeps coarse object position in the embedding."""

    imagenet_head: nn.Module | None = None
    categories: list[str] | None = None

    def __init__(self) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        for c_in, c_out in ((3, 32), (32, 64), (64, 128)):
            blocks += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
        self.features = nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(4))  # (N, 128, 4, 4)
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(128 * 16, 128), nn.ReLU(inplace=True), nn.Dropout(0.5)
        )
        self.out_dim = 128

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))  # (N, 3, H, W) -> (N, 128)


def cached_weights_path(weights: torchvision.models.WeightsEnum) -> Path:
    """Where torch.hub caches the file for `weights` (honours TORCH_HOME)."""
    from pipeline.models.weights import cached_weights_path as cached

    return cached(weights.url)


def _load_cached(weights: torchvision.models.WeightsEnum) -> dict[str, torch.Tensor]:
    """Read pretrained weights from the torch cache only; never touches the network (the
    index and train drivers fetch, download included: pipeline.models.weights)."""
    path = cached_weights_path(weights)
    if not path.is_file():
        raise RuntimeError(
            f"pretrained weights {weights} are not in the torch cache: expected file {path} "
            f"(cache dir torch.hub.get_dir() = {torch.hub.get_dir()}); pre-populate the cache "
            f"with {weights.url}, or load a reelay checkpoint."
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise RuntimeError(f"could not read cached pretrained weights {path}: {e}") from e


class TorchvisionEncoder(nn.Module):
    """A torchvision classifier with its ImageNet head split off into `imagenet_head`.

    `pretrained_weights`: a torchvision weights name, or a file's source (path or URI) whose
    state dict comes as `pretrained_state` (pipeline.models.weights); a file's weights are
    torchvision's format for the architecture, so its head has ImageNet's classes."""

    def __init__(
        self,
        arch: str,
        out_dim: int,
        pretrained_weights: str | None,
        load_weights: bool,
        pretrained_state: dict | None = None,
    ) -> None:
        import torchvision

        from pipeline.models.weights import is_weights_name

        super().__init__()
        self.backbone = torchvision.models.get_model(arch, weights=None)
        self.out_dim = out_dim
        self.imagenet_head: nn.Module | None = None
        self.categories: list[str] | None = None
        if pretrained_weights is not None:
            enum = torchvision.models.get_model_weights(arch)
            name = pretrained_weights if is_weights_name(pretrained_weights) else "DEFAULT"
            if name not in enum.__members__:
                known = ", ".join(enum.__members__)
                raise ValueError(f"unknown weights '{name}' for {arch}; known: {known}")
            weights = enum[name]
            self.categories = list(weights.meta["categories"])
            if load_weights:
                if pretrained_state is None and name != pretrained_weights:
                    raise ValueError(
                        f"weights from {pretrained_weights} must be fetched first "
                        "(pipeline.models.weights.fetch)"
                    )
                state = pretrained_state if pretrained_state is not None else _load_cached(weights)
                load_strictly(self.backbone, state, arch)
        head_attr = "fc" if hasattr(self.backbone, "fc") else "classifier"
        if pretrained_weights is not None:  # a random ImageNet head would be meaningless
            # Frozen: never trained here, and DDP ignores parameters without grad.
            self.imagenet_head = getattr(self.backbone, head_attr).requires_grad_(False)
        setattr(self.backbone, head_attr, nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)  # (N, 3, H, W) -> (N, out_dim)


def load_strictly(module: nn.Module, state: dict, arch: str) -> None:
    """`module.load_state_dict(state)`, every key; a mismatch is one line naming a few keys."""
    result = module.load_state_dict(state, strict=False)
    problems = []
    for what, keys in (("missing", result.missing_keys), ("unexpected", result.unexpected_keys)):
        if keys:
            shown = ", ".join(keys[:3]) + (", ..." if len(keys) > 3 else "")
            problems.append(f"{len(keys)} {what} keys ({shown})")
    if problems:
        raise ValueError(f"the weights do not fit {arch}: {'; '.join(problems)}")


@register_encoder("small_cnn")
def small_cnn(
    *, pretrained_weights: str | None = None, load_weights: bool = True, pretrained_state=None
) -> SmallCNN:
    if pretrained_weights is not None:
        raise ValueError("small_cnn has no pretrained weights; set pretrained_weights=None")
    return SmallCNN()


def _register_torchvision(arch: str, out_dim: int) -> None:
    @register_encoder(arch)
    def build(
        *, pretrained_weights: str | None = None, load_weights: bool = True, pretrained_state=None
    ) -> TorchvisionEncoder:
        return TorchvisionEncoder(arch, out_dim, pretrained_weights, load_weights, pretrained_state)


for _arch, _dim in (
    ("resnet18", 512),
    ("resnet50", 2048),
    ("mobilenet_v3_small", 576),
    ("efficientnet_b0", 1280),
):
    _register_torchvision(_arch, _dim)
