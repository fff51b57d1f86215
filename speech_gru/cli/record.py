"""Enrolling a word: takes from the microphone, checked, cut to one second and written in the
Speech Commands layout (``OUT/WORD/SPEAKER_nohash_N.wav``), ready for a ``folder`` recipe.

Each take is a window of ``seconds`` read from one open microphone (``source.open_source``);
the audio itself is the clock, so the countdown and the take follow the samples, not the
wall clock. A take is refused, and taken again, when it is clipped, when no word stands out
from the room (too quiet or nothing said) or when the word runs into the edge of the window.
An accepted take keeps the second of the recording centred on the word (the loudest second
of a word longer than that): the room's own sound around the word, and zeros only where that
second reaches past the take (as the corpus pads its clips shorter than a second).

The speaker id is 8 hex digits of a hash of a name (``--speaker``, else the login name), so
one person keeps one id across sessions and the folder recipe's speaker hash keeps each
person's takes in one split. Two special words record the room instead of a word:
``_silence_`` writes one-second clips (``_silence_`` training examples), and
``_background_noise_`` writes each whole take (noise that augmentation mixes in).

A word with spaces is a phrase (``"hey computer"``, ``train/phrases.py``: letters a-z, at
most 5 words and 40 letters): its folder joins its words with ``_`` (``OUT/hey_computer``),
the prompts show it with its spaces, a take is 3 s unless ``seconds`` says otherwise, and
its clip holds the whole phrase: the phrase's span plus 0.3 s, centred on it, from one
second to 2.5 s (the loudest 2.5 s of a longer one), never longer than the take.
"""

from __future__ import annotations

import getpass
import hashlib
import io
import os
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from speech_gru.core.audio import SAMPLE_RATE, loudest_start, printable
from speech_gru.core.labels import BACKGROUND_NOISE, SILENCE
from speech_gru.runtime.source import open_source
from speech_gru.train.corpus import CLIP_SAMPLES, MAX_WORD_BYTES
from speech_gru.train.phrases import (
    PhraseError,
    check_phrase,
    is_phrase,
    phrase_clip_samples,
    phrase_label,
)

ROOM_WORDS = (SILENCE, BACKGROUND_NOISE)
"""Words that record the room, not speech: no word is looked for, only clipping refused."""

MIN_SECONDS = 1.0  # a take holds at least the one-second clip
WORD_SECONDS = 2.0  # a take of a word, by default
PHRASE_SECONDS = 3.0  # a take of a phrase, by default
BLOCK_S = 0.1  # microphone chunk
FRAME, HOP = 320, 160  # 20 ms level frames every 10 ms

CLIP_LEVEL = 0.99
"""A sample this close to full scale counts as clipped (an int16 device's largest value is
32767/32768; resampling a flattened peak spreads it over neighbours just below it)."""
MAX_CLIPPED = 2
"""Clipped samples a take may hold: one or two peaks touching full scale are inaudible, a
flattened waveform top is a run of them."""
QUIET_DB = -40.0
"""The loudest 20 ms of a word must reach this RMS level (dBFS; a full-scale sine is -3):
speech at a working microphone peaks near -30 to -10 dBFS, and below -40 the word's
quieter sounds sink into a typical room or microphone noise (-50 to -60 dBFS)."""
CONTRAST_DB = 10.0
"""...and stand this far above the room (the take's 10th-percentile frame, a window of at
least a second holding mostly room): less means nothing was said, or the room drowns it."""
TRIM_DB = 35.0
"""The word is the frames within this of its loudest (librosa.effects.trim's rule)..."""
TRIM_ROOM_DB = 6.0
"""...and this far above the room, so that a loud room is not counted as the word."""
EDGE_S = 0.02
"""A word whose frames reach this close to either end of the take was cut off there."""
MAX_TRIES = 5
"""Refused tries of one take before recording stops with an error."""

_TAKE_NAME = re.compile(r"^(?P<speaker>[^_]+)_nohash_(?P<n>\d+)\.wav$")


class RecordError(Exception):
    """Recording cannot go on (bad word, unusable folder, a take refused too often); one line."""


