"""The house rules for imports: no module imports `app` (the composition root), and no two
modules of the product reach each other through any chain of imports (TYPE_CHECKING included)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("gql", "tasks", "comfy", "storage", "models", "workflows")
TOP_LEVEL = ("app", "settings")


def _modules() -> dict[str, Path]:
    modules = {name: ROOT / f"{name}.py" for name in TOP_LEVEL}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _imports(path: Path, module: str, known: dict[str, Path]) -> set[str]:
    """The product modules `module` imports, at any depth of its syntax tree."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


GRAPH = {module: _imports(path, module, _modules()) for module, path in _modules().items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One chain of imports from each module that leads back to it, for every module on a cycle."""
    found = []
    for start in sorted(graph):
        stack: list[tuple[str, list[str]]] = [(start, [start])]
        seen: set[str] = set()
        while stack:
            module, chain = stack.pop()
            if start in graph[module]:
                found.append([*chain, start])
                break
            for target in graph[module] - seen:
                seen.add(target)
                stack.append((target, [*chain, target]))
    return found


def test_the_walk_sees_real_edges() -> None:
    assert {"app", "gql.jobs", "tasks.queue", "comfy.client", "storage.s3", "models.repository"} <= GRAPH.keys()
    assert "gql.context" in GRAPH["gql.jobs"]


def test_the_cycle_finder_finds_an_indirect_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [
        ["a", "b", "c", "a"],
        ["b", "c", "a", "b"],
        ["c", "a", "b", "c"],
    ]


def test_nothing_imports_the_composition_root() -> None:
    assert sorted(module for module, targets in GRAPH.items() if "app" in targets) == []


def test_no_two_modules_import_each_other_through_any_chain() -> None:
    assert [" -> ".join(cycle) for cycle in _cycles(GRAPH)] == []
