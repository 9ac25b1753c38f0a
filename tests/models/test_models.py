"""Tests for pipeline.models: shapes, determinism, registry, config and checkpoints (CPU)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

from pipeline.models import (
    Checkpoint,
    ModelConfig,
    build_model,
    list_encoders,
    list_temporal_heads,
    load_checkpoint,
    model_version,
    save_checkpoint,
)
from pipeline.models.encoders import cached_weights_path
from pipeline.models.registry import (
    BUILTIN_ENCODERS,
    BUILTIN_TEMPORAL,
    get_encoder_builder,
    get_temporal_builder,
    register_encoder,
)

HEADS = ["mean", "lstm", "gru", "attention"]
ENCODERS = ["small_cnn", "resnet18", "resnet50", "mobilenet_v3_small", "efficientnet_b0"]
OUT_DIMS = {"small_cnn": 128, "resnet18": 512, "resnet50": 2048,
            "mobilenet_v3_small": 576, "efficientnet_b0": 1280}  # fmt: skip
SMALL = {"hidden_dim": 32, "attention_heads": 4, "num_classes": 3}


def clip(b: int = 2, t: int = 4, size: int = 64) -> torch.Tensor:
    """Deterministic normalised-looking input `(B, T, 3, H, W)`."""
    x = torch.arange(b * t * 3 * size * size, dtype=torch.float32)
    return (x.reshape(b, t, 3, size, size) % 251) / 251 - 0.5


def run(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        return model.eval()(x)


def test_registry_lists_everything() -> None:
    # clip builds from a CLIPModel folder only: tests/test_clip.py
    assert list_encoders() == sorted([*ENCODERS, "clip"])
    assert list_temporal_heads() == sorted(HEADS)
    # the names the CLI checks without importing torch are the registry's built-ins
    assert {*ENCODERS, "clip"} == BUILTIN_ENCODERS
    assert set(HEADS) == BUILTIN_TEMPORAL


@pytest.mark.parametrize("temporal", HEADS)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_heads_contract_shapes(temporal: str, bidirectional: bool) -> None:
    cfg = ModelConfig(temporal=temporal, bidirectional=bidirectional, num_layers=2, **SMALL)
    model = build_model(cfg, seed=0)
    emb, logits = run(model, clip())
    expected = {"mean": 128, "attention": 32}.get(temporal, 32 * (2 if bidirectional else 1))
    assert emb.shape == (2, expected) and logits.shape == (2, 3)
    assert model.temporal.out_dim == expected
    feats = model.encode_frames(clip())  # (B, T, D)
    assert feats.shape == (2, 4, 128)
    with torch.no_grad():
        emb2, logits2 = model.forward_features(feats)
    torch.testing.assert_close(emb2, emb)
    torch.testing.assert_close(logits2, logits)


@pytest.mark.parametrize("encoder", ENCODERS)
def test_encoders_contract_shapes(encoder: str) -> None:
    model = build_model(ModelConfig(encoder=encoder), seed=0)
    assert model.encoder.out_dim == OUT_DIMS[encoder]
    assert model.encoder.imagenet_head is None and model.encoder.categories is None
    t, size = (2, 64) if encoder in ("small_cnn", "mobilenet_v3_small", "resnet18") else (1, 32)
    emb, logits = run(model, clip(2, t, size))
    assert emb.shape == (2, OUT_DIMS[encoder]) and logits.shape == (2, 8)


@pytest.mark.parametrize("encoder", ["small_cnn", "mobilenet_v3_small"])
def test_channels_last(encoder: str) -> None:
    model = build_model(ModelConfig(encoder=encoder), seed=0).eval()
    ref, _ = run(model, clip())
    model = model.to(memory_format=torch.channels_last)
    emb, _ = run(model, clip())
    torch.testing.assert_close(emb, ref, rtol=1e-4, atol=1e-5)


def test_same_seed_same_model_different_seed_different() -> None:
    cfg = ModelConfig(temporal="gru", **SMALL)
    a, b, c = (build_model(cfg, seed=s) for s in (7, 7, 8))
    labels = ["a", "b", "c"]
    assert model_version(a, cfg, labels) == model_version(b, cfg, labels)
    assert model_version(a, cfg, labels) != model_version(c, cfg, labels)
    assert model_version(a, cfg, labels) != model_version(a, cfg, ["a", "b", "x"])
    assert len(model_version(a, cfg, labels)) == 16
    torch.testing.assert_close(run(a, clip()), run(b, clip()), rtol=0, atol=0)
    assert not torch.allclose(run(a, clip())[0], run(c, clip())[0])


def test_seeded_build_leaves_global_rng_alone() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_model(ModelConfig(), seed=0)
    torch.testing.assert_close(torch.rand(3), expected)


def test_golden_embedding() -> None:
    emb, logits = run(build_model(ModelConfig(), seed=0), clip())
    assert emb.shape == (2, 128)
    assert emb.sum().item() == pytest.approx(3.5553, abs=1e-3)
    first = [0.0, 0.0, 0.0, 0.0, 0.0278, 0.0353, 0.0, 0.0771]
    assert emb[0, :8].tolist() == pytest.approx(first, abs=1e-4)
    golden_logits = [-0.0235, -0.1002, -0.0645, -0.0138, 0.024, -0.0065, 0.0525, -0.052]
    assert logits[0].tolist() == pytest.approx(golden_logits, abs=1e-4)


@pytest.mark.parametrize("temporal", HEADS)
def test_order_sensitivity(temporal: str) -> None:
    model = build_model(ModelConfig(temporal=temporal, **SMALL), seed=0)
    x = clip()
    fwd, _ = run(model, x)
    rev, _ = run(model, x.flip(1))
    if temporal == "mean":
        torch.testing.assert_close(rev, fwd, rtol=1e-5, atol=1e-6)
    else:
        assert not torch.allclose(rev, fwd, atol=1e-4)


def test_attention_too_many_frames() -> None:
    model = build_model(ModelConfig(temporal="attention", max_frames=3, **SMALL), seed=0)
    with pytest.raises(ValueError, match=r"4 frames but max_frames=3"):
        model.forward_features(torch.zeros(1, 4, 128))
    model.forward_features(torch.zeros(1, 3, 128))  # at the limit is fine


def test_registry_errors_list_known_names() -> None:
    known = "clip, efficientnet_b0, mobilenet_v3_small, resnet18, resnet50, small_cnn"
    with pytest.raises(ValueError, match=f"unknown encoder 'resnet19'; known: {known}"):
        get_encoder_builder("resnet19")
    with pytest.raises(ValueError, match="known: attention, gru, lstm, mean"):
        get_temporal_builder("tcn")
    with pytest.raises(ValueError, match="unknown encoder 'resnet19'"):
        ModelConfig(encoder="resnet19")
    with pytest.raises(ValueError, match="already registered"):
        register_encoder("small_cnn")(lambda: None)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_classes": 0}, "num_classes must be an integer >= 1"),
        ({"hidden_dim": -1}, "hidden_dim"),
        ({"max_frames": 2.5}, "max_frames"),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
        ({"temporal": "attention", "hidden_dim": 30}, "divisible by attention_heads"),
        ({"pretrained_weights": ""}, "pretrained_weights"),
        ({"temporal": "lstm", "bidirectional": "yes"}, "bidirectional"),
    ],
)
def test_config_validation(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ModelConfig(**kwargs)


def test_config_dict_round_trip_and_unknown_keys() -> None:
    cfg = ModelConfig(temporal="lstm", bidirectional=True, pretrained_weights="DEFAULT")
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    assert all(v is None or isinstance(v, bool | int | float | str) for v in cfg.to_dict().values())
    with pytest.raises(ValueError, match="unknown ModelConfig keys: colour, size"):
        ModelConfig.from_dict({**cfg.to_dict(), "size": 1, "colour": 2})
    with pytest.raises(ValueError, match="small_cnn has no pretrained weights"):
        build_model(ModelConfig(pretrained_weights="DEFAULT"))


def make_checkpoint(temporal: str = "attention") -> tuple[Checkpoint, nn.Module]:
    cfg = ModelConfig(temporal=temporal, **SMALL)
    model = build_model(cfg, seed=1)
    ckpt = Checkpoint.from_model(
        model, cfg, ["cat", "dog", "car"],
        sampling={"fps": 2.0, "clip_frames": 4, "image_size": 64},
        extra={"val_acc": 0.5, "history": [1, 2]},
    )  # fmt: skip
    return ckpt, model


def test_checkpoint_round_trip_path_and_bytes(tmp_path) -> None:
    ckpt, model = make_checkpoint()
    expected = run(model, clip())
    path = tmp_path / "model.pt"
    save_checkpoint(ckpt, path)
    buf = io.BytesIO()
    save_checkpoint(ckpt, buf)
    buf.seek(0)
    for loaded in (load_checkpoint(path), load_checkpoint(str(path)), load_checkpoint(buf)):
        assert loaded.model == ckpt.model and loaded.labels == ["cat", "dog", "car"]
        assert loaded.sampling == ckpt.sampling and loaded.extra == ckpt.extra
        assert loaded.normalization == {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
        assert loaded.model_version == ckpt.model_version
        torch.testing.assert_close(run(loaded.build_model(), clip()), expected, rtol=0, atol=0)


@pytest.mark.parametrize("temporal", ["mean", "lstm", "gru", "attention"])
def test_checkpoint_names_its_embedding_size_without_a_build(temporal) -> None:
    """The index job's driver reads a checkpoint's embedding size off its classifier's
    weights: the size of what the rebuilt model's temporal head puts out."""
    ckpt, _ = make_checkpoint(temporal)
    assert ckpt.embedding_dim == ckpt.build_model().temporal.out_dim
    headless = {k: v for k, v in ckpt.state_dict.items() if not k.startswith("classifier.")}
    with pytest.raises(ValueError, match="not a reelay VideoModel"):
        _ = replace(ckpt, state_dict=headless).embedding_dim


