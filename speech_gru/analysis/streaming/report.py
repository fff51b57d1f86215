"""One stream evaluation and its report: text, JSON and figures.

``evaluate`` streams a ``Recording`` once through the detector
(``speech_gru.analysis.streaming.scores.stream``), matches the events with the truth
(``matching``) and draws the DET curves of the chosen decision rules from the recorded
posteriors (``decisions``). ``StreamReport`` holds it all: ``format_report`` gives the text
``speech-gru evaluate-stream`` prints, ``StreamReport.to_dict`` its ``--json``, and
``plot_det`` and ``plot_trace`` its ``--det`` and ``--plot`` figures.
"""

from __future__ import annotations

import itertools
import math
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from speech_gru.analysis.streaming.decisions import (
    AREA_RANGE,
    DECISIONS,
    DET_THRESHOLDS,
    det_curve,
    lowest_miss_within,
    mean_miss_rate,
)
from speech_gru.analysis.streaming.matching import CAUSES, Metrics, match_events
from speech_gru.analysis.streaming.recordings import Recording
from speech_gru.analysis.streaming.scores import stream
from speech_gru.analysis.streaming.truth import Truth
from speech_gru.core.audio import SAMPLE_RATE
from speech_gru.core.labels import is_keyword
from speech_gru.core.plots import pyplot, save_figure
from speech_gru.runtime.detector import DetectorConfig, Event, RecordingScorer, Scorer

FA_TARGETS = (1.0, 5.0)
"""False alarms per hour at which operating points are reported."""


@dataclass
class StreamReport:
    """Everything one evaluation measured.

    Attributes:
        recording: the recording and its truth.
        labels: the model's C class names.
        config: detector settings.
        events: the detector's events.
        metrics: those events matched against the truth.
        det: decision rule name -> its DET rows (``det_curve``).
        windows_scored: windows the model scored.
        stream_seconds: wall time of the streaming pass.
        trace_times: (W,) end time of each window (when a trace was kept).
        trace: (W, C) averaged posteriors (when a trace was kept), else None.
    """

    recording: Recording
    labels: list[str]
    config: DetectorConfig
    events: list[Event]
    metrics: Metrics
    det: dict[str, list[dict]]
    windows_scored: int
    stream_seconds: float
    trace_times: list[float] = field(default_factory=list)
    trace: np.ndarray | None = None

    def comparison(self, targets: Sequence[float] = FA_TARGETS) -> dict[str, dict]:
        """Per decision rule: ``mean_miss_rate`` and the operating point at each target."""
        return {
            name: {
                "mean_miss_rate": _none_if_nan(mean_miss_rate(rows)),
                "operating_points": {f"{t:g}": lowest_miss_within(rows, t) for t in targets},
            }
            for name, rows in self.det.items()
        }

    def to_dict(self) -> dict:
        """All numbers, JSON-ready (NaN becomes None)."""
        r = self.recording
        return _json_safe(
            {
                "source": r.description,
                "duration_s": r.duration_s,
                "detector": asdict(self.config),
                "windows_scored": self.windows_scored,
                "stream_seconds": self.stream_seconds,
                "metrics": self.metrics.to_dict(),
                "det": self.det,
                "comparison": self.comparison(),
                "area_fa_per_hour": list(AREA_RANGE),
                "events": [
                    {**e.to_dict(), "outcome": o}
                    for e, o in zip(self.events, self.metrics.outcomes, strict=True)
                ],
                "truths": [t.to_dict() for t in r.keywords],
                "distractor_truths": [t.to_dict() for t in r.others],
            }
        )


def _none_if_nan(value: float) -> float | None:
    return None if math.isnan(value) else value


