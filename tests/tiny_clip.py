"""A tiny CLIP in the Hugging Face layout, built from a config with random weights (nothing is
downloaded): for the plumbing of `--encoder clip`, text queries and zero-shot labels. Its
tokenizer is byte-level with no merges (one token per character)."""

from __future__ import annotations

from pathlib import Path

import torch

VOCAB_SPECIALS = ("<|startoftext|>", "<|endoftext|>")


def _byte_alphabet() -> list[str]:
    """The 256 printable characters CLIP's byte-level BPE maps bytes to."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = list(printable), 0
    for b in range(256):
        if b not in printable:
            chars.append(256 + extra)
            extra += 1
    return [chr(c) for c in chars]


def write_tiny_clip(folder: Path, *, seed: int = 0, projection_dim: int = 16) -> Path:
    """CLIPModel.save_pretrained + its tokenizer into `folder`; returns it."""
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    vocab = {token: i for i, token in enumerate(VOCAB_SPECIALS)}
    for suffix in ("", "</w>"):
        for ch in _byte_alphabet():
            vocab.setdefault(ch + suffix, len(vocab))
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[])  # transformers 5: the vocabulary itself
    small = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
    config = CLIPConfig(
        text_config=dict(
            vocab_size=len(vocab), max_position_embeddings=77, bos_token_id=0, eos_token_id=1,
            pad_token_id=1, **small,
        ),
        vision_config=dict(image_size=32, patch_size=8, **small),
        projection_dim=projection_dim,
    )  # fmt: skip
    torch.manual_seed(seed)
    CLIPModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
