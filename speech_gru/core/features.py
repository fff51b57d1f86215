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
    """MFCC settings: the ``model.features`` section of a recipe config.

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

    def complete_frames(self, num_samples: int) -> int:
        """Whole frames in ``num_samples`` samples (0 when fewer than ``n_fft``): what a
        stream can score so far."""
        return complete_frames(num_samples, self.n_fft, self.hop_length)

    def to_dict(self) -> dict:
        return asdict(self)


def complete_frames(num_samples: int, n_fft: int, hop_length: int) -> int:
    """Whole frames of ``n_fft`` samples every ``hop_length`` in ``num_samples`` samples."""
    return 0 if num_samples < n_fft else (num_samples - n_fft) // hop_length + 1


def dft_basis(window: Tensor) -> Tensor:
    """(2F, 1, n_fft) windowed DFT rows, cosines then sines: a Conv1d weight whose
    output at stride ``hop_length`` is the STFT's real and imaginary parts."""
    n_fft = window.numel()
    k = torch.arange(n_fft // 2 + 1, dtype=torch.float64)[:, None]
    angle = 2 * torch.pi * k * torch.arange(n_fft, dtype=torch.float64) / n_fft
    basis = torch.cat([torch.cos(angle), -torch.sin(angle)]) * window.double()
    return basis.float()[:, None, :]


def power_spectrogram(
    wave: Tensor, window: Tensor, n_fft: int, hop_length: int, dft: Tensor | None = None
) -> Tensor:
    """Power spectrum of full frames only.

    Args:
        wave: (B, N) float waveforms; shorter than ``n_fft`` is zero-padded to one frame.
        window: (n_fft,) analysis window.
        dft: ``dft_basis(window)`` to compute the spectrum as one strided convolution
            instead of an FFT: the same values, and what exports to ONNX as a single
            Conv that runs faster in ONNX Runtime than its STFT operator.

    Returns:
        (B, n_fft // 2 + 1, T) power, ``T = 1 + (N - n_fft) // hop_length``.
    """
    if wave.shape[-1] < n_fft:
        wave = nn.functional.pad(wave, (0, n_fft - wave.shape[-1]))
    if dft is not None:
        parts = nn.functional.conv1d(wave[:, None, :], dft, stride=hop_length)  # (B, 2F, T)
        real, imag = parts.chunk(2, dim=1)
        return real.square() + imag.square()
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
    dft: Tensor | None = None,
) -> Tensor:
    """MFCCs of a batch of waveforms.

    Args:
        wave: (B, N) waveforms in [-1, 1] at ``config.sample_rate``.
        window: (n_fft,) Hann window.
        fbank: (n_fft // 2 + 1, n_mels) mel filterbank.
        dct: (n_mels, n_mfcc) orthonormal DCT-II matrix.
        dft: see ``power_spectrogram``.

    Returns:
        (B, T, n_mfcc) coefficients.
    """
    power = power_spectrogram(wave, window, n_fft, hop_length, dft)
    return torch.matmul(log_mel(power, fbank, log_floor), dct)


class MFCC(nn.Module):
    """MFCC frontend: (B, N) waveforms -> (B, T, n_mfcc), on whatever device it lives on.

    Attributes:
        dft: ``None`` (FFT), or after ``use_dft()`` the DFT basis that export to ONNX
            computes the spectrum with (see ``power_spectrogram``).
    """

    def __init__(self, config: FeatureConfig | None = None) -> None:
        super().__init__()
        c = self.config = config or FeatureConfig()
        self.n_fft, self.hop_length, self.log_floor = c.n_fft, c.hop_length, c.log_floor
        self.register_buffer("dft", None, persistent=False)
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
            self.n_fft, self.hop_length, self.log_floor, self.dft,
        )  # fmt: skip

    def use_dft(self) -> None:
        """Compute the spectrum as a strided convolution with ``dft_basis`` from now on."""
        self.register_buffer("dft", dft_basis(self.window), persistent=False)
