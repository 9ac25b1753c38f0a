"""Audio encoders (pipeline.models.audio_encoders): registry, tokens in time, weights, filters."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.models.audio_encoders import CNN14_FMAX, CNN14_FMIN, Cnn14
from pipeline.models.audio_features import (
    N_MELS,
    hz_to_slaney_mel,
    slaney_mel_filters,
    slaney_mel_to_hz,
)
from pipeline.models.registry import (
    BUILTIN_AUDIO_ENCODERS,
    get_audio_encoder_builder,
    is_known,
    list_audio_encoders,
    register_audio_encoder,
)
from pipeline.video.audio import RATE

SECONDS = 4


def tone(seconds: float, hz: float = 1000.0, amplitude: float = 0.5) -> torch.Tensor:
    t = torch.arange(int(seconds * RATE), dtype=torch.float64) / RATE
    return (amplitude * torch.sin(2 * torch.pi * hz * t)).float()


def silence(seconds: float) -> torch.Tensor:
    return torch.zeros(int(seconds * RATE))


def run(model: torch.nn.Module, samples: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(samples)


@pytest.fixture(scope="module")
def cnn14() -> Cnn14:
    """One random Cnn14 (80M parameters: built once), its BatchNorm statistics made non-trivial
    so that loading them shows in the outputs."""
    torch.manual_seed(0)
    model = get_audio_encoder_builder("cnn14")(out_dim=8)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return model.eval()


def test_registry_knows_the_audio_encoders() -> None:
    assert list_audio_encoders() == ["audio_cnn", "cnn14"] == sorted(BUILTIN_AUDIO_ENCODERS)
    assert is_known("audio_encoder", "audio_cnn") and is_known("audio_encoder", "cnn14")
    known = "known: audio_cnn, cnn14"
    with pytest.raises(ValueError, match=f"unknown audio encoder 'vggish'; {known}"):
        is_known("audio_encoder", "vggish")
    with pytest.raises(ValueError, match=f"unknown audio encoder 'vggish'; {known}"):
        get_audio_encoder_builder("vggish")
    with pytest.raises(ValueError, match="unknown registry kind 'sound'"):
        is_known("sound", "audio_cnn")
    with pytest.raises(ValueError, match="audio encoder 'cnn14' is already registered"):
        register_audio_encoder("cnn14")(lambda: None)


def test_audio_cnn_tokens_follow_time() -> None:
    torch.manual_seed(0)
    model = get_audio_encoder_builder("audio_cnn")(out_dim=32)
    assert (model.out_dim, model.rate) == (32, RATE)
    half = SECONDS / 2
    quiet_loud = torch.cat([silence(half), tone(half)])
    batch = torch.stack([quiet_loud, quiet_loud.flip(0), silence(SECONDS)])
    tokens = run(model, batch)
    assert tokens.shape[0] == 3 and tokens.shape[2] == 32 and tokens.shape[1] > 1
    assert_time_order(tokens)


def test_cnn14_tokens_follow_time(cnn14: Cnn14) -> None:
    assert (cnn14.out_dim, cnn14.rate) == (8, RATE)
    half = SECONDS / 2
    quiet_loud = torch.cat([silence(half), tone(half)])
    tokens = run(cnn14, torch.stack([quiet_loud, quiet_loud.flip(0), silence(SECONDS)]))
    assert tokens.shape[0] == 3 and tokens.shape[2] == 8 and tokens.shape[1] > 1
    assert_time_order(tokens)


def assert_time_order(tokens: torch.Tensor) -> None:
    """tokens of (silent then loud, loud then silent, silent): each clip's silent end has the
    silent clip's tokens there, its loud end does not."""
    quiet_loud, loud_quiet, quiet = tokens

    def same(a: torch.Tensor, b: torch.Tensor) -> bool:
        return torch.allclose(a, b, rtol=1e-4, atol=1e-4 * float(quiet.abs().max()))

    assert same(quiet_loud[0], quiet[0]) and not same(quiet_loud[-1], quiet[-1])
    assert same(loud_quiet[-1], quiet[-1]) and not same(loud_quiet[0], quiet[0])


