"""The public surface (examsync.__init__) and the import fence of the core."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import subprocess
import sys
import types
from pathlib import Path

import pytest

import examsync

CORE_MODULES = sorted(
    name
    for info in pkgutil.iter_modules(examsync.__path__)
    if not info.ispkg  # subpackages (cpython/, pyodide/) are the adapters: fenced separately
    for name in [f"examsync.{info.name}"]
)
# The loop and HTTP API both adapters share: standard library only, like the core.
SHARED = [
    "examsync.driver",
    "examsync.driver.api",
    "examsync.driver.client",
    "examsync.driver.interfaces",
]


def test_all_is_exactly_the_reexported_names() -> None:
    assert examsync.__all__ == sorted(examsync.__all__)
    for name in examsync.__all__:
        obj = getattr(examsync, name)
        if isinstance(obj, type) or callable(obj) and not isinstance(obj, types.UnionType):
            assert obj.__module__.startswith("examsync."), name
    public = {n for n in vars(examsync) if not n.startswith("_")}
    # Subpackages count too: importing examsync.cpython (other test folders do) binds it here.
    submodules = {info.name for info in pkgutil.iter_modules(examsync.__path__)}
    assert public - submodules - {"annotations"} == set(examsync.__all__)


@pytest.mark.parametrize("module", CORE_MODULES + SHARED)
def test_each_core_module_has_an_all_that_resolves(module: str) -> None:
    mod = importlib.import_module(module)
    for name in getattr(mod, "__all__", []):
        assert hasattr(mod, name), f"{module}.{name}"


def _imported_top_levels(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_core_sources_import_only_the_standard_library() -> None:
    # Static: runs everywhere, Pyodide included, and sees imports that a test run would not
    # execute (inside functions, behind conditions).
    root = Path(examsync.__file__).parent
    for path in sorted([*root.glob("*.py"), *root.glob("driver/*.py")]):
        foreign = _imported_top_levels(path) - set(sys.stdlib_module_names) - {"__future__"}
        assert not foreign, f"{path.name} imports {sorted(foreign)}"


@pytest.mark.skipif(sys.platform == "emscripten", reason="no subprocesses in Pyodide")
def test_importing_the_core_loads_only_the_standard_library() -> None:
    # Dynamic: a fresh interpreter without site-packages' start-up hooks (-I -S) imports the
    # core; every module it then holds must be stdlib or examsync itself.
    code = (
        "import sys\n"
        f"sys.path.insert(0, {str(Path(examsync.__file__).parent.parent)!r})\n"
        f"for m in {CORE_MODULES + SHARED!r}: __import__(m)\n"
        "print('\\n'.join(sorted(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    foreign = {
        m
        for m in out
        if m.split(".")[0] not in sys.stdlib_module_names
        and m.split(".")[0] not in {"examsync", "__main__", "__mp_main__"}
    }
    assert "examsync.engine" in out and "examsync.driver.client" in out
    assert not foreign, sorted(foreign)
