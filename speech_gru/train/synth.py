"""Synthetic speakers for any word: a Speech Commands-layout dataset from text-to-speech.

``synthesize_dataset`` (``speech-gru synth``) writes::

    OUT/WORD/SPEAKER_nohash_N.wav              a requested word, take N of a speaker
    OUT/_unknown_/WORD_SPEAKER_nohash_N.wav    other words, named as the real test archive
    OUT/_background_noise_/*.wav               the --noise recordings, or generated noise
    OUT/synth.json                             the settings and speakers of every run

Every clip is 16 kHz mono 16-bit PCM, exactly one second, the word at a random offset.

Engines and voices. espeak-ng (English accents x voice variants, and MBROLA voices when
installed), flite (the voices ``flite -lv`` lists, less the ``*_time`` ones, which only
say the time) and festival (``text2wave``; the English voices it lists). Each voice is
probed once per process and left out if it fails; an engine that is not installed is
skipped with one warning; with none at all ``SynthError`` names the Debian packages.

A speaker (``Speaker``) is one voice with fixed settings; its id is the first 8 hex
digits of the SHA-1 of those settings, so the folder split by speaker hash works. The
speakers are dealt to the engines in turn, each cycling through a seeded shuffle of its
voices, so every engine has an equal share however many voices it has. Settings:

* ``pitch``, semitones from the voice's own, uniform in +-4: espeak-ng ``-p`` (50 + 6.25
  per semitone, about), flite ``int_f0_target_mean`` (kal, kal16, slt), festival's
  diphone voices' ``int_lr_params``. flite's awb and rms and festival's HTS voices have
  no pitch control: their pitch moves with ``vtl`` only.
* ``tempo``, the speaking-rate factor, uniform in 0.8-1.25: espeak-ng ``-s`` (175 words
  per minute x tempo), flite ``duration_stretch``, festival ``Duration_Stretch`` (its HTS
  voices: hts_engine's ``-r``).
* ``vtl``, the vocal-tract-length factor a, uniform in 0.85-1.15. The engine's waveform is
  resampled to 16000 / a Hz and then read as 16 kHz, so every frequency is multiplied by
  a: the formants move as for a vocal tract 1/a times as long. That also shortens the
  word by a, so the engine is asked beforehand to speak a times slower (tempo / a) and the
  word keeps its drawn length. Pitch is not corrected: it moves with the formants, on top
  of ``pitch``, as a smaller body usually has both a shorter tract and a higher voice. The
  band shifts too: with a < 1 the top (1 - a) x 8 kHz is empty, with a > 1 the engine's
  content above 8 / a kHz is cut.
* ``level``, the word's RMS in dBFS, uniform in -32 to -18.
* ``room``: a share of the speakers (``reverb``, default 0.75) talk in a shoebox room
  (size 3-8 x 2.5-6 x 2.4-3.5 m, RT60 uniform in 0.1-0.7 s, the microphone 0.3-1.5 m from the
  mouth); the others are dry, close to the microphone. The room's impulse response comes
  from pyroomacoustics' image-source method (walls' absorption from Sabine's formula for
  the RT60; image order capped at 60, which trims the longest tails a little), computed
  once per speaker, aligned to its direct path.

A clip (``synthesize_clip``): each take jitters the speaker a little (tempo +-5 %, pitch
+-0.5 semitone, level +-2 dB); the word is synthesized, shifted by ``vtl``, trimmed of
silence, spoken faster if it would fill more than 0.98 s (cut with a fade as a last
resort), placed at a random offset, convolved with the room's response (the tail stops at
the clip's end), scaled to its level over the word's span, and mixed with noise at a
random SNR (``snr``, 15-40 dB by default; speech RMS over the word's span to noise RMS
over the clip): a random second of a ``noise_dir`` recording, or generated white, pink
or brown noise. The peak is then limited to 0.97. Each clip has its own random generator
(seed, speaker, word, take), so the result does not depend on ``jobs`` or on which files
exist: the same seed and set of working voices give the same files.

The output folder. A folder is written only when it is missing, empty, a dataset (word
folders of audio clips only, as ``speech-gru record`` writes: synthetic clips join the
recordings, none is replaced) or holds the ``synth.json`` of an earlier run: never over
anything else. In an earlier output,
existing clips and noise files are kept as they are and missing ones added, so an
interrupted run resumes and a run with more takes, speakers or words extends the set.

The espeak-ng-only speakers of the older synthetic folders (``EspeakSpeaker``,
``espeak_clip``; ``tools/make_synthetic_commands.py``, ``evaluate-stream --espeak``) live
here too, unchanged.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import math
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from speech_gru.core.atomic import write_atomic
from speech_gru.core.audio import SAMPLE_RATE, AudioError, load_audio
from speech_gru.core.labels import BACKGROUND_NOISE, UNKNOWN
from speech_gru.train.corpus import audio_files, is_audio

log = logging.getLogger(__name__)

APT_PACKAGES = (
    "espeak-ng",
    "flite",
    "festival",
    "festvox-kallpc16k",
    "festvox-kdlpc16k",
    "festvox-us-slt-hts",
)
"""Debian packages of the engines and voices ``synthesize_dataset`` uses."""
MANIFEST = "synth.json"
"""The file that marks a folder as synth output; it records every run's settings."""
PYROOMACOUSTICS_HINT = "pip install pyroomacoustics"

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

