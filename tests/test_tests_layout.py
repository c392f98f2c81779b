"""The test tree stays as docs/architecture.md describes it: helpers in tests/support, fixtures in
conftest, and no test module importing another or conftest (which pytest already loads).
(Markers are checked by pytest itself: --strict-markers in pytest.ini.)"""
from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_no_module_imports_a_test_module_or_conftest() -> None:
    wrong = {}
    for path in sorted([*TESTS.glob("*.py"), *(TESTS / "support").glob("*.py")]):
        found = {m for m in imported_modules(path) if m.split(".")[0].startswith("test_") or m == "conftest"}
        if found:
            wrong[path.relative_to(TESTS).as_posix()] = sorted(found)
    assert not wrong, f"move what these need into tests/support: {wrong}"
