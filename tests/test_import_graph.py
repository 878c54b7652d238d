"""The package's import graph has no loop: a lower module never imports one above it, not even for types.

Every import counts, those under `if TYPE_CHECKING:` and inside functions too: a loop hidden there still
ties the two modules together (neither can be understood, or tested, without the other).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "ffrtmp"


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, root: Path, modules: set[str]) -> set[str]:
    """The package's modules that `path` imports (`from pkg import mod` names the module, not the package)."""
    here = module_name(path, root)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                target = f"{base}.{alias.name}"
                if target in modules:
                    found.add(target)
                elif base in modules:
                    found.add(base)
    found.discard(here)
    return found


def loops(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
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

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def graph_of(package: Path) -> dict[str, set[str]]:
    paths = sorted(package.rglob("*.py"))
    modules = {module_name(path, package.parent) for path in paths}
    return {module_name(path, package.parent): imports_of(path, package.parent, modules) for path in paths}


def test_the_package_has_no_import_loop() -> None:
    graph = graph_of(PACKAGE)
    assert "ffrtmp.client" in graph and "ffrtmp.subscription" in graph["ffrtmp.client"]
    assert loops(graph) == []


def test_a_loop_under_type_checking_is_found(tmp_path: Path) -> None:
    package = tmp_path / "ffrtmp"
    (package / "worker").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "worker" / "__init__.py").write_text("")
    (package / "worker" / "core.py").write_text("from ffrtmp.worker.core_jobs import Jobs\n")
    (package / "worker" / "core_jobs.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .core import WorkerCore\n")
    (package / "worker" / "lower.py").write_text("from ffrtmp.worker import core_jobs\n")
    graph = graph_of(package)
    assert graph["ffrtmp.worker.lower"] == {"ffrtmp.worker.core_jobs"}, "`from pkg import mod` names the module"
    assert loops(graph) == [["ffrtmp.worker.core", "ffrtmp.worker.core_jobs"]]
