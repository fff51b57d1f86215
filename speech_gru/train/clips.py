"""The examples of a split: ``Clip`` (a file, its label index and speaker) and the Dataset
that reads them as waveforms of the model's window (one second by default;
``ClipDataset``), generating silence.

``speech_gru.train.data``'s DataModule builds the clips of each split; the samplers and
loaders that feed them to training are ``speech_gru.train.loaders``.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from speech_gru.core.audio import AudioError, info, load_audio, loudest_window, printable
from speech_gru.core.labels import BACKGROUND_NOISE
from speech_gru.train.augment import tile_to
from speech_gru.train.corpus import CLIP_SAMPLES, MAX_CLIP_S
from speech_gru.train.pack import PackedSplit

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Clip:
    """One example: a file (None for generated silence), its label index and speaker."""

    path: Path | None
    label: int
    speaker: str


def subsample(clips: list[Clip], size: int, seed: int) -> list[Clip]:
    """A seeded random subset of ``size`` clips (all of them when fewer)."""
    if size >= len(clips):
        return clips
    order = np.random.default_rng(seed).permutation(len(clips))[:size]
    return [clips[i] for i in sorted(order)]


def readable(clips: list[Clip], jobs: int = 8) -> tuple[list[Clip], list[str], list[str]]:
    """The clips whose files open as audio and are no longer than ``MAX_CLIP_S``.

    Only headers are read (``audio.info``), in threads: about 0.1 ms a file.

    Returns:
        The clips kept; a one-line error for each file that does not open; and one line
        for each file too long to be a clip, naming it and its length.
    """
    files = [c.path for c in clips if c.path is not None]

    def problem(path: Path) -> tuple[str, str] | None:
        try:
            duration = info(path).duration_s
        except AudioError as err:
            return "unreadable", str(err)
        if duration > MAX_CLIP_S:
            return "long", (
                f"{printable(path)}: {duration:.1f} s, a recording (a clip is at most "
                f"{MAX_CLIP_S:g} s; put recordings in {BACKGROUND_NOISE})"
            )
        return None

    with ThreadPoolExecutor(jobs) as pool:
        problems = dict(zip(files, pool.map(problem, files), strict=True))
    kept = [c for c in clips if c.path is None or problems[c.path] is None]
    found = [p for p in problems.values() if p is not None]
    return (
        kept,
        [line for kind, line in found if kind == "unreadable"],
        [line for kind, line in found if kind == "long"],
    )


PAD = -1
"""Sampler index of a padding item: a silent clip with label -1, which counts for nothing."""


class ClipDataset(Dataset):
    """Clips as float32 waveforms of ``samples`` each (cut or zero-padded at the end), with
    their label index.

    Items with no file are silence, cut from the noise recordings at a gain drawn from
    ``(seed, index, draw)``: the training sampler passes ``(index, epoch)`` keys, so
    silence changes every epoch yet a resumed run draws the same; evaluation uses draw 0.
    The key ``PAD`` gives a silent clip labelled -1 (see ``ShardedSampler``).

    Args:
        clips: the examples.
        noise: background recordings for generated silence.
        seed: seed of the generated silence.
        packed: the split's packed clips (see ``speech_gru.train.pack``), read instead of the
            files when present; they must be packed at ``samples``.
        samples: samples per clip: the model's window (``CLIP_SAMPLES``, one second, by
            default).

    Raises:
        ValueError: ``packed`` holds clips of another length.
    """

    def __init__(
        self,
        clips: list[Clip],
        noise: list[np.ndarray] | None = None,
        seed: int = 0,
        packed: PackedSplit | None = None,
        samples: int = CLIP_SAMPLES,
    ) -> None:
        if packed is not None and packed.samples != samples:
            raise ValueError(f"a pack of {packed.samples}-sample clips for {samples}-sample clips")
        self.clips = clips
        self.samples = samples
        self.noise = [tile_to(torch.from_numpy(n), samples).numpy() for n in noise or []]
        self.seed = seed
        self.packed = packed
        self._failed: set[Path] = set()  # files that failed to decode in this process

    def __len__(self) -> int:
        return len(self.clips)

    def silence(self, index: int, draw: int = 0) -> np.ndarray:
        if not self.noise:
            return np.zeros(self.samples, dtype=np.float32)
        rng = np.random.default_rng((self.seed, index, draw))
        rec = self.noise[rng.integers(len(self.noise))]
        start = rng.integers(rec.size - self.samples + 1)
        return rec[start : start + self.samples] * np.float32(rng.uniform(0.0, 1.0))

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[Tensor, int]:
        index, draw = key if isinstance(key, tuple) else (key, 0)
        if index == PAD:
            return torch.zeros(self.samples), -1
        clip = self.clips[index]
        if clip.path is None:
            wave = self.silence(index, draw)
        elif self.packed is None or (wave := self.packed.get(clip.path)) is None:
            try:
                wave = load_audio(clip.path)
            except AudioError as err:  # passed the header check, failed to decode
                if clip.path not in self._failed:
                    self._failed.add(clip.path)
                    log.warning("unreadable clip left out: %s", err)
                return torch.zeros(self.samples), PAD
        return torch.from_numpy(
            loudest_window(wave, self.samples)
        ), clip.label  # a longer phrase clip: its loudest window, not its start