def _json_safe(value: object) -> object:
    if isinstance(value, float):
        return None if not math.isfinite(value) else value
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def evaluate(
    recording: Recording,
    scorer: Scorer,
    labels: Sequence[str],
    config: DetectorConfig,
    tolerance: float = 1.0,
    decisions: Sequence[str] = ("mean-then-threshold",),
    thresholds: Sequence[float] = DET_THRESHOLDS,
    keep_trace: bool = False,
    progress: Callable[[float], None] | None = None,
) -> StreamReport:
    """Stream a recording once through the detector, match, and draw the DET curves.

    Args:
        recording: audio and truth.
        scorer: (B, window) waveforms -> (B, C) probabilities (the model).
        labels: the C class names.
        config: detector settings.
        tolerance: seconds after a word's end an event may still hit it.
        decisions: names in ``DECISIONS`` whose DET curves to draw.
        thresholds: thresholds of the DET curves.
        keep_trace: keep the averaged posteriors (for ``plot_trace``).
        progress: called with the seconds of each chunk streamed.
    """
    import time

    recorder = RecordingScorer(scorer)
    started = time.perf_counter()
    events, detector = stream(
        recording.wave, recorder, labels, config, keep_trace=keep_trace, progress=progress
    )
    elapsed = time.perf_counter() - started
    args = (recording.keywords, tolerance, recording.duration_s, recording.others)
    metrics = match_events(events, *args)
    det = {
        name: det_curve(recorder.posteriors, labels, config, *args, DECISIONS[name], thresholds)
        for name in decisions
    }
    return StreamReport(
        recording, list(labels), config, events, metrics, det, detector.windows_scored,
        elapsed, detector.trace_times, np.stack(detector.trace) if detector.trace else None,
    )  # fmt: skip


