"""The test tree stays as docs/architecture.md describes it: helpers in tests/support, fixtures in
conftest, and no test module importing another or conftest (which pytest already loads).
(Markers are checked by pytest itself: --strict-markers in pyproject.toml.) And every module is in
docs/architecture.md's map of which tests test it."""
from __future__ import annotations

import ast
import re
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


# --- the map of which tests test what (docs/architecture.md, "Which tests test what") --------------

ROOT = TESTS.parent
MAPPED_FOLDERS = ("engine", "gallery", "worker", "app_pages", "harness")
WHOLE_PACKAGES = ("bench",)  # mapped as a whole: its modules are benchmarks, each a CLI of its own
TOP_LEVEL = ("streamlit_app.py", "server.py")
_ROW = re.compile(r"^\| (`[^|]+`|\(the whole studio\)) \|\s*([^|]*?)\s*\|$")


def read_test_map(doc: str | None = None) -> dict[str, list[str]]:
    """module (or folder) -> test files, as docs/architecture.md's map lists them."""
    text = (ROOT / "docs" / "architecture.md").read_text() if doc is None else doc
    section = text.split("### Which tests test what", 1)[1]
    rows: dict[str, list[str]] = {}
    for line in section.splitlines():
        found = _ROW.match(line.strip())
        if found and found.group(1) != "`module`":
            rows[found.group(1).strip("`")] = re.findall(r"`(test_[a-z0-9_]+\.py)`", found.group(2))
    return rows


def modules(root: Path = ROOT) -> list[str]:
    """Every module a newcomer could look for the tests of."""
    found = [p.relative_to(root).as_posix() for folder in MAPPED_FOLDERS for p in sorted((root / folder).glob("*.py"))
             if p.name not in ("__init__.py", "__main__.py")]
    return found + [f"{name}/" for name in WHOLE_PACKAGES] + list(TOP_LEVEL)


def map_problems(rows: dict[str, list[str]], module_list: list[str], test_files: set[str]) -> list[str]:
    problems = [f"{m} is in no row of the map" for m in module_list if m not in rows]
    problems += [f"{m} is in the map but not in the tree" for m in rows if m not in module_list and m != "(the whole studio)"]
    problems += [f"{m} lists no test file" for m, tests in rows.items() if not tests]
    listed = {t for tests in rows.values() for t in tests}
    problems += [f"{t} (listed for {m}) does not exist" for m, tests in rows.items() for t in tests if t not in test_files]
    problems += [f"{t} is in no row of the map" for t in sorted(test_files - listed)]
    return problems


def test_every_module_and_every_test_file_is_in_the_map() -> None:
    test_files = {p.name for p in TESTS.glob("test_*.py")}
    problems = map_problems(read_test_map(), modules(), test_files)
    assert not problems, "docs/architecture.md, \"Which tests test what\": " + "; ".join(problems)


def test_the_map_check_names_a_module_without_tests(tmp_path: Path) -> None:
    """A module added without a row, or a row without a test file, is said by name."""
    (tmp_path / "engine").mkdir()
    for folder in MAPPED_FOLDERS[1:]:
        (tmp_path / folder).mkdir()
    (tmp_path / "engine" / "params.py").write_text("")
    (tmp_path / "engine" / "new_thing.py").write_text("")
    doc = ("### Which tests test what\n\n| module | tests |\n| --- | --- |\n| `engine/params.py` | `test_params.py` |\n"
           "| `bench/` | `test_bench.py` |\n| `streamlit_app.py` | `test_app_create.py` |\n| `server.py` | |\n")
    problems = map_problems(read_test_map(doc), modules(tmp_path), {"test_params.py", "test_bench.py", "test_app_create.py"})
    assert problems == ["engine/new_thing.py is in no row of the map", "server.py lists no test file"]
