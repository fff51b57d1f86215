"""What can be wrong with an audio file, found before it is decoded, and how it is said.

``AudioError`` is the one error of reading audio: ``str(err)`` is one line, safe to print
(``printable``). The checks run before soundfile opens a file (``_check_file``: it exists,
is a regular file, is not empty, can be read; ``_check_complete``: a WAV holds the frames
its header declares) and after it read the header (``_check_file_rate``: a rate a file can
have). They are the shared internals of ``speech_gru.core.audio``, which reads, streams
and writes audio and is where callers import ``AudioError`` and ``printable`` from.
"""

from __future__ import annotations

import os
import re
import struct
from pathlib import Path
from typing import Any

MIN_FILE_RATE = 1000
MAX_FILE_RATE = 384000
"""Sample rates (Hz) a file may have; others are damaged headers (a 32 KB file claiming
1 Hz would be a 4.4-hour recording)."""

# Leading bytes of containers libsndfile reads natively. If soundfile fails on a file that
# starts like this (or carries one of these extensions) the file is broken, and handing it to
# the librosa/audioread fallback would only produce a second, more confusing error.
_NATIVE_MAGIC = (b"RIFF", b"RIFX", b"RF64", b"fLaC", b"OggS", b"FORM", b".snd", b"caff", b"riff")
_NATIVE_SUFFIXES = frozenset(
    {".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".aif", ".aiff", ".aifc", ".au", ".snd"}
    | {".caf", ".w64", ".rf64"}
)


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


def _one_line(text: object) -> str:
    """Collapse all whitespace (newlines included) in ``text`` to single spaces."""
    return " ".join(str(text).split())


# C0 and C1 controls, DEL, line/paragraph separators, bidirectional overrides, and the
# surrogates that stand for the bytes of a file name that is not valid UTF-8.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:  # os.fsdecode's stand-in for an undecodable byte
        return f"\\x{code - 0xDC00:02x}"
    return repr(match.group())[1:-1]


def printable(text: object) -> str:
    """``text`` safe to print on a terminal: control characters escaped as ``repr`` does.

    Newlines, tabs, ANSI escape sequences (``\\x1b``), C1 controls and line separators in
    a file name or a label become visible escapes (``\\n``, ``\\x1b``), so the result is
    one line that cannot move the cursor or recolour the terminal; a byte that is not
    UTF-8 (a surrogate escape) is shown as ``\\xff``. Other characters, any script, are kept.
    """
    return _UNPRINTABLE.sub(_escape, str(text))


class AudioError(Exception):
    """An audio file (or device) could not be used.

    ``str(err)`` is always exactly one line: ``"{path}: {problem}"``, for example
    ``"clip.wav: empty file (0 bytes)"``, with control characters escaped (:func:`printable`).

    Attributes:
        path: The file (or device description) concerned, as given by the caller.
        problem: Short, one-line description of what is wrong.
    """

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path = os.fspath(path)
        self.problem = printable(_one_line(problem))
        super().__init__(f"{printable(self.path)}: {self.problem}")

    def __reduce__(self) -> tuple[Any, ...]:
        # Default Exception pickling would call cls(message); keep (path, problem) instead.
        return (type(self), (self.path, self.problem))


def _soundfile_reason(exc: BaseException) -> str:
    """Short, one-line reason for a soundfile/libsndfile failure (without the file path)."""
    reason = getattr(exc, "error_string", None) or str(exc) or type(exc).__name__
    reason = _one_line(reason).rstrip(".")
    if "does not exist" in reason or "not a regular file" in reason:
        # libsndfile says this for e.g. a text file named .mp3; we checked the file exists.
        reason = "format not recognised"
    return reason or type(exc).__name__


def _check_file(path: str | os.PathLike[str]) -> bytes:
    """Reject obviously unusable paths and return the first 12 bytes of the file.

    Raises:
        AudioError: ``file not found``, ``is a directory``, ``not a regular file``,
            ``permission denied``, ``empty file (0 bytes)`` or ``cannot read (...)``.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise AudioError(path, "file not found") from None
    except PermissionError:
        raise AudioError(path, "permission denied") from None
    except (OSError, ValueError) as exc:
        raise AudioError(path, f"cannot access ({_one_line(exc)})") from None
    if os.path.isdir(path):
        raise AudioError(path, "is a directory")
    if not os.path.isfile(path):
        raise AudioError(path, "not a regular file")
    if st.st_size == 0:
        raise AudioError(path, "empty file (0 bytes)")
    try:
        with open(path, "rb") as fh:
            return fh.read(12)
    except PermissionError:
        raise AudioError(path, "permission denied") from None
    except OSError as exc:
        raise AudioError(path, f"cannot read ({_one_line(exc.strerror or exc)})") from None


def _is_native(path: str | os.PathLike[str], head: bytes) -> bool:
    """Whether ``path`` looks like a format libsndfile itself is responsible for."""
    return head.startswith(_NATIVE_MAGIC) or Path(path).suffix.lower() in _NATIVE_SUFFIXES


def _corrupt(path: str | os.PathLike[str], reason: str) -> AudioError:
    return AudioError(path, f"not an audio file or corrupt ({reason})")


def _sf_name(path: str | os.PathLike[str]) -> str | bytes:
    """``path`` as bytes for soundfile, which encodes a ``str`` strictly as UTF-8 and so
    cannot open a name holding undecodable bytes (surrogate escapes). Windows names are
    text: soundfile opens a ``str`` there with the wide-character call."""
    return os.fspath(path) if os.name == "nt" else os.fsencode(path)


def _check_file_rate(path: str | os.PathLike[str], rate: int) -> None:
    if not MIN_FILE_RATE <= rate <= MAX_FILE_RATE:
        raise AudioError(path, f"unsupported sample rate {rate} Hz")


_PCM_TAGS = (0x0001, 0x0003, 0x0006, 0x0007, 0xFFFE)  # PCM, float, A-law, mu-law, extensible


def _check_complete(path: str | os.PathLike[str], head: bytes) -> None:
    """Reject a WAV whose data chunk holds fewer frames than its header declares.

    libsndfile quietly shortens such a file to what is present; a download cut short
    would then be labelled as if whole. Only RIFF/RIFX WAVs with sample-per-byte-block
    encodings are checked; a data size of 0 or 0xFFFFFFFF (written by streaming tools
    that never know the length) is not a promise and passes.

    Raises:
        AudioError: ``truncated file (header says N frames, M present)``.
    """
    if head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
        return
    order = "<" if head[:4] == b"RIFF" else ">"
    block_align = None
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            fh.seek(12)
            while len(chunk := fh.read(8)) == 8:
                (length,) = struct.unpack(order + "I", chunk[4:])
                if chunk[:4] == b"fmt ":
                    fmt = fh.read(length + (length & 1))
                    if len(fmt) < 14:
                        return
                    tag, _, _, _, block_align = struct.unpack(order + "HHIIH", fmt[:14])
                    if tag not in _PCM_TAGS or block_align == 0:
                        return
                elif chunk[:4] == b"data":
                    if block_align is None or length in (0, 0xFFFFFFFF):
                        return
                    declared, present = length // block_align, (size - fh.tell()) // block_align
                    if present < declared:
                        problem = (
                            f"truncated file (header says {declared} frames, {present} present)"
                        )
                        raise AudioError(path, problem)
                    return
                else:
                    fh.seek(length + (length & 1), os.SEEK_CUR)
    except OSError:
        return  # soundfile reports unreadable files


def _check_rate(sample_rate: int) -> int:
    if isinstance(sample_rate, bool) or int(sample_rate) != sample_rate or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive integer, got {sample_rate!r}")
    return int(sample_rate)
