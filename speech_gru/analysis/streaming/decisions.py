"""Decision rules replayed on recorded posteriors, and the DET curve they draw.

A streaming pass (``speech_gru.analysis.streaming.scores``) keeps the model's (W, C)
posteriors; from then on no model runs. A decision rule turns them into ``Candidates``
(what it would report before the threshold and the refractory time) and ``decide`` into
events, so one pass gives the events at any threshold: ``det_curve`` sweeps thresholds for
miss rate against false alarms per hour. The rule can be the detector's own
(``mean_then_threshold``: ``replay`` with it gives ``StreamingDetector``'s events exactly,
which calibration relies on) or an alternative (``peak_picking``,
``consecutive_windows``), so decision logic is compared on the same posteriors rather
than assumed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from speech_gru.analysis.streaming.matching import match_events
from speech_gru.analysis.streaming.truth import Truth
from speech_gru.core.labels import is_keyword
from speech_gru.runtime.detector import DetectorConfig, Event, after_refractory, moving_mean

DET_THRESHOLDS = (
    *(round(0.05 + 0.025 * i, 3) for i in range(37)),  # 0.05 .. 0.95
    0.96, 0.97, 0.98, 0.99,
)  # fmt: skip
"""Thresholds of a DET curve: fine near 1, where a softmax keyword score usually sits."""
AREA_RANGE = (1.0, 100.0)
"""False alarms per hour over which ``mean_miss_rate`` averages (log-spaced)."""


@dataclass(frozen=True)
class Candidates:
    """What a decision rule would report, before the threshold and the refractory time.

    Window ``i`` is the one ending at sample ``config.window + i * config.hop``.

    Attributes:
        hop: (K,) increasing index of the window at which the event would be reported.
        label: (K,) class index.
        score: (K,) the value compared with the threshold (an event when ``>=``).
        best: (K,) index of the window reported as the event's span.
    """

    hop: np.ndarray
    label: np.ndarray
    score: np.ndarray
    best: np.ndarray


Decision = Callable[[np.ndarray, np.ndarray, DetectorConfig], Candidates]
"""(W, C) posteriors, (C,) keyword mask, settings -> candidates."""


def _no_candidates() -> Candidates:
    empty = np.zeros(0, dtype=np.int64)
    return Candidates(empty, empty, np.zeros(0), empty)


def _best(p: np.ndarray, first: np.ndarray, last: np.ndarray, label: np.ndarray) -> np.ndarray:
    """For each k, the index in ``first[k]..last[k]`` where ``p[:, label[k]]`` is highest."""
    return np.array(
        [f + int(np.argmax(p[f : e + 1, c])) for f, e, c in zip(first, last, label, strict=True)],
        dtype=np.int64,
    )


def mean_then_threshold(
    posteriors: np.ndarray, keyword_mask: np.ndarray, config: DetectorConfig
) -> Candidates:
    """The detector's rule: posteriors averaged over ``average_s``; the top class, if a
    keyword, is an event when its average reaches the threshold."""
    p = np.asarray(posteriors, dtype=np.float64)
    if not len(p):
        return _no_candidates()
    smoothed = moving_mean(p, config.average_count)
    top = smoothed.argmax(axis=1)
    hop = np.flatnonzero(keyword_mask[top])
    first = np.maximum(0, hop - config.average_count + 1)
    label = top[hop]
    return Candidates(hop, label, smoothed[hop, label], _best(p, first, hop, label))


def peak_picking(
    posteriors: np.ndarray, keyword_mask: np.ndarray, config: DetectorConfig
) -> Candidates:
    """Local maxima of the averaged posteriors: window ``i`` is a peak of its top class
    ``c`` when ``s[i, c] >= s[i - 1, c]`` and ``s[i, c] > s[i + 1, c]``. The peak's score
    is compared with the threshold; it is reported one hop later, when it is known."""
    p = np.asarray(posteriors, dtype=np.float64)
    if len(p) < 2:
        return _no_candidates()
    s = moving_mean(p, config.average_count)
    i = np.arange(len(p) - 1)
    c = s[i].argmax(axis=1)
    before = np.where(i > 0, s[np.maximum(i - 1, 0), c], -np.inf)
    peak = keyword_mask[c] & (s[i, c] >= before) & (s[i, c] > s[i + 1, c])
    i, c = i[peak], c[peak]
    first = np.maximum(0, i - config.average_count + 1)
    return Candidates(i + 1, c, s[i, c], _best(p, first, i, c))


def consecutive_windows(
    posteriors: np.ndarray, keyword_mask: np.ndarray, config: DetectorConfig
) -> Candidates:
    """No averaging: an event when the last N raw windows (N = ``average_count``) all have
    the same keyword on top, each at least the threshold (their minimum is the score)."""
    p = np.asarray(posteriors, dtype=np.float64)
    n = config.average_count
    if len(p) < n:
        return _no_candidates()
    top = p.argmax(axis=1)
    runs = np.lib.stride_tricks.sliding_window_view(top, n)  # (W - n + 1, n)
    hop = np.flatnonzero((runs == runs[:, -1:]).all(axis=1) & keyword_mask[runs[:, -1]]) + n - 1
    label = top[hop]
    scores = p[hop[:, None] - np.arange(n)[None, :], label[:, None]].min(axis=1)
    return Candidates(hop, label, scores, _best(p, hop - n + 1, hop, label))


DECISIONS: dict[str, Decision] = {
    "mean-then-threshold": mean_then_threshold,
    "peak": peak_picking,
    "consecutive": consecutive_windows,
}
"""Decision rules by name; the first is ``StreamingDetector``'s own."""


