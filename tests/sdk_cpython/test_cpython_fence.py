"""Import fences of the adapter: only cpython/ imports httpx, websockets or cryptography, and
cryptography only when receipts are verified."""

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
