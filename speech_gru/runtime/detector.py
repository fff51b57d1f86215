"""Streaming keyword detection: audio chunks in, timestamped events out.

A bidirectional GRU needs the whole window, so it cannot carry state frame by frame.
Instead ``StreamingDetector`` keeps the last window of audio (the model's ``window_s``,
one second for Speech Commands models, up to three for a long wake phrase; the factory
sets it from the model), and every hop re-runs the model on the window ending there.
Posteriors are averaged over a short span; the top class, when it is a keyword whose
averaged score reaches the threshold (its own, when ``DetectorConfig.thresholds`` names
it), becomes an event, and no further event is reported for the refractory time, so one
utterance gives one event. ``_silence_`` and ``_unknown_`` are never reported. A forward
model carries its state instead: its ``StatefulScorer`` (``speech_gru.runtime.stateful``)
gives each window's scores from one step per new frame, and the detector around it is
the same.

The detector knows nothing of model files: it takes a scorer and labels, and
``DetectorConfig.resolve`` takes the settings of a calibrated operating point
(``speech_gru.runtime.checkpoint.OperatingPoint``, which travels with the model).

Windows end at fixed sample positions (multiples of the hop, from the first full
window on) and are scored in groups of ``batch_windows`` aligned to those positions, so
the events do not depend on how the audio was chunked. No audio device is touched here:
arrays in, events out.
"""

from __future__ import annotations

import math
import numbers
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import Field, asdict, dataclass, field, fields, replace
from typing import Any, Protocol

import numpy as np

from speech_gru.core.labels import is_keyword
from speech_gru.runtime.stateful import Scorer


class Calibrated(Protocol):
    """What ``DetectorConfig.resolve`` reads of a calibrated operating point
    (``speech_gru.runtime.checkpoint.OperatingPoint``): the settings it fixes."""

    def detector_settings(self) -> dict:
        """Keyword arguments of ``DetectorConfig`` (threshold, thresholds, average_s,
        refractory_s)."""


class RecordingScorer:
    """Wraps a scorer and keeps every (B, C) result, in order, so that thresholds and
    smoothing can be replayed (``StreamingDetector.replay``) without running it again.

    Args:
        scorer: (B, window) waveforms -> (B, C) probabilities.
    """

    def __init__(self, scorer: Scorer) -> None:
        self.scorer = scorer
        self.outputs: list[np.ndarray] = []

    def __call__(self, windows: np.ndarray) -> np.ndarray:
        probs = np.asarray(self.scorer(windows))  # (B, C)
        self.outputs.append(probs)
        return probs

    def reset(self) -> None:
        """Start the wrapped scorer's stream again (a ``StatefulScorer``'s); the recorded
        outputs stay."""
        reset = getattr(self.scorer, "reset", None)
        if reset is not None:
            reset()

    @property
    def posteriors(self) -> np.ndarray:
        """(W, C) raw outputs of every window scored so far ((0, 0) before any)."""
        return np.concatenate(self.outputs) if self.outputs else np.zeros((0, 0))


def moving_mean(posteriors: np.ndarray, count: int) -> np.ndarray:
    """(W, C) mean of each window's posteriors and the ``count - 1`` before it.

    Computed window by window exactly as ``StreamingDetector`` does, so scores equal to
    the threshold compare the same way.
    """
    p = np.asarray(posteriors, dtype=np.float64)
    if not len(p):  # a stream shorter than one window
        return p.reshape(0, p.shape[-1] if p.ndim == 2 else 0)
    return np.stack([np.mean(p[max(0, i - count + 1) : i + 1], axis=0) for i in range(len(p))])


def after_refractory(ends: Iterable[int], refractory: int) -> list[int]:
    """Which candidate events the detector reports, by index: the first, then each one
    ending at least ``refractory`` samples after the last one reported (``ends`` in
    increasing order). Replays of recorded scores (calibration, evaluation) use this
    rule; ``StreamingDetector`` applies it as events come."""
    kept, last = [], None
    for i, end in enumerate(ends):
        if last is None or end - last >= refractory:
            kept.append(i)
            last = end
    return kept


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


MIN_HOP_S = 0.01
"""The shortest hop: one feature frame (10 ms). Windows closer than a frame add no frame
the last window lacked, and each costs a model call: a hop of 10 us took minutes for
seconds of audio."""

MAX_SPAN_S = 86_400.0
"""The longest window, hop, averaging span or refractory time: a day. Longer values are
not settings of a stream, and the sample counts made from them must stay integers."""

MAX_BATCH_WINDOWS = 1024
"""The most windows scored in one model call (a 1 s window at 16 kHz: 64 MB of audio)."""


class ConfigError(ValueError):
    """A ``DetectorConfig`` field out of range; ``str()`` is one line naming the field.

    Attributes:
        name: the field (``"hop_s"``).
        value: the value refused.
        problem: what is wrong with it, without the field's name (for a command line,
            which names its flag instead).
    """

    def __init__(self, name: str, value: object, problem: str) -> None:
        shown = repr(value)
        if len(shown) > 40:
            shown = shown[:37] + "..."
        super().__init__(f"{name} must {problem}, got {shown}")
        self.name = name
        self.value = value
        self.problem = f"must {problem}"


