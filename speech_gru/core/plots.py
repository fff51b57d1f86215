"""Figures to files: the one place that chooses matplotlib's backend and writes figures.

Every figure of the package (confusion matrix, DET curves, posteriors over time, gates,
gradients, training curves) is drawn with the ``pyplot`` this module hands out and written
with ``save_figure``. The backend is Agg (files only): no display is needed, and a command
that draws never opens a window. matplotlib is imported on first use, so importing a module
that can draw costs nothing until it does.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from speech_gru.core.atomic import write_atomic

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def pyplot() -> ModuleType:
    """``matplotlib.pyplot`` on the Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Figure, path: str | Path, dpi: int = 100, format: str | None = "png") -> Path:
    """Write ``fig`` to ``path`` whole or not at all (folders made), and close it.

    Args:
        fig: the figure (from ``pyplot()``, or a bare ``matplotlib.figure.Figure``).
        path: where to write it.
        dpi: resolution.
        format: ``"png"`` writes a PNG at exactly ``path`` whatever its ending; None picks
            the format from the ending as matplotlib does, ``.png`` added to a name
            without one.

    Returns:
        The path written.

    Raises:
        OSError: the file cannot be written (a previous file there is left as it was).
        ValueError: ``format`` (or the ending) is not a format matplotlib writes.
    """
    path = Path(path)
    if format is None:
        format = path.suffix[1:].lower() or "png"
        if not path.suffix:
            path = path.with_name(path.name.rstrip(".") + ".png")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, lambda f: fig.savefig(f, dpi=dpi, format=format))
    finally:
        pyplot().close(fig)
    return path
