"""Audio input/output: reading and writing audio files.

The microphone is ``speech_gru.runtime.mic``.

Everything that comes out of this module is a float32, 1-D, mono waveform at
:data:`SAMPLE_RATE` (16 kHz) unless a different ``sample_rate`` is asked for. Files are
read with :mod:`soundfile` (libsndfile: WAV, FLAC, OGG/Vorbis, MP3 with libsndfile >= 1.1,
AIFF, ...); formats it cannot open fall back to :func:`librosa.load` (audioread). Resampling
uses :mod:`soxr` in high-quality mode, both one-shot and streaming.

Every failure to read a file is reported as an :class:`AudioError` whose ``str()`` is a
single line ``"{path}: {problem}"``, safe to print (see :func:`printable`); no soundfile,
librosa or audioread exception escapes. File names that are not valid UTF-8 (Python holds
their bytes as surrogate escapes) are handed to soundfile as bytes, so they read as well.
The error and the checks a file passes before it is decoded are
``speech_gru.core.audio_checks``.

Note:
    ``torchaudio.load`` is deliberately not used: on this platform it needs ``torchcodec``.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
import soundfile as sf
import soxr

from speech_gru.core.audio_checks import (
    MAX_FILE_RATE,
    MIN_FILE_RATE,
    AudioError,
    _check_complete,
    _check_file,
    _check_file_rate,
    _check_rate,
    _corrupt,
    _is_native,
    _one_line,
    _sf_name,
    _soundfile_reason,
    printable,
)

__all__ = [
    "SAMPLE_RATE",
    "MAX_AMPLITUDE",
    "amplitude_problem",
    "AUDIO_EXTENSIONS",
    "MAX_FILE_RATE",
    "MIN_FILE_RATE",
    "AudioError",
    "AudioInfo",
    "fit_length",
    "info",
    "iter_blocks",
    "iter_pcm",
    "load_audio",
    "loudest_start",
    "loudest_window",
    "printable",
    "write_wav",
]

SAMPLE_RATE = 16000
"""Sample rate (Hz) of every waveform the pipeline works with."""

MAX_AMPLITUDE = 1e3
"""The largest sample magnitude read as audio. Audio is in [-1, 1]; a little beyond is
clipping, but samples past a thousand are not audio (int16 values stored as floats are),
and from about 1e19 their power overflows float32: the scores, or a training loss, come
out NaN."""

AUDIO_EXTENSIONS = frozenset(
    {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".m4a", ".aif", ".aiff"}
)
"""File name endings treated as audio when folders are walked."""

_RESAMPLE_QUALITY = "HQ"
"""soxr quality preset (same as librosa's ``res_type="soxr_hq"``)."""


# --------------------------------------------------------------------------------------------
# Reading files
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AudioInfo:
    """Header information about an audio file (see :func:`info`).

    Attributes:
        sample_rate: Native sample rate of the file in Hz.
        channels: Number of channels.
        frames: Number of sample frames (per channel). For compressed formats read through
            the audioread fallback this is estimated from the duration.
        duration_s: Duration in seconds (``frames / sample_rate``).
    """

    sample_rate: int
    channels: int
    frames: int
    duration_s: float


def _mixdown(data: np.ndarray) -> np.ndarray:
    """Average the channels of ``data``.

    Args:
        data: Samples, shape ``(frames, channels)``.

    Returns:
        float32 array of shape ``(frames,)``. A single channel is returned unchanged (copied).
    """
    if data.shape[1] == 1:
        return np.array(data[:, 0], dtype=np.float32)
    return data.mean(axis=1, dtype=np.float32)


def _check_finite(path: str | os.PathLike[str], mono: np.ndarray) -> None:
    if not np.isfinite(mono).all():
        raise AudioError(path, "contains NaN or infinite samples")
    if mono.size and (peak := float(np.max(np.abs(mono)))) > MAX_AMPLITUDE:
        raise AudioError(path, amplitude_problem(peak))


def amplitude_problem(peak: float) -> str:
    """What is wrong with samples that reach ``peak`` (beyond ``MAX_AMPLITUDE``), one line."""
    return f"samples reach {peak:.3g}, but audio is in [-1, 1] (for int16 PCM divide by 32768)"


def _librosa_load(path: str | os.PathLike[str], sf_reason: str) -> tuple[np.ndarray, int]:
    """Decode a file soundfile cannot open with librosa/audioread.

    Returns:
        ``(data, rate)`` where ``data`` has shape ``(frames, channels)``, float32.

    Raises:
        AudioError: If the fallback decoder fails too (message keeps soundfile's reason).
    """
    try:
        import librosa

        with warnings.catch_warnings():
            # "PySoundFile failed. Trying audioread instead." and the audioread deprecation.
            warnings.simplefilter("ignore")
            y, rate = librosa.load(os.fspath(path), sr=None, mono=False, dtype=np.float32)
    except Exception as exc:  # any decoder failure is an unreadable file
        detail = _one_line(exc) or type(exc).__name__
        if len(detail) > 80:
            detail = detail[:77] + "..."
        raise _corrupt(path, f"{sf_reason}; fallback decoder: {detail}") from None
    y = np.asarray(y, dtype=np.float32)
    data = y[:, None] if y.ndim == 1 else y.T  # librosa gives (channels, frames)
    return np.ascontiguousarray(data), int(rate)


def load_audio(path: str | os.PathLike[str], sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Read an audio file as a mono float32 waveform at ``sample_rate``.

    The file is read with soundfile; formats soundfile cannot open (e.g. m4a) are decoded
    with ``librosa.load`` instead, unless the file is obviously broken (missing, empty, a
    directory, or a damaged file of a format soundfile owns such as WAV/FLAC/OGG). All
    channels are averaged, and the result is resampled with soxr (high quality) when the
    file's rate differs from ``sample_rate``. Samples are not clipped: a float file with
    values outside [-1, 1] keeps them.

    A WAV whose data chunk is shorter than its header declares (a truncated download) is
    an error, as is a file whose sample rate is outside 1 kHz - 384 kHz (a damaged header).

    Args:
        path: Audio file to read.
        sample_rate: Output sample rate in Hz.

    Returns:
        float32 array of shape ``(n,)`` with ``n = round(frames * sample_rate / file_rate)``
        (``n == frames`` when no resampling is needed), ``n > 0``.

    Raises:
        AudioError: For every problem with the file; ``str(err)`` is one line, e.g.
            ``"clip.wav: no samples"``.
        ValueError: If ``sample_rate`` is not a positive integer.
    """
    sample_rate = _check_rate(sample_rate)
    head = _check_file(path)
    _check_complete(path, head)
    try:
        data, rate = sf.read(_sf_name(path), dtype="float32", always_2d=True)
    except Exception as exc:  # never let a soundfile exception escape
        reason = _soundfile_reason(exc)
        if _is_native(path, head):
            raise _corrupt(path, reason) from None
        data, rate = _librosa_load(path, reason)
    _check_file_rate(path, rate)
    if data.size == 0 or data.shape[0] == 0:
        raise AudioError(path, "no samples")
    mono = _mixdown(data)
    _check_finite(path, mono)
    if rate != sample_rate:
        try:
            mono = soxr.resample(mono, rate, sample_rate, quality=_RESAMPLE_QUALITY)
        except Exception as exc:
            raise AudioError(path, f"cannot resample from {rate} Hz ({_one_line(exc)})") from None
        mono = np.asarray(mono, dtype=np.float32)
        if mono.size == 0:  # e.g. a single frame downsampled to nothing
            raise AudioError(path, "no samples")
    return mono


def info(path: str | os.PathLike[str]) -> AudioInfo:
    """Read an audio file's header without decoding the samples.

    A valid file with zero frames is reported as such (``frames == 0``); only
    :func:`load_audio` and :func:`iter_blocks` reject it.

    Args:
        path: Audio file.

    Returns:
        The file's :class:`AudioInfo`.

    Raises:
        AudioError: If the file is missing, empty, a directory, not readable audio, a
            truncated WAV, or its sample rate is outside 1 kHz - 384 kHz.
    """
    head = _check_file(path)
    _check_complete(path, head)
    try:
        hdr = sf.info(_sf_name(path))
        rate, channels, frames = int(hdr.samplerate), int(hdr.channels), int(hdr.frames)
    except Exception as exc:
        reason = _soundfile_reason(exc)
        if _is_native(path, head):
            raise _corrupt(path, reason) from None
        try:
            import audioread  # librosa's fallback decoder

            with audioread.audio_open(os.fspath(path)) as fh:
                rate, channels = int(fh.samplerate), int(fh.channels)
                frames = round(float(fh.duration) * rate)
        except Exception as exc2:
            raise _corrupt(path, f"{reason}; fallback decoder: {type(exc2).__name__}") from None
    if rate <= 0 or channels <= 0:
        raise _corrupt(path, f"invalid header ({rate} Hz, {channels} channels)")
    _check_file_rate(path, rate)
    return AudioInfo(sample_rate=rate, channels=channels, frames=frames, duration_s=frames / rate)


class _Rebuffer:
    """Collects variable-length chunks and hands out fixed-length blocks."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._parts: list[np.ndarray] = []
        self._n = 0

    def add(self, chunk: np.ndarray) -> None:
        """Append ``chunk`` (shape ``(k,)``)."""
        if chunk.size:
            self._parts.append(chunk)
            self._n += chunk.size

    def pop(self) -> np.ndarray | None:
        """Return the next complete block (shape ``(size,)``), or ``None`` if there is none."""
        if self._n < self.size:
            return None
        buf = np.concatenate(self._parts) if len(self._parts) > 1 else self._parts[0]
        rest = buf[self.size :]
        self._parts = [rest] if rest.size else []
        self._n = rest.size
        return buf[: self.size].copy()

    def flush(self) -> np.ndarray:
        """Return what is left (shape ``(k,)`` with ``k < size``, possibly 0) and reset."""
        out = np.concatenate(self._parts) if self._parts else np.zeros(0, np.float32)
        self._parts, self._n = [], 0
        return out


def iter_blocks(
    path: str | os.PathLike[str],
    block_seconds: float = 1.0,
    sample_rate: int = SAMPLE_RATE,
) -> Iterator[np.ndarray]:
    """Stream a (long) audio file as mono float32 blocks without loading it whole.

    The file is read ``block_seconds`` at a time, each block is mixed down to mono and, if
    the file's rate differs, fed through one :class:`soxr.ResampleStream` so block
    boundaries do not click. The concatenation of all blocks equals
    ``load_audio(path, sample_rate)`` (exactly when no resampling is needed, to within
    float rounding otherwise). Formats soundfile cannot read are loaded whole with
    :func:`load_audio` and sliced.

    The file is opened and checked when this function is called, so a missing or broken
    file raises here rather than at the first ``next()``.

    Args:
        path: Audio file to read.
        block_seconds: Block length in seconds at the output rate.
        sample_rate: Output sample rate in Hz.

    Yields:
        float32 arrays of shape ``(round(block_seconds * sample_rate),)``; the last block
        may be shorter (never empty).

    Raises:
        AudioError: If the file cannot be read (also raised from inside the iteration if
            decoding fails part-way or a block contains NaN/inf samples, or samples
            beyond ``MAX_AMPLITUDE``).
        ValueError: If ``block_seconds`` or ``sample_rate`` is not positive.
    """
    sample_rate = _check_rate(sample_rate)
    if not block_seconds > 0:
        raise ValueError(f"block_seconds must be positive, got {block_seconds!r}")
    block = max(1, round(block_seconds * sample_rate))
    head = _check_file(path)
    _check_complete(path, head)
    try:
        fh = sf.SoundFile(_sf_name(path))
    except Exception as exc:
        reason = _soundfile_reason(exc)
        if _is_native(path, head):
            raise _corrupt(path, reason) from None
        wave = load_audio(path, sample_rate)  # raises AudioError itself
        return (wave[i : i + block] for i in range(0, wave.size, block))
    try:
        _check_file_rate(path, int(fh.samplerate))
    except AudioError:
        fh.close()
        raise
    if fh.frames == 0:
        fh.close()
        raise AudioError(path, "no samples")
    return _stream_blocks(path, fh, block, sample_rate)


def _stream_blocks(
    path: str | os.PathLike[str], fh: sf.SoundFile, block: int, sample_rate: int
) -> Iterator[np.ndarray]:
    """Generator behind :func:`iter_blocks` for files soundfile can open (closes ``fh``)."""
    with fh:
        rate = int(fh.samplerate)
        stream = None
        if rate != sample_rate:
            stream = soxr.ResampleStream(
                rate, sample_rate, 1, dtype="float32", quality=_RESAMPLE_QUALITY
            )
        read_frames = max(1, math.ceil(block * rate / sample_rate))
        rebuffer = _Rebuffer(block)
        total = 0
        while True:
            try:
                data = fh.read(read_frames, dtype="float32", always_2d=True)
            except Exception as exc:
                raise _corrupt(path, _soundfile_reason(exc)) from None
            last = data.shape[0] < read_frames
            mono = _mixdown(data)
            _check_finite(path, mono)
            total += mono.size
            if stream is not None:
                mono = stream.resample_chunk(mono, last=last)
            rebuffer.add(mono)
            while (out := rebuffer.pop()) is not None:
                yield out
            if last:
                break
        if total == 0:
            raise AudioError(path, "no samples")
        tail = rebuffer.flush()
        if tail.size:
            yield tail


# --------------------------------------------------------------------------------------------
# Array helpers and writing
# --------------------------------------------------------------------------------------------


def iter_pcm(
    stream: BinaryIO,
    sample_rate: int = SAMPLE_RATE,
    channels: int = 1,
    block_seconds: float = 0.1,
    name: str = "stdin",
) -> Iterator[np.ndarray]:
    """Read raw signed 16-bit little-endian PCM from a byte stream as mono float32 blocks.

    Args:
        stream: binary stream, e.g. ``sys.stdin.buffer``; read until end of file.
        sample_rate: rate of the PCM data; resampled to :data:`SAMPLE_RATE` if different.
        channels: interleaved channels in the data (averaged).
        block_seconds: length of the produced blocks (the last one may be shorter).
        name: what error messages call the stream.

    Yields:
        float32 arrays at :data:`SAMPLE_RATE`.

    Raises:
        AudioError: the stream ends inside a frame (its length is not a whole number of
            ``2 * channels`` bytes), or holds no samples at all.
    """
    rate = _check_rate(sample_rate)
    if channels < 1:
        raise ValueError("channels must be at least 1")
    frame_bytes = 2 * channels
    block_bytes = max(1, round(block_seconds * rate)) * frame_bytes
    resampler = (
        soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32", quality=_RESAMPLE_QUALITY)
        if rate != SAMPLE_RATE
        else None
    )
    pending = b""
    total = 0
    while True:
        data = stream.read(block_bytes - len(pending))
        if not data:
            break
        pending += data
        whole = len(pending) - len(pending) % frame_bytes
        if whole < block_bytes:
            continue
        samples = np.frombuffer(pending[:whole], dtype="<i2").reshape(-1, channels)
        pending = pending[whole:]
        total += samples.shape[0]
        mono = _mixdown(samples.astype(np.float32) / 32768.0)
        yield mono if resampler is None else resampler.resample_chunk(mono, last=False)
    if len(pending) % frame_bytes:
        raise AudioError(
            name,
            f"malformed 16-bit PCM stream: ends with {len(pending) % frame_bytes} stray "
            f"byte(s), not a whole {frame_bytes}-byte frame",
        )
    tail = np.frombuffer(pending, dtype="<i2").reshape(-1, channels)
    total += tail.shape[0]
    mono = _mixdown(tail.astype(np.float32) / 32768.0) if tail.size else np.zeros(0, np.float32)
    if resampler is not None:
        mono = resampler.resample_chunk(mono, last=True)
    if mono.size:
        yield mono
    if total == 0:
        raise AudioError(name, "no samples (empty PCM stream)")


def fit_length(wave: np.ndarray, n: int = SAMPLE_RATE) -> np.ndarray:
    """Zero-pad or trim a waveform to exactly ``n`` samples.

    Shorter waves are padded with zeros **at the end**; longer waves are trimmed **at the
    end**, i.e. the start is kept (the usual convention for keyword clips, which are
    recorded starting at the word). A new array is always returned.

    Args:
        wave: Waveform, shape ``(m,)``.
        n: Target length in samples (default: one second at 16 kHz).

    Returns:
        Array of shape ``(n,)`` with ``wave``'s dtype.

    Raises:
        ValueError: If ``wave`` is not 1-D or ``n`` is negative.
    """
    wave = np.asarray(wave)
    if wave.ndim != 1:
        raise ValueError(f"fit_length expects a 1-D wave, got shape {wave.shape}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if wave.size >= n:
        return wave[:n].copy()
    out = np.zeros(n, dtype=wave.dtype)
    out[: wave.size] = wave
    return out


def loudest_start(wave: np.ndarray, n: int = SAMPLE_RATE, step: int = 160) -> int:
    """Where the ``n``-sample stretch of ``wave`` with the most energy starts (a multiple
    of ``step``; 0 when ``wave`` is no longer than ``n``)."""
    if wave.size <= n:
        return 0
    energy = np.concatenate([[0.0], np.cumsum(wave.astype(np.float64) ** 2)])
    starts = np.arange(0, wave.size - n + 1, step)
    return int(starts[np.argmax(energy[starts + n] - energy[starts])])


def loudest_window(wave: np.ndarray, n: int = SAMPLE_RATE, step: int = 160) -> np.ndarray:
    """The ``n``-sample stretch of ``wave`` with the most energy (zero-padded if shorter).

    Used to classify a clip slightly longer than the model's window without cutting off
    the word: the window slides in ``step``-sample steps.
    """
    if wave.size <= n:
        return fit_length(wave, n)
    best = loudest_start(wave, n, step)
    return wave[best : best + n].copy()


def write_wav(
    path: str | os.PathLike[str], wave: np.ndarray, sample_rate: int = SAMPLE_RATE
) -> None:
    """Write a 16-bit PCM WAV file; samples are clipped to [-1, 1] first.

    Args:
        path: Output file (overwritten if it exists; the directory must exist).
        wave: Samples, shape ``(n,)`` for mono or ``(n, channels)``.
        sample_rate: Sample rate in Hz stored in the header.

    Raises:
        ValueError: If ``wave`` has the wrong shape or contains NaN/inf.
        AudioError: If the file cannot be written.
    """
    sample_rate = _check_rate(sample_rate)
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim not in (1, 2):
        raise ValueError(f"write_wav expects shape (n,) or (n, channels), got {wave.shape}")
    if not np.isfinite(wave).all():
        raise ValueError("write_wav: wave contains NaN or infinite samples")
    try:
        sf.write(
            _sf_name(path), np.clip(wave, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV"
        )
    except Exception as exc:
        raise AudioError(path, f"cannot write ({_soundfile_reason(exc)})") from None
