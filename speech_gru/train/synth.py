"""Synthetic speakers for any word: a Speech Commands-layout dataset from text-to-speech.

``synthesize_dataset`` (``speech-gru synth``) writes::

    OUT/WORD/SPEAKER_nohash_N.wav              a requested word, take N of a speaker
    OUT/_unknown_/WORD_SPEAKER_nohash_N.wav    other words, named as the real test archive
    OUT/_background_noise_/*.wav               the --noise recordings, or generated noise
    OUT/synth.json                             the settings and speakers of every run, and
                                               the spoken duration of every clip

Every clip is 16 kHz mono 16-bit PCM, exactly one second, the word at a random offset.

A WORD may be a phrase, words of letters a-z separated by spaces (``"hey computer"``,
``phrases.py``): the engines speak it with its spaces, and its label and folder are its
words joined by ``_`` (``OUT/hey_computer/SPEAKER_nohash_N.wav``,
``OUT/_unknown_/hey_commuter_SPEAKER_nohash_N.wav``). A phrase's clip holds the whole
phrase: its speech plus 0.3 s, from one second to 2.5 s (a phrase said too slowly for
that is spoken faster). ``synth.json`` keeps every clip's spoken (trimmed) duration,
``spoken_durations`` reads them back and ``window_for`` picks a model window from them.
The engines and voices are ``synth_voices.py``; a speaker (one voice with its pitch,
tempo, vocal-tract length, level and room) and how one clip of it is made,
``synth_speakers.py``. This module picks the words (``_unknown_`` leaves out the
requested words, their homophones and inflections), checks the folder and writes the
clips. Each clip has its own random generator (seed, speaker, word, take), so the result
does not depend on ``jobs`` or on which files exist: the same seed and set of working
voices give the same files.

The output folder. A folder is written only when it is missing, empty, a dataset (word
folders of audio clips only, as ``speech-gru record`` writes: synthetic clips join the
recordings, none is replaced) or holds the ``synth.json`` of an earlier run: never over
anything else. In an earlier output, existing clips and noise files are kept as they are
and missing ones added, so an interrupted run resumes and a run with more takes, speakers
or words extends the set.

The espeak-ng-only folders of the tests and ``evaluate-stream --espeak`` are
``synth_espeak.py``.
"""

from __future__ import annotations

import json
import logging
import math
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from speech_gru.core.atomic import write_atomic
from speech_gru.core.audio import SAMPLE_RATE, AudioError, load_audio
from speech_gru.core.labels import BACKGROUND_NOISE, UNKNOWN
from speech_gru.train.corpus import audio_files, is_audio
from speech_gru.train.phrases import PhraseError, check_phrase, is_phrase, phrase_label, window_for
from speech_gru.train.synth_speakers import (
    NOISE_FILES,
    NOISE_KINDS,
    REVERB_SHARE,
    SNR_RANGE,
    Speaker,
    make_noise,
    make_speakers,
    require_pyroomacoustics,
    room_impulse_response,
    synthesize_take,
    write_clip,
)
from speech_gru.train.synth_voices import ENGINES, SynthError, available_engines

# ENGINES is here for the command line's --engines choices.
__all__ = [
    "ENGINES", "MANIFEST", "REVERB_SHARE", "SNR_RANGE", "UNKNOWN_PER_SPEAKER", "UNKNOWN_WORDS",
    "SynthError", "SynthSummary", "check_folder", "check_words", "is_dataset", "phrase_label",
    "spoken_durations", "too_close", "synthesize_dataset", "unknown_words", "window_for",
]  # fmt: skip

log = logging.getLogger(__name__)

MANIFEST = "synth.json"
"""The file that marks a folder as synth output; it records every run's settings."""
SPOKEN = "spoken_s"
"""The manifest's map of clip (path relative to the folder) to spoken duration, seconds."""
UNKNOWN_WORDS: tuple[str, ...] = (
    # Speech Commands v2's 35 words: the real _unknown_ holds the ones not asked for.
    "yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go",
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    "bed", "bird", "cat", "dog", "happy", "house", "marvin", "sheila", "tree", "wow",
    "backward", "forward", "follow", "learn", "visual",
    # Common words with other sounds: fricatives, affricates, nasals, liquids, diphthongs.
    "apple", "water", "table", "window", "music", "light", "paper", "hello", "thanks",
    "please", "open", "close", "play", "pause", "next", "start", "green", "blue",
    "yellow", "purple", "orange", "morning", "night", "coffee", "chicken", "money",
    "phone", "garden", "pencil", "number", "little", "maybe", "today", "kitchen",
    "school", "bottle", "rabbit", "tiger", "jump", "sing", "walk", "fish", "cheese",
    "shoe", "voice", "moon", "sugar", "thunder", "judge", "vision", "breathe", "wheel",
)  # fmt: skip
"""Other words for ``_unknown_`` (requested words and their homophones are left out)."""

