"""Runs inside Pyodide only (tests/pyodide/runner.mjs): async tests, the JS host's fixtures.

pytest-asyncio cannot work here (Pyodide's event loop is always running), so a coroutine test
is driven to its end with ``run_sync``, which suspends the WebAssembly stack while JavaScript
(IndexedDB, fetch, the test server) does its part.
"""

from __future__ import annotations

import inspect
import sys
import uuid
from typing import Any

import pytest

if sys.platform != "emscripten":  # pragma: no cover - a clear failure, never a silent skip
    raise RuntimeError("tests/pyodide/suite runs inside Pyodide: bash tests/pyodide/run.sh")

import examsync_test_host  # the JS module runner.mjs registers
from pyodide.ffi import run_sync


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    if inspect.iscoroutinefunction(pyfuncitem.obj):
        kwargs = {a: pyfuncitem.funcargs[a] for a in pyfuncitem._fixtureinfo.argnames}
        run_sync(pyfuncitem.obj(**kwargs))
        return True
    return None


@pytest.fixture
def host() -> Any:
    """The JS test host: fault switches for IndexedDB and the local server's URLs."""
    yield examsync_test_host
    examsync_test_host.setQuotaExceeded(False)


@pytest.fixture
def db_name() -> str:
    """A database name no other test uses (fake-indexeddb lives as long as the run)."""
    return f"examsync-test/{uuid.uuid4().hex}"
