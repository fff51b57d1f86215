"""Synthesize a small Speech-Commands-style dataset with espeak-ng.

The output mirrors the layout of Google Speech Commands::

    OUT/
        yes/1a2b3c4d_nohash_0.wav
        ...
        _background_noise_/white_noise.wav
        validation_list.txt
        testing_list.txt

Every clip is 16 kHz, mono, 16-bit PCM and exactly one second (16000 samples) long: the word
is synthesized by espeak-ng, trimmed of leading and trailing silence, placed at a random offset
and mixed with light noise at a random SNR. A synthetic "speaker" is a combination of an
espeak-ng voice (accent + variant), pitch, speed and amplitude; its 8-hex-char id is the first
8 characters of the SHA-1 of that combination. Everything is deterministic given ``--seed``
and the set of working voices on the machine.

Example:
    Build the default dataset (20 words, 20 speakers) in ``data/synthetic``::

        python tools/make_synthetic_commands.py data/synthetic --speakers 20
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from speech_gru.audio import SAMPLE_RATE
from speech_gru.corpus import speaker_of, which_set
from speech_gru.labels import BACKGROUND_NOISE as BACKGROUND_DIR
from speech_gru.labels import COMMANDS

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

NOISE_KINDS: tuple[str, ...] = ("white", "pink", "brown", "hum")
NOISE_FILES: dict[str, str] = {
    "white": "white_noise.wav",
    "pink": "pink_noise.wav",
    "brown": "brown_noise.wav",
    "hum": "hum.wav",
}

ESPEAK_BIN = "espeak-ng"
INSTALL_HINT = "sudo apt-get install espeak-ng"

ACCENTS: tuple[str, ...] = (
    "en-us",
    "en-gb",
    "en-gb-scotland",
    "en-gb-x-rp",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-029",
    "en-us-nyc",
)
"""Built-in English espeak-ng voices (accents); each is probed and skipped if it fails."""

VARIANTS: tuple[str, ...] = (
    "",
    "m1",
    "m2",
    "m3",
    "m4",
    "m5",
    "m6",
    "m7",
    "f1",
    "f2",
    "f3",
    "f4",
    "f5",
    "klatt",
    "klatt2",
    "klatt3",
    "klatt4",
    "croak",
    "grandpa",
    "grandma",
    "steph",
    "linda",
    "Andy",
    "anika",
    "norbert",
    "travis",
    "shelby",
)
"""espeak-ng voice variants (``voice+variant``); ``""`` is the plain voice."""

MBROLA_VOICES: tuple[str, ...] = ("mb-us1", "mb-us2", "mb-us3", "mb-en1")
"""MBROLA English voices; used only when the MBROLA voice data is installed and works."""

PITCH_RANGE = (25, 75)  # espeak-ng -p, 0..99
SPEED_RANGE = (130, 200)  # espeak-ng -s, words per minute
AMPLITUDE_RANGE = (70, 130)  # espeak-ng -a, 0..200
SNR_DB_RANGE = (20.0, 40.0)  # light noise under each clip
MAX_SPEED = 450
TRIM_DB = 45.0
MAX_FILL = 0.98  # at most this fraction of the clip is speech

_WORD_RE = re.compile(r"^[A-Za-z][A-Za-z0-9'_-]*$")


class EspeakNotFoundError(RuntimeError):
    """Raised when the espeak-ng executable cannot be found."""


@dataclass(frozen=True)
class Speaker:
    """A synthetic speaker: an espeak-ng voice with fixed prosody settings.

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


def espeak_path() -> str:
    """Locate the espeak-ng executable.

    Returns:
        The absolute path to espeak-ng.

    Raises:
        EspeakNotFoundError: If espeak-ng is not on ``PATH``.
    """
    path = shutil.which(ESPEAK_BIN)
    if path is None:
        raise EspeakNotFoundError(f"{ESPEAK_BIN} not found; install it with: {INSTALL_HINT}")
    return path


def _run_espeak(
    word: str, voice: str, pitch: int, speed: int, amplitude: int = 100
) -> tuple[np.ndarray, int]:
    """Run espeak-ng and return its raw float32 output and sample rate."""
    cmd = [
        espeak_path(),
        "-v",
        voice,
        "-p",
        str(int(pitch)),
        "-s",
        str(int(speed)),
        "-a",
        str(int(amplitude)),
        "--stdout",
        word,
    ]
    proc = subprocess.run(cmd, capture_output=True, check=False)
    if proc.returncode != 0 or len(proc.stdout) <= 44:
        msg = proc.stderr.decode(errors="replace").strip().splitlines()
        detail = msg[0] if msg else f"exit status {proc.returncode}, no audio"
        raise RuntimeError(f"espeak-ng failed for voice {voice!r}, word {word!r}: {detail}")
    audio, sr = sf.read(io.BytesIO(proc.stdout), dtype="float32", always_2d=True)
    return audio[:, 0], int(sr)