def test_audio_cnn_weights_load_strictly(tmp_path) -> None:
    build = get_audio_encoder_builder("audio_cnn")
    torch.manual_seed(0)
    trained = build(out_dim=16)
    trained.train()(torch.randn(2, RATE))  # moves the BatchNorm statistics off their defaults
    torch.save(trained.state_dict(), tmp_path / "audio_cnn.pt")
    state = torch.load(tmp_path / "audio_cnn.pt", weights_only=True)
    loaded = build(out_dim=16, weights=state)
    clip = torch.cat([silence(1), tone(1, 440)])[None]
    assert torch.equal(run(trained, clip), run(loaded, clip))

    with pytest.raises(ValueError, match=r"do not fit audio_cnn: missing proj\.bias$"):
        build(out_dim=16, weights={k: v for k, v in state.items() if k != "proj.bias"})
    with pytest.raises(ValueError, match=r"do not fit audio_cnn: unexpected head\.weight$"):
        build(out_dim=16, weights={**state, "head.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match=r"wrong shape proj\.weight \(16, 128\) for \(8, 128\)"):
        build(out_dim=8, weights=state)
    with pytest.raises(ValueError, match="do not fit audio_cnn: got a Tensor, not a state dict"):
        build(out_dim=16, weights=state["proj.weight"])


def test_cnn14_loads_a_panns_checkpoint(cnn14: Cnn14, tmp_path) -> None:
    # PANNs' file: {"model": Cnn14's state dict with its front end and AudioSet head, ...}
    panns = {k: v for k, v in cnn14.state_dict().items() if not k.startswith("proj.")}
    panns["spectrogram_extractor.stft.conv_real.weight"] = torch.zeros(257, 1, 512)
    panns["spectrogram_extractor.stft.conv_imag.weight"] = torch.zeros(257, 1, 512)
    panns["logmel_extractor.melW"] = torch.zeros(257, N_MELS)
    panns["fc_audioset.weight"] = torch.zeros(527, 2048)
    panns["fc_audioset.bias"] = torch.zeros(527)
    torch.save({"model": panns, "iteration": 0}, tmp_path / "Cnn14_16k.pth")
    weights = torch.load(tmp_path / "Cnn14_16k.pth", weights_only=True)

    loaded = get_audio_encoder_builder("cnn14")(out_dim=8, weights=weights)
    loaded.proj.load_state_dict(cnn14.proj.state_dict())  # the projection is new: not in the file
    clip = torch.cat([silence(0.5), tone(0.5, 440)])[None]
    assert torch.equal(run(cnn14, clip), run(loaded, clip))


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        ("audio_cnn", r"Cnn14 state dict: missing conv_block1\.conv1\.weight, .*; unexpected feat"),
        ("fc1", r"not a PANNs Cnn14 state dict: wrong shape fc1\.weight \(512, 512\)"),
    ],
)
def test_cnn14_rejects_other_weights(cnn14: Cnn14, wrong: str, message: str) -> None:
    if wrong == "audio_cnn":
        state = get_audio_encoder_builder("audio_cnn")(out_dim=8).state_dict()
    else:
        state = {**cnn14.state_dict(), "fc1.weight": torch.zeros(512, 512)}
    with pytest.raises(ValueError, match=message):
        get_audio_encoder_builder("cnn14")(out_dim=8, weights={"model": state})


def test_cnn14_front_end_in_db(cnn14: Cnn14) -> None:
    mel = cnn14.log_mel(torch.stack([tone(1, 1000), silence(1)]))
    assert mel.shape == (2, 1, 101, N_MELS)  # PANNs' layout: (B, 1, frames, mel bins)
    edges = slaney_mel_to_hz(
        np.linspace(hz_to_slaney_mel(CNN14_FMIN), hz_to_slaney_mel(CNN14_FMAX), N_MELS + 2)
    )
    loudest = int(mel[0, 0].mean(dim=0).argmax())
    assert abs(edges[1 + loudest] - 1000) < edges[2 + loudest] - edges[loudest]
    assert torch.equal(mel[1], torch.full_like(mel[1], -100.0))  # 10 log10(1e-10)


def test_slaney_mel_filters() -> None:
    rate, n_fft, fmin, fmax = RATE, 512, 50.0, 8000.0
    filters = slaney_mel_filters(rate, n_fft, N_MELS, fmin, fmax)
    bins = np.fft.rfftfreq(n_fft, 1 / rate)
    assert filters.shape == (N_MELS, n_fft // 2 + 1) and filters.dtype == np.float32
    # the Slaney scale: 3 bands per 200 Hz to 1 kHz (15 mels), then 27 mels per factor 6.4
    np.testing.assert_allclose(hz_to_slaney_mel([200.0, 1000.0, 6400.0]), [3.0, 15.0, 42.0])
    np.testing.assert_allclose(slaney_mel_to_hz(hz_to_slaney_mel([60.0, 3000.0])), [60.0, 3000.0])
    # nothing outside [fmin, fmax]
    assert not filters[:, bins <= fmin].any() and not filters[:, bins >= fmax].any()
    assert (filters >= 0).all()
    # triangles between mel-evenly spaced edges, each scaled to 2 / width: area 1
    edges = slaney_mel_to_hz(np.linspace(hz_to_slaney_mel(fmin), hz_to_slaney_mel(fmax), 66))
    low, centre, high = edges[:-2], edges[1:-1], edges[2:]
    peak_bins = bins[filters.argmax(axis=1)]
    assert (np.abs(peak_bins - centre) <= rate / n_fft).all()  # peaks at the centres' bins
    assert (filters.max(axis=1) <= 2 / (high - low) + 1e-7).all()
    area = filters.sum(axis=1) * rate / n_fft
    wide = (high - low) > 15 * rate / n_fft  # sampled finely enough for a sum to integrate
    assert np.allclose(area, 1, atol=0.12) and np.allclose(area[wide], 1, atol=0.01)
    # values of librosa.filters.mel(sr=16000, n_fft=512, n_mels=64, fmin=50, fmax=8000)
    for band, peak_bin, peak, total in [
        (0, 3, 0.021006435, 0.034821760),
        (9, 16, 0.018855862, 0.032671187),
        (31, 54, 0.011707317, 0.032283500),
        (63, 244, 0.0027257281, 0.031957336),
    ]:
        assert filters[band].argmax() == peak_bin
        np.testing.assert_allclose(
            [filters[band, peak_bin], filters[band].sum()], [peak, total], rtol=1e-6
        )


def test_front_ends_run_in_float32_under_autocast() -> None:
    torch.manual_seed(0)
    model = get_audio_encoder_builder("audio_cnn")(out_dim=8).eval()
    loud = tone(1, 300, amplitude=1.0)[None] * 8  # power beyond float16's range
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.float16):
        tokens = model(loud)
    assert torch.isfinite(tokens).all()
    with pytest.raises(ValueError, match=r"mono samples of shape \(B, N\), got \(16000,\)"):
        model(tone(1))
