"""The Speech Commands layout, read without Lightning: files, speakers, splits, noise.

One copy of each rule the training data module, evaluation, calibration, streaming
evaluation and the tools share:

* a dataset folder holds one sub-folder per word, plus optional ``_silence_``,
  ``_unknown_`` (the test archive's other words, named ``WORD_SPEAKER_nohash_N.wav``) and
  ``_background_noise_`` (long noise recordings);
* a clip is one second (``CLIP_SAMPLES``) at 16 kHz, or the model's window when it
  says otherwise (``ModelConfig.window_s``, up to 3 s: the data module's ``window_s``);
* a file's speaker is the part before ``_nohash_``; a speaker's split comes from a hash of
  the id (``which_set``, the dataset README's rule, optionally salted), from the archive's
  list files, or from a cross-validation fold (``fold_of``);
* background noise is a noise folder, else the dataset's ``_background_noise_``, else its
  ``_silence_`` clips, else generated white and pink noise (``background_noise``).

It imports numpy, the audio reader and the label names only, so reading a file name or a
split costs no Lightning import.
"""

from __future__ import annotations

import difflib
import hashlib
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from speech_gru.core.audio import AUDIO_EXTENSIONS, SAMPLE_RATE, AudioError, load_audio
from speech_gru.core.labels import BACKGROUND_NOISE, SILENCE, UNKNOWN, is_keyword, map_word

log = logging.getLogger(__name__)

CLIP_SAMPLES = SAMPLE_RATE  # a clip of the default one-second window
MAX_CLIP_S = 10.0
"""The longest file trained on as a clip (as ``evaluate`` judges clips): a longer one is
a recording, read whole on every access to train on its first window; recordings belong
in ``_background_noise_``."""
MAX_WORD_BYTES = 64
"""The longest word (a folder name and a label) ``record`` and ``synth`` write, in UTF-8
bytes: a keyword or a short phrase. File systems refuse names over 255 bytes, and synth's
``_unknown_`` files are named ``WORD_SPEAKER_nohash_N.wav``."""
MAX_NUM_WAVS_PER_CLASS = 2**27 - 1  # from the dataset README's split function
SPLITS = ("training", "validation", "testing")
_SPEAKER = re.compile(r"(?:^|_)([^_]+)_nohash_")


def speaker_of(path: str | Path) -> str:
    """Speaker id of a Speech Commands file name.

    ``SPEAKER_nohash_N.wav`` and the test archive's ``WORD_SPEAKER_nohash_N.wav`` both give
    ``SPEAKER``; a name without ``_nohash_`` is its own speaker (its stem).
    """
    name = Path(path).name
    match = _SPEAKER.search(name)
    return match.group(1) if match else name.split(".")[0]


def _name_bytes(text: str) -> bytes:
    """UTF-8 of a name taken from a file name: bytes that are not UTF-8 (held as surrogates
    by ``os.fsdecode``) become those bytes again, as on disk, rather than an error that
    would stop training on one odd name."""
    return text.encode("utf-8", "surrogateescape")


def which_set(
    speaker: str, validation_percent: float, testing_percent: float, salt: str = ""
) -> str:
    """Split of a speaker, stable across runs and machines.

    With ``salt=""`` this is the dataset README's rule exactly. The official archive made
    its test set with that rule, so every speaker of the canonical test archive (or of any
    subset of one official split) lands in the same bucket; a salt spreads such a folder's
    speakers over all three splits while keeping the assignment stable. A speaker id
    from a file name that is not UTF-8 is hashed as the name's bytes.
    """
    digest = hashlib.sha1(_name_bytes(salt + speaker)).hexdigest()
    percent = (int(digest, 16) % (MAX_NUM_WAVS_PER_CLASS + 1)) * (100.0 / MAX_NUM_WAVS_PER_CLASS)
    if percent < validation_percent:
        return "validation"
    if percent < validation_percent + testing_percent:
        return "testing"
    return "training"


