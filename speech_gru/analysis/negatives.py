"""The keyword-free ("negative") audio that calibration streams, and its keyword clips.

Negative audio is either recordings the user gives (``from_files``: each streamed on its
own) or one long stream built from a dataset folder's split (``from_dataset``): the clips
of every sub-folder that is not one of the model's keywords (other words, ``_unknown_``,
``_silence_``) and pieces of its ``_background_noise_`` recordings at random gains, in a
seeded order with short gaps of silence between them (``ClipStream``). A split of the
folder can also give keyword clips, each streamed alone, for the hit rate at each
candidate point. ``speech_gru.analysis.calibrate`` chooses the point on what these streams
scored.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from speech_gru.analysis.calibrate import CalibrationError
from speech_gru.analysis.streaming.scores import Stream
from speech_gru.core.audio import (
    AUDIO_EXTENSIONS,
    SAMPLE_RATE,
    AudioError,
    fit_length,
    load_audio,
)
from speech_gru.core.labels import BACKGROUND_NOISE, is_keyword
from speech_gru.runtime.source import open_source
from speech_gru.train.corpus import audio_files, load_noise, split_rule

GAP_S = (0.2, 1.0)
"""Range of the silent gaps before each item of a built negative stream (seconds)."""
NOISE_PIECE_S = (1.0, 4.0)
"""Range of the lengths of the background-noise pieces in a built stream (seconds)."""
NOISE_GAIN = (0.1, 1.0)
"""Range of the gains applied to those pieces."""


@dataclass
class DatasetSplit:
    """The clips of one split of a dataset-layout folder, sorted by the model's labels.

    Attributes:
        root: the folder (one sub-folder per word).
        split: ``training``, ``validation``, ``testing`` or ``all``.
        negatives: clips of sub-folders that are not keywords of the model.
        keywords: (clip, keyword) pairs of the model's keywords.
        noise: the folder's background-noise recordings (every split), mono 16 kHz.
    """

    root: Path
    split: str
    negatives: list[Path]
    keywords: list[tuple[Path, str]]
    noise: list[np.ndarray]


def dataset_split(
    root: str | Path, labels: Sequence[str], split: str, datamodule: dict | None = None
) -> DatasetSplit:
    """Find the clips of one split of a dataset folder.

    The split is the one the model was trained with (``datamodule``: the checkpoint's
    ``datamodule_hyper_parameters``; the data module's defaults when not recorded): for
    ``version: folder`` each speaker's hash with its percentages and salt, else the
    folder's ``validation_list.txt``/``testing_list.txt`` (the hash when it has none).
    ``all`` takes every clip.

    Raises:
        CalibrationError: not a folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise CalibrationError(f"{root}: dataset folder not found")
    split_of = split_rule(root, datamodule)
    keywords = {label for label in labels if is_keyword(label)}
    negatives: list[Path] = []
    clips: list[tuple[Path, str]] = []
    noise: list[np.ndarray] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if folder.name == BACKGROUND_NOISE:
            noise = load_noise(folder)
            continue
        for path in audio_files(folder):
            if split == "all" or split_of(path) == split:
                if folder.name in keywords:
                    clips.append((path, folder.name))
                else:
                    negatives.append(path)
    return DatasetSplit(root, split, negatives, clips, noise)


@dataclass
class ClipStream:
    """Keyword-free clips and noise pieces as one long stream, in a seeded order.

    Each item follows a gap of silence (``GAP_S``); noise recordings are cut into pieces
    (``NOISE_PIECE_S``), each at a random gain (``NOISE_GAIN``). The same clips, noise
    and seed give the same stream.

    Attributes:
        clips: clip files.
        noise: (N,) noise recordings, mono 16 kHz.
        seed: order, gaps, cuts and gains.
        skipped: clips that could not be read (``AudioError`` text), filled while
            streaming.
    """

    clips: Sequence[Path]
    noise: Sequence[np.ndarray] = ()
    seed: int = 0
    skipped: list[str] = field(default_factory=list)

    def chunks(self) -> Iterator[np.ndarray]:
        """The stream, one float32 item (gap included) at a time."""
        rng = np.random.default_rng(self.seed)
        items: list[tuple] = [("clip", path) for path in self.clips]
        for index, recording in enumerate(self.noise):
            start = 0
            while start < recording.size:
                stop = start + round(rng.uniform(*NOISE_PIECE_S) * SAMPLE_RATE)
                items.append(("noise", index, start, stop, rng.uniform(*NOISE_GAIN)))
                start = stop
        self.skipped = []
        for i in rng.permutation(len(items)):
            item = items[i]
            gap = np.zeros(round(rng.uniform(*GAP_S) * SAMPLE_RATE), dtype=np.float32)
            if item[0] == "clip":
                try:
                    audio = load_audio(item[1])
                except AudioError as err:
                    self.skipped.append(str(err))
                    continue
            else:
                _, index, start, stop, gain = item
                audio = gain * self.noise[index][start:stop]
            yield np.concatenate([gap, audio.astype(np.float32)])


def file_streams(inputs: Sequence[str | Path]) -> list[Stream]:
    """Negative recordings given by the user: files, and the audio files under folders.

    Raises:
        CalibrationError: a missing input, or a folder without audio files.
    """
    files: list[Path] = []
    for name in inputs:
        path = Path(name)
        if path.is_dir():
            found = sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS
            )
            if not found:
                raise CalibrationError(f"{path}: no audio files in this folder")
            files += found
        elif path.exists():
            files.append(path)
        else:
            raise CalibrationError(f"{path}: file not found")
    return [Stream(str(p), lambda p=p: iter(open_source(p, block_s=10.0))) for p in files]


