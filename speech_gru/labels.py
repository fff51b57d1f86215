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
    """Turn a label-set name (``"v2_12"``) or an explicit list into a list of labels.

    Raises:
        ValueError: for an unknown set name, an empty list or duplicated labels.
    """
    if isinstance(spec, str):
        if spec not in LABEL_SETS:
            raise ValueError(f"unknown label set {spec!r}; choose one of {sorted(LABEL_SETS)}")
        return list(LABEL_SETS[spec])
    labels = [str(label) for label in spec]
    if not labels:
        raise ValueError("the label list is empty")
    if len(set(labels)) != len(labels):
        raise ValueError(f"duplicated labels in {labels}")
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
