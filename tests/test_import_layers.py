"""The layer table of docs/architecture.md, checked against every module's imports.

The table is read from the document itself, so the two cannot drift: a module that imports
across the table, an import cycle between modules, or torch reached from a module the document
calls torch-free fails here, with the file and line of the import. Only `ast` is used: nothing
under test is imported.
"""
from __future__ import annotations

import ast
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.paths import ROOT

DOC = ROOT / "docs" / "architecture.md"
# Everything the table governs; tests/ may import anything.
SOURCES = ["engine", "gallery", "worker", "app_pages", "harness", "bench", "streamlit_app.py", "server.py"]


@dataclass(frozen=True)
class Import:
    importer: str  # module name, e.g. "gallery.store"
    target: str  # what it names, resolved to a project module where it is one
    line: int
    lazy: bool  # inside a function: runs only when called
    typing_only: bool  # under `if TYPE_CHECKING:`

    def where(self, modules: dict[str, Path]) -> str:
        return f"{modules[self.importer].relative_to(ROOT)}:{self.line}"


@dataclass(frozen=True)
class Layer:
    name: str
    packages: tuple[str, ...]
    may_import: tuple[str, ...]  # other layers, or "torch-free engine"
    third_party: tuple[str, ...]


def backticked(cell: str) -> tuple[str, ...]:
    return tuple(re.findall(r"`([^`]+)`", cell))


def read_table(doc: str = DOC.read_text()) -> tuple[list[Layer], set[str]]:
    """The layers and the torch-free modules, from the document's "## Layers" section."""
    section = doc.split("## Layers", 1)[1].split("\n## ", 1)[0]
    layers = []
    for row in section.splitlines():
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        if len(cells) != 4 or not cells[1].startswith("`"):
            continue
        may = tuple(n.strip() for n in cells[2].replace("—", "").split(",") if n.strip())
        layers.append(Layer(cells[0], backticked(cells[1]), may, backticked(cells[3])))
    torch_free = re.search(r"Torch-free modules: (.*)", section)
    assert layers and torch_free, "docs/architecture.md has no layer table or torch-free list"
    return layers, set(backticked(torch_free.group(1)))


def project_modules() -> dict[str, Path]:
    modules = {}
    for source in SOURCES:
        path = ROOT / source
        for file in ([path] if path.is_file() else sorted(path.rglob("*.py"))):
            parts = list(file.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = file
    return modules


def imports_of(name: str, file: Path, modules: dict[str, Path]) -> list[Import]:
    tree = ast.parse(file.read_text(), str(file))
    package = name if file.name == "__init__.py" else name.rpartition(".")[0]
    found: list[Import] = []

    def visit(node: ast.AST, lazy: bool, typing_only: bool) -> None:
        for child in ast.iter_child_nodes(node):
            child_lazy = lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            child_typing = typing_only or (isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test))
            if isinstance(child, ast.Import):
                found.extend(Import(name, alias.name, child.lineno, lazy, typing_only) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - child.level + 1] +
                                    ([base] if base else []))
                for alias in child.names:
                    # `from gallery import files` names the submodule, not the package's __init__.
                    sub = f"{base}.{alias.name}"
                    found.append(Import(name, sub if sub in modules else base, child.lineno, lazy, typing_only))
            visit(child, child_lazy, child_typing)

    visit(tree, False, False)
    return [i for i in found if i.target != "__future__"]


MODULES = project_modules()
IMPORTS = [i for name, file in MODULES.items() for i in imports_of(name, file, MODULES)]
LAYERS, TORCH_FREE = read_table()


def layer_of(module: str) -> Layer | None:
    top = module.split(".")[0]
    return next((layer for layer in LAYERS if top in layer.packages), None)


def allowed(importer: Layer, target: str) -> bool:
    """May a module of `importer` import `target` (a project module or a third-party name)?"""
    top = target.split(".")[0]
    to = layer_of(target)
    if to is None:  # third party, or the standard library
        return top in sys.stdlib_module_names or top in importer.third_party
    if to is importer:
        return True
    if to.name in importer.may_import:
        return True
    return f"torch-free {to.name}" in importer.may_import and target in TORCH_FREE


def test_the_table_covers_every_module() -> None:
    assert {m for m in MODULES if layer_of(m) is None} == set()
    assert TORCH_FREE <= set(MODULES), "the torch-free list names a module that does not exist"


def test_no_import_breaks_the_table() -> None:
    broken = [f"{i.where(MODULES)} imports {i.target}, which the {layer_of(i.importer).name} layer may not"
              for i in IMPORTS if not allowed(layer_of(i.importer), i.target)]
    assert broken == [], "\n".join(broken)


def graph(include_lazy: bool) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {m: set() for m in MODULES}
    for i in IMPORTS:
        if i.target in MODULES and (include_lazy or not i.lazy) and i.target != i.importer:
            edges[i.importer].add(i.target)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            connect(v)
    return found


def test_no_import_cycles() -> None:
    # Imports inside functions, and those for type checking alone, count too: they hide a
    # cycle, they do not remove it.
    assert cycles(graph(include_lazy=True)) == []


def reaches(start: str, edges: dict[str, set[str]], thirdparty: dict[str, set[str]]) -> dict[str, list[str]]:
    """Third-party names reachable from `start`, each with the chain of modules that gets there."""
    seen, queue, reached = {start: [start]}, [start], {}
    while queue:
        module = queue.pop(0)
        for name in thirdparty[module]:
            reached.setdefault(name, seen[module])
        for parent in _parents(module):
            if parent not in seen:
                seen[parent] = seen[module] + [parent]
                queue.append(parent)
        for nxt in sorted(edges[module]):
            if nxt not in seen:
                seen[nxt] = seen[module] + [nxt]
                queue.append(nxt)
    return reached


def _parents(module: str) -> list[str]:
    # Importing engine.params runs engine/__init__.py first.
    parts = module.split(".")
    return [p for p in (".".join(parts[:k]) for k in range(1, len(parts))) if p in MODULES]


@pytest.mark.parametrize("module", sorted(TORCH_FREE) + sorted(m for m in MODULES if m.split(".")[0] == "gallery"))
def test_torch_is_not_reached(module: str) -> None:
    # Imports inside functions count: a torch-free module must stay torch-free when called.
    edges = graph(include_lazy=True)
    thirdparty = {m: set() for m in MODULES}
    for i in IMPORTS:
        if i.target not in MODULES and not i.typing_only:
            thirdparty[i.importer].add(i.target.split(".")[0])
    chain = reaches(module, edges, thirdparty).get("torch")
    assert chain is None, f"{module} reaches torch through {' -> '.join(chain)}"


def test_the_checks_catch_a_forbidden_import(tmp_path: Path) -> None:
    # The checks above on a made-up module: an upward import and a cycle are both found.
    made_up = {"gallery.bad": tmp_path / "bad.py", "worker": MODULES["worker"]}
    made_up["gallery.bad"].write_text("import worker\nfrom gallery import bad\n")
    found = imports_of("gallery.bad", made_up["gallery.bad"], made_up)
    assert [i.target for i in found] == ["worker", "gallery.bad"]
    assert not allowed(layer_of("gallery.bad"), "worker")
    assert cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]
