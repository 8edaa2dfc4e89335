"""The direction imports run (docs/architecture.md), read from every module's source.

Every import counts, at module level or inside a function: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("aif", "generative_models", "environments", "baselines", "learners", "experiments")
#: Which of the project's packages each package may import (besides itself).
ALLOWED: dict[str, set[str]] = {
    "aif": set(),
    "generative_models": {"aif"},
    "environments": set(),
    "baselines": {"environments"},
    "learners": {"aif", "generative_models", "environments"},
    "experiments": {"aif", "generative_models", "environments", "baselines", "learners"},
}


def _modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The project modules ``name`` imports (``from a.b import c`` counts a.b and a.b.c)."""
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [base, *(f"{base}.{a.name}" for a in node.names)]
        found |= {t for t in targets if t in MODULES and t != name}
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


@pytest.mark.parametrize("package", PACKAGES)
def test_packages_import_only_what_lies_below_them(package: str):
    for name, deps in GRAPH.items():
        if name.split(".")[0] != package:
            continue
        outside = {d.split(".")[0] for d in deps} - {package}
        assert outside <= ALLOWED[package], f"{name} imports {sorted(outside - ALLOWED[package])}"


def test_nothing_imports_experiments_from_below():
    for name, deps in GRAPH.items():
        if name.split(".")[0] != "experiments":
            assert not any(d.split(".")[0] == "experiments" for d in deps), name


def test_no_module_imports_lead_in_a_circle():
    # Depth-first search for a cycle among modules (a package's __init__ re-exporting its own
    # modules is a parent importing children, and children never import their package here).
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for dep in sorted(GRAPH[node]):
            if dep == node.rpartition(".")[0] or node == dep.rpartition(".")[0]:
                continue  # a module and its own package
            if state.get(dep) == 1:
                cycle = path[path.index(dep) :] + [dep]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if state.get(dep) is None:
                visit(dep)
        path.pop()
        state[node] = 2

    for module in sorted(GRAPH):
        if state.get(module) is None:
            visit(module)


def test_the_check_sees_imports():
    # The graph is not empty where we know imports exist (a check that cannot fail is no check).
    assert "aif.free_energy" in GRAPH["aif.inference"]
    assert "environments.scheduler" in GRAPH["learners.structured"]
