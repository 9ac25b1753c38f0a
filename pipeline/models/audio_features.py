"""Log-mel spectrograms of clip audio, in torch, on whatever device the model runs on.

torchaudio has no release for this project's torch (its newest pins an older torch), and
librosa would bring numba and SciPy for one filter bank, so the spectrogram is `torch.stft` and
a triangular mel filter bank (the HTK mel scale, as torchaudio's default). On a GPU actor it
runs beside the model, where the clip's samples already are: the decode tasks only read the
samples, which are smaller than their spectrogram.

PANNs' Cnn14 (pipeline.models.audio_encoders) was trained on librosa's default filters instead:
the Slaney mel scale (linear below 1 kHz, logarithmic above) with area-normalised triangles
between fmin and fmax. `slaney_mel_filters` rebuilds them in numpy so its checkpoint sees the
spectrogram it learnt from.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

N_MELS = 64
WINDOW_S = 0.025  # 25 ms windows, 10 ms apart: the usual frames of sound-event models
HOP_S = 0.010
FLOOR = 1e-10  # power added before the log: silence is log(FLOOR), not -inf


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


@functools.lru_cache(maxsize=8)
def mel_filters(rate: int, n_fft: int, n_mels: int = N_MELS) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) triangles, evenly spaced on the mel scale from 0 Hz to the
    Nyquist frequency, each peaking at 1."""
    bins = np.fft.rfftfreq(n_fft, 1.0 / rate)
    edges = mel_to_hz(np.linspace(0.0, hz_to_mel(rate / 2), n_mels + 2))
    low, centre, high = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins[None, :] - low) / np.maximum(centre - low, 1e-9)
    falling = (high - bins[None, :]) / np.maximum(high - centre, 1e-9)
    return np.clip(np.minimum(rising, falling), 0.0, None).astype(np.float32)


_SLANEY_HZ_PER_MEL = 200.0 / 3  # linear part, below 1 kHz: 15 mels at 1 kHz
_SLANEY_BREAK_HZ = 1000.0
_SLANEY_BREAK_MEL = _SLANEY_BREAK_HZ / _SLANEY_HZ_PER_MEL
_SLANEY_LOG_STEP = np.log(6.4) / 27.0  # above 1 kHz: 27 mels per factor of 6.4


def hz_to_slaney_mel(hz: np.ndarray | float) -> np.ndarray:
    hz = np.asarray(hz, dtype=np.float64)
    above = _SLANEY_BREAK_MEL + np.log(np.maximum(hz / _SLANEY_BREAK_HZ, 1.0)) / _SLANEY_LOG_STEP
    return np.where(hz >= _SLANEY_BREAK_HZ, above, hz / _SLANEY_HZ_PER_MEL)


def slaney_mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    above = _SLANEY_BREAK_HZ * np.exp(_SLANEY_LOG_STEP * np.maximum(mel - _SLANEY_BREAK_MEL, 0.0))
    return np.where(mel >= _SLANEY_BREAK_MEL, above, mel * _SLANEY_HZ_PER_MEL)


@functools.lru_cache(maxsize=8)
def slaney_mel_filters(rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) triangles evenly spaced on the Slaney mel scale from fmin to fmax,
    each scaled to 2 / (its width in Hz), so that every band integrates to 1 over frequency:
    what librosa.filters.mel makes by default (htk=False, norm="slaney")."""
    bins = np.fft.rfftfreq(n_fft, 1.0 / rate)
    edges = slaney_mel_to_hz(
        np.linspace(hz_to_slaney_mel(fmin), hz_to_slaney_mel(fmax), n_mels + 2)
    )
    low, centre, high = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins[None, :] - low) / (centre - low)
    falling = (high - bins[None, :]) / (high - centre)
    triangles = np.clip(np.minimum(rising, falling), 0.0, None)
    return (triangles * (2.0 / (high - low))).astype(np.float32)


def log_mel(samples: torch.Tensor, rate: int, n_mels: int = N_MELS) -> torch.Tensor:
    """(B, N) mono samples -> (B, n_mels, frames) natural-log mel power, frames = N / hop + 1."""
    win = round(WINDOW_S * rate)
    hop = round(HOP_S * rate)
    n_fft = 1 << (win - 1).bit_length()  # the next power of two
    window = torch.hann_window(win, device=samples.device, dtype=samples.dtype)
    spectrum = torch.stft(
        samples, n_fft, hop_length=hop, win_length=win, window=window, return_complex=True
    )
    power = spectrum.real**2 + spectrum.imag**2  # (B, n_fft // 2 + 1, frames)
    filters = torch.from_numpy(mel_filters(rate, n_fft, n_mels)).to(samples.device, samples.dtype)
    return torch.log(filters @ power + FLOOR)
