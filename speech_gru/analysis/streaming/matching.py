"""Detected events against the truth: hits, misses, false alarms by cause, latency.

``match_events`` gives each event an outcome (``OUTCOMES``) and each keyword spoken the
event that hit it; ``Metrics`` holds the counts and rates (hit rate, false alarms per hour
by cause, latency after the word's end).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from speech_gru.analysis.streaming.truth import Truth
from speech_gru.runtime.detector import Event

OUTCOMES = ("hit", "wrong_label", "repeat", "distractor", "background")
"""Per-event outcome. Everything but ``hit`` is a false alarm: ``wrong_label`` overlaps a
keyword of another label (wrong keyword), ``repeat`` a keyword already hit,
``distractor`` another word, ``background`` nothing (noise)."""
CAUSES = {
    "wrong_label": "wrong keyword",
    "distractor": "another word",
    "background": "noise",
    "repeat": "repeat",
}
"""False-alarm outcomes and how reports name them."""


@dataclass
class Metrics:
    """Detection results of one run.

    Attributes:
        keywords: keywords in the recording.
        hits: keywords detected with their label in time.
        false_alarms: events that are not hits.
        wrong_label: false alarms overlapping a keyword of another label.
        repeats: false alarms on a keyword that was already hit.
        distractor_alarms: false alarms on another word.
        background_alarms: false alarms on background only.
        duration_s: recording length.
        tolerance_s: how long after the speech end an event still counts.
        latencies: event time minus speech end, for each hit (seconds).
        outcomes: per event (in the order given), one of ``OUTCOMES``.
        matched: per truth, the index of the event that hit it, or None.
        per_label: label -> {"keywords", "hits", "false_alarms"}.
    """

    keywords: int
    hits: int
    false_alarms: int
    wrong_label: int
    repeats: int
    distractor_alarms: int
    background_alarms: int
    duration_s: float
    tolerance_s: float
    latencies: list[float]
    outcomes: list[str]
    matched: list[int | None]
    per_label: dict[str, dict[str, int]]

    @property
    def misses(self) -> int:
        return self.keywords - self.hits

    @property
    def hit_rate(self) -> float:
        return self.hits / self.keywords if self.keywords else float("nan")

    @property
    def miss_rate(self) -> float:
        return 1.0 - self.hit_rate

    def per_hour(self, count: int) -> float:
        """``count`` events as a rate per hour of this recording."""
        return count * 3600.0 / self.duration_s if self.duration_s else float("nan")

    @property
    def fa_per_hour(self) -> float:
        return self.per_hour(self.false_alarms)

    @property
    def by_cause(self) -> dict[str, int]:
        """False alarms per cause (keys of ``CAUSES``)."""
        return {cause: self.outcomes.count(cause) for cause in CAUSES}

    @property
    def mean_latency(self) -> float:
        return float(np.mean(self.latencies)) if self.latencies else float("nan")

    @property
    def median_latency(self) -> float:
        return float(np.median(self.latencies)) if self.latencies else float("nan")

    def summary(self) -> dict:
        """The headline numbers (JSON-ready; NaN becomes None)."""
        out = {
            "keywords": self.keywords,
            "hits": self.hits,
            "misses": self.misses,
            "hit_rate": self.hit_rate,
            "miss_rate": self.miss_rate,
            "false_alarms": self.false_alarms,
            "false_alarms_per_hour": self.fa_per_hour,
            "wrong_label": self.wrong_label,
            "repeats": self.repeats,
            "distractor_alarms": self.distractor_alarms,
            "background_alarms": self.background_alarms,
            "mean_latency_s": self.mean_latency,
            "median_latency_s": self.median_latency,
            "duration_s": self.duration_s,
            "tolerance_s": self.tolerance_s,
        }
        out = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in out.items()}
        out["false_alarms_per_hour_by_cause"] = {
            cause: self.per_hour(count) for cause, count in self.by_cause.items()
        }
        return out

    def to_dict(self) -> dict:
        return {
            **self.summary(),
            "latencies_s": self.latencies,
            "outcomes": self.outcomes,
            "matched": self.matched,
            "per_label": self.per_label,
        }


def match_events(
    events: Sequence[Event],
    truths: Sequence[Truth],
    tolerance: float = 1.0,
    duration_s: float | None = None,
    distractors: Sequence[Truth] = (),
) -> Metrics:
    """Match detected events to the keywords spoken.

    In time order, an event hits the earliest unmatched truth of its label whose span
    ``[start_s, end_s + tolerance]`` contains the event's ``time_s``; each truth is hit at
    most once. Every other event is a false alarm, classified (in this order of
    precedence) as ``wrong_label``, ``repeat``, ``distractor`` or ``background``.

    Args:
        events: detector events.
        truths: the keywords (``label`` must be a keyword).
        tolerance: seconds after the speech end that still count (window + averaging).
        duration_s: recording length for the per-hour rate; default the last truth's or
            event's end.
        distractors: spans of other words, only to classify false alarms.
    """
    if duration_s is None:
        ends = [t.clip_end_s for t in truths] + [e.time_s for e in events]
        duration_s = max(ends, default=0.0)

    def covers(truth: Truth, t: float) -> bool:
        return truth.start_s <= t <= truth.end_s + tolerance

    matched: list[int | None] = [None] * len(truths)
    outcomes = [""] * len(events)
    latencies: list[float] = []
    labels = list(dict.fromkeys([t.label for t in truths] + [e.label for e in events]))
    per_label = {label: {"keywords": 0, "hits": 0, "false_alarms": 0} for label in labels}
    for truth in truths:
        per_label[truth.label]["keywords"] += 1
    order = sorted(range(len(events)), key=lambda i: events[i].time_s)
    for i in order:
        event = events[i]
        candidates = [
            j
            for j, truth in enumerate(truths)
            if matched[j] is None and truth.label == event.label and covers(truth, event.time_s)
        ]
        if candidates:
            j = min(candidates, key=lambda k: truths[k].start_s)
            matched[j] = i
            outcomes[i] = "hit"
            latencies.append(event.time_s - truths[j].end_s)
            per_label[event.label]["hits"] += 1
            continue
        per_label[event.label]["false_alarms"] += 1
        overlapping = [truth for truth in truths if covers(truth, event.time_s)]
        if any(truth.label != event.label for truth in overlapping):
            outcomes[i] = "wrong_label"
        elif overlapping:
            outcomes[i] = "repeat"
        elif any(covers(d, event.time_s) for d in distractors):
            outcomes[i] = "distractor"
        else:
            outcomes[i] = "background"
    hits = outcomes.count("hit")
    return Metrics(
        keywords=len(truths),
        hits=hits,
        false_alarms=len(events) - hits,
        wrong_label=outcomes.count("wrong_label"),
        repeats=outcomes.count("repeat"),
        distractor_alarms=outcomes.count("distractor"),
        background_alarms=outcomes.count("background"),
        duration_s=float(duration_s),
        tolerance_s=float(tolerance),
        latencies=latencies,
        outcomes=outcomes,
        matched=matched,
        per_label=per_label,
    )
