"""A new vocabulary cut from a dataset's ``_unknown_`` folder: real voices for custom words.

The Speech Commands test archive keeps its other words in ``_unknown_``, named
``WORD_SPEAKER_nohash_N.wav``. This copies the clips of the chosen words (the ten digits
by default) into one folder per word, the remaining other words into ``_unknown_`` and
the ``_silence_`` clips as they are, keeping every file name (and so every speaker id)::

    python tools/vocabulary_from_unknown.py data/test_v0.02 data/real_digits

The result trains (``--data.labels zero,one,...,_unknown_,_silence_``) and scores
(``speech-gru evaluate``) like any folder in the layout; speakers stay split by hash.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from speech_gru.core.labels import SILENCE, UNKNOWN
from speech_gru.train.corpus import audio_files

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def word_of(path: Path) -> str:
    """The word of an ``_unknown_`` file: the part of its name before the speaker id."""
    return path.name.split("_")[0]


def build(source: Path, out: Path, words: Sequence[str]) -> Counter[str]:
    """Copy ``source``'s ``_unknown_`` and ``_silence_`` clips into ``out`` as ``words``,
    ``_unknown_`` and ``_silence_``; returns the clips per label."""
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


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("source", type=Path, help="a folder with _unknown_ (and _silence_)")
    p.add_argument("out", type=Path, help="the new folder (must not exist)")
    p.add_argument("--words", nargs="+", default=list(DIGITS), help="the new keywords")
    args = p.parse_args(argv)
    if args.out.exists():
        sys.exit(f"error: {args.out}: already exists; choose a new folder")
    try:
        counts = build(args.source, args.out, args.words)
    except (FileNotFoundError, OSError) as err:
        sys.exit(f"error: {err}")
    missing = [w for w in args.words if not counts[w]]
    if missing:
        print(f"warning: no clips of {', '.join(missing)} in {args.source}", file=sys.stderr)
    print(", ".join(f"{label} {n}" for label, n in sorted(counts.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