def test_checkpoint_validation() -> None:
    ckpt, model = make_checkpoint("mean")
    with pytest.raises(ValueError, match="2 labels but model.num_classes=3"):
        Checkpoint.from_model(model, ckpt.model, ["a", "b"], sampling={})
    with pytest.raises(ValueError, match="not plain data"):
        Checkpoint.from_model(model, ckpt.model, ["a", "b", "c"], sampling={"f": object()})


def test_tampered_checkpoint_is_rejected(tmp_path) -> None:
    ckpt, _ = make_checkpoint()
    data = ckpt.to_dict()
    data["state_dict"]["classifier.bias"] = data["state_dict"]["classifier.bias"] + 1e-3
    path = tmp_path / "tampered.pt"
    torch.save(data, path)
    with pytest.raises(ValueError, match="corrupt or was modified"):
        load_checkpoint(path)


def test_wrong_format_and_version(tmp_path) -> None:
    ckpt, _ = make_checkpoint("mean")
    for patch, message in (
        ({"format": "other"}, "is not a reelay checkpoint"),
        ({"format_version": 99}, "unsupported checkpoint format_version 99"),
    ):
        buf = io.BytesIO()
        torch.save({**ckpt.to_dict(), **patch}, buf)
        buf.seek(0)
        with pytest.raises(ValueError, match=message):
            load_checkpoint(buf)
    with pytest.raises(ValueError, match="not a reelay checkpoint"):
        load_checkpoint(io.BytesIO(b"not a torch file"))


