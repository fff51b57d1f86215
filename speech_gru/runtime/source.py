"""Where streamed audio comes from: one opener for a microphone, a file or standard input.

``open_source`` gives a ``Source``: an iterable of mono float32 chunks at 16 kHz, opened
(the microphone started) by ``with``. Every caller that streams audio through
``StreamingDetector.events`` takes its audio from here, so the three kinds of input are
read, paced and closed the same way.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import numpy as np

from speech_gru.core.audio import SAMPLE_RATE, iter_blocks, iter_pcm
from speech_gru.runtime.mic import Microphone

STDIN = "-"


def paced(chunks: Iterable[np.ndarray], sample_rate: int = SAMPLE_RATE) -> Iterator[np.ndarray]:
    """Yield chunks no faster than real time (as a live source would deliver them)."""
    start = time.monotonic()
    sent = 0
    for chunk in chunks:
        sent += len(chunk)
        delay = start + sent / sample_rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        yield chunk


def array_chunks(wave: np.ndarray, block: int) -> Iterator[np.ndarray]:
    """Consecutive ``block``-sample pieces of a waveform already in memory (the last one may
    be shorter)."""
    for start in range(0, wave.size, max(1, block)):
        yield wave[start : start + block]


@dataclass
class Source:
    """Audio chunks from one input.

    Attributes:
        name: what is being read, for messages (``microphone 'USB Mic'``, a path, ``stdin``).
        chunks: the chunks, each (N,) float32 at 16 kHz.
        microphone: the live device, when the input is one.
    """

    name: str
    chunks: Iterator[np.ndarray]
    microphone: Microphone | None = None

    @property
    def live(self) -> bool:
        return self.microphone is not None

    def __iter__(self) -> Iterator[np.ndarray]:
        return self.chunks

    def __enter__(self) -> Source:
        if self.microphone is not None:
            self.microphone.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.microphone is not None:
            self.microphone.close()

    def health(self) -> str:
        """``, 0 input overflows, 0 dropped blocks`` for a microphone, else empty."""
        mic = self.microphone
        if mic is None:
            return ""
        return f", {mic.overflows} input overflows, {mic.dropped} dropped blocks"


def open_source(
    path: str | Path | None,
    block_s: float,
    *,
    device: int | str | None = None,
    rate: int = SAMPLE_RATE,
    channels: int = 1,
    realtime: bool = False,
    stdin: BinaryIO | None = None,
) -> Source:
    """Open an input: ``None`` is the microphone (``device``), ``"-"`` raw 16-bit PCM on
    standard input (``rate``, ``channels``), anything else an audio file.

    Args:
        path: the input.
        block_s: seconds per chunk (a microphone delivers blocks of this length).
        device: microphone device index or name; None is the default input.
        rate: sample rate of standard input's PCM (resampled to 16 kHz).
        channels: interleaved channels of standard input's PCM (averaged).
        realtime: deliver a file or standard input no faster than real time.
        stdin: the byte stream read for ``"-"`` (default ``sys.stdin.buffer``).

    Raises:
        AudioError: the file cannot be read, or no microphone can be opened (MicrophoneError).
    """
    if path is None:
        mic = Microphone(device=device, block_seconds=block_s)
        return Source(f"microphone '{mic.device_name}'", iter(mic), mic)
    if str(path) == STDIN:
        stream = stdin if stdin is not None else sys.stdin.buffer
        chunks: Iterator[np.ndarray] = iter_pcm(stream, rate, channels, block_s)
        name = "stdin"
    else:
        chunks = iter_blocks(path, block_seconds=block_s)
        name = str(path)
    return Source(name, paced(chunks) if realtime else chunks)