HOMOPHONES: tuple[frozenset[str], ...] = tuple(
    frozenset(group)
    for group in (
        ("to", "two", "too"), ("for", "four", "fore"), ("one", "won"), ("eight", "ate"),
        ("no", "know"), ("right", "write", "rite"), ("by", "buy", "bye"), ("see", "sea"),
        ("there", "their"), ("new", "knew"), ("hear", "here"), ("wait", "weight"),
        ("sun", "son"), ("off", "of"), ("weather", "whether"), ("whole", "hole"),
        ("night", "knight"), ("cheese", "chase"), ("wheel", "will", "we'll"),
        ("close", "clothes"), ("pause", "paws", "pose"), ("light", "lite"),
    )
)  # fmt: skip
"""Words that sound the same or nearly: one asked for keeps the others out of _unknown_."""
INFLECTIONS = ("s", "es", "d", "ed", "ing")
"""A word plus one of these (``stops``, ``going``) is too close to it to be _unknown_."""

UNKNOWN_PER_SPEAKER = 3
NOISE_SECONDS = 30.0


# --------------------------------------------------------------------------------------------
# Words
# --------------------------------------------------------------------------------------------


def check_words(words: Iterable[str], what: str = "word") -> list[str]:
    """Words and phrases as lower-case letters, a phrase's words separated by single
    spaces, duplicates dropped (``phrases.check_phrase``).

    Raises:
        SynthError: one that is empty, not only letters a-z and spaces, of more than 5
            words or more than 40 letters; the message names it.
    """
    result = []
    for word in words:
        try:
            result.append(check_phrase(word, what))
        except PhraseError as err:
            raise SynthError(str(err)) from None
    return list(dict.fromkeys(result))


def _word_too_close(a: str, b: str) -> bool:
    if a == b:
        return True
    if any(a in group and b in group for group in HOMOPHONES):
        return True
    return any(a == b + end or b == a + end for end in INFLECTIONS)


def too_close(a: str, b: str) -> bool:
    """Whether ``a`` and ``b`` are one word, homophones (``to``/``two``) or inflections;
    phrases of as many words, when each word is too close to its counterpart
    (``hey two``/``hey to``)."""
    wa, wb = a.split(), b.split()
    return len(wa) == len(wb) and all(_word_too_close(x, y) for x, y in zip(wa, wb, strict=True))


def unknown_words(words: Sequence[str], candidates: Sequence[str] = UNKNOWN_WORDS) -> list[str]:
    """``candidates`` less those too close to a requested word (``too_close``)."""
    return [c for c in dict.fromkeys(candidates) if not any(too_close(c, w) for w in words)]


# --------------------------------------------------------------------------------------------
# The dataset
# --------------------------------------------------------------------------------------------


@dataclass
class SynthSummary:
    """What ``synthesize_dataset`` did.

    Attributes:
        words, unknown_words: the words and phrases (with spaces; their folders and file
            names join the words with ``_``).
        spoken: spoken (trimmed) duration in seconds of every clip the manifest knows,
            this run's and earlier runs', by path relative to ``out``
            (``hey_computer/SPEAKER_nohash_0.wav``).
    """

    out: Path
    words: list[str]
    unknown_words: list[str]
    speakers: list[Speaker]
    voices: dict[str, tuple[str, ...]]
    noise_source: str
    noise_files: list[str]
    created: int = 0
    skipped: int = 0
    failed: int = 0
    unknown_clips: int = 0
    seconds: float = 0.0
    spoken: dict[str, float] = field(default_factory=dict)


def _reason(err: OSError) -> str:
    return err.strerror or type(err).__name__