# -- names and numbering ----------------------------------------------------------------------


def check_word(word: str) -> str:
    """Return ``word`` if it can be a dataset folder, else raise; a phrase (a word with
    spaces inside) as ``phrases.check_phrase`` writes it, lower case with single spaces.

    A word is one folder name that can also be written in a comma-separated label list
    (no separators, commas, control characters, leading dot or bracket; at most
    ``MAX_WORD_BYTES`` in UTF-8, a keyword or a short phrase); among the names
    starting with ``_`` only ``_silence_`` and ``_background_noise_`` are trained on. A
    phrase is letters a-z and spaces only, at most 5 words and 40 letters; its folder is
    ``phrases.phrase_label`` (``hey_computer``).

    Raises:
        RecordError: naming the word and what is wrong with it.
    """
    if is_phrase(word) and printable(word) == word:
        try:
            return check_phrase(word)
        except PhraseError as err:
            raise RecordError(str(err).removeprefix("bad ")) from None
    plain = printable(word) == word and word.strip() == word
    if not plain or not word or set("/\\,") & set(word) or word.startswith((".", "[")):
        raise RecordError(f"word {printable(repr(word))}: not usable as a folder and label name")
    if len(word.encode("utf-8", "surrogateescape")) > MAX_WORD_BYTES:
        shown = printable(repr(word[:20] + "..."))
        raise RecordError(
            f"word {shown}: too long for a word folder ({len(word)} characters, at most "
            f"{MAX_WORD_BYTES} bytes)"
        )
    if word.startswith("_") and word not in ROOM_WORDS:
        raise RecordError(
            f"word {word!r}: the only folders starting with _ that train are {SILENCE} and "
            f"{BACKGROUND_NOISE}; record other words by name (they train as _unknown_)"
        )
    return word


def speaker_id(name: str) -> str:
    """8 hex digits for a person's name: SHA-1 of the name, stripped and case-folded.

    The same name gives the same id in every session, so a speaker's takes stay together
    (in one split of the folder recipe's speaker hash); the id has no ``_``, as
    ``corpus.speaker_of`` needs.

    Raises:
        RecordError: for an empty name.
    """
    key = name.strip().casefold()
    if not key:
        raise RecordError("--speaker: the name is empty")
    return hashlib.sha1(key.encode("utf-8")).hexdigest()[:8]


def default_speaker() -> str:
    """The login name (``getpass.getuser``), the default speaker name.

    Raises:
        RecordError: when there is none (give ``--speaker NAME``).
    """
    try:
        name = getpass.getuser()
    except Exception:  # KeyError (no passwd entry) or OSError, depending on the version
        name = ""
    if not name.strip():
        raise RecordError("cannot tell the user name; give --speaker NAME")
    return name


def next_index(folder: Path, speaker: str) -> int:
    """1 + the highest ``N`` of ``folder``'s ``SPEAKER_nohash_N.wav`` files, 0 for none."""
    taken = [-1]
    if folder.is_dir():
        for path in folder.iterdir():
            match = _TAKE_NAME.match(path.name)
            if match and match["speaker"] == speaker:
                taken.append(int(match["n"]))
    return max(taken) + 1


