"""The package's shape: folders for the stages, imports flowing one way (no cycle among the
modules nor among the folders, counting imports inside functions and under TYPE_CHECKING), the
types module a leaf, the output free of MLflow, and no module over 400 lines."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import ROOT

PACKAGE = ROOT / "localeval"
STAGES = ("config", "calls", "candidate", "judging", "serving", "tracking", "output")


def _name(path: Path) -> str:
    """'serving.stack' for localeval/serving/stack.py, 'serving' for its __init__.py."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_name(p): p for p in PACKAGE.rglob("*.py") if p != PACKAGE / "__init__.py"}


def _resolve(package: str, node: ast.ImportFrom) -> list[str]:
    """The package modules an `from ... import ...` names, as dotted names under localeval."""
    if node.level:
        base = package.split(".") if package else []
        base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
        prefix = ".".join([*base, *(node.module.split(".") if node.module else [])])
    elif (node.module or "").startswith("localeval"):
        prefix = node.module.removeprefix("localeval").lstrip(".")
    else:
        return []
    # `from . import hints` in a package's module names the module, not its own package's
    # __init__ (which is already importing): no edge to the module's own package.
    own = prefix == package or package.startswith(prefix + ".")
    found = [prefix] if prefix and not own else []
    found += [f"{prefix}.{a.name}" if prefix else a.name for a in node.names]
    return found


def _imports(name: str, path: Path) -> set[str]:
    """The package modules a file imports, wherever the import statement sits."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            found.update(_resolve(package, node))
        elif isinstance(node, ast.Import):
            found.update(
                a.name.removeprefix("localeval.") for a in node.names
                if a.name.startswith("localeval.")
            )  # fmt: skip
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: (_imports(name, path) & set(modules)) - {name} for name, path in modules.items()}


def _folder_graph() -> dict[str, set[str]]:
    """Which folder imports which (a top-level module is its own folder)."""
    graph: dict[str, set[str]] = {}
    for name, targets in _graph().items():
        top = name.split(".")[0]
        graph.setdefault(top, set()).update(t.split(".")[0] for t in targets)
    return {name: targets - {name} for name, targets in graph.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
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


def test_no_import_cycle_among_the_folders():
    assert _cycle(_folder_graph()) is None


def test_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_the_import_graph_sees_relative_imports_across_folders():
    graph = _graph()
    assert "config.slices" in graph["serving.stack"]
    assert "workspace" in graph["serving.servers"]
    assert "calls.client" in graph["calls.transport"]


def test_folders_are_the_stages_each_with_a_docstring_and_few_modules_beside_them():
    folders = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file())
    assert folders == sorted(STAGES)
    for folder in folders:
        source = (PACKAGE / folder / "__init__.py").read_text(encoding="utf-8")
        assert ast.get_docstring(ast.parse(source)), folder
    assert len(list(PACKAGE.glob("*.py"))) - 1 <= 12  # beside __init__.py


def test_types_and_errors_import_nothing_of_ours():
    graph = _graph()
    assert graph["types"] == set() and graph["errors"] == set()


def test_lower_stages_never_import_higher_ones():
    folders = _folder_graph()
    assert not folders["config"] & {"calls", "judging", "serving", "tracking", "output"}
    assert not folders["calls"] & {"judging", "serving", "tracking", "output", "candidate"}
    assert not folders["judging"] & {"serving", "tracking", "output"}
    assert not folders["output"] & {"tracking", "serving", "runner", "prepare"}


def test_reporters_render_typed_results_without_mlflow_or_the_runner():
    for path in (PACKAGE / "output").glob("*.py"):
        source = path.read_text(encoding="utf-8")
        for banned in ("import mlflow", "from mlflow", "import pandas", "from pandas"):
            assert banned not in source, (path.name, banned)


def test_no_module_over_400_lines():
    sizes = {
        str(p.relative_to(PACKAGE)): len(p.read_text(encoding="utf-8").splitlines())
        for p in PACKAGE.rglob("*.py")
    }
    assert {name: n for name, n in sizes.items() if n > 400} == {}
