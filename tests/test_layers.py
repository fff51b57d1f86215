"""The package's layers (docs/architecture.md): each folder of ``speech_gru/`` imports only
from itself and the folders before it in ``LAYERS``, no module imports itself back through
others (lazy imports inside functions count too), and Lightning stays out of the layers
that load and run a model."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "speech_gru"
# Earlier layers never import later ones: a model is run without its training code, and
# trained and judged without the command line.
LAYERS = ("core", "runtime", "train", "analysis", "cli")
NO_LIGHTNING = ("core", "runtime")
LIGHTNING = ("lightning", "pytorch_lightning", "lightning_fabric")


def module_name(path: Path, root: Path) -> str:
    """``speech_gru.runtime.detector`` for ``root/speech_gru/runtime/detector.py``."""
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(root: Path) -> dict[str, Path]:
    """Every module of the package at ``root``, by dotted name."""
    return {module_name(path, root): path for path in sorted(root.rglob("*.py"))}


def imports(path: Path, name: str, known: dict[str, Path]) -> list[tuple[int, str]]:
    """(line, module) of every import in ``path`` (module ``name``), relative ones resolved;
    ``from package import module`` names the module itself when it is one, and the package
    root's ``__version__`` (a constant of its own ``__init__``) is named as such."""
    root_version = f"{name.split('.')[0]}.__version__"
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                target = f"{base}.{alias.name}"
                if target in known or target == root_version:
                    found.append((node.lineno, target))
                else:
                    found.append((node.lineno, base))
    return found


def layer_of(module: str, root_name: str) -> int | None:
    """Index of ``module``'s layer in ``LAYERS``; None for the package's own ``__init__``."""
    parts = module.split(".")
    if parts[0] != root_name or len(parts) < 2:
        return None
    return LAYERS.index(parts[1]) if parts[1] in LAYERS else None


def layer_problems(root: Path) -> list[str]:
    """Imports against the layers, Lightning where it may not go, and import cycles."""
    known = modules(root)
    root_name = root.name
    problems = []
    graph: dict[str, set[str]] = {name: set() for name in known}
    for name, path in known.items():
        where = f"{path.relative_to(root.parent)}"
        parts = name.split(".")
        if len(parts) > 1 and parts[1] not in LAYERS:
            problems.append(f"{where}: not in a layer folder ({', '.join(LAYERS)})")
        own = layer_of(name, root_name)
        for line, target in imports(path, name, known):
            lightning = target.split(".")[0] in LIGHTNING
            if lightning and own is not None and LAYERS[own] in NO_LIGHTNING:
                problems.append(f"{where}:{line}: {LAYERS[own]}/ imports {target}")
            if target.split(".")[0] != root_name:
                continue
            if target in known and target != name:
                graph[name].add(target)
            other = layer_of(target, root_name)
            if own is not None and other is not None and other > own:
                problems.append(
                    f"{where}:{line}: {LAYERS[own]}/ imports {target} of the later layer "
                    f"{LAYERS[other]}/"
                )
            if own is not None and target == root_name:
                problems.append(f"{where}:{line}: imports the package root (it imports the CLI)")
    problems += [f"import cycle: {' -> '.join(cycle)}" for cycle in cycles(graph)]
    return problems


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each strongly connected group of two or more modules."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(path_within(graph, set(group)))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def path_within(graph: dict[str, set[str]], group: set[str]) -> list[str]:
    """A closed walk through ``group``, from its first module back to it."""
    start = min(group)
    previous = {start: None}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for nxt in sorted(graph[node] & group):
            if nxt == start:
                walk = [node]
                while previous[walk[-1]] is not None:
                    walk.append(previous[walk[-1]])
                return [*reversed(walk), start]
            if nxt not in previous:
                previous[nxt] = node
                queue.append(nxt)
    return sorted(group)


def write_package(root: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.fixture
def clean_package(tmp_path: Path) -> dict[str, str]:
    """A package in the layers' shape that keeps every rule."""
    return {
        "__init__.py": "def __getattr__(name):\n    from pkg.cli.api import Spotter\n",
        "core/__init__.py": "",
        "core/audio.py": "import numpy\n",
        "runtime/__init__.py": "",
        "runtime/detector.py": "from pkg.core import audio\nfrom . import loading\n",
        "runtime/loading.py": "from ..core.audio import x\n",
        "train/__init__.py": "",
        "train/lit.py": "import lightning as L\nfrom pkg.runtime.loading import y\n",
        "analysis/__init__.py": "",
        "cli/__init__.py": "",
        "cli/api.py": "from pkg.train import lit\nfrom pkg.analysis import x\n",
    }


def test_a_package_that_keeps_the_layers_passes(tmp_path: Path, clean_package) -> None:
    assert layer_problems(write_package(tmp_path / "pkg", clean_package)) == []


@pytest.mark.parametrize(
    ("relative", "text", "expected"),
    [
        (
            "core/audio.py",
            "from pkg.runtime import detector\n",
            "core/ imports pkg.runtime.detector",
        ),
        ("runtime/loading.py", "def f():\n    from pkg.train.lit import M\n", "later layer train/"),
        ("runtime/loading.py", "from ..cli import api\n", "imports pkg.cli.api of the later"),
        ("train/lit.py", "import pkg.analysis.x\n", "imports pkg.analysis.x of the later"),
        ("runtime/loading.py", "from lightning import Trainer\n", "runtime/ imports lightning"),
        ("core/audio.py", "import pytorch_lightning\n", "core/ imports pytorch_lightning"),
        ("core/audio.py", "from pkg import Spotter\n", "imports the package root"),
        ("stray.py", "", "pkg/stray.py: not in a layer folder"),
        (
            "runtime/loading.py",
            "def f():\n    from pkg.runtime.detector import D\n",
            "import cycle: pkg.runtime.detector -> pkg.runtime.loading -> pkg.runtime.detector",
        ),
    ],
    ids=["up", "lazy", "relative", "plain", "lightning", "pl", "root", "stray", "cycle"],
)
def test_the_check_finds_each_kind_of_wrong_import(
    tmp_path: Path, clean_package, relative: str, text: str, expected: str
) -> None:
    files = dict(clean_package)
    files[relative] = files.get(relative, "") + text
    problems = layer_problems(write_package(tmp_path / "pkg", files))
    assert any(expected in problem for problem in problems), problems


def test_the_package_keeps_its_layers() -> None:
    problems = layer_problems(PACKAGE)
    assert not problems, "see docs/architecture.md for the layers:\n" + "\n".join(problems)


def test_every_layer_folder_exists() -> None:
    assert [layer for layer in LAYERS if (PACKAGE / layer / "__init__.py").is_file()] == list(
        LAYERS
    )
