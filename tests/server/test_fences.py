"""The server's layers import only downwards, and the rules that keep a room a room.

Read from the source (ast), not by importing it. An import under `if TYPE_CHECKING:` names a
type, not a dependency, and is not counted.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "reference_server" / "examsync_server"

# Top to bottom. A module may import its own layer's rooms and the layers below, never above;
# within a layer the rooms' imports must not form a circle (test_no_room_circles).
LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"__main__", "cli", "app", "runtime", "demo"}),
    frozenset({"process", "web"}),
    frozenset({"api", "sockets"}),
    frozenset({"answers", "media", "presence"}),
    frozenset({"access", "exam", "pipeline"}),
    frozenset({"store"}),
    frozenset({"base", "config", "errors"}),
)
SQL_DRIVERS = frozenset({"sqlite3", "aiosqlite"})
# Modules outside store/ that may still hold SQL and import a driver: moved by the exam-room
# change.
SQL_OUTSIDE_STORE = frozenset(
    {"exam/lifecycle.py", "exam/stage_moves.py", "exam/catalog.py", "access/login.py"}
)
# A string that starts as an SQL statement does (what the store's statements start with).
SQL_TEXT = re.compile(
    r"\s*(SELECT|INSERT|UPDATE|DELETE|REPLACE|WITH|PRAGMA|BEGIN|COMMIT|ROLLBACK)\b"
)


@dataclass(frozen=True)
class Import:
    source: Path
    line: int
    target: str  # absolute module name, e.g. "examsync_server.store.keys" or "sqlite3"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking_lines(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imports(path: Path, *, type_checking: bool = False) -> Iterator[Import]:
    """Its imports; with `type_checking`, those under `if TYPE_CHECKING:` as well."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = set() if type_checking else _type_checking_lines(tree)
    package = module_name(path)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom) and node.lineno in skip:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(path, node.lineno, alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:
                candidate = f"{module}.{alias.name}"
                is_module = any(
                    (PACKAGE.parent / (candidate.replace(".", "/") + suffix)).exists()
                    for suffix in (".py", "/__init__.py")
                )
                yield Import(path, node.lineno, candidate if is_module else module)


def server_imports() -> list[Import]:
    return [i for p in sorted(PACKAGE.rglob("*.py")) for i in imports(p)]


def room(module: str) -> str:
    """The top-level room of a server module ("store" for examsync_server.store.keys)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def layer(module: str) -> int:
    name = room(module)
    for depth, rooms in enumerate(LAYERS):
        if name in rooms:
            return depth
    raise AssertionError(f"{module}: room {name!r} is in no layer; add it to LAYERS")


def internal(imp: Import) -> bool:
    return imp.target.startswith("examsync_server.")


def where(imp: Import) -> str:
    return f"{imp.source.relative_to(PACKAGE.parent)}:{imp.line} imports {imp.target}"


def test_every_room_has_a_layer() -> None:
    rooms = [p.stem for p in PACKAGE.glob("*.py") if p.name != "__init__.py"]
    rooms += [p.parent.name for p in PACKAGE.glob("*/__init__.py")]
    for name in rooms:
        layer(f"examsync_server.{name}")


def test_layers_import_only_downwards() -> None:
    wrong = [
        where(i)
        for i in server_imports()
        if internal(i)
        and room(module_name(i.source)) != "__init__"
        and layer(i.target) < layer(module_name(i.source))
    ]
    assert wrong == []


def test_no_room_circles() -> None:
    edges: dict[str, set[str]] = {}
    for i in server_imports():
        if internal(i):
            a, b = room(module_name(i.source)), room(i.target)
            if a != b:
                edges.setdefault(a, set()).add(b)

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in edges.get(start, ()):
            if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
                return True
        return False

    circles = sorted(
        f"{a} -> {b} -> … -> {a}" for a in edges for b in edges[a] if reaches(b, a, {b})
    )
    assert circles == []


def test_store_imports_no_room_above_it() -> None:
    wrong = [
        where(i)
        for i in server_imports()
        if internal(i)
        and room(module_name(i.source)) == "store"
        and room(i.target) not in {"store", "base", "config", "errors"}
    ]
    assert wrong == []


@pytest.mark.parametrize("room_name", ["api", "sockets"])
def test_nothing_below_reaches_the_front_doors(room_name: str) -> None:
    """api/ and sockets/ are entered from the app and the runtime only."""
    allowed = {"app", "runtime", "cli", "api", "sockets", "process", "web"}
    wrong = [
        where(i)
        for i in server_imports()
        if internal(i)
        and room(i.target) == room_name
        and room(module_name(i.source)) not in allowed
    ]
    assert wrong == []


def outside_store() -> list[Path]:
    """The server's modules outside store/ but for those allowed SQL for now."""
    return [
        path
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.relative_to(PACKAGE).parts[0] != "store"
        and path.relative_to(PACKAGE).as_posix() not in SQL_OUTSIDE_STORE
    ]


def test_only_the_store_imports_a_sql_driver() -> None:
    """The rooms above call store/ and catch its StoreError; a type from the driver counts too."""
    wrong = [
        where(i)
        for path in outside_store()
        for i in imports(path, type_checking=True)
        if i.target.partition(".")[0] in SQL_DRIVERS
    ]
    assert wrong == []


def test_only_the_store_holds_sql() -> None:
    wrong = [
        f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: {node.value[:40]!r}"
        for path in outside_store()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and SQL_TEXT.match(node.value)
    ]
    assert wrong == []
