"""Which adapter this interpreter runs: Pyodide's in a browser, CPython's elsewhere.

Picked by ``sys.platform`` (``"emscripten"`` under Pyodide). The adapter is imported only when
asked for, so ``import examsync`` stays standard-library only.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .driver.client import BaseExamClient

__all__ = ["adapter", "adapter_name", "create_client"]


def adapter_name() -> str:
    """``"pyodide"`` under Pyodide, else ``"cpython"``."""
    return "pyodide" if sys.platform == "emscripten" else "cpython"


def adapter() -> ModuleType:
    """The adapter package for this interpreter (``examsync.pyodide`` or ``examsync.cpython``)."""
    return importlib.import_module(f"examsync.{adapter_name()}")


def create_client(base_url: str, plan_id: str, exam_code: str, **options: Any) -> BaseExamClient:
    """An ``ExamClient`` of this interpreter's adapter, with its ``ClientConfig(**options)``.

    On CPython pass ``store_dir=`` (where the SQLite store lives); in the browser the store is
    IndexedDB (``database_prefix=`` optional). Local answer writes differ by platform
    (``set_answer`` returns at once on CPython, is a coroutine in Pyodide); code meant for both
    awaits ``client.save_answer(...)``, which is durable when it returns on either.
    """
    module = adapter()
    config = module.ClientConfig(base_url, plan_id, exam_code, **options)
    client: BaseExamClient = module.ExamClient(config)
    return client
