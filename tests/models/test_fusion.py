"""Models that hear: the `(frames, audio) -> (embedding, logits)` contract, the embedding's
[picture ; sound] layout, checkpoints, and picture models left exactly as they were."""

from __future__ import annotations

import io

import pytest
import torch

from pipeline.models import Checkpoint, ModelConfig, build_model, load_checkpoint, save_checkpoint
from pipeline.models.config import SOUND_FIELDS

FRAMES = torch.randn(2, 4, 3, 32, 32)
AUDIO = torch.randn(2, 16_000) * 0.1


def test_a_picture_model_is_what_it_was():
    """No sound field in its config dict (so its model_version and the hash checkpoints carry
    are unchanged), no sound weights, and it still takes frames alone."""
    config = ModelConfig(num_classes=3, hidden_dim=16)
    assert not set(SOUND_FIELDS) & set(config.to_dict())
    model = build_model(config, seed=0).eval()
    assert not any(k.startswith(("audio.", "fusion.")) for k in model.state_dict())
    emb, logits = model(FRAMES)
    assert emb.shape == (2, model.embedding_dim) and logits.shape == (2, 3)
    assert model.audio_dim == 0
    assert ModelConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize("fusion", ["concat", "attention"])
def test_a_model_of_both_lays_its_embedding_out_picture_then_sound(fusion):
    config = ModelConfig(num_classes=3, hidden_dim=16, modalities="audio,video", fusion=fusion)
    assert config.modalities == "video,audio"  # one name for one model
    model = build_model(config, seed=0).eval()
    with torch.no_grad():
        emb, logits = model(FRAMES, AUDIO)
        _, other = model(FRAMES, torch.zeros_like(AUDIO))
    assert model.audio_dim == 16 and emb.shape[1] == model.embedding_dim
    assert logits.shape == (2, 3) and not torch.allclose(logits, other)  # the sound counts
    if fusion == "concat":  # the sound's part is the sound's alone
        with torch.no_grad():
            sound = model.fusion.sound_norm(model.encode_audio(AUDIO).mean(dim=1))
        torch.testing.assert_close(emb[:, -16:], sound)


def test_a_model_of_sound_alone_has_no_frame_encoder():
    model = build_model(ModelConfig(num_classes=2, hidden_dim=16, modalities="audio")).eval()
    assert not model.sees and model.encoder is None
    emb, logits = model(None, AUDIO)
    assert emb.shape == (2, 16) and model.audio_dim == model.embedding_dim == 16


def test_checkpoints_of_models_that_hear_round_trip():
    config = ModelConfig(num_classes=2, hidden_dim=16, modalities="video,audio")
    model = build_model(config, seed=1).eval()
    buffer = io.BytesIO()
    save_checkpoint(
        Checkpoint.from_model(model, config, ["a", "b"], sampling={"modalities": "video,audio"}),
        buffer,
    )
    buffer.seek(0)
    ckpt = load_checkpoint(buffer)
    assert ckpt.model == config and ckpt.audio_dim == 16
    assert ckpt.embedding_dim == model.embedding_dim
    with torch.no_grad():
        torch.testing.assert_close(ckpt.build_model()(FRAMES, AUDIO), model(FRAMES, AUDIO))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("modalities", "sound", "modalities must be one of video, audio, video,audio"),
        ("fusion", "sum", "fusion must be one of concat, attention"),
        ("audio_encoder", "wav2vec", "unknown audio encoder 'wav2vec'"),
    ],
)
def test_bad_sound_settings_say_what_is_allowed(field, value, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**{field: value})


def test_audio_weights_come_from_the_file_and_reach_every_actor(tmp_path):
    from pipeline.config import ConfigError, IndexConfig, SamplingConfig
    from pipeline.models.audio_encoders import audio_cnn
    from pipeline.models.source import load_model, untrained_model

    trained = audio_cnn(out_dim=16)
    torch.nn.init.constant_(trained.proj.bias, 0.5)
    torch.save(trained.state_dict(), tmp_path / "sound.pt")

    def config(weights: str) -> IndexConfig:
        model = ModelConfig(hidden_dim=16, modalities="audio", audio_weights=weights)
        sampling = SamplingConfig(modalities="audio")
        return IndexConfig(input_uri="in", output_uri="out", sampling=sampling, model=model)

    model, spec = untrained_model(config(str(tmp_path / "sound.pt")))
    assert torch.equal(model.audio.proj.bias, trained.proj.bias)
    assert spec.model_version.startswith("pretrained-audio_cnn-s0-") and spec.audio_dim == 16
    rebuilt = load_model(spec)  # as an inference actor does, from the bytes the spec carries
    assert torch.equal(rebuilt.audio.proj.bias, trained.proj.bias)
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ConfigError, match="other.pt: the weights do not fit audio_cnn"):
        untrained_model(config(str(tmp_path / "other.pt")))
