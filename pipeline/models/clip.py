"""CLIP-family image-text models as a frame encoder (`--encoder clip`), and their text tower for
search by text and zero-shot labels.

The model is a Hugging Face `CLIPModel` folder (`save_pretrained`: config.json,
model.safetensors, the tokenizer's files), read with `transformers`: it loads the OpenAI,
LAION (converted) and fine-tuned CLIPs people keep in that layout, with their tokenizer. The
driver fetches the folder once (pipeline.models.weights); its files reach the actors as bytes
and are rebuilt there from a temporary folder (safetensors: data, never code).

Frames go through the image tower and its projection, L2-normalised: the `mean` head then gives
the usual CLIP video embedding (the mean of its frames'), comparable with the text tower's.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch
from torch import nn

from pipeline.models.registry import register_encoder
from pipeline.storage import one_line

# The folder's files that are read; a folder needs the first two.
REQUIRED_FILES = ("config.json", "model.safetensors")
OPTIONAL_FILES = (
    "preprocessor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
    "merges.txt",
    "special_tokens_map.json",
)
# OpenAI CLIP's normalisation, where the folder has no preprocessor_config.json
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
PROMPT = "a photo of {}."  # zero-shot labels: CLIP's own prompt


class ClipFolder:
    """A CLIPModel folder's files as bytes (file name -> bytes), rebuilt where it is used."""

    def __init__(self, files: dict[str, bytes]) -> None:
        missing = [name for name in REQUIRED_FILES if name not in files]
        if missing:
            raise ValueError(
                f"not a Hugging Face CLIPModel folder: no {', '.join(missing)} (save one with "
                "CLIPModel.save_pretrained(folder) and its processor's save_pretrained)"
            )
        self.files = files

    def normalization(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """(mean, std) of the model's image preprocessing."""
        raw = self.files.get("preprocessor_config.json")
        if raw:
            config = json.loads(raw)
            if "image_mean" in config and "image_std" in config:
                return tuple(config["image_mean"]), tuple(config["image_std"])
        return CLIP_MEAN, CLIP_STD

    def _folder(self, folder: Path) -> Path:
        for name, data in self.files.items():
            (folder / name).write_bytes(data)
        return folder

    def model(self):
        from transformers import CLIPModel

        with tempfile.TemporaryDirectory(prefix="reelay-clip-") as tmp:
            try:
                return CLIPModel.from_pretrained(self._folder(Path(tmp))).eval()
            except Exception as e:  # not a CLIP config, weights that do not fit
                raise ValueError(f"not a loadable CLIPModel ({one_line(e)})") from None

    def tokenizer(self):
        from transformers import AutoTokenizer

        with tempfile.TemporaryDirectory(prefix="reelay-clip-") as tmp:
            try:
                return AutoTokenizer.from_pretrained(self._folder(Path(tmp)))
            except Exception as e:
                raise ValueError(f"the folder has no usable tokenizer ({one_line(e)})") from None


class ClipImageEncoder(nn.Module):
    """Frames -> the image tower's projected, L2-normalised embeddings `(N, projection_dim)`;
    any `--image-size` (the position embeddings are interpolated)."""

    imagenet_head = None
    categories = None

    def __init__(self, clip_model) -> None:
        super().__init__()
        self.clip = clip_model
        self.out_dim = int(clip_model.config.projection_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.clip.vision_model(pixel_values=x, interpolate_pos_encoding=True).pooler_output
        return nn.functional.normalize(self.clip.visual_projection(pooled), dim=-1)


@torch.no_grad()
def text_embeddings(clip_model, tokenizer, texts: list[str]) -> torch.Tensor:
    """`(len(texts), projection_dim)` L2-normalised text-tower embeddings."""
    tokens = tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
    pooled = clip_model.text_model(
        input_ids=tokens["input_ids"], attention_mask=tokens.get("attention_mask")
    ).pooler_output
    return nn.functional.normalize(clip_model.text_projection(pooled), dim=-1)


def zero_shot_classifier(encoder: ClipImageEncoder, folder: ClipFolder, labels: list[str]):
    """A linear layer whose logits for an embedding are CLIP's scaled cosine with each label's
    prompt (exactly, for a normalised embedding; the `mean` head's mean of normalised frame
    embeddings keeps the order of the labels)."""
    texts = text_embeddings(encoder.clip, folder.tokenizer(), [PROMPT.format(x) for x in labels])
    layer = nn.Linear(encoder.out_dim, len(labels))
    with torch.no_grad():
        layer.weight.copy_(texts * encoder.clip.logit_scale.exp())
        layer.bias.zero_()
    return layer.requires_grad_(False)


@register_encoder("clip")
def clip(
    *, pretrained_weights: str | None = None, load_weights: bool = True, pretrained_state=None
) -> ClipImageEncoder:
    """A CLIP image tower from the --weights folder, fetched by the driver (`pretrained_state`:
    its files, a ClipFolder)."""
    if not pretrained_weights:
        raise ValueError("--encoder clip needs --weights: a Hugging Face CLIPModel folder")
    if not load_weights or pretrained_state is None:
        raise ValueError(
            "a clip encoder is built from its --weights folder as fetched by the driver "
            "(pipeline.models.weights.fetch); checkpoints of it are not supported"
        )
    return ClipImageEncoder(pretrained_state.model())
