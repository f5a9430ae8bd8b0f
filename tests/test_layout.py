"""The package's shape: imports flow one way (no cycle, counting imports inside functions and
under TYPE_CHECKING), the types module is a leaf, and no module outgrows 400 lines."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import ROOT

PACKAGE = ROOT / "localeval"


def _imports(path: Path) -> set[str]:
    """The package modules a file imports, wherever the import statement sits."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:  # from . import stack, stats
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("localeval."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(
                a.name.split(".")[1] for a in node.names if a.name.startswith("localeval.")
            )
    return found


def _graph() -> dict[str, set[str]]:
    modules = {p.stem: p for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    return {name: _imports(path) & set(modules) for name, path in modules.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt] if nxt in path else [node, nxt]
            if nxt not in state and (found := visit(nxt, [*path, nxt])):
                return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start, [start])):
            return found
    return None


def test_no_import_cycle_among_the_package_modules():
    assert _cycle(_graph()) is None


def test_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_types_and_errors_import_nothing_of_ours():
    graph = _graph()
    assert graph["types"] == set() and graph["errors"] == set()


def test_reporters_render_typed_results_without_mlflow_or_the_runner():
    graph = _graph()
    for reporter in ("report", "html_report", "export", "present", "charts"):
        assert not graph[reporter] & {"runner", "tracking", "candidate", "metrics"}, reporter
        source = (PACKAGE / f"{reporter}.py").read_text(encoding="utf-8")
        assert "import mlflow" not in source and "import pandas" not in source, reporter


def test_no_module_over_400_lines():
    sizes = {p.name: len(p.read_text(encoding="utf-8").splitlines()) for p in PACKAGE.glob("*.py")}
    assert {name: n for name, n in sizes.items() if n > 400} == {}
