"""One streaming pass that keeps the model's outputs, so that decisions replay them.

Stream evaluation and calibration both push audio through a fresh ``StreamingDetector``
whose scorer is wrapped in a ``RecordingScorer``: the model runs once, and every threshold,
averaging span and decision rule after that is a replay of the recorded (W, C) posteriors
(``speech_gru.analysis.streaming.decisions``). ``stream`` is the pass over one recording,
with the detector's own events; ``record`` passes over several streams and keeps only the
posteriors (``ScoredStream``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np

from speech_gru.runtime.detector import (
    DetectorConfig,
    Event,
    RecordingScorer,
    Scorer,
    StreamingDetector,
)
from speech_gru.runtime.source import array_chunks

RECORD_BATCH = 64
"""Windows per model call while recording."""


@dataclass
class Stream:
    """Audio to stream on its own, from time zero.

    Attributes:
        name: what it is (a file, a dataset split).
        chunks: gives the audio as float32 chunks at 16 kHz (called once per pass).
        label: the keyword it holds (one-clip keyword streams), else None.
    """

    name: str
    chunks: Callable[[], Iterator[np.ndarray]]
    label: str | None = None


@dataclass
class ScoredStream:
    """A scorer's outputs over one stream.

    Attributes:
        name: what was streamed.
        posteriors: (N, C) output of the windows ending at ``window + i * hop``.
        duration_s: seconds of audio streamed.
        label: the keyword the stream holds (keyword clips), else None.
    """

    name: str
    posteriors: np.ndarray
    duration_s: float
    label: str | None = None


def stream(
    wave: np.ndarray,
    scorer: Scorer,
    labels: Sequence[str],
    config: DetectorConfig,
    keep_trace: bool = False,
    chunk_s: float = 1.0,
    progress: Callable[[float], None] | None = None,
) -> tuple[list[Event], StreamingDetector]:
    """Push ``wave`` through a fresh detector in ``chunk_s`` pieces; flush at the end.

    ``progress`` is called with the seconds of each chunk once it is scored.
    """
    detector = StreamingDetector(scorer, labels, config, keep_trace=keep_trace)
    step = max(1, round(chunk_s * config.sample_rate))
    events = list(detector.events(array_chunks(wave, step), progress))
    return events, detector


def record(
    scorer: Scorer,
    labels: Sequence[str],
    streams: Sequence[Stream],
    config: DetectorConfig,
    on_audio: Callable[[float], None] | None = None,
) -> list[ScoredStream]:
    """Stream each source once through the detector and keep the scorer's outputs.

    Args:
        scorer: (B, window) waveforms -> (B, C) probabilities.
        labels: class names in the scorer's output order.
        streams: the audio; each is streamed on its own, from time zero.
        config: its window and hop are used (the rest only matters on replay).
        on_audio: called with the seconds of audio of every chunk streamed.

    Raises:
        AudioError: a source cannot be read.
    """
    scored = []
    for source in streams:
        recorder = RecordingScorer(scorer)
        detector = StreamingDetector(recorder, labels, replace(config, batch_windows=RECORD_BATCH))
        for _ in detector.events(source.chunks(), on_audio):
            pass  # the recorder keeps the scores; events come from replaying them
        scored.append(ScoredStream(source.name, recorder.posteriors, detector.time_s, source.label))
    return scored
