"""Imports point the way docs/architecture.md says: a check over the package's source.

The table "The rooms" in docs/architecture.md has a row for each room, a package
(`store/`) or a top-level module (`sqltext.py`), and a "may import" column. Here:

- every room of the tree has a row, and every module is named in the document;
- a room's modules import only from the room itself and from what is *below* it. Below a
  room is what its "may import" column names and, for each room named there, what is below
  that room in turn; a module named there (`spark/session.py`) allows that module alone;
- the "may import" columns go round no circle, so "below" is an order;
- no module imports itself back through other modules.

Every import counts: ``from userportrait.ingest import sources`` imports the module
``ingest/sources.py`` (not the package), and imports inside functions (the lazy ones, where
circles hide) and under ``TYPE_CHECKING`` count like the ones at the top.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import userportrait

ROOT = Path(userportrait.__file__).parent
DOC = ROOT.parent / "docs" / "architecture.md"
TICKED = re.compile(r"`([^`]+)`")


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module(p): p for p in ROOT.rglob("*.py")}


def _resolve(name: str) -> str:
    """The module ``name`` is, or the innermost one it sits in (an imported attribute)."""
    while name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def _imports_of(module: str) -> set[str]:
    """The userportrait modules ``module`` imports, anywhere in its file."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package up level - 1 steps
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                # ``from pkg import module`` imports the module, not the package.
                full = f"{base}.{alias.name}"
                found.add(full if full in MODULES else base)
    return {_resolve(m) for m in found if m.split(".")[0] == "userportrait"}


GRAPH = {m: _imports_of(m) for m in MODULES}


def room_of(module: str) -> str:
    """``userportrait.store.state.spans`` -> ``store/``; ``userportrait.sqltext`` ->
    ``sqltext.py``; the package's own ``__init__`` -> ``__init__.py``."""
    parts = module.split(".")[1:]
    if not parts:
        return "__init__.py"
    if (ROOT / parts[0]).is_dir():
        return parts[0] + "/"
    return parts[0] + ".py"


@dataclass(frozen=True)
class Row:
    room: str
    text: str  # the whole row
    may_import: tuple[str, ...]  # rooms (``store/``, ``sqltext.py``) and modules


def _token(name: str) -> str:
    """A "may import" name as a room or a module path: ``sqltext`` -> ``sqltext.py``."""
    return name if name.endswith(("/", ".py")) else name + ".py"


def _rows() -> dict[str, Row]:
    section = DOC.read_text("utf-8").split("## The rooms", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, Row] = {}
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        assert len(cells) == 3, line
        (room,) = TICKED.findall(cells[0])
        assert room not in rows, f"two rows for {room}"
        rows[room] = Row(room, line, tuple(_token(t) for t in TICKED.findall(cells[2])))
    return rows


ROWS = _rows()


def below(room: str, seen: tuple[str, ...] = ()) -> set[str]:
    """The rooms and modules ``room`` may import: its column, and below each room in it."""
    out: set[str] = set()
    for name in ROWS[room].may_import:
        out.add(name)
        if name in ROWS and name not in seen:
            out |= below(name, (*seen, room))
    return out


def _allowed(target: str, allowed: set[str]) -> bool:
    path = "/".join(target.split(".")[1:]) + ".py"
    return room_of(target) in allowed or path in allowed


def test_every_room_has_a_row() -> None:
    assert sorted(ROWS) == sorted({room_of(m) for m in MODULES})


def test_may_import_names_rooms_and_modules_that_exist() -> None:
    names = {n for row in ROWS.values() for n in row.may_import}
    modules = {"/".join(m.split(".")[1:]) + ".py" for m in MODULES}
    assert sorted(n for n in names if n not in ROWS and n not in modules) == []


def test_may_import_goes_round_no_circle() -> None:
    circles = [room for room in ROWS if room in below(room)]
    assert circles == []


def test_rooms_import_only_what_is_below_them() -> None:
    wrong = []
    for module, imported in sorted(GRAPH.items()):
        room = room_of(module)
        allowed = below(room) | {room}
        wrong += [f"{module} imports {t}" for t in sorted(imported) if not _allowed(t, allowed)]
    assert wrong == []


def test_from_package_import_module_is_an_import_of_the_module() -> None:
    # ingest/reject_sql.py: ``from userportrait import sqlrows``
    assert "userportrait.sqlrows" in GRAPH["userportrait.ingest.reject_sql"]
    assert "userportrait" not in GRAPH["userportrait.ingest.reject_sql"]
    # and a lazy import inside a function counts (app.py's lifespan imports the live ingest)
    assert "userportrait.ingest.live" in GRAPH["userportrait.app"]


def test_no_import_cycles_between_modules() -> None:
    # A package's __init__ re-exporting its own modules is not a cycle of the design.
    edges = {m: {t for t in ts if t != m and not m.startswith(t + ".")} for m, ts in GRAPH.items()}
    cycles = []
    state: dict[str, int] = {}

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for t in sorted(edges[m]):
            if state.get(t) == 1:
                cycles.append(" -> ".join([*stack[stack.index(t) :], t]))
            elif t not in state:
                visit(t, [*stack, t])
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m, [m])
    assert cycles == []


def test_every_module_is_named_in_the_document() -> None:
    """By its path (`store/state/spans.py`), or in its room's row by the path from the
    room (`state/spans.py`); a package by its folder (`state/`)."""
    doc = DOC.read_text("utf-8")
    everywhere = set(TICKED.findall(doc))
    unnamed = []
    for module, path in sorted(MODULES.items()):
        rel = path.relative_to(ROOT).as_posix()
        if rel.endswith("__init__.py"):
            rel = rel.removesuffix("__init__.py")
        if rel in {"", "/"}:
            rel = "__init__.py"
        room = room_of(module)
        in_row = set(TICKED.findall(ROWS[room].text))
        from_room = rel.removeprefix(room) if room.endswith("/") else rel
        if rel not in everywhere and from_room not in in_row and rel != room:
            unnamed.append(rel)
    assert unnamed == []


def test_the_document_names_no_module_or_test_that_is_not_there() -> None:
    doc = DOC.read_text("utf-8")
    missing = [
        t
        for t in TICKED.findall(doc)
        if t.startswith("tests/") and t.endswith(".py") and not (ROOT.parent / t).exists()
    ]
    for row in ROWS.values():
        base = ROOT / row.room if row.room.endswith("/") else ROOT
        for t in TICKED.findall(row.text):
            if t.startswith("tests/") or not t.endswith(".py"):
                continue
            if not ((base / t).exists() or (ROOT / t).exists()):
                missing.append(f"{row.room}: {t}")
    assert missing == []


def test_cli_modules_load_only_the_cli_at_start_up() -> None:
    """docs/architecture.md: a CLI module imports click, `cli/` and the light `errors`,
    `settings`, `runtime` at its top; the work is imported inside the commands."""
    light = {"userportrait", "userportrait.errors", "userportrait.settings", "userportrait.runtime"}
    heavy = []
    for module, path in sorted(MODULES.items()):
        if room_of(module) != "cli/":
            continue
        for node in ast.parse(path.read_text("utf-8")).body:  # the top level only
            if isinstance(node, ast.ImportFrom) and node.module:
                names = {node.module}
            elif isinstance(node, ast.Import):
                names = {a.name for a in node.names}
            else:
                continue
            for name in names:
                if name.split(".")[0] != "userportrait":
                    continue
                if not (name.startswith("userportrait.cli") or name in light):
                    heavy.append(f"{module} imports {name}")
    assert heavy == []