def _real(name: str, value: object) -> float:
    """``value`` as a finite float, or ConfigError: a bool or text is not a number."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(name, value, "be a number")
    number = float(value)
    if not math.isfinite(number):
        raise ConfigError(name, value, "be a finite number")
    return number


def _integer(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(name, value, "be an integer")
    if not low <= value <= high:
        raise ConfigError(name, value, f"be from {low} to {high}")


def _flag(name: str, help: str, kind: str, calibrated: bool = False) -> dict:
    return {"flag": name, "help": help, "kind": kind, "calibrated": calibrated}


@dataclass(frozen=True)
class DetectorConfig:
    """Streaming settings.

    The defaults follow the Speech Commands reference recognizer (TensorFlow's
    ``RecognizeCommands`` as used by its Android demo and streaming-accuracy tool):
    posteriors averaged over 500 ms, detection threshold 0.7, 1.5 s suppression. The
    reference scores a window every 30 ms; here the hop is 100 ms by default.

    Attributes:
        sample_rate: stream rate in Hz.
        window_s: seconds of audio per scored window: the model's own window
            (``Classifier.window_s``), which ``runtime.factory.detector_config`` sets.
        hop_s: time between scored windows.
        average_s: span of the posterior moving average.
        threshold: averaged keyword score that triggers an event.
        refractory_s: time after an event during which no other event is reported.
        batch_windows: windows scored per model call. 1 scores each hop as soon as its
            audio arrives (live); larger values are faster on files.
        thresholds: per-keyword thresholds; a keyword not listed uses ``threshold``.
    """

    sample_rate: int = 16000
    window_s: float = 1.0
    hop_s: float = field(
        default=0.1, metadata=_flag("--hop", "seconds between scored windows", "positive")
    )
    average_s: float = field(
        default=0.5,
        metadata=_flag("--average", "posterior averaging span, s", "non_negative", True),
    )
    threshold: float = field(
        default=0.7,
        metadata=_flag("--threshold", "detection threshold, in (0, 1]", "probability", True),
    )
    refractory_s: float = field(
        default=1.5,
        metadata=_flag("--refractory", "silence after an event, s", "non_negative", True),
    )
    batch_windows: int = 1
    thresholds: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def flags(cls) -> list[Field]:
        """The settings a command line may set: fields whose metadata has a ``flag``
        (its name), ``help``, ``kind`` (``positive``, ``non_negative``, ``probability``)
        and ``calibrated`` (a calibrated operating point sets it)."""
        return [f for f in fields(cls) if "flag" in f.metadata]

    @classmethod
    def resolve(
        cls, point: Calibrated | None, given: Mapping[str, Any], batch_windows: int
    ) -> DetectorConfig:
        """The settings a detector runs at: each one ``given`` (flags, keyword arguments),
        else the calibrated operating ``point`` (when there is one), else the defaults. A
        given ``threshold`` holds for every keyword: the point's per-keyword ones are dropped."""
        settings = point.detector_settings() if point is not None else {}
        settings.update(given)
        if "threshold" in given:
            settings["thresholds"] = {}
        return cls(batch_windows=batch_windows, **settings)

    def with_threshold(self, value: float) -> DetectorConfig:
        """These settings with one threshold for every keyword, as ``--threshold`` gives
        (the per-keyword ones go)."""
        return replace(self, threshold=value, thresholds={})

    def __post_init__(self) -> None:
        # Checked here, where every caller passes (flags, the API, a stored operating
        # point), so a bad value is one ValueError naming the field rather than an
        # OverflowError or a stream that never ends.
        _integer("sample_rate", self.sample_rate, 1000, 384_000)
        _integer("batch_windows", self.batch_windows, 1, MAX_BATCH_WINDOWS)
        for name in ("window_s", "hop_s", "average_s", "refractory_s"):
            value = _real(name, getattr(self, name))
            if value > MAX_SPAN_S:
                raise ConfigError(name, value, f"be at most {MAX_SPAN_S:g} s (a day)")
        if _real("window_s", self.window_s) * self.sample_rate < 1:
            raise ConfigError("window_s", self.window_s, "be positive")
        if self.hop_s < MIN_HOP_S:
            raise ConfigError("hop_s", self.hop_s, f"be at least {MIN_HOP_S:g} s (one frame)")
        for name in ("average_s", "refractory_s"):
            if getattr(self, name) < 0:
                raise ConfigError(name, getattr(self, name), "not be negative")
        if not isinstance(self.thresholds, Mapping):
            raise ConfigError("thresholds", self.thresholds, "be a mapping of label to score")
        named = [(f"thresholds[{k!r}]", v) for k, v in self.thresholds.items()]
        for name, value in [("threshold", self.threshold), *named]:
            if not 0 < _real(name, value) <= 1:
                raise ConfigError(name, value, "be in (0, 1]")

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
        for keyword in self.config.thresholds:
            if keyword not in self.labels or not is_keyword(keyword):
                raise ValueError(f"threshold for {keyword!r}, which is not a keyword here")
        self.thresholds = np.array(  # (C,) the threshold each label's score is held to
            [self.config.thresholds.get(label, self.config.threshold) for label in self.labels]
        )
        self.keep_trace = keep_trace
        self.reset()

    def set_threshold(self, value: float) -> None:
        """Hold every keyword to ``value`` from now on (per-keyword thresholds go, as with
        ``--threshold``), keeping the audio, the averaging and the refractory state."""
        self.config = self.config.with_threshold(value)
        self.thresholds = np.full(len(self.labels), self.config.threshold)

    def reset(self) -> None:
        """Forget all audio and state; the next sample is time zero."""
        c = self.config
        restart = getattr(self.scorer, "reset", None)  # a StatefulScorer's stream starts over
        if restart is not None:
            restart()
        self._buffer = np.zeros(0, dtype=np.float32)  # samples from _buffer_start on
        self._buffer_start = 0
        self._received = 0  # samples pushed, silence of ``finish`` included
        self._padded = 0  # of which silence added by ``finish``
        self._next_end = c.window  # end sample of the next window to score
        self._recent: deque[tuple[int, np.ndarray]] = deque(maxlen=c.average_count)
        self._last_event_end = -(10**12)
        self._latest: np.ndarray | None = None  # (C,) averaged posteriors of the last window
        self.trace_times: list[float] = []
        self.trace: list[np.ndarray] = []
        self.windows_scored = 0

    @property
    def time_s(self) -> float:
        """Seconds of audio received so far (not the silence ``finish`` adds)."""
        return (self._received - self._padded) / self.config.sample_rate

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

    def finish(self) -> list[Event]:
        """End of an input that ends (a file, a pipe, an array): silence after its last
        sample for the windows that still hold some of it (up to a window less a hop),
        then ``flush``. A keyword that ends with the input then passes through the
        windows after it, as one in mid-stream does; without them its averaged score
        never rose (a word at a file's very end was missed). No window of silence alone is
        scored, and the silence is not counted in ``time_s``."""
        if not self._received:
            return self.flush()
        tail = max(0, self.config.window - self.config.hop)
        self._padded += tail
        return self.push(np.zeros(tail, dtype=np.float32)) + self.flush()

    def events(
        self,
        chunks: Iterable[np.ndarray],
        on_audio: Callable[[float], None] | None = None,
        on_chunk: Callable[[np.ndarray, np.ndarray | None], None] | None = None,
        ends: bool = False,
    ) -> Iterator[Event]:
        """The stream loop every caller runs: push each chunk, yield its events as they
        come, and flush when the chunks end (``speech_gru.runtime.source`` opens the chunks).

        Args:
            chunks: 1-D float32 pieces of audio at the configured rate, in order.
            on_audio: called with each chunk's length in seconds once it is scored.
            on_chunk: called with each chunk and the averaged posteriors (C,) of the
                latest window scored (None before the first), once the chunk is scored:
                what a live view draws (``speech_gru.cli.live``).
            ends: the input is one that ends (a file, standard input, an array, not a
                microphone): ``finish`` it, so its last word is heard too.
        """
        for chunk in chunks:
            found = self.push(chunk)
            if on_audio is not None:
                on_audio(np.size(chunk) / self.config.sample_rate)
            if on_chunk is not None:
                on_chunk(chunk, self._latest)
            yield from found
        yield from self.finish() if ends else self.flush()

    def run(self, chunks: Iterable[np.ndarray]) -> list[Event]:
        """Every event of a finite stream (``events`` collected)."""
        return list(self.events(chunks))

    def replay(self, posteriors: np.ndarray) -> list[Event]:
        """Events from recorded scores instead of audio (calibration replays them).

        Gives what ``run`` gives on the audio the scores came from, with this detector's
        averaging, thresholds and refractory time; the detector is reset before and after.

        Args:
            posteriors: (N, C) scorer outputs of the windows ending at ``window + i *
                hop`` samples, in order, as a stream of that audio scores them.
        """
        self.reset()
        c = self.config
        events = []
        for i, probs in enumerate(np.asarray(posteriors, dtype=np.float64)):  # (C,) each
            event = self._update(c.window + i * c.hop, probs)
            if event is not None:
                events.append(event)
        self.reset()  # no audio was received
        return events

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
        self._latest = smoothed
        if self.keep_trace:
            self.trace_times.append(end / c.sample_rate)
            self.trace.append(smoothed.astype(np.float32))
        top = int(np.argmax(smoothed))
        score = float(smoothed[top])
        if not self.keyword_mask[top] or score < self.thresholds[top]:
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