PITCH_SEMITONES = (-4.0, 4.0)
TEMPO_RANGE = (0.8, 1.25)
VTL_RANGE = (0.85, 1.15)
LEVEL_DBFS = (-32.0, -18.0)
TAKE_TEMPO = 0.05  # each take: tempo x (1 +- 0.05)
TAKE_PITCH = 0.5  # semitones
TAKE_LEVEL_DB = 2.0
ROOM_SIZE = ((3.0, 8.0), (2.5, 6.0), (2.4, 3.5))  # metres: length, width, height
RT60_RANGE = (0.1, 0.7)  # seconds
MIC_DISTANCE = (0.3, 1.5)  # metres from the mouth
MAX_IMAGE_ORDER = 60
SNR_RANGE = (15.0, 40.0)
REVERB_SHARE = 0.75
UNKNOWN_PER_SPEAKER = 3
NOISE_SECONDS = 30.0
MAX_TEMPO = 3.0
PEAK = 0.97

_WORD = re.compile(r"[a-z]+")


class SynthError(Exception):
    """A problem with what was asked (words, folders, engines): one line, no traceback."""


# --------------------------------------------------------------------------------------------
# Signal helpers (shared with the espeak-ng-only folders below)
# --------------------------------------------------------------------------------------------

MAX_SPEED = 450
TRIM_DB = 45.0
MAX_FILL = 0.98  # at most this fraction of the clip is speech

NOISE_KINDS: tuple[str, ...] = ("white", "pink", "brown", "hum")
NOISE_FILES: dict[str, str] = {
    "white": "white_noise.wav",
    "pink": "pink_noise.wav",
    "brown": "brown_noise.wav",
    "hum": "hum.wav",
}


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


def _fade_out(x: np.ndarray, n: int) -> np.ndarray:
    x = x.copy()
    n = min(n, len(x))
    if n > 0:
        x[-n:] *= np.linspace(1.0, 0.0, n, dtype=x.dtype)
    return x


def _to_int16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 32767.0), -32768, 32767).astype(np.int16)