def is_dataset(folder: Path) -> bool:
    """True for a folder in the dataset layout only: sub-folders holding nothing but audio
    (and the split list files or a README beside them), as ``speech-gru record`` writes."""
    entries = list(folder.iterdir())
    if not any(p.is_dir() for p in entries):
        return False
    for entry in entries:
        if entry.is_file():
            if entry.suffix.lower() not in (".txt", ".md", ".json"):
                return False
            continue
        if any(p.is_file() and not is_audio(p) for p in entry.rglob("*")):
            return False
    return True


def check_folder(out: Path) -> list[dict]:
    """Check, writing nothing, that ``out`` may be written: missing, empty, or an earlier
    synth output.

    Returns:
        The runs its manifest records (none for a new or empty folder).

    Raises:
        SynthError: ``out`` is not a folder, holds other data, or is under a file.
    """
    try:
        existing = next((p for p in (out, *out.parents) if p.exists()), None)
        if existing is not None and not existing.is_dir():
            raise SynthError(f"{out}: cannot write ({existing} is not a folder)")
        if existing == out and any(out.iterdir()):
            if not (out / MANIFEST).exists() and is_dataset(out):
                return []  # the user's recordings: clips are added, none replaced
            try:
                runs = json.loads((out / MANIFEST).read_text())["runs"]
                if not isinstance(runs, list):
                    raise TypeError
            except (OSError, ValueError, KeyError, TypeError):
                raise SynthError(
                    f"{out}: folder is neither a dataset (word folders of audio clips) nor "
                    f"an earlier synth output (no readable {MANIFEST}); choose a new or "
                    "empty folder"
                ) from None
            return runs
    except OSError as err:
        raise SynthError(f"{out}: cannot write ({_reason(err)})") from None
    return []


def _earlier_spoken(out: Path) -> dict[str, float]:
    """The spoken durations an earlier run's manifest holds (none if unreadable)."""
    try:
        spoken = json.loads((out / MANIFEST).read_text()).get(SPOKEN, {})
    except (OSError, ValueError, AttributeError):
        return {}
    if not isinstance(spoken, dict):
        return {}
    return {
        str(k): float(v) for k, v in spoken.items()
        if isinstance(v, (int, float)) and math.isfinite(v) and v >= 0
    }  # fmt: skip


def spoken_durations(out: str | Path, word: str) -> list[float]:
    """Spoken (trimmed) durations, in seconds, of the clips of ``word`` (a word or phrase)
    in a synth output, as its ``synth.json`` records them, in file-name order; the input
    of ``window_for``.

    Raises:
        SynthError: a bad word, or no readable manifest in ``out``.
    """
    label = phrase_label(check_words([word])[0])
    path = Path(out) / MANIFEST
    try:
        json.loads(path.read_text())
    except (OSError, ValueError) as err:
        detail = _reason(err) if isinstance(err, OSError) else "not JSON"
        raise SynthError(f"{path}: cannot read ({detail})") from None
    spoken = _earlier_spoken(Path(out))
    return [spoken[k] for k in sorted(spoken) if k.startswith(f"{label}/")]


def _load_noise(noise_dir: Path) -> list[tuple[str, np.ndarray]]:
    """(name in _background_noise_, 16 kHz mono audio) of every readable file of a folder."""
    if not noise_dir.is_dir():
        raise SynthError(f"{noise_dir}: noise folder not found")
    found = []
    taken: set[str] = set()
    for path in audio_files(noise_dir):
        try:
            audio = load_audio(path)
        except AudioError as err:
            log.warning("skipping noise file %s", err)
            continue
        stem = "__".join(path.relative_to(noise_dir).with_suffix("").parts)
        name, i = f"{stem}.wav", 1
        while name in taken:  # a.wav and a.flac
            name, i = f"{stem}_{i}.wav", i + 1
        taken.add(name)
        found.append((name, audio))
    if not found:
        raise SynthError(f"{noise_dir}: no readable noise audio")
    return found


def _clip_rng(seed: int, speaker: Speaker, word: str, take: int) -> np.random.Generator:
    """Per-file generator, independent of scheduling and of which files already exist."""
    return np.random.default_rng([seed, int(speaker.id, 16), zlib.crc32(word.encode()), take])


def _write_manifest(out: Path, runs: list[dict], spoken: dict[str, float]) -> None:
    record = {"tool": "speech-gru synth", "runs": runs,
              SPOKEN: {k: round(spoken[k], 4) for k in sorted(spoken)}}  # fmt: skip
    text = json.dumps(record, indent=1) + "\n"
    write_atomic(out / MANIFEST, lambda f: f.write(text.encode()))