class _Exploit:
    """Unpickling this would run a shell command."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickled_code_is_refused(tmp_path) -> None:
    marker = tmp_path / "pwned"
    ckpt, _ = make_checkpoint("mean")
    path = tmp_path / "evil.pt"
    torch.save({**ckpt.to_dict(), "extra": {"payload": _Exploit(str(marker))}}, path)
    with pytest.raises(ValueError, match=r"not plain data \(refused to unpickle\)") as info:
        load_checkpoint(path)
    assert info.value.__cause__ is not None
    assert not marker.exists()


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    """An empty torch cache under tmp_path, with any download attempt failing loudly."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def no_download(*args, **kwargs):
        raise AssertionError("tried to download pretrained weights")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    return tmp_path / "torch"


def test_pretrained_missing_from_cache_raises(offline_hub) -> None:
    cfg = ModelConfig(encoder="resnet18", pretrained_weights="DEFAULT")
    with pytest.raises(RuntimeError, match="not in the torch cache") as info:
        build_model(cfg)
    assert str(offline_hub / "hub" / "checkpoints" / "resnet18-") in str(info.value)
    with pytest.raises(ValueError, match="unknown weights 'IMAGENET9K' for resnet18; known"):
        build_model(ModelConfig(encoder="resnet18", pretrained_weights="IMAGENET9K"))