def decide(
    candidates: Candidates,
    labels: Sequence[str],
    config: DetectorConfig,
    threshold: float | None = None,
) -> list[Event]:
    """Events of ``candidates``, with the detector's refractory time.

    Args:
        candidates: what a decision rule gave.
        labels: the C class names.
        config: detector settings.
        threshold: one threshold for every keyword; None: the config's own (its
            per-keyword ``thresholds``, else ``threshold``).
    """
    if threshold is None:
        limits = np.array([config.thresholds.get(label, config.threshold) for label in labels])
    else:
        limits = np.full(len(labels), threshold)
    window, hop, rate = config.window, config.hop, config.sample_rate
    refractory = round(config.refractory_s * rate)
    above = np.flatnonzero(candidates.score >= limits[candidates.label])
    ends = window + hop * candidates.hop[above].astype(np.int64)
    events = []
    for i in after_refractory(ends.tolist(), refractory):
        k, end = above[i], int(ends[i])
        best_end = window + hop * int(candidates.best[k])
        events.append(
            Event(
                label=labels[int(candidates.label[k])],
                start_s=(best_end - window) / rate,
                end_s=best_end / rate,
                score=float(candidates.score[k]),
                time_s=end / rate,
            )
        )
    return events


def keyword_mask(labels: Sequence[str]) -> np.ndarray:
    """(C,) True where the label is a keyword (a decision rule reports only those)."""
    return np.array([is_keyword(label) for label in labels])


def replay(
    posteriors: np.ndarray,
    labels: Sequence[str],
    config: DetectorConfig,
    decision: Decision = mean_then_threshold,
) -> list[Event]:
    """Events a decision rule gives with ``config`` on recorded (W, C) posteriors.

    With ``mean_then_threshold`` these are ``StreamingDetector``'s events exactly.
    """
    return decide(decision(posteriors, keyword_mask(labels), config), labels, config)


def det_curve(
    posteriors: np.ndarray,
    labels: Sequence[str],
    config: DetectorConfig,
    truths: Sequence[Truth],
    tolerance: float,
    duration_s: float,
    distractors: Sequence[Truth] = (),
    decision: Decision = mean_then_threshold,
    thresholds: Sequence[float] = DET_THRESHOLDS,
) -> list[dict]:
    """Miss rate and false alarms per hour at each threshold, from one pass's posteriors.

    Each threshold applies to every keyword (per-keyword ``thresholds`` are set aside).

    Returns:
        One row per threshold, in the given order: ``threshold``, ``events`` and the
        ``Metrics.summary()`` numbers (``miss_rate``, ``false_alarms_per_hour``, ...).
    """
    candidates = decision(posteriors, keyword_mask(labels), config)
    rows = []
    for threshold in thresholds:
        events = decide(candidates, labels, config, float(threshold))
        metrics = match_events(events, truths, tolerance, duration_s, distractors)
        rows.append({"threshold": float(threshold), "events": len(events), **metrics.summary()})
    return rows


def lowest_miss_within(rows: Sequence[dict], target_fa_per_hour: float) -> dict | None:
    """The DET row with the lowest miss rate among those within ``target_fa_per_hour``
    (ties: fewer false alarms, then the higher threshold); None when none is. Reports call
    it the operating point at that target; it is not a calibrated ``OperatingPoint``."""
    within = [
        r
        for r in rows
        if r["miss_rate"] is not None and r["false_alarms_per_hour"] <= target_fa_per_hour
    ]
    if not within:
        return None
    return min(within, key=lambda r: (r["miss_rate"], r["false_alarms_per_hour"], -r["threshold"]))


def mean_miss_rate(rows: Sequence[dict], fa_range: tuple[float, float] = AREA_RANGE) -> float:
    """Area under the DET curve: the lowest miss rate reachable within x false alarms per
    hour, averaged over x log-spaced across ``fa_range`` (1.0 where nothing reaches x).
    Lower is better; NaN without keywords."""
    points = [(r["false_alarms_per_hour"], r["miss_rate"]) for r in rows]
    if not points or any(miss is None for _, miss in points):
        return float("nan")
    grid = np.geomspace(fa_range[0], fa_range[1], 41)
    return float(np.mean([min([m for fa, m in points if fa <= x], default=1.0) for x in grid]))
