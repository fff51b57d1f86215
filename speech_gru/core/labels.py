"""Label sets: the only place the project's class lists live.

Speech Commands v0.02 has 35 words, v0.01 has 30. The classic 12-class task keeps ten
command words and folds every other word into ``_unknown_``, plus ``_silence_`` for clips
with no speech (background noise).
"""

from __future__ import annotations

from collections.abc import Sequence

SILENCE = "_silence_"
UNKNOWN = "_unknown_"
BACKGROUND_NOISE = "_background_noise_"

COMMANDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")

V1_WORDS = (
    "bed", "bird", "cat", "dog", "down", "eight", "five", "four", "go", "happy",
    "house", "left", "marvin", "nine", "no", "off", "on", "one", "right", "seven",
    "sheila", "six", "stop", "three", "tree", "two", "up", "wow", "yes", "zero",
)  # fmt: skip
V2_WORDS = tuple(sorted((*V1_WORDS, "backward", "follow", "forward", "learn", "visual")))

LABEL_SETS: dict[str, tuple[str, ...]] = {
    "v2_12": (SILENCE, UNKNOWN, *COMMANDS),
    "v1_12": (SILENCE, UNKNOWN, *COMMANDS),
    "v2_35": V2_WORDS,
    "v1_30": V1_WORDS,
}


def resolve_labels(spec: str | Sequence[str]) -> list[str]:
    """Turn a label-set name (``"v2_12"``), labels separated by commas
    (``"lights,music,_unknown_,_silence_"``, brackets allowed) or a list into a list of labels.

    Raises:
        ValueError: for an unknown set name, an empty list or duplicated labels; its text
            is one line that says how to write the labels.
    """
    if isinstance(spec, str):
        text = spec.strip()
        if text in LABEL_SETS:
            return list(LABEL_SETS[text])
        if "," not in text and not text.startswith("["):
            raise ValueError(
                f"unknown label set {spec!r}: name one of {', '.join(sorted(LABEL_SETS))}, "
                "or list the labels separated by commas, e.g. lights,music,_unknown_,_silence_"
            )
        spec = [part.strip().strip("'\"") for part in text.strip("[]").split(",")]
        spec = [part for part in spec if part]
    labels = [str(label) for label in spec]
    if not labels:
        raise ValueError("the label list is empty")
    duplicated = sorted({label for label in labels if labels.count(label) > 1})
    if duplicated:
        raise ValueError(f"duplicated labels {', '.join(duplicated)} in {labels}")
    return labels


def map_word(word: str, labels: Sequence[str]) -> str | None:
    """The label a folder name ``word`` trains as: itself, ``_unknown_``, or None (unused)."""
    if word in labels:
        return word
    if word.startswith("_"):  # _silence_, _unknown_, _background_noise_ when not labels
        return None
    return UNKNOWN if UNKNOWN in labels else None


def is_keyword(label: str) -> bool:
    """True for labels that name a spoken word, False for ``_silence_`` and ``_unknown_``."""
    return label not in (SILENCE, UNKNOWN)