def test_pretrained_loads_from_cache_and_round_trips(offline_hub, tmp_path) -> None:
    import torchvision

    weights = torchvision.models.MobileNet_V3_Small_Weights.DEFAULT
    path = cached_weights_path(weights)
    assert path.parent == offline_hub / "hub" / "checkpoints"
    path.parent.mkdir(parents=True)
    fake = torchvision.models.mobilenet_v3_small(weights=None)
    torch.save(fake.state_dict(), path)

    cfg = ModelConfig(encoder="mobilenet_v3_small", pretrained_weights="DEFAULT", num_classes=2)
    model = build_model(cfg, seed=0).eval()
    enc = model.encoder
    assert len(enc.categories) == 1000
    torch.testing.assert_close(enc.backbone.features[0][0].weight, fake.features[0][0].weight)
    assert not any(p.requires_grad for p in enc.imagenet_head.parameters())
    with torch.no_grad():  # untrained mean head + ImageNet head = ImageNet logits
        imagenet_logits = enc.imagenet_head(model(clip(1, 2))[0])
    assert imagenet_logits.shape == (1, 1000)

    ckpt = Checkpoint.from_model(model, cfg, ["a", "b"], sampling={})
    buf = io.BytesIO()
    save_checkpoint(ckpt, buf)
    path.unlink()  # rebuilding from a checkpoint must not need the cache
    buf.seek(0)
    rebuilt = load_checkpoint(buf).build_model()
    assert rebuilt.encoder.categories == enc.categories
    torch.testing.assert_close(run(rebuilt, clip(1, 2)), run(model, clip(1, 2)), rtol=0, atol=0)


@pytest.mark.parametrize(("encoder", "imported"), [("small_cnn", False), ("resnet18", True)])
def test_torchvision_is_imported_only_for_its_backbones(encoder: str, imported: bool) -> None:
    """torchvision's import (with torch._dynamo, 2-3 s on 2 cores) is paid by the processes
    that build one of its backbones, not by an inference actor or a training worker that
    builds the small CNN; a checkpoint of it round-trips without it too."""
    probe = (
        "import io, sys; from pipeline.models import ModelConfig, build_model, Checkpoint, "
        "save_checkpoint, load_checkpoint; "
        f"cfg = ModelConfig(encoder={encoder!r}, temporal='gru', num_classes=2); "
        "m = build_model(cfg, seed=0); buf = io.BytesIO(); "
        "save_checkpoint(Checkpoint.from_model(m, cfg, ['a', 'b'], sampling={}), buf); "
        "buf.seek(0); load_checkpoint(buf).build_model(); "
        "print(sorted(n for n in ('torchvision', 'torch._dynamo') if n in sys.modules))"
    )
    repo = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=repo, capture_output=True, text=True, check=True
    )
    expected = "['torch._dynamo', 'torchvision']" if imported else "[]"
    assert done.stdout.strip() == expected, done.stdout + done.stderr