def speak(
    word: str, voice: str, pitch: int, speed: int, sr: int = SAMPLE_RATE, amplitude: int = 100
) -> np.ndarray:
    """Synthesize one utterance with espeak-ng, resampled to ``sr``.

    The result is espeak-ng's output as is (including its leading/trailing silence); use
    :func:`trim_silence` or :func:`synthesize_clip` for a dataset-style clip.

    Args:
        word: Text to speak.
        voice: espeak-ng voice, optionally with a variant (``"en-us+f3"``).
        pitch: Base pitch, 0-99.
        speed: Words per minute (80-450).
        sr: Output sample rate in Hz.
        amplitude: Loudness, 0-200.

    Returns:
        Mono float32 audio in [-1, 1] at ``sr``.

    Raises:
        EspeakNotFoundError: If espeak-ng is not installed.
        RuntimeError: If espeak-ng fails (for example an unknown or broken voice).
    """
    audio, in_sr = _run_espeak(word, voice, pitch, speed, amplitude)
    if in_sr != sr:
        audio = soxr.resample(audio, in_sr, sr, quality="HQ")
    return np.ascontiguousarray(audio, dtype=np.float32)


def trim_silence(audio: np.ndarray, sr: int = SAMPLE_RATE, top_db: float = TRIM_DB) -> np.ndarray:
    """Remove leading and trailing silence.

    Args:
        audio: Mono audio.
        sr: Sample rate in Hz (sets the 5 ms analysis frame).
        top_db: Frames quieter than the loudest frame by more than this are silence.

    Returns:
        The audio between the first and the last non-silent frame (empty if all silent).
    """
    frame = max(1, sr // 200)
    n_frames = int(np.ceil(len(audio) / frame))
    if n_frames == 0:
        return audio
    padded = np.zeros(n_frames * frame, dtype=np.float64)
    padded[: len(audio)] = audio
    rms = np.sqrt(np.mean(padded.reshape(n_frames, frame) ** 2, axis=1))
    peak = float(rms.max())
    if peak <= 0.0:
        return audio[:0]
    active = np.flatnonzero(rms > peak * 10.0 ** (-top_db / 20.0))
    start = int(active[0]) * frame
    stop = min(len(audio), (int(active[-1]) + 1) * frame)
    return audio[start:stop]


def _normalize(x: np.ndarray, rms: float = 0.1) -> np.ndarray:
    """Scale to a target RMS, then down so the peak stays below 0.99."""
    x = x - x.mean()
    cur = float(np.sqrt(np.mean(x**2)))
    if cur > 0:
        x = x * (rms / cur)
    peak = float(np.abs(x).max()) if len(x) else 0.0
    if peak > 0.99:
        x = x * (0.99 / peak)
    return x.astype(np.float32)


def _colored_noise(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Noise with power spectral density proportional to ``1 / f**exponent``."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n)
    freqs[0] = freqs[1] if n > 1 else 1.0
    spectrum *= freqs ** (-exponent / 2.0)
    spectrum[0] = 0.0
    return np.fft.irfft(spectrum, n)


def make_noise(kind: str, seconds: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Generate background noise.

    Args:
        kind: ``"white"``, ``"pink"`` (1/f), ``"brown"`` (1/f^2), or ``"hum"`` (50 or 60 Hz
            mains hum with harmonics, slow amplitude wobble and a little hiss).
        seconds: Duration; the result has ``round(seconds * sr)`` samples.
        sr: Sample rate in Hz.
        rng: Random generator (the only source of randomness).

    Returns:
        Mono float32 noise with RMS about 0.1 and peak below 0.99.

    Raises:
        ValueError: If ``kind`` is unknown.
    """
    n = int(round(seconds * sr))
    if n <= 0:
        return np.zeros(0, dtype=np.float32)
    if kind == "white":
        x = rng.standard_normal(n)
    elif kind == "pink":
        x = _colored_noise(n, 1.0, rng)
    elif kind == "brown":
        x = _colored_noise(n, 2.0, rng)
    elif kind == "hum":
        t = np.arange(n) / sr
        f0 = float(rng.choice([50.0, 60.0])) * (1.0 + rng.uniform(-0.005, 0.005))
        x = np.zeros(n)
        for k in range(1, 8):
            if k * f0 >= sr / 2:
                break
            gain = rng.uniform(0.3, 1.0) / k
            x += gain * np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi))
        wobble = 1.0 + 0.2 * np.sin(2 * np.pi * rng.uniform(0.1, 0.5) * t)
        x = x * wobble + 0.02 * rng.standard_normal(n)
    else:
        raise ValueError(f"unknown noise kind {kind!r}; expected one of {NOISE_KINDS}")
    return _normalize(x)


def _probe(voice: str) -> bool:
    """Whether espeak-ng can synthesize with ``voice``."""
    try:
        audio, _ = _run_espeak("test", voice, 50, 175)
    except RuntimeError:
        return False
    return bool(np.abs(audio).max() > 0)


@cache
def available_voices() -> tuple[str, ...]:
    """List the English voices that work on this machine.

    Every accent in :data:`ACCENTS` and every MBROLA voice in :data:`MBROLA_VOICES` is probed
    once; failing ones (missing MBROLA data, old espeak-ng) are skipped. Working accents are
    combined with every variant in :data:`VARIANTS`; MBROLA voices are used without variants.

    Returns:
        Voice names such as ``"en-us"``, ``"en-gb+f2"`` or ``"mb-us1"``.

    Raises:
        EspeakNotFoundError: If espeak-ng is not installed.
        RuntimeError: If no English voice works at all.
    """
    espeak_path()
    candidates = ACCENTS + MBROLA_VOICES
    with ThreadPoolExecutor(max_workers=4) as pool:
        ok = dict(zip(candidates, pool.map(_probe, candidates), strict=True))
    accents = [a for a in ACCENTS if ok[a]]
    if not accents:
        raise RuntimeError("espeak-ng is installed but none of its English voices work")
    voices = [a if not v else f"{a}+{v}" for a in accents for v in VARIANTS]
    voices += [m for m in MBROLA_VOICES if ok[m]]
    return tuple(voices)


def make_speakers(n: int, seed: int = 0, voices: Sequence[str] | None = None) -> list[Speaker]:
    """Draw ``n`` distinct synthetic speakers.

    Voices are drawn without replacement from a seeded shuffle of ``voices`` (cycling when
    ``n`` exceeds their number); pitch, speed and amplitude are drawn uniformly.

    Args:
        n: Number of speakers.
        seed: Random seed.
        voices: Voices to draw from; defaults to :func:`available_voices`.

    Returns:
        Speakers with pairwise distinct ids.
    """
    pool = list(voices if voices is not None else available_voices())
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


def _fade_out(x: np.ndarray, n: int) -> np.ndarray:
    x = x.copy()
    n = min(n, len(x))
    if n > 0:
        x[-n:] *= np.linspace(1.0, 0.0, n, dtype=x.dtype)
    return x


def synthesize_clip(
    word: str, speaker: Speaker, rng: np.random.Generator, sr: int = SAMPLE_RATE
) -> np.ndarray:
    """Make one dataset clip: a one-second recording of ``word`` by ``speaker``.

    The word is trimmed of silence, sped up (or, as a last resort, truncated with a fade-out)
    if it is longer than the clip, placed at a random offset and mixed with white, pink or
    brown noise at a random SNR in :data:`SNR_DB_RANGE`.

    Args:
        word: Word to speak.
        speaker: The synthetic speaker.
        rng: Random generator for offset, noise and SNR.
        sr: Sample rate; the clip has exactly ``sr`` samples.

    Returns:
        Float32 audio of ``sr`` samples with peak below 1.
    """
    max_len = int(sr * MAX_FILL)
    speed = speaker.speed
    voiced = trim_silence(speak(word, speaker.voice, speaker.pitch, speed, sr, speaker.amplitude))
    for _ in range(3):
        if len(voiced) <= max_len or speed >= MAX_SPEED:
            break
        speed = min(MAX_SPEED, int(np.ceil(speed * len(voiced) / max_len * 1.08)))
        voiced = trim_silence(
            speak(word, speaker.voice, speaker.pitch, speed, sr, speaker.amplitude)
        )
    if len(voiced) > max_len:
        voiced = _fade_out(voiced[:max_len], sr // 50)

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


def _to_int16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 32767.0), -32768, 32767).astype(np.int16)


def _write_wav(path: Path, audio: np.ndarray, sr: int) -> None:
    """Write 16-bit PCM WAV atomically (temp file + rename) so reruns never see partial files."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    sf.write(tmp, _to_int16(audio), sr, subtype="PCM_16", format="WAV")
    os.replace(tmp, path)


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
        description="Synthesize a small Speech-Commands-style dataset with espeak-ng."
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
