"""Wake phrases: words of letters a-z said together ("hey computer"), for ``speech-gru synth``,
``speech-gru record`` and the hard negatives of ``confusables.py``.

A phrase is one to ``MAX_PHRASE_WORDS`` words of letters a-z, at most
``MAX_PHRASE_LETTERS`` letters in all (spaces not counted): short enough to say in about
two seconds. It is written with single spaces (what an engine speaks and a prompt shows)
and labelled with its words joined by ``_`` (``hey_computer``: its folder, and the start
of its ``_unknown_`` file names). A single word is a phrase of one word: its label is the
word itself.

Clips. A one-word clip is one second, as Speech Commands'. A clip of two words or more is
as long as its speech plus ``PHRASE_ROOM_S`` (``phrase_clip_samples``), at least one
second and at most ``MAX_PHRASE_SECONDS``; speech that would not fit is spoken faster
(synth) or cut to its loudest part (record). ``window_for`` picks a model window for a
phrase from the spoken durations of its clips.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

import numpy as np

from speech_gru.core.audio import SAMPLE_RATE

MAX_PHRASE_WORDS = 5
MAX_PHRASE_LETTERS = 40
"""At most this many words and letters (about two seconds spoken at an ordinary pace)."""
MAX_PHRASE_SECONDS = 2.5
"""The longest clip of a phrase: its speech plus ``PHRASE_ROOM_S``, spoken faster or cut
when longer."""
PHRASE_ROOM_S = 0.3
"""Room around a phrase's speech in its clip (at random in synth, centred in record)."""
WINDOW_PERCENTILE = 90.0
WINDOW_MARGIN_S = 0.3
WINDOW_RANGE = (1.0, 2.0)
"""``window_for``: the 90th percentile of the spoken durations plus 0.3 s, rounded up to
0.1 s, within 1-2 s."""

_PHRASE = re.compile(r"[a-z]+(?: [a-z]+)*")


class PhraseError(ValueError):
    """A word or phrase that cannot be used; the message is one line naming it."""


def check_phrase(text: str, what: str = "word") -> str:
    """``text`` as a phrase: lower case, words separated by single spaces.

    Args:
        text: a word or a phrase (``"Hey  Computer"``).
        what: what the text is, for the message (``"word"``, ``"unknown word"``).

    Returns:
        The phrase (``"hey computer"``).

    Raises:
        PhraseError: empty, anything but letters a-z and spaces, more than
            ``MAX_PHRASE_WORDS`` words or more than ``MAX_PHRASE_LETTERS`` letters.
    """
    clean = " ".join(str(text).lower().split())
    shown = clean if len(clean) <= 30 else clean[:27] + "..."
    if not _PHRASE.fullmatch(clean):
        raise PhraseError(
            f"bad {what} {str(text)!r}: use letters a-z only (a phrase: words of letters "
            "separated by spaces)"
        )
    words = clean.split(" ")
    if len(words) > MAX_PHRASE_WORDS:
        raise PhraseError(
            f"bad {what} {shown!r}: too many words ({len(words)}, at most {MAX_PHRASE_WORDS})"
        )
    letters = sum(map(len, words))
    if letters > MAX_PHRASE_LETTERS:
        raise PhraseError(
            f"bad {what} {shown!r}: too long ({letters} letters, at most {MAX_PHRASE_LETTERS})"
        )
    return clean


def phrase_label(phrase: str) -> str:
    """The label and folder name of a checked phrase: its words joined by ``_``."""
    return "_".join(phrase.split())


def is_phrase(text: str) -> bool:
    """Whether ``text`` has more than one word (its clips are longer than a second)."""
    return len(str(text).split()) > 1


def phrase_clip_samples(speech: int, sr: int = SAMPLE_RATE) -> int:
    """Samples of a phrase clip holding ``speech`` samples of speech: the speech plus
    ``PHRASE_ROOM_S``, at least one second, at most ``MAX_PHRASE_SECONDS``."""
    return int(min(max(sr, speech + round(PHRASE_ROOM_S * sr)), round(MAX_PHRASE_SECONDS * sr)))


def window_for(durations: Iterable[float]) -> float:
    """A model window, in seconds, for a phrase spoken for ``durations`` seconds.

    The ``WINDOW_PERCENTILE`` (90th) percentile of the durations plus ``WINDOW_MARGIN_S``
    (0.3 s), rounded up to a tenth of a second and kept within ``WINDOW_RANGE`` (1-2 s):
    nine clips in ten fit in the window with room to spare, and one slow speaker does not
    make every window long.

    Args:
        durations: spoken (trimmed) durations of the phrase's clips, seconds: synth's
            ``spoken_durations``, or the speech spans of recordings.

    Raises:
        ValueError: no durations, or one that is negative or not finite.
    """
    values = np.asarray([float(d) for d in durations], dtype=np.float64)
    if values.size == 0:
        raise ValueError("window_for: no durations")
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ValueError("window_for: durations must be finite and not negative")
    need = float(np.percentile(values, WINDOW_PERCENTILE)) + WINDOW_MARGIN_S
    tenths = math.ceil(round(need * 10, 6))  # 1.2000000001 s is 1.2 s, not 1.3 s
    low, high = WINDOW_RANGE
    return float(min(max(tenths / 10, low), high))