def fold_of(speaker: str, folds: int, salt: str = "") -> int:
    """Cross-validation fold of a speaker (``0 .. folds - 1``), stable like ``which_set``;
    the salt differs from the split's, so folds do not follow the validation buckets."""
    digest = hashlib.sha1(_name_bytes(f"{salt}/fold/{speaker}")).hexdigest()
    return int(digest, 16) % folds


@dataclass(frozen=True)
class SplitRule:
    """How a folder's speakers are split (the data module's arguments of the same names).

    Attributes:
        validation_percent: share of speakers held out for validation.
        testing_percent: share of speakers held out for testing (unused with folds).
        split_salt: prefix of the speaker id before hashing.
        folds: speaker-disjoint cross-validation folds; 0 keeps the plain split.
        fold: the fold held out for testing.
    """

    validation_percent: float = 10.0
    testing_percent: float = 10.0
    split_salt: str = "speech_gru"
    folds: int = 0
    fold: int = 0

    @classmethod
    def from_hparams(cls, hparams: Mapping | None) -> SplitRule:
        """The rule recorded in a checkpoint's ``datamodule_hyper_parameters`` (defaults
        for what it does not record)."""
        hp = dict(hparams or {})
        return cls(**{f.name: hp[f.name] for f in fields(cls) if hp.get(f.name) is not None})

    def holds_none(self, split: str) -> bool:
        """Whether ``split`` is empty by this rule: a model trained on every speaker
        (``validation_percent`` and ``testing_percent`` 0, no folds) has no held-out ones."""
        if split == "testing":
            return not self.folds and self.testing_percent == 0
        return split == "validation" and self.validation_percent == 0

    def split_of_speaker(self, speaker: str) -> str:
        if self.folds:
            if fold_of(speaker, self.folds, self.split_salt) == self.fold:
                return "testing"
            return which_set(speaker, self.validation_percent, 0.0, self.split_salt)
        return which_set(speaker, self.validation_percent, self.testing_percent, self.split_salt)

    def __call__(self, path: str | Path) -> str:
        return self.split_of_speaker(speaker_of(path))


def read_list(path: Path) -> set[str]:
    """Relative paths in a ``validation_list.txt`` / ``testing_list.txt``."""
    return {line.strip() for line in Path(path).read_text().splitlines() if line.strip()}


def split_is_empty(hparams: Mapping | None, split: str) -> bool:
    """Whether a run with these data settings (a data module's, or a checkpoint's
    ``datamodule_hyper_parameters``) has no speakers in ``split``: folder mode only, with
    its share 0 (``SplitRule.holds_none``): a model trained on every speaker."""
    hp = dict(hparams or {})
    return hp.get("version") == "folder" and SplitRule.from_hparams(hp).holds_none(split)


def split_rule(root: str | Path, hparams: Mapping | None = None) -> Callable[[Path], str]:
    """The split of each file of a dataset folder, as the model recorded in ``hparams``
    (a checkpoint's ``datamodule_hyper_parameters``) was trained with.

    Folder mode (``version: folder``, or a folder without list files) hashes the speaker
    (``SplitRule``); otherwise (an official archive's folder, or no version recorded) the
    folder's ``validation_list.txt`` and ``testing_list.txt`` decide, and every other file
    trains.
    """
    root = Path(root)
    hp = dict(hparams or {})
    lists = {s: root / f"{s}_list.txt" for s in ("validation", "testing")}
    if hp.get("version") != "folder" and all(p.is_file() for p in lists.values()):
        listed = {s: read_list(p) for s, p in lists.items()}

        def listed_split(path: Path) -> str:
            rel = Path(path).relative_to(root).as_posix()
            return next((s for s, names in listed.items() if rel in names), "training")

        return listed_split
    return SplitRule.from_hparams(hp)


