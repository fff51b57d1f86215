"""The live terminal view of ``speech-gru stream``: an input level meter and the top keyword
scores, redrawn in place (rich's ``Live``) while events print above them.

``render_frame`` draws one frame from plain values, so it is tested without a terminal;
``LiveView`` holds the latest values, takes them from ``StreamingDetector.events``'s
``on_chunk`` hook and lets rich redraw a few times a second, however fast audio arrives.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from types import TracebackType

import numpy as np
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from speech_gru.core.audio import printable
from speech_gru.core.labels import is_keyword

FLOOR_DBFS = -60.0
"""The level meter's empty end; its full end is 0 dBFS."""
BAR_WIDTH = 40
TOP = 5
"""Keywords shown, highest score first."""


def level_dbfs(chunk: np.ndarray) -> float:
    """RMS level of a chunk in dB relative to full scale (1.0): a full-scale sine is about
    -3 dBFS; digital silence (or an empty chunk) is -inf."""
    samples = np.asarray(chunk, dtype=np.float64).reshape(-1)
    if not samples.size:
        return -math.inf
    rms = math.sqrt(float(np.mean(samples * samples)))
    return 20 * math.log10(rms) if rms > 0 else -math.inf


def _bar(fraction: float, mark: float | None = None, style: str = "") -> Text:
    """A ``BAR_WIDTH``-cell bar filled to ``fraction`` (0-1), with ``|`` at ``mark``."""
    filled = round(min(max(fraction, 0.0), 1.0) * BAR_WIDTH)
    cells = ["█"] * filled + ["·"] * (BAR_WIDTH - filled)
    if mark is not None:
        cells[min(BAR_WIDTH - 1, round(mark * BAR_WIDTH))] = "|"
    return Text("".join(cells), style=style)


def render_frame(
    level: float,
    scores: Mapping[str, float],
    threshold: float | Mapping[str, float],
    top: int = TOP,
) -> RenderableType:
    """One frame of the view.

    Args:
        level: input level in dBFS (``level_dbfs``).
        scores: averaged keyword scores, {label: score}; empty before the first window.
        threshold: the detection threshold, or {label: threshold} when keywords have their
            own (a label missing from it is not marked).
        top: how many of the highest scores to show.

    Returns:
        A rich renderable: the meter (``input  -23.4 dBFS``), one row per shown keyword
        (label, score, bar with ``|`` at its threshold; bold green at or over it) and the
        threshold line.
    """
    grid = Table.grid(padding=(0, 1))
    grid.add_column(min_width=10)
    grid.add_column(justify="right", min_width=10)
    grid.add_column()
    shown = "  -inf" if math.isinf(level) else f"{level:6.1f}"
    fill = 1 - max(level, FLOOR_DBFS) / FLOOR_DBFS if math.isfinite(level) else 0.0
    loud = "red" if level > -1 else "yellow" if level > -12 else "cyan"
    grid.add_row("input", f"{shown} dBFS", _bar(fill, style=loud))
    ranked = sorted(scores.items(), key=lambda item: (-item[1], item[0]))[:top]
    for label, score in ranked:
        mark = threshold.get(label) if isinstance(threshold, Mapping) else threshold
        hit = mark is not None and score >= mark
        style = "bold green" if hit else ""
        grid.add_row(
            Text(printable(label), style=style),
            Text(f"{score:.2f}", style=style),
            _bar(score, mark, "green" if hit else "blue"),
        )
    if not ranked:
        grid.add_row("", "", Text("waiting for the first second of audio", style="dim"))
    values = sorted(set(threshold.values())) if isinstance(threshold, Mapping) else [threshold]
    if len(values) > 1:
        line = f"thresholds {values[0]:.2f}-{values[-1]:.2f} per keyword"
    else:
        line = f"threshold {values[0]:.2f}" if values else "threshold -"
    return Group(grid, Text(f"{line}  (| on each bar); Ctrl-C to stop", style="dim"))


class LiveView:
    """The level meter and keyword scores, kept in place on a terminal while ``print``
    puts lines (events) above them; ``with`` shows it and removes it at the end.

    Args:
        labels: the detector's labels, in its output order.
        thresholds: (C,) each label's threshold (``StreamingDetector.thresholds``).
        console: where to draw (default: standard output).
        top: keywords shown.
    """

    def __init__(
        self,
        labels: Sequence[str],
        thresholds: Sequence[float] | np.ndarray,
        console: Console | None = None,
        top: int = TOP,
    ) -> None:
        self.keywords = [i for i, label in enumerate(labels) if is_keyword(label)]
        self.labels = [labels[i] for i in self.keywords]
        marks = {labels[i]: float(thresholds[i]) for i in self.keywords}
        values = set(marks.values())
        self.threshold: float | dict[str, float] = values.pop() if len(values) == 1 else marks
        self.top = top
        self.level = -math.inf
        self.scores: np.ndarray | None = None  # (C,) the latest averaged posteriors
        self.live = Live(
            console=console or Console(),
            get_renderable=self.frame,
            refresh_per_second=8,
            transient=True,  # only the events stay on the screen
        )

    def frame(self) -> RenderableType:
        """The current frame (rich calls this from its refresh thread)."""
        scores = self.scores
        shown = {}
        if scores is not None:
            shown = dict(zip(self.labels, scores[self.keywords].tolist(), strict=True))
        return render_frame(self.level, shown, self.threshold, self.top)

    def on_chunk(self, chunk: np.ndarray, scores: np.ndarray | None) -> None:
        """``StreamingDetector.events``'s hook: note the chunk's level and the scores."""
        self.level = level_dbfs(chunk)
        self.scores = scores

    def print(self, line: str) -> None:
        """Print a line above the view, as it is (no markup)."""
        self.live.console.print(Text(line), soft_wrap=True)

    def __enter__(self) -> LiveView:
        self.live.start(refresh=True)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.live.stop()