def _pct(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{100 * value:.1f} %"


def _num(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None or math.isnan(value) else format(value, spec)


def format_report(report: StreamReport, sweep: bool = False) -> str:
    """The report as text: headline numbers, false alarms by cause, per keyword, the
    operating points at ``FA_TARGETS`` and, with several decision rules, their comparison;
    ``sweep`` adds every DET row of the first rule."""
    m, c, rec = report.metrics, report.config, report.recording
    one = m.per_hour(1)
    threshold = f"threshold {c.threshold:g}"
    if c.thresholds:
        threshold = f"thresholds {min(c.thresholds.values()):g}-{max(c.thresholds.values()):g}"
    lines = [
        f"audio                  {rec.duration_s / 60:.1f} min, {m.keywords} keywords, "
        f"{len(rec.others)} other words",
        f"detector               hop {c.hop_s:g} s, average {c.average_s:g} s, {threshold}, "
        f"refractory {c.refractory_s:g} s",
        f"hit rate               {_pct(m.hit_rate)} ({m.hits} of {m.keywords}, {m.misses} missed)",
        f"false alarms / hour    {_num(m.fa_per_hour, '.1f')} ({m.false_alarms}; "
        f"one is {_num(one, '.1f')} / hour here)",
    ]
    for cause, count in m.by_cause.items():
        lines.append(f"  {CAUSES[cause]:<20} {_num(m.per_hour(count), '.1f')} ({count})")
    lines.append(
        f"latency mean / median  {_num(m.mean_latency)} / {_num(m.median_latency)} s "
        "after the word's end"
    )
    lines += ["", f"{'keyword':<12} {'spoken':>6} {'hits':>5} {'hit rate':>9} {'false alarms':>13}"]
    rank = {label: i for i, label in enumerate(report.labels)}
    for label, row in sorted(m.per_label.items(), key=lambda kv: rank.get(kv[0], 1e9)):
        rate = row["hits"] / row["keywords"] if row["keywords"] else float("nan")
        lines.append(
            f"{label:<12} {row['keywords']:>6} {row['hits']:>5} {_pct(rate):>9} "
            f"{row['false_alarms']:>13}"
        )
    comparison = report.comparison()
    for name, rows in report.det.items():
        lines += [
            "",
            f"DET ({name}, thresholds {rows[0]['threshold']:g}..{rows[-1]['threshold']:g}):",
        ]
        for target, point in comparison[name]["operating_points"].items():
            if point is None:
                lines.append(f"  at <= {target} FA/h: no threshold gets there on this recording")
            else:
                lines.append(
                    f"  at <= {target} FA/h: miss rate {_pct(point['miss_rate'])} "
                    f"(threshold {point['threshold']:g}, "
                    f"{_num(point['false_alarms_per_hour'], '.1f')} FA/h)"
                )
    if sweep and report.det:
        name, rows = next(iter(report.det.items()))
        lines += ["", f"{'threshold':>9} {'hits':>9} {'miss rate':>9} {'FA':>5} {'FA/h':>7} "
                  f"{'median latency s':>16}"]  # fmt: skip
        for r in rows:
            lines.append(
                f"{r['threshold']:>9.3g} {r['hits']:>4}/{r['keywords']:<4} "
                f"{_pct(r['miss_rate']):>9} {r['false_alarms']:>5} "
                f"{_num(r['false_alarms_per_hour'], '.1f'):>7} {_num(r['median_latency_s']):>16}"
            )
    if len(report.det) > 1:
        lo, hi = AREA_RANGE
        targets = [f"miss @{t:g} FA/h" for t in FA_TARGETS]
        lines += [
            "",
            "decision rules on the same posteriors (lower is better):",
            f"  {'rule':<20} {f'mean miss {lo:g}-{hi:g} FA/h':>22} "
            + " ".join(f"{t:>14}" for t in targets),
        ]
        for name, row in comparison.items():
            points = [row["operating_points"][f"{t:g}"] for t in FA_TARGETS]
            lines.append(
                f"  {name:<20} {_pct(row['mean_miss_rate']):>22} "
                + " ".join(f"{_pct(p['miss_rate'] if p else None):>14}" for p in points)
            )
        scored = {
            n: r["mean_miss_rate"] for n, r in comparison.items() if r["mean_miss_rate"] is not None
        }
        if scored:
            best = [n for n, v in scored.items() if v == min(scored.values())]
            lines.append(f"  lowest mean miss rate on this recording: {', '.join(best)}")
    return "\n".join(lines)


def plot_det(
    path: str | Path,
    det: dict[str, list[dict]],
    duration_s: float,
    targets: Sequence[float] = FA_TARGETS,
    title: str = "",
) -> None:
    """DET curves: miss rate against false alarms per hour (log scale), one per rule.

    A recording of D seconds resolves false alarms in steps of 3600 / D per hour; rows
    with none are drawn left of that step and of the targets, on a tick labelled 0. Each
    curve runs from the highest threshold to the lowest.

    Args:
        path: PNG file to write.
        det: decision rule name -> its DET rows (``det_curve``); rows without keywords
            (miss rate None) are left out.
        duration_s: recording length.
        targets: false-alarm rates marked with a dotted line.
        title: figure title.
    """
    plt = pyplot()
    step = 3600.0 / duration_s
    zero = min([step, *targets]) / 2
    fig, ax = plt.subplots(figsize=(7, 5))
    top = max(targets, default=1.0)
    styles = zip(*(("-", "--", ":", "-."), ("o", "s", "^", "d")), strict=True)
    for (name, rows), (line, marker) in zip(det.items(), itertools.cycle(styles), strict=False):
        points = [  # from the highest threshold down
            (max(r["false_alarms_per_hour"], zero), 100 * r["miss_rate"])
            for r in sorted(rows, key=lambda r: -r["threshold"])
            if r["miss_rate"] is not None
        ]
        if points:
            xs, ys = zip(*points, strict=True)
            top = max(top, *xs)
            ax.plot(xs, ys, ls=line, marker=marker, ms=3.5, lw=1.3, label=name)
    for t in targets:
        ax.axvline(t, color="0.5", ls=":", lw=1)
    ax.set_xscale("log")
    decades = (0.1, 1, 10, 100, 1000, 10000, 100000)
    ticks = [zero, *[x for x in decades if 1.9 * zero <= x <= 3 * top]]
    ax.set_xticks(ticks, ["0", *[f"{x:g}" for x in ticks[1:]]])
    ax.set_xlabel(f"false alarms per hour (one false alarm = {step:.3g} / hour here)")
    ax.set_ylabel("miss rate (%)")
    ax.set_ylim(0, 100)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    if title:
        ax.set_title(textwrap.fill(title, 90), fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=90, format=None)  # the format --det/--plot's ending names


def plot_trace(
    path: str | Path,
    wave: np.ndarray,
    trace_times: Sequence[float],
    trace: np.ndarray,
    labels: Sequence[str],
    truths: Sequence[Truth],
    events: Sequence[Event],
    outcomes: Sequence[str],
    threshold: float,
    seconds: float = 60.0,
    distractors: Sequence[Truth] = (),
    title: str = "",
) -> None:
    """Averaged keyword posteriors over the first ``seconds`` of the recording.

    Top: the waveform's envelope. Bottom: one line per keyword, the threshold dashed,
    true keyword spans shaded in the keyword's colour and named, distractors shaded grey,
    and the events marked (hits green, false alarms red).

    Args:
        path: PNG file to write.
        wave: (N,) recording.
        trace_times: (W,) end time of each scored window.
        trace: (W, C) averaged posteriors.
        labels: the C class names.
        truths, events, outcomes: ground truth, events and their outcomes.
        threshold: detection threshold.
        seconds: length shown from the start.
        distractors: distractor spans.
        title: figure title.
    """
    plt = pyplot()
    from matplotlib.lines import Line2D

    end = min(seconds, wave.size / SAMPLE_RATE)
    times = np.asarray(trace_times, dtype=np.float64)
    trace = np.asarray(trace, dtype=np.float64).reshape(len(times), -1)
    shown = times <= end
    keywords = [i for i, label in enumerate(labels) if is_keyword(label)]
    # tab10 with its grey swapped for indigo: grey marks distractors
    palette = [*plt.get_cmap("tab10").colors[:7], "#393b79", *plt.get_cmap("tab10").colors[8:]]
    if len(keywords) > len(palette):
        palette = list(plt.get_cmap("tab20").colors)
    colour = {labels[i]: palette[k % len(palette)] for k, i in enumerate(keywords)}

    fig, (ax_wave, ax) = plt.subplots(
        2, 1, figsize=(14, 5.2), sharex=True, gridspec_kw={"height_ratios": [1, 3.2]}
    )
    # waveform envelope: min/max per 20 ms
    block = SAMPLE_RATE // 50
    head = wave[: int(end * SAMPLE_RATE) // block * block].reshape(-1, block)
    env_t = (np.arange(head.shape[0]) + 0.5) * block / SAMPLE_RATE
    ax_wave.fill_between(env_t, head.min(axis=1), head.max(axis=1), color="0.35", lw=0)
    ax_wave.set_yticks([])
    ax_wave.set_ylabel("audio")

    for truth in distractors:
        if truth.clip_start_s < end:
            for a in (ax, ax_wave):
                a.axvspan(truth.start_s, truth.end_s, color="0.6", alpha=0.25, lw=0)
            ax.text(
                (truth.start_s + truth.end_s) / 2, 1.02, f"({truth.word})", ha="center",
                va="bottom", fontsize=7, color="0.35", clip_on=False,
            )  # fmt: skip
    for truth in truths:
        if truth.clip_start_s < end:
            c = colour.get(truth.label, "0.5")
            for a in (ax, ax_wave):
                a.axvspan(truth.start_s, truth.end_s, color=c, alpha=0.22, lw=0)
            ax.text(
                (truth.start_s + truth.end_s) / 2, 1.02, truth.label, ha="center",
                va="bottom", fontsize=8, color=c, fontweight="bold", clip_on=False,
            )  # fmt: skip
    for i in keywords:
        ax.plot(times[shown], trace[shown, i], color=colour[labels[i]], lw=1.2, label=labels[i])
    ax.axhline(threshold, color="k", ls="--", lw=1, label=f"threshold {threshold:g}")
    for event, outcome in zip(events, outcomes, strict=True):
        if event.time_s <= end:
            hit = outcome == "hit"
            ax.plot(
                event.time_s, event.score, marker="v" if hit else "X", ms=9,
                color="green" if hit else "red", mec="k", mew=0.6, zorder=5,
            )  # fmt: skip
            if not hit:
                ax.text(
                    event.time_s, event.score + 0.04, event.label, color="red", fontsize=7,
                    ha="center",
                )  # fmt: skip
    handles, names = ax.get_legend_handles_labels()
    handles += [
        Line2D([], [], marker="v", color="green", mec="k", ls="", ms=8),
        Line2D([], [], marker="X", color="red", mec="k", ls="", ms=8),
    ]
    names += ["hit", "false alarm"]
    ax.legend(handles, names, loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8)
    ax.set_xlim(0, end)
    ax.set_ylim(0, 1.0)
    ax.set_xlabel("time (s); shaded: true speech spans (grey: distractor words)")
    ax.set_ylabel("averaged posterior")
    if title:
        ax_wave.set_title(title, fontsize=10, pad=4)
    fig.tight_layout()
    save_figure(fig, path, dpi=90, format=None)  # the format --det/--plot's ending names
