"""espeak-ng-only synthetic folders (the older layout): the tests' model trains on them and
``evaluate-stream --espeak`` speaks with their speakers.

``speech-gru synth`` (``synth.py``) is the product's synthesizer: several engines,
vocal-tract length, rooms, real noise, ``_unknown_``. This module keeps the older
espeak-ng-only folders byte for byte. Its output::

    OUT/
        yes/1a2b3c4d_nohash_0.wav
        cat/1a2b3c4d_nohash_0.wav       (each "unknown" word in its own folder)
        ...
        _background_noise_/white_noise.wav
        validation_list.txt
        testing_list.txt

Every clip is 16 kHz, mono, 16-bit PCM and exactly one second (``synthesize_clip``). A
speaker is an espeak-ng voice (accent + variant), pitch, speed and amplitude
(``Speaker``). Everything is deterministic given ``--seed`` and the set of working voices
on the machine.

Example:
    Build the default dataset (20 words, 20 speakers) in ``data/synthetic``::

        python -m speech_gru.train.synth_espeak data/synthetic --speakers 20
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from speech_gru.core.audio import SAMPLE_RATE
from speech_gru.core.labels import BACKGROUND_NOISE, COMMANDS
from speech_gru.train.corpus import speaker_of, which_set
from speech_gru.train.synth_speakers import (
    MAX_FILL,
    NOISE_FILES,
    NOISE_KINDS,
    fade_out,
    make_noise,
    trim_silence,
    write_clip,
)
from speech_gru.train.synth_voices import (
    MAX_SPEED,
    EspeakNotFoundError,
    available_espeak_voices,
    espeak_path,
    espeak_speak,
)

UNKNOWN: tuple[str, ...] = (
    "bed",
    "bird",
    "cat",
    "dog",
    "happy",
    "house",
    "marvin",
    "sheila",
    "tree",
    "wow",
)
"""Auxiliary words of the real dataset, used for the "unknown" class."""

_WORD_RE = re.compile(r"^[A-Za-z][A-Za-z0-9'_-]*$")

PITCH_RANGE = (25, 75)  # espeak-ng -p, 0..99
SPEED_RANGE = (130, 200)  # espeak-ng -s, words per minute
AMPLITUDE_RANGE = (70, 130)  # espeak-ng -a, 0..200
SNR_DB_RANGE = (20.0, 40.0)  # light noise under each clip


@dataclass(frozen=True)
class Speaker:
    """An espeak-ng voice with fixed prosody settings (the older synthetic folders).

    Attributes:
        voice: espeak-ng voice name, optionally with a variant (``"en-gb+f2"``).
        pitch: Base pitch, espeak-ng ``-p`` (0-99).
        speed: Speaking rate in words per minute, espeak-ng ``-s``.
        amplitude: Loudness, espeak-ng ``-a`` (0-200, 100 is the default).
    """

    voice: str
    pitch: int
    speed: int
    amplitude: int

    @property
    def id(self) -> str:
        """The 8-hex-char speaker id: the start of the SHA-1 of the combination."""
        key = f"{self.voice}|{self.pitch}|{self.speed}|{self.amplitude}"
        return hashlib.sha1(key.encode()).hexdigest()[:8]


def make_speakers(n: int, seed: int = 0, voices: Sequence[str] | None = None) -> list[Speaker]:
    """Draw ``n`` distinct espeak-ng speakers.

    Voices are drawn without replacement from a seeded shuffle of ``voices`` (cycling when
    ``n`` exceeds their number); pitch, speed and amplitude are drawn uniformly.

    Args:
        n: Number of speakers.
        seed: Random seed.
        voices: Voices to draw from; defaults to ``available_espeak_voices()``.

    Returns:
        Speakers with pairwise distinct ids.
    """
    pool = list(voices if voices is not None else available_espeak_voices())
    if not pool:
        raise ValueError("no voices to draw speakers from")
    rng = np.random.default_rng([seed, 0x5EA4])
    order = [pool[i] for i in rng.permutation(len(pool))]
    speakers: list[Speaker] = []
    seen: set[str] = set()
    i = 0
    while len(speakers) < n:
        spk = Speaker(
            voice=order[i % len(order)],
            pitch=int(rng.integers(PITCH_RANGE[0], PITCH_RANGE[1] + 1)),
            speed=int(rng.integers(SPEED_RANGE[0], SPEED_RANGE[1] + 1)),
            amplitude=int(rng.integers(AMPLITUDE_RANGE[0], AMPLITUDE_RANGE[1] + 1)),
        )
        i += 1
        if spk.id not in seen:
            seen.add(spk.id)
            speakers.append(spk)
    return speakers


def synthesize_clip(
    word: str, speaker: Speaker, rng: np.random.Generator, sr: int = SAMPLE_RATE
) -> np.ndarray:
    """One second of ``word`` by an espeak-ng ``speaker``, over light noise.

    The word is trimmed of silence, sped up (or, as a last resort, truncated with a
    fade-out) if it is longer than the clip, placed at a random offset and mixed with white,
    pink or brown noise at a random SNR in ``SNR_DB_RANGE``.

    Returns:
        Float32 audio of ``sr`` samples with peak below 1.
    """
    max_len = int(sr * MAX_FILL)
    speed = speaker.speed
    voiced = trim_silence(
        espeak_speak(word, speaker.voice, speaker.pitch, speed, sr, speaker.amplitude)
    )
    for _ in range(3):
        if len(voiced) <= max_len or speed >= MAX_SPEED:
            break
        speed = min(MAX_SPEED, int(np.ceil(speed * len(voiced) / max_len * 1.08)))
        voiced = trim_silence(
            espeak_speak(word, speaker.voice, speaker.pitch, speed, sr, speaker.amplitude)
        )
    if len(voiced) > max_len:
        voiced = fade_out(voiced[:max_len], sr // 50)

    clip = np.zeros(sr, dtype=np.float64)
    offset = int(rng.integers(0, sr - len(voiced) + 1))
    clip[offset : offset + len(voiced)] = voiced

    speech_rms = float(np.sqrt(np.mean(np.square(voiced, dtype=np.float64)))) if len(voiced) else 0
    kind = str(rng.choice(NOISE_KINDS[:3]))
    snr_db = float(rng.uniform(*SNR_DB_RANGE))
    noise = make_noise(kind, 1.0, sr, rng).astype(np.float64)
    noise_rms = float(np.sqrt(np.mean(noise**2)))
    level = max(speech_rms, 1e-3) / 10.0 ** (snr_db / 20.0)
    clip += noise * (level / noise_rms)
    peak = float(np.abs(clip).max())
    if peak > 0.97:
        clip *= 0.97 / peak
    return clip.astype(np.float32)


def _clip_rng(seed: int, speaker: Speaker, word: str, rep: int) -> np.random.Generator:
    """Per-file generator, independent of scheduling and of which files already exist."""
    return np.random.default_rng([seed, int(speaker.id, 16), zlib.crc32(word.encode()), rep])


def _make_one(path: Path, word: str, speaker: Speaker, rep: int, seed: int) -> bool:
    """Create one clip unless it exists. Returns True if a file was written."""
    if path.exists():
        return False
    rng = _clip_rng(seed, speaker, word, rep)
    if rep > 0:
        # Repetitions of a speaker vary a little, like a person saying a word twice.
        speaker = Speaker(
            voice=speaker.voice,
            pitch=int(np.clip(speaker.pitch + rng.integers(-4, 5), 0, 99)),
            speed=int(speaker.speed + rng.integers(-8, 9)),
            amplitude=int(np.clip(speaker.amplitude + rng.integers(-10, 11), 0, 200)),
        )
    write_clip(path, synthesize_clip(word, speaker, rng), SAMPLE_RATE)
    return True


def _write_split_lists(out: Path) -> None:
    """Write ``validation_list.txt`` and ``testing_list.txt`` for all clips under ``out``."""
    lists: dict[str, list[str]] = {"validation": [], "testing": []}
    for wav in sorted(out.glob("*/*.wav")):
        if wav.parent.name.startswith("_"):
            continue
        split = which_set(speaker_of(wav.name), 10.0, 10.0)
        if split in lists:
            lists[split].append(f"{wav.parent.name}/{wav.name}")
    for split, names in lists.items():
        text = "".join(f"{name}\n" for name in names)
        (out / f"{split}_list.txt").write_text(text)


def _check_words(words: Iterable[str]) -> list[str]:
    result = list(dict.fromkeys(words))
    for word in result:
        if not _WORD_RE.match(word):
            raise ValueError(f"invalid word {word!r}: use letters, digits, ' _ -")
    return result


def make_dataset(
    out: Path,
    *,
    words: Sequence[str] = COMMANDS,
    unknown_words: Sequence[str] = UNKNOWN,
    speakers: int = 20,
    repeats: int = 1,
    noise_seconds: float = 10.0,
    seed: int = 0,
    jobs: int = 2,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Synthesize a Speech-Commands-style dataset under ``out``.

    Idempotent: existing clips and noise files are kept as they are, so an interrupted run can
    be resumed and a rerun is nearly free. The split lists are rewritten every time.

    Args:
        out: Output folder (created if needed).
        words: Command words, one folder each.
        unknown_words: Additional words, one folder each (the "unknown" class).
        speakers: Number of synthetic speakers.
        repeats: Utterances per speaker and word (``N`` in ``SPEAKER_nohash_N.wav``).
        noise_seconds: Length of each background-noise file.
        seed: Random seed; the same seed (and the same set of working voices) gives
            byte-identical files.
        jobs: Worker threads (each runs espeak-ng as a subprocess).
        progress: Optional ``callback(done, total)`` called after each clip.

    Returns:
        A summary: ``files_per_word`` (word -> clips of this run's speakers and repeats),
        ``speakers`` (count), ``speaker_ids``, ``voices``, ``noise_files``, ``created``,
        ``skipped`` and ``seconds``.

    Raises:
        EspeakNotFoundError: If espeak-ng is not installed.
        ValueError: On invalid arguments.
    """
    start = time.perf_counter()
    if speakers < 1 or repeats < 1:
        raise ValueError("speakers and repeats must be >= 1")
    all_words = _check_words([*words, *unknown_words])
    if not all_words:
        raise ValueError("no words given")
    out = Path(out)
    spk_list = make_speakers(speakers, seed)

    noise_dir = out / BACKGROUND_NOISE
    noise_dir.mkdir(parents=True, exist_ok=True)
    noise_files = []
    for i, kind in enumerate(NOISE_KINDS):
        path = noise_dir / NOISE_FILES[kind]
        if not path.exists():
            rng = np.random.default_rng([seed, 0xB6, i])
            write_clip(path, make_noise(kind, noise_seconds, SAMPLE_RATE, rng), SAMPLE_RATE)
        noise_files.append(path.name)

    tasks = []
    for word in all_words:
        (out / word).mkdir(parents=True, exist_ok=True)
        for spk in spk_list:
            for rep in range(repeats):
                path = out / word / f"{spk.id}_nohash_{rep}.wav"
                tasks.append((path, word, spk, rep, seed))

    created = 0
    total = len(tasks)
    if progress is not None:
        progress(0, total)
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [pool.submit(_make_one, *task) for task in tasks]
        for done, fut in enumerate(futures, start=1):
            created += int(fut.result())
            if progress is not None:
                progress(done, total)

    _write_split_lists(out)
    return {
        "out": str(out),
        "files_per_word": {word: speakers * repeats for word in all_words},
        "speakers": len(spk_list),
        "speaker_ids": [spk.id for spk in spk_list],
        "voices": sorted({spk.voice for spk in spk_list}),
        "noise_files": noise_files,
        "created": created,
        "skipped": total - created,
        "seconds": time.perf_counter() - start,
    }


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Synthesize a small Speech-Commands-style dataset with espeak-ng "
        "(speech-gru synth makes richer ones)."
    )
    parser.add_argument("out", type=Path, help="output folder")
    parser.add_argument("--speakers", type=int, default=20, help="synthetic speakers (20)")
    parser.add_argument("--repeats", type=int, default=1, help="utterances per speaker/word (1)")
    parser.add_argument("--words", nargs="+", default=list(COMMANDS), help="command words")
    parser.add_argument(
        "--unknown-words", nargs="*", default=list(UNKNOWN), help="extra 'unknown' words"
    )
    parser.add_argument("--noise-seconds", type=float, default=10.0, help="noise length (10)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (0)")
    parser.add_argument("--jobs", type=int, default=2, help="worker threads (2)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point.

    Args:
        argv: Arguments without the program name; defaults to ``sys.argv[1:]``.

    Returns:
        The exit status (0 on success).
    """
    args = _parse_args(argv)
    try:
        espeak_path()
    except EspeakNotFoundError as exc:
        raise SystemExit(f"error: {exc}") from None

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    console = Console(stderr=True)
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("synthesizing", total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        try:
            summary = make_dataset(
                args.out,
                words=args.words,
                unknown_words=args.unknown_words,
                speakers=args.speakers,
                repeats=args.repeats,
                noise_seconds=args.noise_seconds,
                seed=args.seed,
                jobs=args.jobs,
                progress=update,
            )
        except (ValueError, RuntimeError) as exc:
            raise SystemExit(f"error: {exc}") from None
    n_words = len(summary["files_per_word"])
    print(
        f"{summary['out']}: {n_words} words x {summary['speakers']} speakers x {args.repeats} "
        f"repeats ({summary['created']} clips created, {summary['skipped']} existing), "
        f"{len(summary['noise_files'])} noise files, {len(summary['voices'])} voices, "
        f"{summary['seconds']:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
