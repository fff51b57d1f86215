"""The test suite's own layout: shared builders and constants live in tests/helpers.py,
fixtures in tests/conftest.py, and no test module imports another test module (or
conftest), so running, moving or deleting one test file never breaks another."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
# Modules that nothing may import: test modules (by package, by bare name, or relatively)
# and conftest, which pytest loads itself.
FORBIDDEN = re.compile(r"^(tests\.)?(test_\w+|conftest)$")


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import in ``path``; relative imports keep their dots."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            if node.module is None or node.module == "tests":  # from tests import test_x
                found += [(node.lineno, f"{base}.{alias.name}".lstrip(".")) for alias in node.names]
            found.append((node.lineno, base.lstrip(".")))
    return found


def forbidden_imports(path: Path) -> list[str]:
    return [
        f"{path.name}:{line}: imports {module}"
        for line, module in imported_modules(path)
        if FORBIDDEN.match(module)
    ]


def test_the_check_sees_every_form_of_import(tmp_path: Path) -> None:
    path = tmp_path / "test_example.py"
    path.write_text(
        "import tests.test_audio\n"
        "from tests.test_audio import tone\n"
        "from tests import test_audio\n"
        "from . import test_audio as a\n"
        "from .test_audio import tone\n"
        "import test_audio\n"
        "from tests.conftest import LABELS\n"
        "from conftest import LABELS\n"
        "def f():\n"
        "    from tests.test_audio import tone\n"
        "from tests.helpers import tone\n"
        "import tests.helpers\n"
        "from tests import helpers\n"
        "import testing, pytest\n"
    )
    assert [problem.split(":")[1] for problem in forbidden_imports(path)] == [
        *map(str, range(1, 9)),
        "10",
    ]


@pytest.mark.parametrize(
    "path",
    sorted([*TESTS.glob("test_*.py"), TESTS / "helpers.py", TESTS / "conftest.py"]),
    ids=lambda p: p.name,
)
def test_no_test_module_imports_another(path: Path) -> None:
    problems = forbidden_imports(path)
    assert not problems, "import shared code from tests/helpers.py instead:\n" + "\n".join(problems)


def test_tests_that_wait_for_the_session_model_are_marked_slow(
    request: pytest.FixtureRequest,
) -> None:
    """The session model (tests/conftest.py's ``trained_run``) takes minutes to train: a
    test that needs it is marked slow, so that ``-m "not slow"`` never trains it. Checks
    the tests collected in this run."""
    unmarked = [
        item.nodeid
        for item in request.session.items
        if "trained_run" in getattr(item, "fixturenames", ())
        and item.get_closest_marker("slow") is None
    ]
    assert not unmarked, "mark these @pytest.mark.slow:\n" + "\n".join(unmarked)


def test_conftest_holds_fixtures_only() -> None:
    """Module-level definitions in conftest.py are fixtures (or pytest hooks)."""
    tree = ast.parse((TESTS / "conftest.py").read_text())
    others = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            decorators = [ast.unparse(d) for d in node.decorator_list]
            if not node.name.startswith("pytest_") and not any(
                d.startswith("pytest.fixture") for d in decorators
            ):
                others.append(node.name)
        elif isinstance(node, ast.ClassDef | ast.Assign | ast.AnnAssign):
            others.append(ast.unparse(node).splitlines()[0])
    assert not others, f"move to tests/helpers.py: {others}"
