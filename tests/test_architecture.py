"""The package's layout: no import cycle, compatibility code on top, no god module.

The import graph is read from the source with ``ast``: every ``import`` and
``from ... import`` among ``dask_runners`` modules, at the top of a module or
inside a function (an import inside a function is still an arrow between
modules). Importing a submodule runs its package's ``__init__``; that implied
arrow is not counted, as in every import-graph tool.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "dask_runners"

#: The drop-in front doors and the command line: nothing in the core imports them.
TOP = {"dask_runners.mpi", "dask_runners.compat", "dask_runners.compat.dask_mpi", "dask_runners.cli",
       "dask_runners.__main__"}
#: A module with more lines of code than this (docstrings, comments and blank
#: lines not counted) is a god module in the making; so is a class with more
#: methods than this. The runner module before the split had 626 and 59.
CODE_LINES = 400
METHODS = 45


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str, path: Path) -> set[str]:
    """The ``dask_runners`` modules that module ``name`` imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            # `from . import scheduler_file` imports a module; `from . import Contact` a name
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        else:
            continue
        found.update(target for target in targets if target in MODULES and target != name)
    return found


GRAPH = {name: imports_of(name, path) for name, path in MODULES.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_the_graph_is_read():
    assert "dask_runners.transport.scheduler_file" in MODULES
    assert "dask_runners.transport" in GRAPH["dask_runners.transport.scheduler_file"]
    assert "dask_runners.mpi_runner" in GRAPH["dask_runners.compat.dask_mpi"]
    assert GRAPH["dask_runners.base"] >= {"dask_runners.services.scheduler", "dask_runners.signals"}


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle_among_the_packages_modules():
    assert cycles(GRAPH) == []


def test_nothing_in_the_core_imports_the_compatibility_code_or_the_cli():
    arrows_up = {
        (name, target)
        for name, targets in GRAPH.items()
        if name not in TOP
        for target in targets & TOP
    }
    assert arrows_up == set()


def test_services_and_transports_never_import_the_runner():
    runners = {"dask_runners", "dask_runners.base", "dask_runners.registry"}
    below = [name for name in GRAPH if name.startswith(("dask_runners.services", "dask_runners.transport"))]
    assert below and {(name, target) for name in below for target in GRAPH[name] & runners} == set()


def code_lines(source: str) -> int:
    """Lines of ``source`` that hold code: not blank, not a comment, not a docstring."""
    docstrings = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                docstrings.update(range(first.lineno, first.end_lineno + 1))
    return sum(
        1
        for number, line in enumerate(source.splitlines(), 1)
        if line.strip() and not line.strip().startswith("#") and number not in docstrings
    )


def test_code_lines_skip_docstrings_comments_and_blanks():
    assert code_lines('"""Doc."""\n\n# note\ndef f():\n    """Doc\n    more."""\n    return 1\n') == 2


def test_no_module_or_class_is_a_god():
    sources = {name: path.read_text() for name, path in MODULES.items()}
    big_modules = {name: code_lines(source) for name, source in sources.items() if code_lines(source) > CODE_LINES}
    classes = [
        (name, node)
        for name, source in sources.items()
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.ClassDef)
    ]
    big_classes = {
        f"{name}.{node.name}": methods
        for name, node in classes
        if (methods := sum(isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) for item in node.body)) > METHODS
    }
    assert (big_modules, big_classes) == ({}, {})
