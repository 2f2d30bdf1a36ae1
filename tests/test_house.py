"""The package tree keeps its shape: imports run one way, no cycles, one room per capability.

Reads the source with ``ast`` (every import, including the lazy ones inside functions, which
is where a cycle would hide), so it needs no import of the packages themselves.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("mechgraph", "graphdb", "ingest", "queries", "analysis")
#: Which of our packages each package may import (besides itself).
ALLOWED = {
    "mechgraph": set(),
    "graphdb": {"mechgraph"},
    "queries": {"mechgraph", "graphdb"},
    "ingest": {"mechgraph", "graphdb"},
    "analysis": {"mechgraph", "graphdb", "queries", "ingest"},
}


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            mods[".".join(parts)] = path
    return mods


def _imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the project modules it imports (resolved to the longest known module name;
    a module's own parent packages are not counted: importing a submodule runs them anyway)."""
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for m, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            else:
                continue
            for name in names:
                while name and name not in mods:
                    name = name.rpartition(".")[0]
                if name and name != m and not m.startswith(name + "."):
                    edges[m].add(name)
    return edges


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (iterative Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in edges:
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            v, children = work[-1]
            for w in children:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(edges[w]))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        found.append(sorted(comp))
    return found


def test_cycle_finder_finds_a_planted_cycle() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert _cycles(edges) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_among_project_modules() -> None:
    mods = _modules()
    assert len(mods) > 50, "the walk found too few modules: wrong root?"
    assert _cycles(_imports(mods)) == []


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_run_one_way(package: str) -> None:
    mods = _modules()
    edges = _imports(mods)
    wrong = sorted(f"{m} imports {t}" for m, ts in edges.items() if m.split(".")[0] == package
                   for t in ts if t.split(".")[0] not in ALLOWED[package] | {package})
    assert wrong == []


def test_analysis_is_one_room_per_capability() -> None:
    plain = sorted(p.name for p in (ROOT / "analysis").glob("*.py") if p.name != "__init__.py")
    assert len(plain) <= 3, plain
    rooms = [d for d in (ROOT / "analysis").iterdir() if (d / "__init__.py").exists()]
    assert len(rooms) >= 6
    for room in rooms:
        assert (room / "cli.py").exists(), f"analysis/{room.name} has no cli.py beside its code"