def synthesize_dataset(
    out: str | Path,
    words: Sequence[str],
    *,
    unknown: Sequence[str] | None = None,
    unknown_per_speaker: int = UNKNOWN_PER_SPEAKER,
    speakers: int = 20,
    takes: int = 1,
    seed: int = 0,
    jobs: int = 2,
    engines: Sequence[str] | None = None,
    noise_dir: str | Path | None = None,
    snr: tuple[float, float] = SNR_RANGE,
    reverb: float = REVERB_SHARE,
    progress: Callable[[int, int], None] | None = None,
) -> SynthSummary:
    """Write a Speech Commands-layout dataset of synthetic speakers (module docstring).

    Everything is checked before anything is written: a mistake leaves no folder behind.

    Args:
        out: output folder: missing, empty, or an earlier synth output (added to).
        words: the words or phrases to record, one folder each (a phrase's words joined
            by ``_``).
        unknown: candidates for ``_unknown_`` (words or phrases); None: ``UNKNOWN_WORDS``;
            empty: none. Those too close to a requested word are left out.
        unknown_per_speaker: other words each speaker says (a seeded choice per speaker),
            each ``takes`` times; 0: none.
        speakers: number of speakers.
        takes: takes per word per speaker (``N`` in ``SPEAKER_nohash_N.wav``).
        seed: random seed.
        jobs: clips synthesized at once (threads running the engines).
        engines: engines to use (default: every one installed).
        noise_dir: recordings to mix in and to copy into ``_background_noise_``; None:
            generated noise.
        snr: speech-to-noise ratio range, dB.
        reverb: share of speakers in a reverberant room.
        progress: ``callback(done, total)`` after each clip.

    Raises:
        SynthError: bad words or settings, no engine, a folder that may not be written.
    """
    start = time.perf_counter()
    words = check_words(words)
    if not words:
        raise SynthError("no words given")
    candidates = check_words(UNKNOWN_WORDS if unknown is None else unknown, "unknown word")
    others = unknown_words(words, candidates) if unknown_per_speaker > 0 else []
    if speakers < 1 or takes < 1 or jobs < 1 or unknown_per_speaker < 0:
        raise SynthError("speakers, takes and jobs must be at least 1, unknown words 0 or more")
    low, high = snr
    if not (math.isfinite(low) and math.isfinite(high) and low <= high):
        raise SynthError(f"snr {low:g} {high:g}: needs finite LOW <= HIGH (dB)")
    if not 0 <= reverb <= 1:
        raise SynthError(f"reverb {reverb:g}: a share, from 0 to 1")
    out = Path(out)
    runs = check_folder(out)
    spoken = _earlier_spoken(out) if runs else {}
    voices = available_engines(engines)
    noise = _load_noise(Path(noise_dir)) if noise_dir is not None else []
    if reverb > 0:
        require_pyroomacoustics()

    cast = make_speakers(speakers, seed, voices, reverb)
    settings = {
        "words": words, "unknown_words": others, "unknown_per_speaker": unknown_per_speaker,
        "speakers": speakers, "takes": takes, "seed": seed, "snr": [low, high],
        "reverb": reverb, "noise": str(noise_dir) if noise_dir is not None else None,
        "voices": {k: list(v) for k, v in voices.items()},
    }  # fmt: skip
    runs.append({**settings, "speaker_list": [s.to_dict() for s in cast]})
    made: list[Path] = []  # what the set-up creates, undone if it fails part way
    try:
        for folder in [*reversed(out.parents), out][1:]:
            _new_folder(folder, made)
        for folder in [*map(phrase_label, words), *([UNKNOWN] if others else [])]:
            _new_folder(out / folder, made)
        noise_files = _write_noise(out / BACKGROUND_NOISE, noise, seed, made)
        # The manifest last: an earlier run's is replaced only once the rest is in place.
        _write_manifest(out, runs, spoken)
    except OSError as err:
        _undo(made)
        raise SynthError(f"{out}: cannot write ({_reason(err)})") from None

    tasks = []
    for speaker in cast:
        for word in words:
            tasks += [(out / phrase_label(word) / f"{speaker.id}_nohash_{t}.wav", word,
                       speaker, t) for t in range(takes)]  # fmt: skip
        pick = np.random.default_rng([seed, int(speaker.id, 16), 0x0A])
        chosen = [others[i] for i in sorted(pick.permutation(len(others))[:unknown_per_speaker])]
        for word in chosen:
            tasks += [(out / UNKNOWN / f"{phrase_label(word)}_{speaker.id}_nohash_{t}.wav",
                       word, speaker, t) for t in range(takes)]  # fmt: skip
    summary = SynthSummary(
        out, words, others, cast, voices, str(noise_dir) if noise else "generated noise",
        noise_files, unknown_clips=sum(t[0].parent.name == UNKNOWN for t in tasks),
        spoken=spoken,
    )  # fmt: skip
    recordings = [audio for _, audio in noise]

    def make(path: Path, word: str, speaker: Speaker, take: int) -> tuple[str, float | None]:
        if path.exists():
            return "skipped", None
        try:
            clip, seconds = synthesize_take(
                word, speaker, _clip_rng(seed, speaker, word, take), recordings, (low, high),
                fit=is_phrase(word),
            )  # fmt: skip
        except RuntimeError as err:
            log.warning("%s; clip %s left out", err, path.name)
            return "failed", None
        try:
            write_clip(path, clip)
        except (OSError, RuntimeError) as err:  # soundfile's errors are RuntimeErrors
            detail = _reason(err) if isinstance(err, OSError) else str(err)
            raise SynthError(f"{path}: cannot write ({detail})") from None
        return "created", seconds

    rooms = sorted({s.room for s in cast if s.room is not None}, key=repr)
    total = len(tasks)
    if progress is not None:
        progress(0, total)
    pool = ThreadPoolExecutor(max_workers=jobs)
    try:
        list(pool.map(room_impulse_response, rooms))
        futures = [pool.submit(make, *task) for task in tasks]
        for done, (future, task) in enumerate(zip(futures, tasks, strict=True), start=1):
            result, seconds = future.result()
            setattr(summary, result, getattr(summary, result) + 1)
            if seconds is not None:
                spoken[task[0].relative_to(out).as_posix()] = seconds
            if progress is not None:
                progress(done, total)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        if summary.created:  # the durations of the clips written, even when stopped part way
            try:
                _write_manifest(out, runs, spoken)
            except OSError as err:
                log.warning("%s: durations not recorded (%s)", out / MANIFEST, _reason(err))
    summary.seconds = time.perf_counter() - start
    return summary


