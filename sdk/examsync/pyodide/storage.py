"""IndexedDBStorage: the core's Storage protocol on IndexedDB, and the fall-back to memory.

The protocol is synchronous and IndexedDB is not, so the store keeps the engine's state in
memory and writes behind it, in order, one transaction at a time:

- :meth:`IndexedDBStorage.commit` takes the change into the in-memory snapshot and queues it;
  commits queued while a transaction runs are merged (``Changes.then``) into the next one, so
  the database only ever moves between states the engine was in.
- :meth:`IndexedDBStorage.flush` returns once everything committed before it is in a completed
  transaction (strict durability), or raises StorageError if that transaction failed. The
  client awaits it before ``set_answer`` returns: an answer is on disk before it is reported.
- A failed transaction stores nothing of itself (IndexedDB aborts it whole). Its changes stay
  queued, in front of newer ones, and are retried with backoff (at once on the next commit);
  the engine keeps running on the memory copy, so answers still reach the server. The state
  (``StorageState``: not durable, with the StorageFullError...) goes to ``on_state``.

One object store per concern, as the SQLite store has one table each: ``answers``, ``outbox``,
``receipts``, ``version_floors``, ``meta``, keyed by question code (by key for ``meta``).
"""

from __future__ import annotations

import asyncio
import base64
import random
from collections.abc import Callable, Mapping
from typing import Any

from ..backoff import Backoff
from ..events import StorageState
from ..exceptions import RemoteProtocolError, StorageError
from ..messages import Receipt
from ..storage import (
    Changes,
    LocalAnswer,
    MemoryStorage,
    OutboxEntry,
    Snapshot,
    Storage,
    Upload,
)
from .idb import Database, StoreOps

__all__ = ["STORES", "IndexedDBStorage", "open_storage"]

STORES = ("answers", "outbox", "receipts", "version_floors", "meta", "uploads")
# The IndexedDB database version: opening at a higher one creates the stores it lacks
# (2: uploads).
_SCHEMA_VERSION = 2
_CLOSE_WAIT = 2.0  # seconds close() gives queued writes before it gives up on them


