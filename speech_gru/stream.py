"""Streaming keyword detection: audio chunks in, timestamped events out.

A bidirectional GRU needs the whole window, so it cannot carry state frame by frame.
Instead ``StreamingDetector`` keeps the last second of audio, and every hop re-runs the
model on the window ending there. Posteriors are averaged over a short span; a keyword
whose averaged score reaches the threshold becomes an event, and no further event is
reported for the refractory time, so one utterance gives one event. ``_silence_`` and
``_unknown_`` are never reported.

Windows end at fixed sample positions (multiples of the hop, from the first full
window on) and are scored in groups of ``batch_windows`` aligned to those positions, so
the events do not depend on how the audio was chunked. No audio device is touched here:
arrays in, events out.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from speech_gru.labels import is_keyword

Scorer = Callable[[np.ndarray], np.ndarray]
"""Maps (B, window) float32 waveforms to (B, C) class probabilities."""


@dataclass(frozen=True)
class Event:
    """A detected keyword.

    Attributes:
        label: the keyword.
        start_s: start of the window that scored highest for it, in stream seconds.
        end_s: end of that window.
        score: averaged posterior when it was detected.
        time_s: when it was detected (end of the window that crossed the threshold).
    """

    label: str
    start_s: float
    end_s: float
    score: float
    time_s: float

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class DetectorConfig:
    """Streaming settings.

    The defaults follow the Speech Commands reference recognizer (TensorFlow's
    ``RecognizeCommands`` as used by its Android demo and streaming-accuracy tool):
    posteriors averaged over 500 ms, detection threshold 0.7, 1.5 s suppression. The
    reference scores a window every 30 ms; here the hop is 100 ms by default.

    Attributes:
        sample_rate: stream rate in Hz.
        window_s: model window.
        hop_s: time between scored windows.
        average_s: span of the posterior moving average.
        threshold: averaged keyword score that triggers an event.
        refractory_s: time after an event during which no other event is reported.
        batch_windows: windows scored per model call. 1 scores each hop as soon as its
            audio arrives (live); larger values are faster on files.
    """

    sample_rate: int = 16000
    window_s: float = 1.0
    hop_s: float = 0.1
    average_s: float = 0.5
    threshold: float = 0.7
    refractory_s: float = 1.5
    batch_windows: int = 1

    def __post_init__(self) -> None:
        if self.hop_s <= 0 or self.window_s <= 0:
            raise ValueError("window_s and hop_s must be positive")
        if self.average_s < 0 or self.refractory_s < 0:
            raise ValueError("average_s and refractory_s must not be negative")
        if not 0 < self.threshold <= 1:
            raise ValueError("threshold must be in (0, 1]")
        if self.batch_windows < 1:
            raise ValueError("batch_windows must be at least 1")

    @property
    def window(self) -> int:
        return round(self.window_s * self.sample_rate)

    @property
    def hop(self) -> int:
        return max(1, round(self.hop_s * self.sample_rate))

    @property
    def average_count(self) -> int:
        return max(1, round(self.average_s / self.hop_s))


class StreamingDetector:
    """Turns a stream of audio chunks into keyword events.

    Args:
        scorer: (B, window) waveforms -> (B, C) probabilities.
        labels: class names in the scorer's output order.
        config: streaming settings.
        keep_trace: record every hop's averaged posteriors in ``trace`` (for plots).
    """

    def __init__(
        self,
        scorer: Scorer,
        labels: Sequence[str],
        config: DetectorConfig | None = None,
        keep_trace: bool = False,
    ) -> None:
        self.scorer = scorer
        self.labels = list(labels)
        self.config = config or DetectorConfig()
        self.keyword_mask = np.array([is_keyword(label) for label in self.labels])
        if not self.keyword_mask.any():
            raise ValueError("the label list has no keyword to detect")
        self.keep_trace = keep_trace
        self.reset()

    def reset(self) -> None:
        """Forget all audio and state; the next sample is time zero."""
        c = self.config
        self._buffer = np.zeros(0, dtype=np.float32)  # samples from _buffer_start on
        self._buffer_start = 0
        self._received = 0
        self._next_end = c.window  # end sample of the next window to score
        self._recent: deque[tuple[int, np.ndarray]] = deque(maxlen=c.average_count)
        self._last_event_end = -(10**12)
        self.trace_times: list[float] = []
        self.trace: list[np.ndarray] = []
        self.windows_scored = 0

    @property
    def time_s(self) -> float:
        """Seconds of audio received so far."""
        return self._received / self.config.sample_rate

    def push(self, chunk: np.ndarray) -> list[Event]:
        """Add samples (1-D float32 at the configured rate); return new events."""
        chunk = np.asarray(chunk, dtype=np.float32).reshape(-1)
        if chunk.size:
            self._buffer = np.concatenate([self._buffer, chunk])
            self._received += chunk.size
        return self._score_ready(final=False)

    def flush(self) -> list[Event]:
        """End of stream: score the windows still waiting for a full group."""
        return self._score_ready(final=True)

    def run(self, chunks: Iterable[np.ndarray]) -> list[Event]:
        """Push every chunk, flush, and return all events."""
        events = []
        for chunk in chunks:
            events += self.push(chunk)
        return events + self.flush()

    # -- internals ---------------------------------------------------------------------
    def _score_ready(self, final: bool) -> list[Event]:
        c = self.config
        ready = 0
        if self._received >= self._next_end:
            ready = (self._received - self._next_end) // c.hop + 1
        group = c.batch_windows
        take = ready if final else (ready // group) * group
        events: list[Event] = []
        for first in range(0, take, group):
            count = min(group, take - first)
            ends = self._next_end + c.hop * np.arange(count)
            offsets = ends - c.window - self._buffer_start
            windows = np.stack([self._buffer[o : o + c.window] for o in offsets])
            probs = np.asarray(self.scorer(windows), dtype=np.float64)  # (B, C)
            self.windows_scored += count
            for end, p in zip(ends, probs, strict=True):
                event = self._update(int(end), p)
                if event is not None:
                    events.append(event)
            self._next_end += c.hop * count
        # keep only what the next window needs
        keep_from = self._next_end - c.window
        drop = max(0, keep_from - self._buffer_start)
        if drop:
            self._buffer = self._buffer[drop:]
            self._buffer_start += drop
        return events

    def _update(self, end: int, probs: np.ndarray) -> Event | None:
        c = self.config
        self._recent.append((end, probs))
        smoothed = np.mean([p for _, p in self._recent], axis=0)
        if self.keep_trace:
            self.trace_times.append(end / c.sample_rate)
            self.trace.append(smoothed.astype(np.float32))
        top = int(np.argmax(smoothed))
        score = float(smoothed[top])
        if not self.keyword_mask[top] or score < c.threshold:
            return None
        if end - self._last_event_end < round(c.refractory_s * c.sample_rate):
            return None
        self._last_event_end = end
        best_end = max(self._recent, key=lambda item: item[1][top])[0]
        return Event(
            label=self.labels[top],
            start_s=(best_end - c.window) / c.sample_rate,
            end_s=best_end / c.sample_rate,
            score=score,
            time_s=end / c.sample_rate,
        )