def _new_folder(folder: Path, made: list[Path]) -> None:
    """Create ``folder`` unless it is there, adding it to ``made`` only if this call made it
    (a path through ``..`` may name a folder that was there before)."""
    try:
        folder.mkdir()
    except FileExistsError:
        return
    made.append(folder)


def _undo(made: list[Path]) -> None:
    """Remove what a failed set-up created, newest first: files, then folders left empty."""
    for path in reversed(made):
        try:
            if path.is_dir() and not path.is_symlink():
                path.rmdir()
            else:
                path.unlink()
        except OSError:
            continue


def _write_noise(
    folder: Path, noise: list[tuple[str, np.ndarray]], seed: int, made: list[Path]
) -> list[str]:
    """Copy the noise recordings into ``folder`` as 16 kHz WAV, or, with none, generate
    white, pink and brown noise and hum there; files already there are kept.

    Args:
        folder: the ``_background_noise_`` folder.
        noise: (name, audio) recordings; empty: generate noise.
        seed: random seed of the generated noise.
        made: the folder (if new) and each file written are added to it.

    Returns:
        The names of the files (this run's) in ``folder``.
    """
    _new_folder(folder, made)
    if noise:
        for name, audio in noise:
            if not (folder / name).exists():
                peak = float(np.abs(audio).max())
                made.append(folder / name)
                write_clip(folder / name, audio / peak if peak > 1 else audio)
        return [name for name, _ in noise]
    for i, kind in enumerate(NOISE_KINDS):
        if not (folder / NOISE_FILES[kind]).exists():
            rng = np.random.default_rng([seed, 0xB6, i])
            made.append(folder / NOISE_FILES[kind])
            write_clip(
                folder / NOISE_FILES[kind], make_noise(kind, NOISE_SECONDS, SAMPLE_RATE, rng)
            )
    return [NOISE_FILES[kind] for kind in NOISE_KINDS]