def clip_streams(
    clips: Sequence[tuple[Path, str]], count: int, seed: int, window: int = SAMPLE_RATE
) -> list[Stream]:
    """Up to ``count`` keyword clips (a seeded choice), each alone in its own stream: one
    window of silence, the clip fitted to the model's ``window`` samples (one second by
    default), one window of silence."""
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(len(clips), min(count, len(clips)), replace=False))
    silence = np.zeros(window, dtype=np.float32)

    def chunks(path: Path) -> Iterator[np.ndarray]:
        yield np.concatenate([silence, fit_length(load_audio(path), window), silence])

    return [Stream(str(clips[i][0]), lambda p=clips[i][0]: chunks(p), clips[i][1]) for i in chosen]


@dataclass
class NegativeAudio:
    """What calibration streams.

    Attributes:
        negatives: keyword-free streams.
        keywords: one-clip keyword streams, for the hit rate (may be empty).
        source: the negative audio in words (stored with the operating point).
        clip_stream: the built stream, when built from clips (its ``skipped`` clips are
            known once it has been streamed).
    """

    negatives: list[Stream]
    keywords: list[Stream]
    source: str
    clip_stream: ClipStream | None = None


def from_dataset(
    root: str | Path,
    labels: Sequence[str],
    split: str,
    datamodule: dict | None = None,
    seed: int = 0,
    hit_clips: int = 0,
    window: int = SAMPLE_RATE,
) -> NegativeAudio:
    """One long negative stream from a dataset folder's split (see ``dataset_split`` and
    ``ClipStream``), and up to ``hit_clips`` of its keyword clips, each fitted to the
    model's ``window`` samples.

    Raises:
        CalibrationError: no such folder, or no clip without keywords and no noise in it.
    """
    data = dataset_split(root, labels, split, datamodule)
    where = "every split" if split == "all" else f"the {split} split"
    if not data.negatives and not data.noise:
        raise CalibrationError(
            f"{root}: no clips without keywords and no _background_noise_ in {where}; "
            "give recordings with --negatives"
        )
    stream = ClipStream(data.negatives, data.noise, seed)
    source = (
        f"{root}, {where}: {len(data.negatives)} clips without keywords and "
        f"{len(data.noise)} noise recordings with gaps, seed {seed}"
    )
    keywords = clip_streams(data.keywords, hit_clips, seed, window)
    return NegativeAudio([Stream(f"{root} ({split})", stream.chunks)], keywords, source, stream)


def from_files(inputs: Sequence[str | Path]) -> NegativeAudio:
    """The user's keyword-free recordings (see ``file_streams``).

    Raises:
        CalibrationError: a missing input, or a folder without audio files.
    """
    streams = file_streams(inputs)
    names = ", ".join(s.name for s in streams[:3])
    more = f" and {len(streams) - 3} more" if len(streams) > 3 else ""
    return NegativeAudio(streams, [], f"{len(streams)} recording{'s' * (len(streams) != 1)}: "
                         f"{names}{more}")  # fmt: skip
