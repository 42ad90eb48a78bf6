"""Import fences of the adapters: only cpython/ imports httpx, websockets or cryptography (and
cryptography only when receipts are verified); only pyodide/_js.py imports js or pyodide."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import examsync

ROOT = Path(examsync.__file__).parent
ADAPTER_ONLY = {"httpx", "websockets", "cryptography"}
BROWSER_ONLY = {"js", "pyodide"}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_only_the_cpython_adapter_imports_http_socket_and_crypto_libraries() -> None:
    for path in ROOT.rglob("*.py"):
        if "cpython" not in path.relative_to(ROOT).parts:
            assert not _imports(path) & ADAPTER_ONLY, path


def test_only_the_pyodide_adapter_imports_js_and_pyodide_through_one_module() -> None:
    importers = {
        path.relative_to(ROOT).as_posix()
        for path in ROOT.rglob("*.py")
        if _imports(path) & BROWSER_ONLY
    }
    assert importers == {"pyodide/_js.py"}


def _run(code: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT.parent)}
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_importing_examsync_does_not_load_the_adapter() -> None:
    out = _run(
        """
        import sys, examsync
        print(sorted(m for m in sys.modules if m.split(".")[0] in
              {"httpx", "websockets", "cryptography"} or m.startswith("examsync.cpython")))
        """
    )
    assert out.strip() == "[]"


def test_create_client_picks_cpython_here_and_the_browser_adapter_does_not_import() -> None:
    out = _run(
        """
        import sys
        from pathlib import Path
        import examsync
        from examsync.cpython import ExamClient
        client = examsync.create_client("http://x", "P", "E", store_dir=Path("/nonexistent"))
        print(examsync.adapter_name(), type(client) is ExamClient)
        print(sorted(m for m in sys.modules if m.split(".")[0] in {"js", "pyodide"}
                     or m.startswith("examsync.pyodide")))
        try:
            import examsync.pyodide
        except ImportError as exc:
            print("refused:", exc.name)
        """
    )
    assert out.split("\n")[:3] == ["cpython True", "[]", "refused: js"]


def test_the_client_runs_without_cryptography_when_receipts_are_not_verified() -> None:
    out = _run(
        """
        import sys
        sys.modules["cryptography"] = None  # as if it were not installed
        from pathlib import Path
        from examsync.exceptions import ExamSyncError
        from examsync.cpython import ClientConfig, ExamClient
        config = ClientConfig("http://x", "P", "E", Path("/nonexistent"), verify_receipts=False)
        ExamClient(config)
        try:
            ExamClient(ClientConfig("http://x", "P", "E", Path("/nonexistent")))
        except ExamSyncError as exc:
            print("refused:", exc)
        """
    )
    assert "refused:" in out and "cryptography" in out
