"""speech_gru/core/plots.py: where a figure lands, in which format, and that it is closed."""

from __future__ import annotations

from pathlib import Path

from speech_gru.core.plots import pyplot, save_figure

PNG = b"\x89PNG"


def drawn():  # noqa: ANN201 - a Figure
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [1, 0])
    return fig


def test_png_at_exactly_the_path_with_folders_made(tmp_path: Path) -> None:
    plt = pyplot()
    path = tmp_path / "a" / "b" / "gates"  # no ending: still a PNG, at this very name
    fig = drawn()
    assert save_figure(fig, path) == path
    assert path.read_bytes().startswith(PNG)
    assert not plt.fignum_exists(fig.number)
    assert [p.name for p in path.parent.iterdir()] == ["gates"]  # no temporary file left


def test_format_from_the_ending_as_matplotlib_names_it(tmp_path: Path) -> None:
    svg = save_figure(drawn(), tmp_path / "det.svg", format=None)
    assert svg == tmp_path / "det.svg" and b"<svg" in svg.read_bytes()
    bare = save_figure(drawn(), tmp_path / "det", format=None)
    assert bare == tmp_path / "det.png" and bare.read_bytes().startswith(PNG)