def is_audio(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in AUDIO_EXTENSIONS


def audio_files(folder: Path) -> list[Path]:
    """Audio files under a folder, in sorted path order."""
    return [p for p in sorted(Path(folder).rglob("*")) if is_audio(p)]


def scan_folder(root: Path, labels: list[str]) -> list[tuple[Path, str]]:
    """Audio files of a dataset-layout folder with the label each trains as.

    Sub-folders map through ``labels.map_word``: a keyword to itself, other words to
    ``_unknown_`` (when the label set has it); ``_background_noise_`` and folders with no
    label are left out.

    Returns:
        ``(path, label)`` pairs in sorted path order (``FolderSurvey.items``).
    """
    return list(FolderSurvey.of(root, labels).items)


@dataclass(frozen=True)
class FolderSurvey:
    """What a dataset folder holds for a label list, before anything is trained on it.

    Attributes:
        root: the folder.
        labels: the labels asked for.
        folders: audio files per sub-folder (``_background_noise_`` and hidden ones aside).
        clips: files each label would train on (``_silence_`` counts its folder's only).
        unused: sub-folders no label takes (no ``_unknown_`` label to fold them into).
        unnamed: files that carry no speaker id (no ``_nohash_`` in the name).
        items: ``(path, label)`` of every file a label takes, in sorted path order.
    """

    root: Path
    labels: tuple[str, ...]
    folders: Mapping[str, int]
    clips: Mapping[str, int]
    unused: tuple[str, ...]
    unnamed: int
    items: tuple[tuple[Path, str], ...]

    @classmethod
    def of(cls, root: Path, labels: Iterable[str]) -> FolderSurvey:
        """Read the folder once (its listing): raises FileNotFoundError when missing."""
        root, labels = Path(root), tuple(labels)
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: dataset folder not found")
        folders, clips, unused, items = {}, dict.fromkeys(labels, 0), [], []
        for folder in sorted(p for p in root.iterdir() if p.is_dir()):
            if folder.name == BACKGROUND_NOISE:
                continue
            files = audio_files(folder)
            label = map_word(folder.name, list(labels))
            if not folder.name.startswith("."):  # hidden folders are not reported
                folders[folder.name] = len(files)
                if label is None:
                    unused.append(folder.name)
            if label is not None:
                clips[label] += len(files)
                items += [(path, label) for path in files]
        unnamed = sum("_nohash_" not in path.name for path, _ in items)
        return cls(root, labels, folders, clips, tuple(unused), unnamed, tuple(items))

    def problems(self, label_set: str | None = None) -> list[str]:
        """One line per reason not to train: labels asked for by name that have no clips,
        no keyword at all, or (``label_set``: the labels are that set's) a set that
        matches no folder. A set's other words without clips are ``empty``'s business."""
        if not any(self.folders.values()):
            return [f"{self.root}: no clips here (the layout: one sub-folder of clips per word)"]
        here = ", ".join(self.folders)
        keywords = [label for label in self.labels if is_keyword(label)]
        if label_set is not None and not any(self.clips[k] for k in keywords):
            return [
                f"{self.root}: none of the label set {label_set}'s words "
                f"({', '.join(keywords)}) is a folder here (folders: {here}); name your "
                "words with --data.labels, e.g. --data.labels "
                f"{','.join([*list(self.folders)[:2], UNKNOWN, SILENCE])} (other folders "
                f"train as {UNKNOWN}), or --data.labels auto (every folder a label)"
            ]
        if not keywords:
            return [f"{self.root}: the labels {list(self.labels)} name no keyword to detect"]
        if label_set is not None:
            return []
        problems = []
        for label in self.empty():
            if label == UNKNOWN:
                problems.append(
                    f"{self.root}: label {UNKNOWN} has no clips: no folder of other words "
                    f"(folders: {here}); add recordings of other words or drop {UNKNOWN}"
                )
                continue
            close = difflib.get_close_matches(label, list(self.folders), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            problems.append(f"{self.root}: label {label!r} has no clips (folders: {here}){hint}")
        return problems

    def empty(self) -> list[str]:
        """Labels with no clips (``_silence_`` aside: it can be cut from noise)."""
        return [label for label in self.labels if not self.clips[label] and label != SILENCE]

    def warnings(self, label_set: str | None = None) -> list[str]:
        """One line per thing that trains, but maybe not as the user meant."""
        lines = []
        if label_set is not None and self.empty():
            lines.append(
                f"{self.root}: labels of the set {label_set} without clips: "
                f"{', '.join(self.empty())}; the model keeps them but never learns them"
            )
        if self.unused:
            fold = f"; add {UNKNOWN} to the labels to train them as other words"
            lines.append(
                f"{self.root}: folders not used by the labels: {', '.join(self.unused)}"
                + (fold if UNKNOWN not in self.labels else "")
            )
        if self.unnamed:
            total = sum(self.clips.values())
            lines.append(
                f"{self.root}: {self.unnamed} of {total} clips carry no speaker id "
                "(SPEAKER_nohash_N.wav): each such file is split on its own, by a hash of "
                "its name, so one person's takes can land in training and test alike"
            )
        return lines


def folder_labels(root: Path) -> list[str]:
    """Labels of a folder used as-is (``labels: auto``): its sorted sub-folder names."""
    names = sorted(p.name for p in Path(root).iterdir() if p.is_dir())
    return [n for n in names if n != BACKGROUND_NOISE and not n.startswith(".")]


def load_noise(folder: Path) -> list[np.ndarray]:
    """Every readable audio file of a noise folder, mono 16 kHz; unreadable ones are skipped."""
    recordings = []
    for path in audio_files(folder):
        try:
            recordings.append(load_audio(path))
        except AudioError as err:
            log.warning("skipping noise file %s", err)
    return recordings


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n,) noise with a 1/f power spectrum and unit RMS."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    spectrum /= np.sqrt(np.maximum(np.arange(spectrum.size), 1))
    spectrum[0] = 0.0
    x = np.fft.irfft(spectrum, n)
    return (x / max(float(np.sqrt(np.mean(x**2))), 1e-12)).astype(np.float32)


def synthetic_noise(seconds: float = 60.0, seed: int = 0) -> list[np.ndarray]:
    """White and pink noise recordings (peak 0.1) for when a dataset has no noise."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SAMPLE_RATE)
    white = rng.standard_normal(n)
    pink = pink_noise(n, rng)
    return [(0.1 * x / np.abs(x).max()).astype(np.float32) for x in (white, pink)]


def background_noise(
    root: str | Path | None,
    noise_dir: str | Path | None = None,
    silence: Iterable[Path] = (),
    seed: int = 0,
    synthetic: bool = True,
) -> tuple[list[np.ndarray], str]:
    """Background-noise recordings for a dataset folder, and where they came from.

    ``noise_dir`` when given (it must hold readable audio), else the dataset's
    ``_background_noise_`` recordings, else the ``silence`` clips given (a split's
    ``_silence_`` files), else generated white and pink noise (with ``synthetic``; else
    none, and the caller makes its own).

    Raises:
        FileNotFoundError: ``noise_dir`` is missing or holds no readable audio.
    """
    if noise_dir is not None:
        if not Path(noise_dir).is_dir():
            raise FileNotFoundError(f"{noise_dir}: noise folder not found")
        noise = load_noise(Path(noise_dir))
        if not noise:
            raise FileNotFoundError(f"{noise_dir}: no readable noise audio")
        return noise, str(noise_dir)
    if root is not None:
        folder = Path(root) / BACKGROUND_NOISE
        if folder.is_dir() and (noise := load_noise(folder)):
            return noise, str(folder)
    files = list(silence)
    noise = []
    for path in files:
        try:
            noise.append(load_audio(path))
        except AudioError as err:
            log.warning("skipping noise file %s", err)
    if noise:
        return noise, f"{len(noise)} _silence_ clips"
    if not synthetic:
        return [], "none"
    return synthetic_noise(seed=seed), "synthetic white and pink noise"
