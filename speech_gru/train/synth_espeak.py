"""Synthesize a small Speech-Commands-style dataset with espeak-ng (the older layout).

``speech-gru synth`` (``speech_gru/train/synth.py``) is the product's synthesizer: several
engines, vocal-tract length, rooms, real noise, ``_unknown_``. This tool keeps the older
espeak-ng-only folders that the tests' trained model and ``make demo`` use, byte for byte;
the synthesis itself lives in ``speech_gru.train.synth``. Its output::

    OUT/
        yes/1a2b3c4d_nohash_0.wav
        cat/1a2b3c4d_nohash_0.wav       (each "unknown" word in its own folder)
        ...
        _background_noise_/white_noise.wav
        validation_list.txt
        testing_list.txt

Every clip is 16 kHz, mono, 16-bit PCM and exactly one second (``synth.espeak_clip``). A
speaker is an espeak-ng voice (accent + variant), pitch, speed and amplitude
(``synth.EspeakSpeaker``). Everything is deterministic given ``--seed`` and the set of
working voices on the machine.

Example:
    Build the default dataset (20 words, 20 speakers) in ``data/synthetic``::

        python tools/make_synthetic_commands.py data/synthetic --speakers 20
"""

from __future__ import annotations

import argparse
import re
import sys
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from speech_gru.core.audio import SAMPLE_RATE
from speech_gru.core.labels import BACKGROUND_NOISE as BACKGROUND_DIR
from speech_gru.core.labels import COMMANDS
from speech_gru.train.corpus import speaker_of, which_set
from speech_gru.train.synth import (
    NOISE_FILES,
    NOISE_KINDS,
    EspeakNotFoundError,
    make_noise,
    trim_silence,
)
from speech_gru.train.synth import EspeakSpeaker as Speaker
from speech_gru.train.synth import available_espeak_voices as available_voices
from speech_gru.train.synth import espeak_clip as synthesize_clip
from speech_gru.train.synth import espeak_path as _espeak_path
from speech_gru.train.synth import espeak_speak as speak
from speech_gru.train.synth import make_espeak_speakers as make_speakers
from speech_gru.train.synth import write_clip as _write_wav

__all__ = [
    "BACKGROUND_DIR", "NOISE_FILES", "NOISE_KINDS", "UNKNOWN", "EspeakNotFoundError",
    "Speaker", "available_voices", "espeak_path", "make_dataset", "make_noise",
    "make_speakers", "speak", "synthesize_clip", "trim_silence",
]  # fmt: skip

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

ESPEAK_BIN = "espeak-ng"

_WORD_RE = re.compile(r"^[A-Za-z][A-Za-z0-9'_-]*$")


def espeak_path() -> str:
    """Locate ``ESPEAK_BIN`` (this module's, so a test can point it elsewhere).

    Raises:
        EspeakNotFoundError: If it is not on ``PATH``.
    """
    return _espeak_path(ESPEAK_BIN)


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
    _write_wav(path, synthesize_clip(word, speaker, rng), SAMPLE_RATE)
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

    noise_dir = out / BACKGROUND_DIR
    noise_dir.mkdir(parents=True, exist_ok=True)
    noise_files = []
    for i, kind in enumerate(NOISE_KINDS):
        path = noise_dir / NOISE_FILES[kind]
        if not path.exists():
            rng = np.random.default_rng([seed, 0xB6, i])
            _write_wav(path, make_noise(kind, noise_seconds, SAMPLE_RATE, rng), SAMPLE_RATE)
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
