"""IndexedDB from Python: one open database, its reads and atomic writes, awaited.

The JavaScript half is ``idb.js`` beside this file (shipped in the wheel), evaluated once.
JavaScript errors become :class:`StorageError` here, and a ``QuotaExceededError`` becomes
:class:`StorageFullError`, so nothing above this module sees a JS exception.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib.resources import files
from typing import Any

from ..exceptions import StorageError, StorageFullError
from ._js import JsException, error_name, js, run_js, to_js

__all__ = ["Database", "StoreOps", "indexeddb_factory"]


@cache
def _helper() -> Any:
    return run_js(files(__package__).joinpath("idb.js").read_text(encoding="utf-8"))


def _storage_error(exc: Exception, operation: str, name: str) -> StorageError:
    kind = error_name(exc)
    message = f"IndexedDB {operation} of {name!r} failed: {kind}: {getattr(exc, 'message', exc)}"
    if kind == "QuotaExceededError":
        return StorageFullError(message, operation=operation)
    return StorageError(message, operation=operation)


def indexeddb_factory() -> Any:
    """The page's ``indexedDB``; StorageError where there is none (a worker without it...)."""
    factory = getattr(js, "indexedDB", None)
    if factory is None:
        raise StorageError("this JavaScript environment has no IndexedDB", operation="open")
    return factory


@dataclass
class StoreOps:
    """What one transaction does to one object store: deletes first, then puts."""

    put: dict[str, object] = field(default_factory=dict)
    delete: set[str] = field(default_factory=set)


class Database:
    """An open IndexedDB database. Build it with :meth:`open`; :meth:`close` it when done."""

    def __init__(self, handle: Any, name: str) -> None:
        self._handle = handle
        self.name = name

    @classmethod
    async def open(
        cls,
        name: str,
        stores: Sequence[str],
        *,
        version: int = 1,
        factory: Any = None,
        timeout: float = 10.0,
    ) -> Database:
        """Open (creating or upgrading to ``version`` with ``stores``) within ``timeout`` s.

        Raises StorageError: no IndexedDB, access refused (some private modes), an error from
        the browser, or no answer in time (another tab blocking an upgrade).
        """
        factory = factory if factory is not None else indexeddb_factory()
        try:
            promise = _helper().open(factory, name, version, json.dumps(list(stores)))
            handle = await asyncio.wait_for(promise, timeout)
        except TimeoutError:
            raise StorageError(
                f"IndexedDB open of {name!r} got no answer in {timeout:g} s", operation="open"
            ) from None
        except JsException as exc:
            raise _storage_error(exc, "open", name) from exc
        return cls(handle, name)

    async def read_all(self, stores: Sequence[str]) -> dict[str, list[tuple[str, Any]]]:
        """Every ``(key, value)`` of ``stores``, read in one transaction (a consistent view)."""
        try:
            text = await _helper().readAll(self._handle, json.dumps(list(stores)))
        except JsException as exc:
            raise _storage_error(exc, "load", self.name) from exc
        return {store: [(k, v) for k, v in rows] for store, rows in json.loads(text).items()}

    async def write(
        self,
        ops: Mapping[str, StoreOps],
        blobs: Iterable[tuple[str, str, bytes]] = (),
    ) -> None:
        """Apply ``ops`` (and binary ``(store, key, bytes)`` puts) in one atomic transaction.

        Returns once the browser reports it complete (strict durability); on any failure
        nothing of it is stored and StorageError (StorageFullError for quota) is raised.
        """
        encoded = json.dumps(
            {
                store: {"put": list(op.put.items()), "delete": sorted(op.delete)}
                for store, op in ops.items()
            },
            ensure_ascii=False,
        )
        binary = [[store, key, to_js(data)] for store, key, data in blobs]
        try:
            await _helper().write(self._handle, encoded, to_js(binary))
        except JsException as exc:
            raise _storage_error(exc, "commit", self.name) from exc

    async def get(self, store: str, key: str) -> Any:
        """The JSON value under ``key`` (None when there is none)."""
        try:
            text = await _helper().getJson(self._handle, store, key)
        except JsException as exc:
            raise _storage_error(exc, "load", self.name) from exc
        return json.loads(text)

    async def get_bytes(self, store: str, key: str) -> bytes | None:
        try:
            value = await _helper().getBytes(self._handle, store, key)
        except JsException as exc:
            raise _storage_error(exc, "load", self.name) from exc
        return None if value is None else bytes(value.to_py())

    def close(self) -> None:
        self._handle.close()
