"""Training-time augmentation, batched on the model's device.

Waveform side (run by the DataModule after the batch reaches the device): speed/pitch
perturbation by resampling, random time shift, background noise at a random SNR. Feature
side (run by the LightningModule): SpecAugment time and frequency masks, and mixup.
Randomness comes from the global torch RNG of the batch's device, which Lightning's
``seed_everything`` seeds.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def speed_perturb(wave: Tensor, low: float, high: float) -> Tensor:
    """Resample each clip by its own random rate in ``[low, high]``, keeping its length.

    A rate above 1 speeds speech up and raises its pitch, as playing a tape faster does.
    The clip is stretched about its centre and zero-filled where the source runs out.

    Args:
        wave: (B, N) waveforms.

    Returns:
        (B, N) perturbed waveforms.
    """
    if low == high == 1.0:
        return wave
    batch, n = wave.shape
    rate = torch.empty(batch, 1, device=wave.device).uniform_(low, high)  # (B, 1)
    centre = (n - 1) / 2
    pos = (torch.arange(n, device=wave.device) - centre) * rate + centre  # (B, N) source index
    # Linear interpolation between the two nearest source samples, zero outside the clip:
    # grid_sample's bilinear mode with zero padding, on the clip as a 1-pixel-high image
    # (positions within about 1e-3 of a sample in float32; six times faster on a CPU than
    # two gathers).
    x = (pos * (2 / max(n - 1, 1)) - 1).to(wave.dtype)
    grid = torch.stack((x, torch.zeros_like(x)), dim=-1)[:, None]  # (B, 1, N, 2)
    out = F.grid_sample(
        wave[:, None, None], grid, mode="bilinear", padding_mode="zeros", align_corners=True
    )
    return out[:, 0, 0]


def time_shift(wave: Tensor, max_shift: int) -> Tensor:
    """Shift each clip by a random whole number of samples in ``[-max_shift, max_shift]``.

    Samples shifted in from outside the clip are zero.

    Args:
        wave: (B, N) waveforms.

    Returns:
        (B, N) shifted waveforms.
    """
    if max_shift <= 0:
        return wave
    shift = torch.randint(-max_shift, max_shift + 1, (wave.shape[0],), device=wave.device)
    return shift_by(wave, shift, max_shift)


def shift_by(wave: Tensor, shift: Tensor, max_shift: int) -> Tensor:
    """Shift clip ``b`` by ``shift[b]`` samples (positive: later), zero-filling.

    Args:
        wave: (B, N) waveforms.
        shift: (B,) integer shifts, each within ``[-max_shift, max_shift]``.

    Returns:
        (B, N) shifted waveforms.
    """
    batch, n = wave.shape
    # Clip b is the length-n window of the zero-padded clip that starts at max_shift - shift.
    windows = F.pad(wave, (max_shift, max_shift)).unfold(1, n, 1)  # (B, 2 * max_shift + 1, N)
    return windows[torch.arange(batch, device=wave.device), max_shift - shift]


def speech_bounds(wave: Tensor, frame: int = 320, top_db: float = 35.0) -> tuple[Tensor, Tensor]:
    """Where the speech of each clip lies: its frames within ``top_db`` of the loudest.

    Args:
        wave: (B, N) waveforms.
        frame: frame length in samples (20 ms at 16 kHz); frames do not overlap.

    Returns:
        (B,) first and (B,) one-past-last sample of the speech, multiples of ``frame``.
        A silent clip spans the whole clip.
    """
    batch, n = wave.shape
    frames = n // frame
    energy = wave[:, : frames * frame].reshape(batch, frames, frame).square().mean(-1)  # (B, F)
    db = 10 * torch.log10(energy + 1e-10)
    active = db >= db.max(-1, keepdim=True).values - top_db  # (B, F), never empty
    index = torch.arange(frames, device=wave.device)
    first = torch.where(active, index, frames).min(-1).values
    last = torch.where(active, index, -1).max(-1).values
    return first * frame, (last + 1) * frame


def _uniform_int(low: Tensor, high: Tensor) -> Tensor:
    """(B,) integers drawn uniformly from ``[low, high]`` per clip (``low <= high``)."""
    span = (high - low + 1).double()
    return low + (torch.rand(low.shape, device=low.device, dtype=torch.float64) * span).long()


def shift_keeping_speech(wave: Tensor, start: Tensor, end: Tensor) -> Tensor:
    """Move each clip's speech to a random place where all of it stays in the window.

    A streaming window holds a word at any offset; Speech Commands clips hold it near the
    middle. The shift is uniform over every position that keeps ``[start, end)`` inside.

    Args:
        wave: (B, N) waveforms.
        start: (B,) first sample of the speech (see ``speech_bounds``).
        end: (B,) one past its last sample.

    Returns:
        (B, N) shifted waveforms.
    """
    n = wave.shape[1]
    low, high = -start, n - end  # shifts that keep the speech inside
    return shift_by(wave, _uniform_int(low, high.maximum(low)), n)


def cut_at_edge(
    wave: Tensor, start: Tensor, end: Tensor, keep: tuple[float, float] = (0.2, 0.6)
) -> Tensor:
    """Slide each clip's speech partly out of the window, at a random edge.

    What a stream's window holds just before and after a word: part of it. Between
    ``keep[0]`` and ``keep[1]`` of the speech stays inside.

    Args:
        wave: (B, N) waveforms.
        start: (B,) first sample of the speech.
        end: (B,) one past its last sample.

    Returns:
        (B, N) waveforms holding part of a word.
    """
    n = wave.shape[1]
    fraction = torch.empty(start.shape, device=wave.device).uniform_(*keep)
    kept = (fraction * (end - start)).long()
    left = torch.rand(start.shape, device=wave.device) < 0.5
    # Left edge: the speech ends ``kept`` samples into the window; right edge: it starts
    # ``kept`` samples before the window's end.
    shift = torch.where(left, kept - end, n - kept - start).clamp(-n, n)
    return shift_by(wave, shift, n)


def surround_word(
    wave: Tensor,
    start: Tensor,
    end: Tensor,
    before: Tensor,
    after: Tensor,
    gap: tuple[float, float] = (0.0, 0.15),
) -> Tensor:
    """Clip ``b``'s word, whole and where it is, heard mid-sentence: the end of clip
    ``before[b]``'s word just before it and the start of clip ``after[b]``'s just after.

    Each neighbour is moved to end (start) a pause of ``gap`` seconds (drawn uniformly)
    before (after) the word; the clip's own samples from that point to the word's end
    plus the pause stay as they were.

    Args:
        wave: (B, N) waveforms.
        start: (B,) first sample of each clip's speech.
        end: (B,) one past its last sample.
        before: (B,) the clip whose word ends just before clip ``b``'s.
        after: (B,) the clip whose word starts just after.

    Returns:
        (B, N) waveforms.
    """
    n = wave.shape[1]
    low, high = (round(g * 16000) for g in gap)
    pause = torch.randint(low, high + 1, (2, *start.shape), device=wave.device)  # (2, B)
    left, right = (start - pause[0]).clamp(min=0), (end + pause[1]).clamp(max=n)  # (B,)
    first = shift_by(wave[before], (left - end[before]).clamp(-n, n), n)
    second = shift_by(wave[after], (right - start[after]).clamp(-n, n), n)
    t = torch.arange(n, device=wave.device)
    out = torch.where(t < left[:, None], first, wave)
    return torch.where(t >= right[:, None], second, out)


def join_words(
    wave: Tensor, start: Tensor, end: Tensor, order: Tensor, where: tuple[float, float] = (0.3, 0.7)
) -> Tensor:
    """The end of one clip's word followed by the start of another's, as a window that
    straddles two words in a stream holds them.

    Clip ``b``'s speech is moved to end at a random point ``c`` of the window, and clip
    ``order[b]``'s to start there; each keeps only its own side of ``c``.

    Args:
        wave: (B, N) waveforms.
        start: (B,) first sample of each clip's speech.
        end: (B,) one past its last sample.
        order: (B,) the clip whose word follows clip ``b``'s.

    Returns:
        (B, N) joined waveforms.
    """
    n = wave.shape[1]
    cut = (torch.empty(start.shape, device=wave.device).uniform_(*where) * n).long()  # (B,)
    first = shift_by(wave, (cut - end).clamp(-n, n), n)
    second = shift_by(wave[order], (cut - start[order]).clamp(-n, n), n)
    before = torch.arange(n, device=wave.device) < cut[:, None]  # (B, N)
    return torch.where(before, first, second)


def tile_to(recording: Tensor, length: int) -> Tensor:
    """Repeat a 1-D recording until it is at least ``length`` samples long."""
    if recording.numel() >= length:
        return recording
    return recording.repeat(math.ceil(length / max(recording.numel(), 1)))


class NoiseBank(nn.Module):
    """Background-noise recordings kept on the device, cut into random segments.

    Args:
        recordings: 1-D float waveforms at the model's rate; each at least ``segment`` long
            (shorter ones are tiled).
        segment: samples per cut segment.
    """

    def __init__(self, recordings: list[Tensor], segment: int) -> None:
        super().__init__()
        if not recordings:
            raise ValueError("a noise bank needs at least one recording")
        tiled = [tile_to(rec.float().flatten(), segment) for rec in recordings]
        lengths = torch.tensor([r.numel() for r in tiled])
        starts = torch.cumsum(lengths, 0) - lengths
        # Valid segment starts of each recording, as one range per recording.
        self.segment = segment
        self.register_buffer("audio", torch.cat(tiled), persistent=False)
        self.register_buffer("rec_start", starts, persistent=False)
        self.register_buffer("rec_choices", lengths - segment + 1, persistent=False)

    def __len__(self) -> int:
        return self.rec_start.numel()

    def sample(self, batch: int) -> Tensor:
        """(batch, segment) random segments, every valid start equally likely."""
        choices = self.rec_choices.double()  # exact for recordings of any length
        rec = torch.multinomial(choices, batch, replacement=True)  # (B,)
        offset = torch.rand(batch, device=choices.device, dtype=torch.float64) * choices[rec]
        offset = offset.long().minimum(self.rec_choices[rec] - 1)
        start = self.rec_start[rec] + offset
        return self.audio.unfold(0, self.segment, 1)[start]  # rows of a strided view


def rms(wave: Tensor) -> Tensor:
    """(B, N) -> (B, 1) root-mean-square level."""
    return wave.square().mean(-1, keepdim=True).sqrt()


def add_noise(wave: Tensor, noise: Tensor, prob: float, snr_low: float, snr_high: float) -> Tensor:
    """Mix ``noise`` into a random ``prob`` share of clips at an SNR in ``[snr_low, snr_high]`` dB.

    Clips with no signal (silence) take the noise at its own level scaled by a random gain
    in [0, 1], so silence examples span quiet to loud backgrounds.

    Args:
        wave: (B, N) clean waveforms.
        noise: (B, N) noise segments.

    Returns:
        (B, N) noisy waveforms.
    """
    batch = wave.shape[0]
    apply = torch.rand(batch, 1, device=wave.device) < prob
    snr_db = torch.empty(batch, 1, device=wave.device).uniform_(snr_low, snr_high)
    signal, noise_level = rms(wave), rms(noise).clamp(min=1e-8)
    gain = signal / noise_level * torch.pow(10.0, -snr_db / 20)
    silent = signal < 1e-4
    gain = torch.where(silent, torch.rand(batch, 1, device=wave.device), gain)
    return wave + noise * gain * apply


def spec_augment(
    feats: Tensor,
    frame_lengths: Tensor,
    time_masks: int,
    time_width: int,
    freq_masks: int,
    freq_width: int,
) -> Tensor:
    """SpecAugment masks on (B, T, F) features, drawn per clip.

    Each of ``time_masks`` masks zeroes up to ``time_width`` consecutive frames inside the
    clip's valid frames; each of ``freq_masks`` zeroes up to ``freq_width`` consecutive
    coefficients. Features are normalised, so zero is their mean.

    Returns:
        (B, T, F) masked features.
    """
    batch, frames, bins = feats.shape
    keep = torch.ones(batch, frames, bins, dtype=torch.bool, device=feats.device)
    t = torch.arange(frames, device=feats.device)
    f = torch.arange(bins, device=feats.device)
    lengths = frame_lengths.to(feats.device)[:, None]
    for _ in range(time_masks):
        width = (torch.rand(batch, 1, device=feats.device) * (time_width + 1)).long()
        start = (torch.rand(batch, 1, device=feats.device) * (lengths - width).clamp(min=1)).long()
        keep &= ~((t >= start) & (t < start + width)).unsqueeze(-1)
    for _ in range(freq_masks):
        width = (torch.rand(batch, 1, device=feats.device) * (freq_width + 1)).long()
        start = (torch.rand(batch, 1, device=feats.device) * (bins - width).clamp(min=1)).long()
        keep &= ~((f >= start) & (f < start + width)).unsqueeze(1)
    return feats * keep


def mixup(
    feats: Tensor, targets: Tensor, num_classes: int, alpha: float
) -> tuple[Tensor, Tensor, Tensor]:
    """Mixup of a batch with a shuffled copy of itself.

    Args:
        feats: (B, ...) inputs.
        targets: (B,) class indices; -1 marks a padding item, whose target row is zero.

    Returns:
        mixed inputs (B, ...), soft targets (B, C) and the permutation used.
    """
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    lam = max(lam, 1 - lam)  # the original clip dominates
    perm = torch.randperm(feats.shape[0], device=feats.device)
    valid = (targets >= 0).unsqueeze(-1)  # padding items (-1) carry no target
    one_hot = nn.functional.one_hot(targets.clamp(min=0), num_classes).float() * valid
    mixed = feats * lam + feats[perm] * (1 - lam)
    return mixed, one_hot * lam + one_hot[perm] * (1 - lam), perm
