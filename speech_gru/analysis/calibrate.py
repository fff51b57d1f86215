"""Choose the detector's operating point for a target false-alarm rate.

Keyword-free ("negative") audio (``speech_gru.analysis.negatives``) is streamed once, and
the model's (B, C) output for every window kept
(``speech_gru.analysis.streaming.scores.record``). Everything after that replays those
outputs, never the model: for each averaging span the detector's own decision rule
(``speech_gru.analysis.streaming.decisions.mean_then_threshold``) gives, for any threshold,
the events the detector would report, and every event on negative audio is a false alarm.
The chosen threshold is the lowest (in steps of ``GRID``, not below a floor) whose false
alarms per hour are at most the target; it is then checked by replaying the recorded
outputs through that rule with the refractory time (``decisions.replay``, which gives
``StreamingDetector``'s events exactly). Across spans the lowest threshold wins.

Per-keyword thresholds share the false-alarm budget: a keyword that stays within its
share at the floor keeps the floor and gives the rest back, and the others get equal
shares of what is left. A keyword's events in the combined detector are never more than
its events alone, so the total stays within the target (and the replay checks it).
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from speech_gru.analysis.streaming.decisions import (
    Candidates,
    keyword_mask,
    mean_then_threshold,
    replay,
)
from speech_gru.analysis.streaming.scores import ScoredStream
from speech_gru.runtime.checkpoint import (
    FileStamp,
    OperatingPoint,
    duration_text,
    save_operating_point,
)
from speech_gru.runtime.detector import DetectorConfig, after_refractory

GRID = 1e-4
"""Threshold resolution: thresholds are multiples of it."""


class CalibrationError(Exception):
    """Calibration cannot run as asked; ``str()`` is one line."""


def count_events(
    scores: Sequence[np.ndarray], ends: Sequence[np.ndarray], threshold: float, refractory: int
) -> int:
    """Events over streams: windows whose score reaches ``threshold``, each at least
    ``refractory`` samples after the previous event of its stream (the detector's rule).

    Args:
        scores: per stream, (K,) the score each candidate window is held to the
            threshold with (-inf: it never fires).
        ends: per stream, (K,) end sample of each of those windows, increasing.
        threshold: the threshold.
        refractory: samples.
    """
    return sum(
        len(after_refractory(end[score >= threshold], refractory))
        for score, end in zip(scores, ends, strict=True)
    )


def grid_above(value: float) -> float:
    """The smallest multiple of ``GRID`` greater than ``value``."""
    k = math.floor(value / GRID) + 1
    while k * GRID <= value:
        k += 1
    while (k - 1) * GRID > value:
        k -= 1
    return round(k * GRID, 10)


def lowest_threshold(
    scores: Sequence[np.ndarray],
    ends: Sequence[np.ndarray],
    refractory: int,
    allowed: int,
    floor: float,
) -> float | None:
    """The lowest threshold, ``floor`` or a multiple of ``GRID`` above it, that gives at
    most ``allowed`` events (see ``count_events``); None when even 1.0 gives more.

    Events only get fewer as the threshold rises (the detector keeps the earliest event
    and skips those within the refractory time: the most that fit), so the search halves
    the scores seen on the way.
    """
    if count_events(scores, ends, floor, refractory) <= allowed:
        return floor
    values = np.unique(np.concatenate([s[s >= floor] for s in scores]))  # ascending
    lo, hi = 1, len(values)  # the first value to keep: lo; len(values) keeps none
    while lo < hi:
        mid = (lo + hi) // 2
        if count_events(scores, ends, float(values[mid]), refractory) <= allowed:
            hi = mid
        else:
            lo = mid + 1
    threshold = grid_above(float(values[lo - 1]))
    return threshold if threshold <= 1.0 else None


@dataclass
class SpanCandidate:
    """The lowest threshold meeting the target at one averaging span.

    Attributes:
        average_s: the span.
        threshold: the threshold; None when no threshold up to 1 meets the target.
        thresholds: per-keyword thresholds (empty for one threshold).
        false_alarms: events on the negative audio at this point, counted by replaying
            the recorded outputs with the detector's rule (at threshold 1 when None).
        hit_rate: share of the keyword clips detected at this point (None: not measured).
    """

    average_s: float
    threshold: float | None
    thresholds: dict[str, float]
    false_alarms: int
    hit_rate: float | None = None

    @property
    def level(self) -> float:
        """What ranks candidates: the threshold, or the mean per-keyword threshold."""
        if self.thresholds:
            return float(np.mean(list(self.thresholds.values())))
        return math.inf if self.threshold is None else self.threshold


@dataclass
class Calibration:
    """The outcome of ``calibrate``.

    Attributes:
        candidates: one per averaging span, in the order given.
        chosen: the candidate with the lowest threshold meeting the target (None: none).
        target: false alarms per hour.
        negative_s: seconds of negative audio.
        allowed: false alarms the target allows on that audio.
        config: the detector settings other than the point (hop, refractory time).
    """

    candidates: list[SpanCandidate]
    chosen: SpanCandidate | None
    target: float
    negative_s: float
    allowed: int
    config: DetectorConfig

    @property
    def measurable(self) -> bool:
        """False when a single false alarm on this much audio already exceeds the target."""
        return self.allowed >= 1

    def point(self, source: str = "") -> OperatingPoint:
        """The chosen operating point, with its provenance.

        Raises:
            CalibrationError: no candidate met the target.
        """
        if self.chosen is None or self.chosen.threshold is None:
            raise CalibrationError("no averaging span meets the target at any threshold")
        c = self.chosen
        return OperatingPoint(
            threshold=c.threshold,
            average_s=c.average_s,
            refractory_s=self.config.refractory_s,
            hop_s=self.config.hop_s,
            thresholds=dict(c.thresholds),
            target_fa_per_hour=self.target,
            negative_s=self.negative_s,
            false_alarms=c.false_alarms,
            source=source,
            created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            hit_rate=c.hit_rate,
        )


def replay_count(
    scored: Sequence[ScoredStream], labels: Sequence[str], config: DetectorConfig
) -> int:
    """Events of the detector over the recorded outputs of every stream."""
    return sum(len(replay(r.posteriors, labels, config)) for r in scored)


def hit_rate(
    scored: Sequence[ScoredStream], labels: Sequence[str], config: DetectorConfig
) -> float | None:
    """Share of one-clip streams in which the detector reports the clip's keyword."""
    if not scored:
        return None
    hits = sum(
        any(e.label == r.label for e in replay(r.posteriors, labels, config)) for r in scored
    )
    return hits / len(scored)


def calibrate(
    negatives: Sequence[ScoredStream],
    labels: Sequence[str],
    target: float,
    averages: Sequence[float],
    config: DetectorConfig | None = None,
    per_keyword: bool = False,
    floor: float = 0.5,
    positives: Sequence[ScoredStream] = (),
) -> Calibration:
    """Choose the most sensitive operating point within a false-alarm target.

    Args:
        negatives: recorded outputs over keyword-free audio (see
            ``speech_gru.analysis.streaming.scores.record``).
        labels: class names in output order.
        target: false alarms per hour of negative audio.
        averages: averaging spans to try (seconds).
        config: hop, window and refractory time (the ones the outputs were recorded at:
            the window is the model's, ``factory.detector_config`` sets it); default
            ``DetectorConfig()``, a 1 s window.
        per_keyword: one threshold per keyword instead of one for all.
        floor: the lowest threshold considered.
        positives: recorded outputs over one-clip keyword streams (``ScoredStream.label``
            set), for each candidate's hit rate.

    Returns:
        Every span's candidate and the chosen one.

    Raises:
        CalibrationError: no negative stream is as long as one window.
    """
    config = config or DetectorConfig()
    if target <= 0:
        raise ValueError("target must be positive")
    longest = max((r.duration_s for r in negatives), default=0.0)
    if longest < config.window_s:
        # No window of the detector fits in any stream: there is nothing to count false
        # alarms on, and any threshold would look like it keeps to the target.
        raise CalibrationError(
            f"negative audio shorter than one window: the longest stream is "
            f"{duration_text(longest)}, the window {config.window_s:g} s; nothing measured"
        )
    negative_s = sum(r.duration_s for r in negatives)
    allowed = math.floor(target * negative_s / 3600 + 1e-9)
    mask = keyword_mask(labels)
    candidates = []
    for average_s in averages:
        span = replace(config, average_s=average_s, thresholds={})
        # the detector's rule on each stream: windows whose averaged top class is a keyword
        found = [mean_then_threshold(r.posteriors, mask, span) for r in negatives]
        ends = [span.window + span.hop * c.hop for c in found]
        refractory = round(span.refractory_s * span.sample_rate)
        if per_keyword:
            budget = target * negative_s / 3600
            thresholds = _per_keyword(labels, mask, found, ends, refractory, budget, floor)
            threshold = None if thresholds is None else max(thresholds.values())
        else:
            scores = [c.score for c in found]
            threshold = lowest_threshold(scores, ends, refractory, allowed, floor)
            thresholds = {}
        candidates.append(
            _checked(negatives, labels, span, threshold, thresholds or {}, allowed, positives)
        )
    meeting = [c for c in candidates if c.threshold is not None]
    chosen = min(meeting, key=lambda c: c.level) if meeting else None  # first of equals
    return Calibration(candidates, chosen, target, negative_s, allowed, config)


def _per_keyword(
    labels: Sequence[str],
    mask: np.ndarray,
    found: list[Candidates],
    ends: list[np.ndarray],
    refractory: int,
    budget: float,
    floor: float,
) -> dict[str, float] | None:
    """Per-keyword lowest thresholds within shares of ``budget`` false alarms (see the
    module docstring); None when a keyword cannot keep its share at any threshold."""
    scores = {
        labels[k]: [np.where(c.label == k, c.score, -np.inf) for c in found]
        for k in np.flatnonzero(mask)
    }
    at_floor = {k: count_events(v, ends, floor, refractory) for k, v in scores.items()}
    thresholds: dict[str, float] = {}
    active = sorted(scores)
    while active:
        share = budget / len(active)
        settled = [k for k in active if at_floor[k] <= share + 1e-9]
        if not settled:
            break
        for k in settled:
            thresholds[k] = floor
            budget -= at_floor[k]
            active.remove(k)
    for k in active:
        allowed = math.floor(budget / len(active) + 1e-9)
        threshold = lowest_threshold(scores[k], ends, refractory, allowed, floor)
        if threshold is None:
            return None
        thresholds[k] = threshold
    return {label: thresholds[label] for label in labels if label in thresholds}


def _checked(
    negatives: Sequence[ScoredStream],
    labels: Sequence[str],
    span: DetectorConfig,
    threshold: float | None,
    thresholds: dict[str, float],
    allowed: int,
    positives: Sequence[ScoredStream],
) -> SpanCandidate:
    """The candidate with its false alarms counted by replaying the detector's rule with
    its refractory time (``decisions.replay``); a threshold that the replay finds over the
    target (rounding at a step's edge) is raised a step."""
    while threshold is not None:
        config = replace(span, threshold=threshold, thresholds=thresholds)
        alarms = replay_count(negatives, labels, config)
        if alarms <= allowed:
            hits = hit_rate(positives, labels, config)
            return SpanCandidate(span.average_s, threshold, thresholds, alarms, hits)
        thresholds = {k: min(1.0, round(t + GRID, 10)) for k, t in thresholds.items()}
        threshold = None if threshold >= 1.0 else min(1.0, round(threshold + GRID, 10))
    alarms = replay_count(negatives, labels, replace(span, threshold=1.0))
    return SpanCandidate(span.average_s, None, {}, alarms)


def save_point(
    checkpoint: dict,
    point: OperatingPoint,
    out: str | Path,
    source: str | Path | None = None,
    stamp: FileStamp | None = None,
) -> Path | None:
    """Write ``checkpoint`` with ``point`` as its ``operating_point`` to ``out``, atomically
    (a failed write leaves the file as it was); weights and training state are untouched.
    A file already at ``out`` is kept as ``out`` + ``.bak``. With ``source`` and ``stamp``
    (what ``read_checkpoint_stamped`` gave), nothing is written if ``source`` changed since
    it was read. The checkpoint format is ``speech_gru.runtime.checkpoint``'s.

    Returns:
        The backup of the previous file, or None when ``out`` did not exist.

    Raises:
        ChangedError: ``source`` changed since it was read; nothing written.
        OSError: ``out`` cannot be written.
    """
    return save_operating_point(checkpoint, point, out, source, stamp)