def prepare_folder(out: str | os.PathLike[str], word: str) -> tuple[Path, list[Path]]:
    """Create ``out/word`` (and ``out``) if needed and check it can be written.

    Returns:
        The folder, and the folders this call created, deepest first (``remove_empty``
        takes them away again when no take was written: an empty word folder would be a
        label without clips).

    Raises:
        RecordError: naming the folder and the reason.
    """
    folder = Path(out) / word
    made = []
    # One level at a time, keeping only the folders mkdir itself created: a path such as
    # "new/../data" does not exist before "new" does, yet names folders that were there
    # before, which must never be removed.
    for path in [*reversed(folder.parents), folder][1:]:
        try:
            path.mkdir()
        except FileExistsError:
            continue
        except NotADirectoryError:
            remove_empty(made)
            raise RecordError(f"{folder}: not a folder (or under a file)") from None
        except OSError as err:
            remove_empty(made)
            raise RecordError(f"{folder}: cannot create ({err.strerror or err})") from None
        made.insert(0, path)
    if not folder.is_dir():
        remove_empty(made)
        raise RecordError(f"{folder}: not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        remove_empty(made)
        raise RecordError(f"{folder}: not writable")
    return folder, made


def remove_empty(folders: list[Path]) -> None:
    """Remove these folders, deepest first, as long as they are empty."""
    for path in folders:
        try:
            path.rmdir()
        except OSError:
            return


def save_take(folder: Path, speaker: str, clip: np.ndarray) -> Path:
    """Write ``clip`` (float, at most full scale) as 16-bit 16 kHz mono WAV under the next
    free ``SPEAKER_nohash_N.wav``; an existing file is never replaced.

    Raises:
        RecordError: when the file cannot be written (nothing is left behind).
    """
    data = io.BytesIO()
    sf.write(data, np.clip(clip, -1.0, 1.0), SAMPLE_RATE, subtype="PCM_16", format="WAV")
    index = next_index(folder, speaker)
    while True:
        path = folder / f"{speaker}_nohash_{index}.wav"
        try:
            with open(path, "xb") as f:  # "x": a file that appeared meanwhile is kept
                try:
                    f.write(data.getvalue())
                except BaseException:
                    path.unlink(missing_ok=True)
                    raise
            return path
        except FileExistsError:
            index += 1
        except OSError as err:
            raise RecordError(f"{path}: cannot write ({err.strerror or err})") from None


# -- the level check and the cut ------------------------------------------------------------


def frame_db(wave: np.ndarray) -> np.ndarray:
    """(F,) RMS level in dBFS of ``wave``'s 20 ms frames every 10 ms (at least one frame),
    each the median of the 5 frames around it: a click (2 frames or fewer) is not a sound,
    while the edges of a longer sound stay where they are."""
    wave = np.asarray(wave, dtype=np.float64)
    if wave.size < FRAME:
        wave = np.pad(wave, (0, FRAME - wave.size))
    frames = np.lib.stride_tricks.sliding_window_view(wave, FRAME)[::HOP]  # (F, FRAME)
    db = 20.0 * np.log10(np.maximum(np.sqrt(np.mean(frames**2, axis=1)), 1e-10))
    around = np.lib.stride_tricks.sliding_window_view(np.pad(db, 2, mode="reflect"), 5)  # (F, 5)
    return np.median(around, axis=1)


@dataclass(frozen=True)
class Level:
    """What the level check measured of one take.

    Attributes:
        loudest_db: RMS of the take's loudest 20 ms frame, dBFS.
        room_db: its 10th-percentile frame, dBFS: the room without the word.
        clipped: samples at or above ``CLIP_LEVEL`` in magnitude.
        span: ``[start, end)`` samples of the word (``word_span``).
    """

    loudest_db: float
    room_db: float
    clipped: int
    span: tuple[int, int]


def word_span(db: np.ndarray, n: int) -> tuple[int, int]:
    """``[start, end)`` samples of the word in an ``n``-sample take with frame levels ``db``:
    from the first to the last frame within ``TRIM_DB`` of the loudest and ``TRIM_ROOM_DB``
    above the room."""
    loudest, room = float(db.max()), float(np.percentile(db, 10))
    above = np.flatnonzero(db >= max(loudest - TRIM_DB, room + TRIM_ROOM_DB))
    if above.size == 0:  # a flat take: every frame is the room
        return 0, n
    return int(above[0]) * HOP, min(n, int(above[-1]) * HOP + FRAME)


def measure(take: np.ndarray) -> Level:
    """The level check's measurements of a take, (N,) float in [-1, 1]."""
    db = frame_db(take)
    clipped = int(np.count_nonzero(np.abs(take) >= CLIP_LEVEL))
    span = word_span(db, take.size)
    return Level(float(db.max()), float(np.percentile(db, 10)), clipped, span)


def refusal(take: np.ndarray, word: str) -> str | None:
    """Why a take of ``word`` must be taken again, or None to keep it.

    Clipped (more than ``MAX_CLIPPED`` samples at full scale) is refused for every word; a
    room recording (``_silence_``, ``_background_noise_``) also when every sample is zero;
    a word when it is too quiet (loudest frame under ``QUIET_DB``, or under ``CONTRAST_DB``
    above the room) or cut off by either end of the take.
    """
    level = measure(take)
    if level.clipped > MAX_CLIPPED:
        return (
            f"clipped, move back from the microphone ({level.clipped} samples at full scale; "
            "or lower its input level)"
        )
    if word in ROOM_WORDS:
        if not np.any(take):
            return "no sound at all (every sample is zero): is the microphone muted?"
        return None
    contrast = level.loudest_db - level.room_db
    if level.loudest_db < QUIET_DB or contrast < CONTRAST_DB:
        return (
            f"too quiet, take again (loudest {level.loudest_db:.0f} dBFS, {contrast:.0f} dB "
            f"over the room; needs {QUIET_DB:.0f} dBFS and {CONTRAST_DB:.0f} dB)"
        )
    edge = round(EDGE_S * SAMPLE_RATE)
    start, end = level.span
    if start < edge:
        return "cut off at the start, take again (speak after the prompt)"
    if end > take.size - edge:
        return "cut off at the end, take again (speak right after the prompt, or use --seconds)"
    return None


def cut_clip(take: np.ndarray, span: tuple[int, int], samples: int = CLIP_SAMPLES) -> np.ndarray:
    """(samples,) clip of a take, one second by default: the ``samples`` centred on the word
    ``span`` (zeros where they reach past the take's ends), or the loudest ``samples`` of
    a word longer than that."""
    start, end = span
    if end - start > samples:
        first = start + loudest_start(take[start:end], samples)
    else:
        first = (start + end) // 2 - samples // 2
    clip = np.zeros(samples, dtype=take.dtype)
    part = take[max(first, 0) : first + samples]
    clip[max(-first, 0) :][: part.size] = part
    return clip


# -- the session ------------------------------------------------------------------------------


class _Samples:
    """Exactly ``n`` samples at a time from an iterator of chunks (the rest kept)."""

    def __init__(self, chunks: Iterator[np.ndarray]) -> None:
        self.chunks = chunks
        self.pending = np.zeros(0, dtype=np.float32)

    def skip_block(self) -> None:
        """Drop the next chunk (waiting for it) and anything pending."""
        next(self.chunks)
        self.pending = self.pending[:0]

    def read(self, n: int) -> np.ndarray:
        parts, have = [self.pending], self.pending.size
        while have < n:
            chunk = next(self.chunks)  # the microphone raises when it stops delivering
            parts.append(chunk)
            have += chunk.size
        joined = np.concatenate(parts)
        self.pending = joined[n:]
        return joined[:n]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def record(
    word: str,
    out: str | os.PathLike[str],
    count: int,
    *,
    seconds: float | None = None,
    countdown: float = 1.0,
    speaker: str | None = None,
    device: int | str | None = None,
    tries: int = MAX_TRIES,
    say: Callable[[str], None] = _stderr,
    saved: Callable[[Path], None] | None = None,
) -> list[Path]:
    """Record ``count`` accepted takes of ``word`` from the microphone into ``out/word``.

    Args:
        word: the word (folder name), a phrase (``"hey computer"``, folder
            ``hey_computer``), or ``_silence_`` / ``_background_noise_``.
        out: dataset folder; ``out/word`` is created.
        count: takes to keep.
        seconds: length of each take (at least 1; a ``_background_noise_`` take is kept
            whole); None: ``PHRASE_SECONDS`` for a phrase, else ``WORD_SECONDS``.
        countdown: seconds of audio between "get ready" and the prompt (0: none).
        speaker: the speaker's name (hashed by ``speaker_id``); None: the login name.
        device: microphone index or part of its name; None: the default input.
        tries: refused tries of one take before giving up.
        say: shows prompts and messages (default: standard error).
        saved: called with each file as soon as it is written.

    Returns:
        The files written, in order.

    Raises:
        RecordError: bad word, speaker or folder, or a take refused ``tries`` times.
        AudioError: no microphone, sounddevice or PortAudio (``MicrophoneError``).
        ValueError: ``count`` or ``tries`` under 1, ``seconds`` under 1, negative ``countdown``.
    """
    if seconds is None:
        seconds = PHRASE_SECONDS if is_phrase(word) else WORD_SECONDS
    if count < 1 or tries < 1 or not seconds >= MIN_SECONDS or not countdown >= 0:
        raise ValueError("count, tries >= 1, seconds >= 1 and countdown >= 0 required")
    word = check_word(word)
    name = default_speaker() if speaker is None else speaker
    who = speaker_id(name)
    folder, made = prepare_folder(out, phrase_label(word) if is_phrase(word) else word)
    written: list[Path] = []
    try:
        source = open_source(None, BLOCK_S, device=device)
        with source:
            audio = _Samples(iter(source))
            audio.skip_block()  # wait until the device delivers; its first block predates prompts
            origin = "--speaker" if speaker is not None else "user name"
            say(
                f'recording "{word}" into {printable(folder)} from {printable(source.name)} as '
                f"speaker {who} ({origin} {printable(name)}), {seconds:g} s a take; "
                "Ctrl-C to stop"
            )
            for take in range(1, count + 1):
                wave = _accepted_take(
                    audio, word, f"{take}/{count}", seconds, countdown, tries, say
                )
                path = save_take(folder, who, _clip_of(wave, word, say))
                written.append(path)
                if saved is not None:
                    saved(path)
    finally:
        if not written:
            remove_empty(made)
    return written


def _accepted_take(
    audio: _Samples,
    word: str,
    which: str,
    seconds: float,
    countdown: float,
    tries: int,
    say: Callable[[str], None],
) -> np.ndarray:
    """The first of up to ``tries`` takes of ``word`` (take ``which``, "3/10") that the level
    check keeps, (seconds * 16000,) float32.

    Raises:
        RecordError: all ``tries`` were refused.
    """
    action = "stay quiet" if word in ROOM_WORDS else "say"
    problem = ""
    for _ in range(tries):
        if countdown > 0:
            say(f'get ready: "{word}" ({which})')
            audio.read(round(countdown * SAMPLE_RATE))
        say(f'{action} "{word}" ({which})...')
        wave = audio.read(round(seconds * SAMPLE_RATE))
        problem = refusal(wave, word)
        if problem is None:
            return wave
        say(problem)
    last = re.split(r"[,(]", problem)[0].strip()
    raise RecordError(
        f'take {which} of "{word}" refused {tries} times (last: {last}); check the '
        "microphone and its input level (--device; speech-gru stream --list-devices)"
    )


def _clip_of(wave: np.ndarray, word: str, say: Callable[[str], None]) -> np.ndarray:
    """What is written of an accepted take: a ``_background_noise_`` take whole, the middle
    second of a ``_silence_`` take, the second around a word (``cut_clip``), the span of a
    phrase with room around it (``phrases.phrase_clip_samples``, at most the take)."""
    if word == BACKGROUND_NOISE:
        return wave
    if word in ROOM_WORDS:
        return wave[(wave.size - CLIP_SAMPLES) // 2 :][:CLIP_SAMPLES]
    start, end = measure(wave).span
    if is_phrase(word):
        samples = min(phrase_clip_samples(end - start), max(wave.size, CLIP_SAMPLES))
        if end - start > samples:
            say(
                f"the phrase is {(end - start) / SAMPLE_RATE:.2f} s long (over "
                f"{samples / SAMPLE_RATE:g} s): kept its loudest {samples / SAMPLE_RATE:g} s"
            )
        say(f"ok: {(end - start) / SAMPLE_RATE:.2f} s of speech")
        return cut_clip(wave, (start, end), samples)
    if end - start > CLIP_SAMPLES:
        say(
            f"the word is {(end - start) / SAMPLE_RATE:.2f} s long (over 1 s): "
            "kept its loudest second"
        )
    say(f"ok: {(end - start) / SAMPLE_RATE:.2f} s of speech")
    return cut_clip(wave, (start, end))
