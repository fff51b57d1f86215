"""Synthetic speakers and their clips, for ``speech-gru synth`` (``synth.py``).

A speaker (``Speaker``) is one voice of one engine (``synth_voices.py``) with fixed
settings; its id is the first 8 hex digits of the SHA-1 of those settings, so the folder
split by speaker hash works. The speakers are dealt to the engines in turn, each cycling
through a seeded shuffle of its voices, so every engine has an equal share however many
voices it has. Settings:

* ``pitch``, semitones from the voice's own, uniform in +-4 (voices without pitch control
  move their pitch with ``vtl`` only).
* ``tempo``, the speaking-rate factor, uniform in 0.8-1.25.
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
over the clip): a random second of a noise recording, or generated white, pink or brown
noise (``make_noise``). The peak is then limited to 0.97.

A phrase (words separated by spaces, ``phrases.py``) is spoken whole by the engine, and
its clip (``synthesize_take(fit=True)``) is as long as its speech plus 0.3 s, from one
second to 2.5 s: a phrase that would take longer is spoken faster to fit.

The signal pieces (``trim_silence``, ``make_noise``, ``fade_out``, ``write_clip``) are
shared with the espeak-ng-only folders of ``synth_espeak.py``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from speech_gru.core.audio import SAMPLE_RATE
from speech_gru.train.phrases import MAX_PHRASE_SECONDS, PHRASE_ROOM_S, phrase_clip_samples
from speech_gru.train.synth_voices import ENGINES, SynthError, available_engines

PYROOMACOUSTICS_HINT = "pip install pyroomacoustics"
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
MAX_TEMPO = 3.0
PEAK = 0.97
TRIM_DB = 45.0
MAX_FILL = 0.98  # at most this fraction of the clip is speech

NOISE_KINDS: tuple[str, ...] = ("white", "pink", "brown", "hum")
NOISE_FILES: dict[str, str] = {
    "white": "white_noise.wav",
    "pink": "pink_noise.wav",
    "brown": "brown_noise.wav",
    "hum": "hum.wav",
}


# --------------------------------------------------------------------------------------------
# Signal
# --------------------------------------------------------------------------------------------


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


def fade_out(x: np.ndarray, n: int) -> np.ndarray:
    """A copy of ``x`` whose last ``n`` samples fade linearly to silence."""
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


def require_pyroomacoustics():  # noqa: ANN202 - the module
    """The pyroomacoustics module, or ``SynthError`` saying how to install it."""
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
    pra = require_pyroomacoustics()
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
    return synthesize_take(word, speaker, rng, noise, snr, sr)[0]


def synthesize_take(
    word: str,
    speaker: Speaker,
    rng: np.random.Generator,
    noise: Sequence[np.ndarray] = (),
    snr: tuple[float, float] = SNR_RANGE,
    sr: int = SAMPLE_RATE,
    *,
    fit: bool = False,
) -> tuple[np.ndarray, float]:
    """One take of ``word`` by ``speaker`` (``synthesize_clip``), and how long it speaks.

    Args:
        word: lower-case letters, or words of them separated by spaces (a phrase).
        speaker, rng, noise, snr, sr: as ``synthesize_clip``.
        fit: False: a one-second clip, the speech spoken faster when it would fill more
            than ``MAX_FILL`` of it. True (a phrase): the clip is as long as the speech
            plus ``PHRASE_ROOM_S``, from one second to ``MAX_PHRASE_SECONDS``
            (``phrases.phrase_clip_samples``); speech longer than that less the room is
            spoken faster (up to ``MAX_TEMPO``), and cut with a fade as a last resort.

    Returns:
        The clip, (n,) float32, peak at most 0.97, and the spoken (trimmed, dry) duration
        of the speech in it, seconds.

    Raises:
        RuntimeError: the engine failed or gave silence.
    """
    tempo = speaker.tempo * (1 + rng.uniform(-TAKE_TEMPO, TAKE_TEMPO))
    pitch = speaker.pitch + rng.uniform(-TAKE_PITCH, TAKE_PITCH)
    level = speaker.level + rng.uniform(-TAKE_LEVEL_DB, TAKE_LEVEL_DB)
    if fit:
        max_len = round(MAX_PHRASE_SECONDS * sr) - round(PHRASE_ROOM_S * sr)
    else:
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
        voiced = fade_out(voiced[:max_len], sr // 50)
    n = phrase_clip_samples(len(voiced), sr) if fit else sr

    clip = np.zeros(n, dtype=np.float64)
    offset = int(rng.integers(0, n - len(voiced) + 1))
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
        if recording.size < n:
            recording = np.tile(recording, -(-n // recording.size))
        start = int(rng.integers(0, recording.size - n + 1))
        background = recording[start : start + n].astype(np.float64)
    else:
        kind = str(rng.choice(NOISE_KINDS[:3]))
        background = make_noise(kind, n / sr, sr, rng).astype(np.float64)
    noise_rms = float(np.sqrt(np.mean(background**2)))
    if noise_rms > 0:
        clip += background * (speech_rms / 10 ** (snr_db / 20) / noise_rms)
    peak = float(np.abs(clip).max())
    if peak > PEAK:
        clip *= PEAK / peak
    return clip.astype(np.float32), len(voiced) / sr