class IndexedDBStorage:
    """A :class:`~examsync.storage.Storage` in one IndexedDB database (module docstring).

    Build it with :meth:`open` inside a running event loop; :meth:`close` it when done.
    """

    backend = "indexeddb"

    def __init__(
        self,
        db: Database,
        snapshot: Snapshot,
        *,
        backoff: Backoff | None = None,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self._db = db
        self._snapshot = snapshot
        self._backoff = backoff if backoff is not None else Backoff(base=0.5, cap=30.0)
        self._rng = rng
        self._loop = asyncio.get_running_loop()
        self._queued: Changes | None = None
        self._committed = 0  # commits taken so far
        self._written = 0  # commits in completed transactions
        self._failed = 0  # commits covered by the last failed transaction (0: none since)
        self._error: StorageError | None = None
        self._progress = asyncio.Event()  # set, and replaced, after every transaction
        self._retry_now = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._closed = False
        self.on_state: Callable[[StorageState], None] | None = None

    @classmethod
    async def open(
        cls, name: str, *, factory: Any = None, timeout: float = 10.0
    ) -> IndexedDBStorage:
        """Open (or create) the database ``name`` and load it; StorageError if it cannot."""
        db = await Database.open(
            name, STORES, version=_SCHEMA_VERSION, factory=factory, timeout=timeout
        )
        try:
            snapshot = _decode(await db.read_all(STORES), name)
        except BaseException:
            db.close()
            raise
        return cls(db, snapshot)

    @property
    def name(self) -> str:
        return self._db.name

    @property
    def state(self) -> StorageState:
        return StorageState(self.backend, durable=self._error is None, error=self._error)

    # --- the Storage protocol --------------------------------------------------------------------

    def load(self) -> Snapshot:
        """What the engine committed (written, or queued to be)."""
        return self._snapshot

    def commit(self, changes: Changes) -> None:
        """Take ``changes`` and queue their write; :meth:`flush` tells when they are durable."""
        if self._closed:
            raise StorageError(f"IndexedDB store {self.name!r} is closed", operation="use")
        if not changes:
            return
        self._snapshot = changes.apply_to(self._snapshot)
        self._queued = changes if self._queued is None else self._queued.then(changes)
        self._committed += 1
        if self._writer is None or self._writer.done():
            self._writer = self._loop.create_task(self._write_queued())
        self._retry_now.set()  # a writer waiting out a backoff tries again now

    # --- durability ------------------------------------------------------------------------------

    async def flush(self) -> None:
        """Return once every commit made so far is durable; StorageError if its write failed.

        While writes fail, the changes stay queued and retried, and the engine keeps them in
        memory: the error says that this device's copy is not durable, not that they are lost.
        """
        target = self._committed
        while self._written < target:
            if self._error is not None and self._failed >= target:
                raise type(self._error)(str(self._error), operation="commit")
            await self._progress.wait()

    async def close(self) -> None:
        """Give queued writes a moment to land, then close the database."""
        if self._closed:
            return
        try:
            await asyncio.wait_for(self.flush(), _CLOSE_WAIT)
        except (TimeoutError, StorageError):
            pass  # the state event already told the front-end these were not durable
        self._closed = True
        if self._writer is not None:
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
        self._db.close()

    async def _write_queued(self) -> None:
        attempt = 0
        while self._queued is not None and not self._closed:
            changes, upto = self._queued, self._committed
            self._queued = None
            self._retry_now.clear()
            try:
                await self._db.write(_encode(changes))
            except StorageError as exc:
                # The transaction aborted whole: put it back in front of what came since.
                self._queued = changes if self._queued is None else changes.then(self._queued)
                self._failed, attempt = upto, attempt + 1
                self._set_error(exc)
                self._step()
                try:
                    delay = self._backoff.delay(attempt, self._rng())
                    await asyncio.wait_for(self._retry_now.wait(), delay)
                except TimeoutError:
                    pass
                continue
            self._written, self._failed, attempt = upto, 0, 0
            self._set_error(None)
            self._step()

    def _step(self) -> None:
        event, self._progress = self._progress, asyncio.Event()
        event.set()

    def _set_error(self, error: StorageError | None) -> None:
        changed = (error is None) != (self._error is None)
        self._error = error
        if changed and self.on_state is not None:
            self.on_state(self.state)


async def open_storage(
    name: str, *, factory: Any = None, timeout: float = 10.0
) -> tuple[Storage, StorageState]:
    """The IndexedDB store ``name``, or memory storage when IndexedDB cannot open.

    The fall-back is never silent: the state returned says ``backend="memory"``,
    ``durable=False`` and why, and the client publishes it as an event.
    """
    try:
        storage = await IndexedDBStorage.open(name, factory=factory, timeout=timeout)
    except StorageError as exc:
        return MemoryStorage(), StorageState("memory", durable=False, error=exc)
    return storage, storage.state


# --- records -------------------------------------------------------------------------------------


def _encode(changes: Changes) -> dict[str, StoreOps]:
    ops: dict[str, StoreOps] = {}

    def put(store: str, entries: Mapping[str, object]) -> None:
        if entries:
            ops.setdefault(store, StoreOps()).put.update(entries)

    put("answers", {k: _answer(a) for k, a in changes.answers.items()})
    if changes.outbox_delete:
        ops.setdefault("outbox", StoreOps()).delete.update(changes.outbox_delete)
    put(
        "outbox",
        {k: {**_answer(e), "queuedAt": e.queued_at} for k, e in changes.outbox_put.items()},
    )
    put("receipts", {k: r.to_wire() for k, r in changes.receipts.items()})
    put("version_floors", dict(changes.version_floors))
    put("meta", dict(changes.meta))
    if changes.uploads_delete:
        ops.setdefault("uploads", StoreOps()).delete.update(changes.uploads_delete)
    put("uploads", {k: _upload(u) for k, u in changes.uploads_put.items()})
    return ops


def _upload(upload: Upload) -> dict[str, object]:
    # Records cross as JSON text (idb.js): the bytes travel as base64.
    return {
        "kind": upload.kind,
        "params": dict(upload.params),
        "contentType": upload.content_type,
        "body": base64.b64encode(upload.body).decode(),
        "createdAt": upload.created_at,
    }


def _answer(answer: LocalAnswer | OutboxEntry) -> dict[str, object]:
    return {"value": answer.value, "version": answer.version, "updated": answer.updated}


def _decode(rows: Mapping[str, list[tuple[str, Any]]], name: str) -> Snapshot:
    try:
        answers = {
            k: LocalAnswer(k, str(v["value"]), int(v["version"]), str(v["updated"]))
            for k, v in rows["answers"]
        }
        outbox = {
            k: OutboxEntry(
                k, str(v["value"]), int(v["version"]), str(v["updated"]), float(v["queuedAt"])
            )
            for k, v in rows["outbox"]
        }
        receipts = {k: Receipt.from_wire(v, f"receipts.{k}") for k, v in rows["receipts"]}
        floors = {k: int(v) for k, v in rows["version_floors"]}
        meta = {k: str(v) for k, v in rows["meta"]}
        uploads = {
            k: Upload(
                k,
                str(v["kind"]),
                {str(p): str(q) for p, q in v["params"].items()},
                str(v["contentType"]),
                base64.b64decode(v["body"], validate=True),
                float(v["createdAt"]),
            )
            for k, v in rows["uploads"]
        }
    except (KeyError, TypeError, ValueError, AttributeError, RemoteProtocolError) as exc:
        raise StorageError(
            f"corrupt record in IndexedDB {name!r}: {exc!r}", operation="load"
        ) from exc
    return Snapshot(
        answers=answers,
        outbox=outbox,
        receipts=receipts,
        version_floors=floors,
        meta=meta,
        uploads=uploads,
    )
