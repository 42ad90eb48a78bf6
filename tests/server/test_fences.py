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
    return [p for p in sorted(PACKAGE.rglob("*.py")) if p.relative_to(PACKAGE).parts[0] != "store"]


def string_constants(path: Path) -> Iterator[tuple[int, str]]:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.lineno, node.value


def test_only_the_store_imports_a_sql_driver() -> None:
    """The rooms above call store/ and catch its DatabaseError; a type from the driver counts
    too (a transaction is store.sqlite.Tx)."""
    wrong = [
        where(i)
        for path in outside_store()
        for i in imports(path, type_checking=True)
        if i.target.partition(".")[0] in SQL_DRIVERS
    ]
    assert wrong == []


def test_only_the_store_holds_sql() -> None:
    wrong = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: {text[:40]!r}"
        for path in outside_store()
        for line, text in string_constants(path)
        if SQL_TEXT.match(text)
    ]
    assert wrong == []


PLAN_STATUS = PACKAGE / "exam" / "plan_status.py"
STATUS_WORDS = frozenset({"created", "ready", "in_progress", "completed"})
# A status quoted inside SQL or Lua text: status = 'in_progress', IN ('ready', ...)
QUOTED_STATUS = re.compile(r"""(['"])(created|ready|in_progress|completed)\1""")


def test_status_words_are_spelt_only_in_plan_status() -> None:
    """Plan and examinee statuses come from PlanStatus / CandidateStatus (and SQL or Lua get
    them as parameters or written in from the enums), so the table in plan_status.py is the
    only place a status is named. The migrations, history, keep their CHECK constraints;
    test_plan_status.py checks those against the enums."""
    wrong = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: {text[:60]!r}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != PLAN_STATUS
        for line, text in string_constants(path)
        if text in STATUS_WORDS or QUOTED_STATUS.search(text)
    ]
    assert wrong == []


def test_the_text_fences_see_what_they_should() -> None:
    assert QUOTED_STATUS.search("UPDATE exam_plan SET status = 'in_progress'")
    assert QUOTED_STATUS.search("if status == 'completed' then")
    assert not QUOTED_STATUS.search("the exam has completed")
    assert SQL_TEXT.match("SELECT *\n FROM exam_plan") and SQL_TEXT.match("  DELETE FROM x")
    assert not SQL_TEXT.match("select the plan to update and set it aside")


def test_no_module_circles() -> None:
    """Modules import one way, TYPE_CHECKING imports included: two modules that need the same
    thing (lifecycle and stage_moves) share a module below both, never each other."""
    modules = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
    edges = {
        name: {i.target for i in imports(path, type_checking=True) if i.target in modules}
        for name, path in modules.items()
    }

    def reaches(start: str, goal: str, seen: frozenset[str]) -> bool:
        return any(
            nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt}))
            for nxt in edges[start]
        )

    circles = sorted(f"{a} -> {b}" for a in edges for b in edges[a] if reaches(b, a, frozenset()))
    assert circles == []
