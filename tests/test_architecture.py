"""Imports point down (docs/architecture.md): a check over the package's source.

``portrait/`` is the domain: it imports nothing from ``store/``, ``engine/``, ``ingest/``,
``api/``; ``store/`` nothing from ``ingest/``, ``api/`` or the CLI; and no module imports
itself back through another (no cycles between modules).
"""

from __future__ import annotations

import ast
from pathlib import Path

import userportrait

ROOT = Path(userportrait.__file__).parent
FORBIDDEN = {
    "portrait": ("store", "engine", "ingest", "api", "cli", "app", "auth", "synthetic"),
    "store": ("ingest", "api", "cli", "app", "auth", "synthetic"),
    "engine": ("ingest", "api", "cli", "app", "synthetic"),
    "ingest": ("api", "cli", "app", "engine", "synthetic"),
    "spark": ("api", "cli", "app", "engine", "synthetic"),
    "synthetic": ("api", "cli", "app", "engine"),
}


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """module -> the userportrait modules it imports (at any depth of the file)."""
    out: dict[str, set[str]] = {}
    for path in ROOT.rglob("*.py"):
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
        out[_module(path)] = {m for m in found if m.split(".")[0] == "userportrait"}
    return out


def test_packages_import_only_downwards() -> None:
    wrong = []
    for module, imported in sorted(_imports().items()):
        parts = module.split(".")
        if len(parts) < 2 or parts[1] not in FORBIDDEN:
            continue
        for target in sorted(imported):
            top = target.split(".")[1] if "." in target else ""
            if top in FORBIDDEN[parts[1]]:
                wrong.append(f"{module} imports {target}")
    assert wrong == []


def test_no_import_cycles_between_modules() -> None:
    graph = _imports()
    modules = set(graph)

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    edges = {
        m: {t for t in map(resolve, imported) if t and t != m} for m, imported in graph.items()
    }
    # A package's __init__ re-exporting its own modules is not a cycle of the design.
    edges = {m: {t for t in ts if not m.startswith(t + ".")} for m, ts in edges.items()}
    cycles = []
    state: dict[str, int] = {}

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for t in sorted(edges.get(m, ())):
            if state.get(t) == 1:
                cycles.append(" -> ".join([*stack[stack.index(t) :], t]))
            elif t not in state:
                visit(t, [*stack, t])
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m, [m])
    assert cycles == []
