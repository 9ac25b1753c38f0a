"""Audio encoders `(B, N)` 16 kHz mono samples -> `(B, Ta, D)` tokens along time.

Tokens, not one vector: a fusion layer attends over when things sound, and their mean is the
clip's sound embedding. Each encoder computes its spectrogram itself, on the samples' device, in
float32 even under autocast (a power spectrum overflows float16). Two of them:

- `audio_cnn`: a small CNN over our log-mel (pipeline.models.audio_features), trained here;
  cheap enough to run beside the frame encoder on a CPU.
- `cnn14`: PANNs' Cnn14 (Kong et al. 2020) with the front end of its 16 kHz AudioSet checkpoint,
  its module names kept so that checkpoint loads as is, plus a new projection to `out_dim`.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.models.audio_features import N_MELS, log_mel, slaney_mel_filters
from pipeline.models.registry import register_audio_encoder
from pipeline.video.audio import RATE


def _float32(samples: torch.Tensor) -> torch.Tensor:
    if samples.ndim != 2:
        raise ValueError(f"expected mono samples of shape (B, N), got {tuple(samples.shape)}")
    return samples.float()


def _load_exactly(module: nn.Module, state: Mapping, what: str, skip: tuple[str, ...] = ()) -> None:
    """Load every tensor of `module` (less the `skip` prefixes) from `state` and nothing else;
    a mismatch is a one-line ValueError that starts with `what` and names a few keys."""
    if not isinstance(state, Mapping):
        raise ValueError(f"{what}: got a {type(state).__name__}, not a state dict")
    own = {k: v for k, v in module.state_dict().items() if not k.startswith(skip)}
    # BatchNorm's batch counters only steer momentum=None; files saved without them still fit
    missing = [k for k in own if k not in state and not k.endswith(".num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k} {tuple(getattr(state[k], 'shape', ()))} for {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and tuple(getattr(state[k], "shape", ())) != tuple(v.shape)
    ]
    problems = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)):
        if keys:
            more = f", ... ({len(keys)} in all)" if len(keys) > 3 else ""
            problems.append(f"{label} {', '.join(keys[:3])}{more}")
    if problems:
        raise ValueError(f"{what}: {'; '.join(problems)}")
    module.load_state_dict(dict(state), strict=False)


class AudioCNN(nn.Module):
    """Four conv3x3-BN-ReLU-pool2x2 blocks over the log-mel, then the mean over frequency.

    `bn0` standardises each mel band (PANNs' choice): log power spans silence's log(1e-10) to
    loud sound's ~+5, and bands differ in level. 2x2 pooling keeps time at 160 ms per token, fine
    enough for a sweep's direction (a slope the convolutions see) and for when a sound starts."""

    def __init__(self, out_dim: int) -> None:
        super().__init__()
        self.out_dim = out_dim
        self.rate = RATE
        self.bn0 = nn.BatchNorm1d(N_MELS)
        blocks: list[nn.Module] = []
        for c_in, c_out in ((1, 16), (16, 32), (32, 64), (64, 128)):
            blocks += [
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
                nn.AvgPool2d(2),
            ]
        self.features = nn.Sequential(*blocks)
        self.proj = nn.Linear(128, out_dim)

    def forward(self, samples: torch.Tensor) -> torch.Tensor:
        samples = _float32(samples)
        with torch.autocast(samples.device.type, enabled=False):
            mel = self.bn0(log_mel(samples, self.rate))  # (B, mels, frames)
        x = self.features(mel.unsqueeze(1))  # (B, 128, mels / 16, frames / 16)
        return self.proj(x.mean(dim=2).transpose(1, 2))  # (B, Ta, out_dim)


@register_audio_encoder("audio_cnn")
def audio_cnn(*, out_dim: int, weights: dict | None = None) -> AudioCNN:
    """`weights`: a state dict of this module (a trained one's), loaded strictly."""
    model = AudioCNN(out_dim)
    if weights is not None:
        _load_exactly(model, weights, "the weights do not fit audio_cnn")
    return model


# PANNs' 16 kHz checkpoint (Cnn14_16k_mAP=0.438.pth) was trained on these
CNN14_WINDOW = 512
CNN14_HOP = 160
CNN14_FMIN = 50.0
CNN14_FMAX = 8000.0
CNN14_AMIN = 1e-10
# keys of PANNs' file that are not weights of ours: its fixed front end and its AudioSet head
_PANNS_ONLY = ("spectrogram_extractor.", "logmel_extractor.", "fc_audioset.")


class ConvBlock(nn.Module):
    """PANNs' ConvBlock: (conv3x3 without bias, BN, ReLU) twice, then average pooling."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        nn.init.xavier_uniform_(self.conv1.weight)  # PANNs' init, for a model trained from scratch
        nn.init.xavier_uniform_(self.conv2.weight)

    def forward(self, x: torch.Tensor, pool: int) -> torch.Tensor:
        x = F.relu_(self.bn1(self.conv1(x)))
        x = F.relu_(self.bn2(self.conv2(x)))
        return F.avg_pool2d(x, pool)


class Cnn14(nn.Module):
    """PANNs' Cnn14, its pooled clip vector replaced by `fc1` on every time step: tokens.

    The front end is PANNs' (torchlibrosa's) in torch: periodic Hann STFT of 512 (centred,
    reflect-padded), power, librosa's Slaney mel filters from 50 Hz to 8 kHz, 10 log10; its
    filters are buffers (not in the state dict) so they move with the module. SpecAugment and
    mixup, training-time choices of AudioSet tagging, are left to whoever trains it."""

    def __init__(self, out_dim: int) -> None:
        super().__init__()
        self.out_dim = out_dim
        self.rate = RATE
        window = torch.hann_window(CNN14_WINDOW, periodic=True)
        filters = slaney_mel_filters(RATE, CNN14_WINDOW, N_MELS, CNN14_FMIN, CNN14_FMAX)
        self.register_buffer("window", window, persistent=False)
        self.register_buffer("mel_filters", torch.tensor(filters), persistent=False)
        self.bn0 = nn.BatchNorm2d(N_MELS)
        channels = (1, 64, 128, 256, 512, 1024, 2048)
        for i in range(6):
            self.add_module(f"conv_block{i + 1}", ConvBlock(channels[i], channels[i + 1]))
        self.fc1 = nn.Linear(2048, 2048)
        nn.init.xavier_uniform_(self.fc1.weight)
        nn.init.zeros_(self.fc1.bias)
        self.proj = nn.Linear(2048, out_dim)

    def log_mel(self, samples: torch.Tensor) -> torch.Tensor:
        """(B, N) -> (B, 1, frames, 64) mel power in dB, PANNs' layout."""
        spectrum = torch.stft(
            samples,
            CNN14_WINDOW,
            hop_length=CNN14_HOP,
            window=self.window.float(),
            center=True,
            pad_mode="reflect",
            return_complex=True,
        )
        power = spectrum.real**2 + spectrum.imag**2  # (B, 257, frames)
        mel = torch.matmul(self.mel_filters.float(), power)  # (B, 64, frames)
        return (10.0 * torch.log10(mel.clamp(min=CNN14_AMIN))).transpose(1, 2).unsqueeze(1)

    def forward(self, samples: torch.Tensor) -> torch.Tensor:
        samples = _float32(samples)
        with torch.autocast(samples.device.type, enabled=False):
            x = self.log_mel(samples)
        x = self.bn0(x.transpose(1, 3)).transpose(1, 3)  # mel bands as BN's channels
        for i in range(1, 7):
            x = getattr(self, f"conv_block{i}")(x, pool=1 if i == 6 else 2)
            x = F.dropout(x, p=0.2, training=self.training)
        x = x.mean(dim=3).transpose(1, 2)  # (B, frames / 32, 2048): the mean over frequency
        x = F.dropout(x, p=0.5, training=self.training)  # as PANNs before fc1
        return self.proj(F.relu_(self.fc1(x)))  # (B, Ta, out_dim)


@register_audio_encoder("cnn14")
def cnn14(*, out_dim: int, weights: dict | None = None) -> Cnn14:
    """`weights`: PANNs' checkpoint as torch.load reads it (`{"model": state_dict, ...}`) or its
    bare state dict; the front end and AudioSet head in it are dropped, the rest must fit. `proj`
    is new unless the dict has it too (a state dict of this module). Without weights the net is
    random: 80M parameters that need a lot of sound to train."""
    model = Cnn14(out_dim)
    if weights is not None:
        state = weights.get("model", weights) if isinstance(weights, Mapping) else weights
        skip: tuple[str, ...] = ("proj.",)
        if isinstance(state, Mapping):
            state = {k: v for k, v in state.items() if not k.startswith(_PANNS_ONLY)}
            if any(k.startswith("proj.") for k in state):
                skip = ()  # a state dict of this module, its projection included
        _load_exactly(model, state, "not a PANNs Cnn14 state dict", skip)
    return model