def write_clip(path: Path, audio: np.ndarray, sr: int = SAMPLE_RATE) -> None:
    """Write 16-bit PCM WAV atomically (temp file + rename): a rerun never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        sf.write(tmp, _to_int16(audio), sr, subtype="PCM_16", format="WAV")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------
# Engines
# --------------------------------------------------------------------------------------------


def _run(cmd: Sequence[str], what: str, stdin: bytes | None = None) -> bytes:
    """Run an engine; its standard output, or RuntimeError with its first error line."""
    proc = subprocess.run(list(cmd), input=stdin, capture_output=True, check=False)
    if proc.returncode != 0:
        msg = proc.stderr.decode(errors="replace").strip().splitlines()
        detail = msg[0] if msg else f"exit status {proc.returncode}"
        raise RuntimeError(f"{what}: {detail}")
    return proc.stdout


def _read_wav(data: bytes, what: str) -> tuple[np.ndarray, int]:
    try:
        audio, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError) as err:
        raise RuntimeError(f"{what}: no audio ({err})") from None
    if audio.shape[0] == 0 or not np.abs(audio).max() > 0:
        raise RuntimeError(f"{what}: no audio")
    return np.ascontiguousarray(audio[:, 0]), int(sr)


def _via_file(cmd: Callable[[str], list[str]], what: str, stdin: bytes | None = None) -> bytes:
    """Run an engine that writes a WAV file (seekable, so its header is complete)."""
    with tempfile.TemporaryDirectory(prefix="speech_gru_synth_") as tmp:
        path = os.path.join(tmp, "out.wav")
        _run(cmd(path), what, stdin)
        if not os.path.isfile(path):
            raise RuntimeError(f"{what}: no audio written")
        with open(path, "rb") as f:
            return f.read()


class Engine:
    """A text-to-speech program: its voices and how to speak a word with settings."""

    name = ""
    binary = ""
    package = ""

    def path(self) -> str | None:
        return shutil.which(self.binary)

    def candidates(self) -> tuple[str, ...]:
        """Voices worth probing."""
        raise NotImplementedError

    def speak(
        self, word: str, voice: str, tempo: float = 1.0, pitch: float = 0.0
    ) -> tuple[np.ndarray, int]:
        """Synthesize ``word``.

        Args:
            word: lower-case letters.
            voice: one of ``voices()``.
            tempo: speaking-rate factor (2 is twice as fast).
            pitch: semitones from the voice's own (ignored by voices without control).

        Returns:
            Mono float32 audio and its sample rate.

        Raises:
            RuntimeError: the engine failed or gave no audio.
        """
        raise NotImplementedError

    def _probe(self, voice: str) -> bool:
        try:
            audio, sr = self.speak("test", voice)
        except (RuntimeError, OSError):
            return False
        return audio.size > sr // 20

    def voices(self) -> tuple[str, ...]:
        """The candidate voices that work here (probed once per process, in parallel)."""
        return _working_voices(self.name)


class Espeak(Engine):
    name = "espeak-ng"
    binary = "espeak-ng"
    package = "espeak-ng"

    def candidates(self) -> tuple[str, ...]:
        return ACCENTS + MBROLA_VOICES

    def voices(self) -> tuple[str, ...]:
        return available_espeak_voices()

    def speak(
        self, word: str, voice: str, tempo: float = 1.0, pitch: float = 0.0
    ) -> tuple[np.ndarray, int]:
        p = int(np.clip(round(50 + 6.25 * pitch), 0, 99))
        s = int(np.clip(round(175 * tempo), 80, MAX_SPEED))
        return _run_espeak(word, voice, p, s)


class Flite(Engine):
    name = "flite"
    binary = "flite"
    package = "flite"
    F0 = {"kal": 95.0, "kal16": 95.0, "slt": 175.0}
    """Mean pitch (Hz) of the voices whose ``int_f0_target_mean`` flite obeys."""

    def candidates(self) -> tuple[str, ...]:
        text = _run([self.binary, "-lv"], "flite -lv").decode(errors="replace")
        names = text.split(":", 1)[-1].split()
        return tuple(n for n in names if not n.endswith("_time"))  # *_time: says times only

    def speak(
        self, word: str, voice: str, tempo: float = 1.0, pitch: float = 0.0
    ) -> tuple[np.ndarray, int]:
        settings = ["--setf", f"duration_stretch={1.0 / tempo:.4f}"]
        if voice in self.F0:
            settings += ["--setf", f"int_f0_target_mean={self.F0[voice] * 2 ** (pitch / 12):.2f}"]
        what = f"flite voice {voice!r}, word {word!r}"

        def cmd(path: str) -> list[str]:
            return [self.binary, "-voice", voice, *settings, "-t", word, "-o", path]

        return _read_wav(_via_file(cmd, what), what)


class Festival(Engine):
    name = "festival"
    binary = "text2wave"
    package = "festival"
    ENGLISH = re.compile(r"^((kal|ked|rab|don)_diphone|(cmu|cstr)_(us|uk|edi)_\w+|us[123]_mbrola)$")
    """Festival's English voices (it may list others' languages too)."""

    def candidates(self) -> tuple[str, ...]:
        if shutil.which("festival") is None:
            return ()
        out = _run(["festival", "--pipe"], "festival", b"(print (voice.list))\n")
        names = out.decode(errors="replace").strip().strip("()").split()
        return tuple(sorted(n for n in names if self.ENGLISH.match(n)))

    def speak(
        self, word: str, voice: str, tempo: float = 1.0, pitch: float = 0.0
    ) -> tuple[np.ndarray, int]:
        evals = [f"(voice_{voice})", f"(Parameter.set 'Duration_Stretch {1.0 / tempo:.4f})"]
        if "_hts" in voice:  # hts_engine ignores Duration_Stretch; its own -r is the rate
            evals.append(f'(set! hts_engine_params (append hts_engine_params (list (list "-r" '
                         f"{tempo:.4f}))))")  # fmt: skip
        if voice.endswith("_diphone"):  # linear-regression intonation, 105 Hz mean
            scale = 2 ** (pitch / 12)
            evals.append(
                f"(set! int_lr_params '((target_f0_mean {105 * scale:.2f}) "
                f"(target_f0_std {14 * scale:.2f}) (model_f0_mean 170) (model_f0_std 34)))"
            )
        what = f"festival voice {voice!r}, word {word!r}"

        def cmd(path: str) -> list[str]:
            return [self.binary, *(x for e in evals for x in ("-eval", e)), "-o", path]

        return _read_wav(_via_file(cmd, what, f"{word}\n".encode()), what)


ENGINES: dict[str, Engine] = {e.name: e for e in (Espeak(), Flite(), Festival())}
"""The engines, in the order speakers are dealt to them."""


@cache
def _working_voices(name: str) -> tuple[str, ...]:
    engine = ENGINES[name]
    try:
        candidates = engine.candidates()
    except (RuntimeError, OSError):
        return ()
    with ThreadPoolExecutor(max_workers=4) as pool:
        ok = list(pool.map(engine._probe, candidates))
    for voice, good in zip(candidates, ok, strict=True):
        if not good:
            log.debug("%s voice %s does not work here; left out", name, voice)
    return tuple(v for v, good in zip(candidates, ok, strict=True) if good)


def install_hint() -> str:
    return f"sudo apt-get install {' '.join(APT_PACKAGES)}"


def available_engines(names: Iterable[str] | None = None) -> dict[str, tuple[str, ...]]:
    """The engines (of ``names``, default all) installed here, with their working voices.

    An engine that is missing, or has no working voice, is left out with one warning.

    Raises:
        SynthError: an unknown engine name, or no engine works.
    """
    wanted = list(dict.fromkeys(names)) if names is not None else list(ENGINES)
    unknown = [n for n in wanted if n not in ENGINES]
    if unknown:
        raise SynthError(f"unknown engine {unknown[0]!r}: choose from {', '.join(ENGINES)}")
    found = {}
    for name in wanted:
        engine = ENGINES[name]
        if engine.path() is None:
            log.warning("%s is not installed; skipping it (apt-get install %s)", name,
                        engine.package)  # fmt: skip
            continue
        if voices := engine.voices():
            found[name] = voices
        else:
            log.warning("%s is installed but none of its English voices works; skipping it", name)
    if not found:
        raise SynthError(
            f"no speech synthesizer works ({', '.join(wanted)}); install them with: "
            f"{install_hint()}"
        )
    return found


# --------------------------------------------------------------------------------------------
# Speakers
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Room:
    """A shoebox room: size (m), reverberation time RT60 (s), mouth and microphone (m)."""

    size: tuple[float, float, float]
    rt60: float
    source: tuple[float, float, float]
    mic: tuple[float, float, float]


@dataclass(frozen=True)
class Speaker:
    """A synthetic speaker: one voice of one engine with fixed settings (module docstring).

    Attributes:
        engine: ``"espeak-ng"``, ``"flite"`` or ``"festival"``.
        voice: the engine's voice (``"en-gb+f2"``, ``"slt"``, ``"kal_diphone"``).
        pitch: semitones from the voice's own.
        tempo: speaking-rate factor.
        vtl: vocal-tract-length factor; formants are multiplied by it.
        level: the word's RMS, dBFS.
        room: the room talked in, or None (dry).
    """

    engine: str
    voice: str
    pitch: float
    tempo: float
    vtl: float
    level: float
    room: Room | None = None

    @property
    def id(self) -> str:
        """8 hex digits: the start of the SHA-1 of the settings."""
        key = json.dumps(dataclasses.asdict(self), sort_keys=True)
        return hashlib.sha1(key.encode()).hexdigest()[:8]

    def to_dict(self) -> dict:
        return {"id": self.id, **dataclasses.asdict(self)}


def _uniform(rng: np.random.Generator, bounds: tuple[float, float], digits: int = 3) -> float:
    return round(float(rng.uniform(*bounds)), digits)


def draw_room(rng: np.random.Generator) -> Room:
    """A random shoebox room whose RT60 its walls can give (absorption below 1)."""
    size = tuple(_uniform(rng, b, 2) for b in ROOM_SIZE)
    length, width, height = size
    volume = length * width * height
    surface = 2 * (length * width + length * height + width * height)
    shortest = 1.05 * 24 * math.log(10) / 343.0 * volume / surface  # Sabine, absorption 1
    rt60 = _uniform(rng, (max(RT60_RANGE[0], shortest), RT60_RANGE[1]))
    source = (
        _uniform(rng, (0.5, length - 0.5), 2),
        _uniform(rng, (0.5, width - 0.5), 2),
        _uniform(rng, (1.1, 1.8), 2),
    )
    distance = float(rng.uniform(*MIC_DISTANCE))
    angle = float(rng.uniform(0, 2 * math.pi))
    mic = (
        round(float(np.clip(source[0] + distance * math.cos(angle), 0.3, length - 0.3)), 2),
        round(float(np.clip(source[1] + distance * math.sin(angle), 0.3, width - 0.3)), 2),
        _uniform(rng, (0.7, 1.6), 2),
    )
    return Room(size, rt60, source, mic)  # type: ignore[arg-type]


def make_speakers(
    n: int,
    seed: int = 0,
    voices: dict[str, tuple[str, ...]] | None = None,
    reverb: float = REVERB_SHARE,
) -> list[Speaker]:
    """Draw ``n`` speakers with pairwise distinct ids.

    Speaker ``i`` uses engine ``i mod E`` (in ``ENGINES`` order), each engine cycling through
    a seeded shuffle of its voices; the settings are drawn uniformly (module docstring).

    Args:
        n: number of speakers.
        seed: random seed.
        voices: engine -> working voices; default ``available_engines()``.
        reverb: share of speakers in a room (the rest are dry).
    """
    voices = voices if voices is not None else available_engines()
    engines = [name for name in ENGINES if voices.get(name)]
    if not engines:
        raise SynthError("no voices to draw speakers from")
    rng = np.random.default_rng([seed, 0x5E4C])
    orders = {e: [voices[e][i] for i in rng.permutation(len(voices[e]))] for e in engines}
    used = dict.fromkeys(engines, 0)
    speakers: list[Speaker] = []
    seen: set[str] = set()
    while len(speakers) < n:
        engine = engines[len(speakers) % len(engines)]
        voice = orders[engine][used[engine] % len(orders[engine])]
        used[engine] += 1
        speaker = Speaker(
            engine=engine,
            voice=voice,
            pitch=_uniform(rng, PITCH_SEMITONES, 2),
            tempo=_uniform(rng, TEMPO_RANGE),
            vtl=_uniform(rng, VTL_RANGE),
            level=_uniform(rng, LEVEL_DBFS, 1),
            room=draw_room(rng) if rng.random() < reverb else None,
        )
        if speaker.id not in seen:
            seen.add(speaker.id)
            speakers.append(speaker)
    return speakers


def _pyroomacoustics():  # noqa: ANN202 - the module
    try:
        import pyroomacoustics
    except ImportError:
        raise SynthError(f"reverberation needs pyroomacoustics: {PYROOMACOUSTICS_HINT}") from None
    return pyroomacoustics


@lru_cache(maxsize=1024)
def room_impulse_response(room: Room, sr: int = SAMPLE_RATE) -> np.ndarray:
    """The room's impulse response from mouth to microphone, peak 1, from its direct path.

    Image-source method (pyroomacoustics, deterministic), walls' absorption from Sabine's
    formula for ``room.rt60``, image order at most ``MAX_IMAGE_ORDER``.

    Returns:
        (n,) float32, its largest sample (the direct path) 40 samples in (the centre of
        pyroomacoustics' fractional-delay filter).
    """
    pra = _pyroomacoustics()
    absorption, order = pra.inverse_sabine(room.rt60, list(room.size))
    shoebox = pra.ShoeBox(
        list(room.size), fs=sr, materials=pra.Material(absorption),
        max_order=min(int(order), MAX_IMAGE_ORDER), use_rand_ism=False,
    )  # fmt: skip
    shoebox.add_source(list(room.source))
    shoebox.add_microphone(list(room.mic))
    shoebox.compute_rir()
    h = np.asarray(shoebox.rir[0][0], dtype=np.float64)
    h = h[max(0, int(np.argmax(np.abs(h))) - 40) :]
    return (h / np.abs(h).max()).astype(np.float32)


def reverberate(clip: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """``clip`` convolved with ``rir``, cut to the clip's length (the tail past it is lost)."""
    n = 1 << (clip.size + rir.size - 2).bit_length()  # FFT size: no circular wrap-around
    spectrum = np.fft.rfft(clip.astype(np.float64), n) * np.fft.rfft(rir.astype(np.float64), n)
    return np.fft.irfft(spectrum, n)[: clip.size]


# --------------------------------------------------------------------------------------------
# Clips
# --------------------------------------------------------------------------------------------


def speak(
    word: str, speaker: Speaker, tempo: float, pitch: float, sr: int = SAMPLE_RATE
) -> np.ndarray:
    """The word in ``speaker``'s voice, shifted by its ``vtl``, trimmed, at ``sr``.

    Returns:
        (n,) float32 (empty when the engine gave silence).

    Raises:
        RuntimeError: the engine failed.
    """
    audio, in_sr = ENGINES[speaker.engine].speak(word, speaker.voice, tempo / speaker.vtl, pitch)
    audio = soxr.resample(audio, in_sr, sr / speaker.vtl, quality="HQ")  # then read at sr
    return trim_silence(np.ascontiguousarray(audio, dtype=np.float32), sr)


def synthesize_clip(
    word: str,
    speaker: Speaker,
    rng: np.random.Generator,
    noise: Sequence[np.ndarray] = (),
    snr: tuple[float, float] = SNR_RANGE,
    sr: int = SAMPLE_RATE,
) -> np.ndarray:
    """One take of ``word`` by ``speaker``: one second, as the module docstring describes.

    Args:
        word: lower-case letters.
        speaker: the speaker (its room's response is computed on first use, then cached).
        rng: the take's generator: jitter, offset, noise and SNR.
        noise: recordings to take the noise from; empty: generated coloured noise.
        snr: range of the speech-to-noise ratio, dB.
        sr: sample rate; the clip has ``sr`` samples.

    Returns:
        (sr,) float32, peak at most 0.97.

    Raises:
        RuntimeError: the engine failed or gave silence.
    """
    tempo = speaker.tempo * (1 + rng.uniform(-TAKE_TEMPO, TAKE_TEMPO))
    pitch = speaker.pitch + rng.uniform(-TAKE_PITCH, TAKE_PITCH)
    level = speaker.level + rng.uniform(-TAKE_LEVEL_DB, TAKE_LEVEL_DB)
    max_len = int(sr * MAX_FILL)
    voiced = speak(word, speaker, tempo, pitch, sr)
    for _ in range(3):
        if len(voiced) <= max_len or tempo >= MAX_TEMPO:
            break
        tempo = min(MAX_TEMPO, tempo * len(voiced) / max_len * 1.08)
        voiced = speak(word, speaker, tempo, pitch, sr)
    if len(voiced) == 0:
        raise RuntimeError(f"{speaker.engine} voice {speaker.voice!r}, word {word!r}: silence")
    if len(voiced) > max_len:
        voiced = _fade_out(voiced[:max_len], sr // 50)

    clip = np.zeros(sr, dtype=np.float64)
    offset = int(rng.integers(0, sr - len(voiced) + 1))
    clip[offset : offset + len(voiced)] = voiced
    if speaker.room is not None:
        clip = reverberate(clip, room_impulse_response(speaker.room, sr))
    span = clip[offset : offset + len(voiced)]
    speech_rms = max(float(np.sqrt(np.mean(span**2))), 1e-9)
    clip *= 10 ** (level / 20) / speech_rms
    speech_rms = 10 ** (level / 20)

    snr_db = float(rng.uniform(*snr))
    if noise:
        recording = noise[int(rng.integers(len(noise)))]
        if recording.size < sr:
            recording = np.tile(recording, -(-sr // recording.size))
        start = int(rng.integers(0, recording.size - sr + 1))
        background = recording[start : start + sr].astype(np.float64)
    else:
        kind = str(rng.choice(NOISE_KINDS[:3]))
        background = make_noise(kind, 1.0, sr, rng).astype(np.float64)
    noise_rms = float(np.sqrt(np.mean(background**2)))
    if noise_rms > 0:
        clip += background * (speech_rms / 10 ** (snr_db / 20) / noise_rms)
    peak = float(np.abs(clip).max())
    if peak > PEAK:
        clip *= PEAK / peak
    return clip.astype(np.float32)


# --------------------------------------------------------------------------------------------
# Words
# --------------------------------------------------------------------------------------------


def check_words(words: Iterable[str], what: str = "word") -> list[str]:
    """Words as lower-case letters, duplicates dropped.

    Raises:
        SynthError: a word that is empty or not only letters a-z.
    """
    result = []
    for word in words:
        clean = str(word).strip().lower()
        if not _WORD.fullmatch(clean):
            raise SynthError(f"bad {what} {str(word)!r}: use letters a-z only, one word each")
        result.append(clean)
    return list(dict.fromkeys(result))


def too_close(a: str, b: str) -> bool:
    """Whether ``a`` and ``b`` are one word, homophones (``to``/``two``) or inflections."""
    if a == b:
        return True
    if any(a in group and b in group for group in HOMOPHONES):
        return True
    return any(a == b + end or b == a + end for end in INFLECTIONS)


def unknown_words(words: Sequence[str], candidates: Sequence[str] = UNKNOWN_WORDS) -> list[str]:
    """``candidates`` less those too close to a requested word (``too_close``)."""
    return [c for c in dict.fromkeys(candidates) if not any(too_close(c, w) for w in words)]


# --------------------------------------------------------------------------------------------
# The dataset
# --------------------------------------------------------------------------------------------


@dataclass
class SynthSummary:
    """What ``synthesize_dataset`` did."""

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
        words: the words to record, one folder each.
        unknown: candidates for ``_unknown_``; None: ``UNKNOWN_WORDS``; empty: none.
            Those too close to a requested word are left out.
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
    voices = available_engines(engines)
    noise = _load_noise(Path(noise_dir)) if noise_dir is not None else []
    if reverb > 0:
        _pyroomacoustics()

    cast = make_speakers(speakers, seed, voices, reverb)
    settings = {
        "words": words, "unknown_words": others, "unknown_per_speaker": unknown_per_speaker,
        "speakers": speakers, "takes": takes, "seed": seed, "snr": [low, high],
        "reverb": reverb, "noise": str(noise_dir) if noise_dir is not None else None,
        "voices": {k: list(v) for k, v in voices.items()},
    }  # fmt: skip
    runs.append({**settings, "speaker_list": [s.to_dict() for s in cast]})
    try:
        out.mkdir(parents=True, exist_ok=True)
        record = {"tool": "speech-gru synth", "runs": runs}
        text = json.dumps(record, indent=1) + "\n"
        write_atomic(out / MANIFEST, lambda f: f.write(text.encode()))
        noise_files = _write_noise(out / BACKGROUND_NOISE, noise, seed)
        for folder in [*words, *([UNKNOWN] if others else [])]:
            (out / folder).mkdir(exist_ok=True)
    except OSError as err:
        raise SynthError(f"{out}: cannot write ({_reason(err)})") from None

    tasks = []
    for speaker in cast:
        for word in words:
            tasks += [(out / word / f"{speaker.id}_nohash_{t}.wav", word, speaker, t)
                      for t in range(takes)]  # fmt: skip
        pick = np.random.default_rng([seed, int(speaker.id, 16), 0x0A])
        chosen = [others[i] for i in sorted(pick.permutation(len(others))[:unknown_per_speaker])]
        for word in chosen:
            tasks += [(out / UNKNOWN / f"{word}_{speaker.id}_nohash_{t}.wav", word, speaker, t)
                      for t in range(takes)]  # fmt: skip
    summary = SynthSummary(
        out, words, others, cast, voices, str(noise_dir) if noise else "generated noise",
        noise_files, unknown_clips=sum(t[0].parent.name == UNKNOWN for t in tasks),
    )  # fmt: skip
    recordings = [audio for _, audio in noise]

    def make(path: Path, word: str, speaker: Speaker, take: int) -> str:
        if path.exists():
            return "skipped"
        try:
            clip = synthesize_clip(word, speaker, _clip_rng(seed, speaker, word, take),
                                   recordings, (low, high))  # fmt: skip
        except RuntimeError as err:
            log.warning("%s; clip %s left out", err, path.name)
            return "failed"
        try:
            write_clip(path, clip)
        except (OSError, RuntimeError) as err:  # soundfile's errors are RuntimeErrors
            detail = _reason(err) if isinstance(err, OSError) else str(err)
            raise SynthError(f"{path}: cannot write ({detail})") from None
        return "created"

    rooms = sorted({s.room for s in cast if s.room is not None}, key=repr)
    total = len(tasks)
    if progress is not None:
        progress(0, total)
    pool = ThreadPoolExecutor(max_workers=jobs)
    try:
        list(pool.map(room_impulse_response, rooms))
        futures = [pool.submit(make, *task) for task in tasks]
        for done, future in enumerate(futures, start=1):
            result = future.result()
            setattr(summary, result, getattr(summary, result) + 1)
            if progress is not None:
                progress(done, total)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    summary.seconds = time.perf_counter() - start
    return summary


def _write_noise(folder: Path, noise: list[tuple[str, np.ndarray]], seed: int) -> list[str]:
    """Copy the noise recordings into ``folder`` as 16 kHz WAV, or, with none, generate
    white, pink and brown noise and hum there; files already there are kept.

    Returns:
        The names of the files (this run's) in ``folder``.
    """
    folder.mkdir(exist_ok=True)
    if noise:
        for name, audio in noise:
            if not (folder / name).exists():
                peak = float(np.abs(audio).max())
                write_clip(folder / name, audio / peak if peak > 1 else audio)
        return [name for name, _ in noise]
    for i, kind in enumerate(NOISE_KINDS):
        if not (folder / NOISE_FILES[kind]).exists():
            rng = np.random.default_rng([seed, 0xB6, i])
            write_clip(
                folder / NOISE_FILES[kind], make_noise(kind, NOISE_SECONDS, SAMPLE_RATE, rng)
            )
    return [NOISE_FILES[kind] for kind in NOISE_KINDS]


# --------------------------------------------------------------------------------------------
# espeak-ng only: the speakers of tools/make_synthetic_commands.py and evaluate-stream --espeak
# --------------------------------------------------------------------------------------------

ESPEAK_BIN = "espeak-ng"
ESPEAK_HINT = "sudo apt-get install espeak-ng"

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
    "", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5",
    "klatt", "klatt2", "klatt3", "klatt4", "croak", "grandpa", "grandma", "steph", "linda",
    "Andy", "anika", "norbert", "travis", "shelby",
)  # fmt: skip
"""espeak-ng voice variants (``voice+variant``); ``""`` is the plain voice."""

MBROLA_VOICES: tuple[str, ...] = ("mb-us1", "mb-us2", "mb-us3", "mb-en1")
"""MBROLA English voices; used only when the MBROLA voice data is installed and works."""

PITCH_RANGE = (25, 75)  # espeak-ng -p, 0..99
SPEED_RANGE = (130, 200)  # espeak-ng -s, words per minute
AMPLITUDE_RANGE = (70, 130)  # espeak-ng -a, 0..200
SNR_DB_RANGE = (20.0, 40.0)  # light noise under each clip


class EspeakNotFoundError(RuntimeError):
    """Raised when the espeak-ng executable cannot be found."""


@dataclass(frozen=True)
class EspeakSpeaker:
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


def espeak_path(binary: str | None = None) -> str:
    """Locate the espeak-ng executable (``binary``, default ``ESPEAK_BIN``).

    Raises:
        EspeakNotFoundError: If it is not on ``PATH``.
    """
    name = binary or ESPEAK_BIN
    path = shutil.which(name)
    if path is None:
        raise EspeakNotFoundError(f"{name} not found; install it with: {ESPEAK_HINT}")
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


def espeak_speak(
    word: str, voice: str, pitch: int, speed: int, sr: int = SAMPLE_RATE, amplitude: int = 100
) -> np.ndarray:
    """Synthesize one utterance with espeak-ng, resampled to ``sr``, silence kept.

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


def _probe_espeak(voice: str) -> bool:
    """Whether espeak-ng can synthesize with ``voice``."""
    try:
        audio, _ = _run_espeak("test", voice, 50, 175)
    except RuntimeError:
        return False
    return bool(np.abs(audio).max() > 0)


@cache
def available_espeak_voices() -> tuple[str, ...]:
    """The English espeak-ng voices that work here.

    Every accent in ``ACCENTS`` and MBROLA voice in ``MBROLA_VOICES`` is probed once;
    failing ones are skipped. Working accents are combined with every variant in
    ``VARIANTS``; MBROLA voices are used without variants.

    Raises:
        EspeakNotFoundError: If espeak-ng is not installed.
        RuntimeError: If no English voice works at all.
    """
    espeak_path()
    candidates = ACCENTS + MBROLA_VOICES
    with ThreadPoolExecutor(max_workers=4) as pool:
        ok = dict(zip(candidates, pool.map(_probe_espeak, candidates), strict=True))
    accents = [a for a in ACCENTS if ok[a]]
    if not accents:
        raise RuntimeError("espeak-ng is installed but none of its English voices work")
    voices = [a if not v else f"{a}+{v}" for a in accents for v in VARIANTS]
    voices += [m for m in MBROLA_VOICES if ok[m]]
    return tuple(voices)


def make_espeak_speakers(
    n: int, seed: int = 0, voices: Sequence[str] | None = None
) -> list[EspeakSpeaker]:
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
    speakers: list[EspeakSpeaker] = []
    seen: set[str] = set()
    i = 0
    while len(speakers) < n:
        spk = EspeakSpeaker(
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


def espeak_clip(
    word: str, speaker: EspeakSpeaker, rng: np.random.Generator, sr: int = SAMPLE_RATE
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
