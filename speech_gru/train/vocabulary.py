"""A new vocabulary cut from a dataset's ``_unknown_`` folder: real voices for custom words.

The Speech Commands test archive keeps its other words in ``_unknown_``, named
``WORD_SPEAKER_nohash_N.wav``. ``build`` copies the clips of the chosen words (the ten
digits by default) into one folder per word, the remaining other words into ``_unknown_``
and the ``_silence_`` clips as they are, keeping every file name (and so every speaker
id); ``speech-gru vocabulary`` runs it::

    speech-gru vocabulary data/test_v0.02 data/real_digits

The result trains (``--data.labels zero,one,...,_unknown_,_silence_``) and scores
(``speech-gru evaluate``) like any folder in the layout; speakers stay split by hash.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from speech_gru.core.labels import SILENCE, UNKNOWN
from speech_gru.train.corpus import audio_files

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
"""The words ``build`` cuts unless told others."""


def word_of(path: Path) -> str:
    """The word of an ``_unknown_`` file: the part of its name before the speaker id."""
    return path.name.split("_")[0]


def build(source: Path, out: Path, words: Sequence[str]) -> Counter[str]:
    """Copy ``source``'s ``_unknown_`` and ``_silence_`` clips into ``out`` as ``words``,
    ``_unknown_`` and ``_silence_``.

    Returns:
        The clips per label written.

    Raises:
        FileNotFoundError: ``source`` has no ``_unknown_`` folder.
        OSError: a copy failed.
    """
    unknown = source / UNKNOWN
    if not unknown.is_dir():
        raise FileNotFoundError(f"{unknown}: not found (a test archive's other words)")
    counts: Counter[str] = Counter()
    for path in audio_files(unknown):
        label = word_of(path) if word_of(path) in words else UNKNOWN
        (out / label).mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, out / label / path.name)
        counts[label] += 1
    silence = source / SILENCE
    if silence.is_dir():
        shutil.copytree(silence, out / SILENCE, dirs_exist_ok=True)
        counts[SILENCE] = len(audio_files(out / SILENCE))
    return counts
