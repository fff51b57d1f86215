"""MFCC features, computed inside the model on its device.

Pure functions do the work (``power_spectrogram``, ``log_mel``, ``mfcc``); the ``MFCC``
module only holds the window, mel filterbank and DCT matrix as buffers. Frames never cross
the end of the signal (no centring): frame ``t`` covers samples ``[t*hop, t*hop + n_fft)``,
so a frame's value does not depend on padding or on how audio was chunked. The log uses a
fixed floor, never a level relative to the clip's maximum.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torchaudio.functional as AF
from torch import Tensor, nn


@dataclass(frozen=True)
class FeatureConfig:
    """MFCC settings.

    Attributes:
        sample_rate: input rate in Hz.
        n_fft: window and FFT length in samples (480 = 30 ms).
        hop_length: frame step in samples (160 = 10 ms).
        n_mels: mel bands.
        n_mfcc: cepstral coefficients kept.
        f_min: lowest mel band edge in Hz.
        f_max: highest mel band edge in Hz.
        log_floor: power floor before the log, so silence maps to a fixed value.
    """

    sample_rate: int = 16000
    n_fft: int = 480
    hop_length: int = 160
    n_mels: int = 40
    n_mfcc: int = 40
    f_min: float = 20.0
    f_max: float = 7600.0
    log_floor: float = 1e-6

    def num_frames(self, num_samples: Tensor | int) -> Tensor | int:
        """Frames produced for a signal of ``num_samples`` (at least one)."""
        if isinstance(num_samples, Tensor):
            frames = torch.div(num_samples - self.n_fft, self.hop_length, rounding_mode="floor")
            return (frames + 1).clamp(min=1)
        return max(1, (num_samples - self.n_fft) // self.hop_length + 1)

    def to_dict(self) -> dict:
        return asdict(self)


def power_spectrogram(
    wave: Tensor, window: Tensor, n_fft: int, hop_length: int, real_stft: bool = False
) -> Tensor:
    """Power spectrum of full frames only.

    Args:
        wave: (B, N) float waveforms; shorter than ``n_fft`` is zero-padded to one frame.
        window: (n_fft,) analysis window.
        real_stft: take the STFT as (real, imaginary) pairs instead of complex numbers;
            same values, and the form ONNX's STFT operator exports from.

    Returns:
        (B, n_fft // 2 + 1, T) power, ``T = 1 + (N - n_fft) // hop_length``.
    """
    if wave.shape[-1] < n_fft:
        wave = nn.functional.pad(wave, (0, n_fft - wave.shape[-1]))
    if real_stft:
        pairs = torch.stft(
            wave, n_fft, hop_length, window=window, center=False, return_complex=False
        )  # (B, F, T, 2)
        return pairs.square().sum(-1)
    spec = torch.stft(
        wave, n_fft, hop_length, window=window, center=False, return_complex=True
    )  # (B, F, T)
    return spec.real.square() + spec.imag.square()


def log_mel(power: Tensor, fbank: Tensor, floor: float) -> Tensor:
    """Log-mel energies in dB with a fixed floor.

    Args:
        power: (B, F, T) power spectrum.
        fbank: (F, n_mels) mel filterbank.

    Returns:
        (B, T, n_mels) ``10 * log10(max(mel, floor))``.
    """
    mel = torch.matmul(power.transpose(1, 2), fbank)  # (B, T, n_mels)
    return 10.0 * torch.log10(mel.clamp(min=floor))


def mfcc(
    wave: Tensor,
    window: Tensor,
    fbank: Tensor,
    dct: Tensor,
    n_fft: int,
    hop_length: int,
    log_floor: float,
    real_stft: bool = False,
) -> Tensor:
    """MFCCs of a batch of waveforms.

    Args:
        wave: (B, N) waveforms in [-1, 1] at ``config.sample_rate``.
        window: (n_fft,) Hann window.
        fbank: (n_fft // 2 + 1, n_mels) mel filterbank.
        dct: (n_mels, n_mfcc) orthonormal DCT-II matrix.
        real_stft: see ``power_spectrogram``.

    Returns:
        (B, T, n_mfcc) coefficients.
    """
    power = power_spectrogram(wave, window, n_fft, hop_length, real_stft)
    return torch.matmul(log_mel(power, fbank, log_floor), dct)


class MFCC(nn.Module):
    """MFCC frontend: (B, N) waveforms -> (B, T, n_mfcc), on whatever device it lives on.

    Attributes:
        real_stft: compute the STFT in the form ONNX export supports (set for export).
    """

    def __init__(self, config: FeatureConfig | None = None) -> None:
        super().__init__()
        c = self.config = config or FeatureConfig()
        self.n_fft, self.hop_length, self.log_floor = c.n_fft, c.hop_length, c.log_floor
        self.real_stft = False
        fbank = AF.melscale_fbanks(
            c.n_fft // 2 + 1, c.f_min, c.f_max, c.n_mels, c.sample_rate, "slaney", "slaney"
        )
        self.register_buffer("window", torch.hann_window(c.n_fft), persistent=False)
        self.register_buffer("fbank", fbank, persistent=False)
        self.register_buffer("dct", AF.create_dct(c.n_mfcc, c.n_mels, "ortho"), persistent=False)

    def forward(self, wave: Tensor) -> Tensor:
        """(B, N) waveforms -> (B, T, n_mfcc)."""
        return mfcc(
            wave.float(), self.window, self.fbank, self.dct,
            self.n_fft, self.hop_length, self.log_floor, self.real_stft,
        )  # fmt: skip
