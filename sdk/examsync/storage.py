"""What the sync engine keeps in local durable storage, and an in-memory implementation.

The engine holds a mirror of everything in memory and writes through: every operation that
changes state builds one :class:`Changes` and hands it to :meth:`Storage.commit`, which must
apply it atomically and durably before returning. Only then does the engine change its mirror,
so a process killed at any point comes back, through :meth:`Storage.load`, to a state the
engine was in (a crash is a reload).

Adapters implement :class:`Storage` over a sqlite3 file (CPython) or IndexedDB (Pyodide);
:class:`MemoryStorage` is for tests and for browsers where IndexedDB cannot open.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from ._validate import frozen_map
from .messages import Receipt

__all__ = [
    "Changes",
    "LocalAnswer",
    "MemoryStorage",
    "OutboxEntry",
    "Snapshot",
    "Storage",
    "Upload",
]


@dataclass(frozen=True, slots=True)
class LocalAnswer:
    """The candidate's current answer to one question on this device."""

    quiz_code: str
    value: str
    version: int
    updated: str  # ISO 8601 UTC, when the candidate made this version


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """An answer version the server has not acknowledged yet.

    At most one per question: a newer edit replaces the entry (coalescing), keeping
    ``queued_at`` from the first unacknowledged edit so that "oldest pending age" tells how long
    the candidate's work has been only on this device.
    """

    quiz_code: str
    value: str
    version: int
    updated: str
    queued_at: float  # seconds since the epoch


@dataclass(frozen=True, slots=True)
class Upload:
    """A capture or a batch of log entries waiting to be uploaded (see uploads.py)."""

    upload_id: str  # the captureId or batchId
    kind: str  # "capture" or "logs"
    params: Mapping[str, str]  # capture: {"kind", "capturedAt"}; logs: {}
    content_type: str
    body: bytes
    created_at: float  # seconds since the epoch

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", frozen_map(self.params))


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything the engine persisted, as :meth:`Storage.load` returns it."""

    answers: Mapping[str, LocalAnswer] = field(default_factory=dict)
    outbox: Mapping[str, OutboxEntry] = field(default_factory=dict)
    receipts: Mapping[str, Receipt] = field(default_factory=dict)
    # Per question, the highest version used here or seen from the server: the next local edit
    # takes floor + 1, so versions keep rising across restarts, restores and other devices.
    version_floors: Mapping[str, int] = field(default_factory=dict)
    meta: Mapping[str, str] = field(default_factory=dict)
    uploads: Mapping[str, Upload] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("answers", "outbox", "receipts", "version_floors", "meta", "uploads"):
            object.__setattr__(self, name, frozen_map(getattr(self, name)))


@dataclass(frozen=True, slots=True)
class Changes:
    """One atomic write: puts by key, and outbox (and upload) deletions by key."""

    answers: Mapping[str, LocalAnswer] = field(default_factory=dict)
    outbox_put: Mapping[str, OutboxEntry] = field(default_factory=dict)
    outbox_delete: frozenset[str] = frozenset()
    receipts: Mapping[str, Receipt] = field(default_factory=dict)
    version_floors: Mapping[str, int] = field(default_factory=dict)
    meta: Mapping[str, str] = field(default_factory=dict)
    uploads_put: Mapping[str, Upload] = field(default_factory=dict)
    uploads_delete: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        overlap = set(self.outbox_put) & self.outbox_delete
        if overlap:
            raise ValueError(f"outbox entries both put and deleted: {sorted(overlap)}")
        if set(self.uploads_put) & self.uploads_delete:
            raise ValueError("uploads both put and deleted")

    def __bool__(self) -> bool:
        return bool(
            self.answers
            or self.outbox_put
            or self.outbox_delete
            or self.receipts
            or self.version_floors
            or self.meta
            or self.uploads_put
            or self.uploads_delete
        )

    def then(self, later: Changes) -> Changes:
        """One change with the effect of this one followed by ``later``.

        An asynchronous store (IndexedDB) queues commits while a write is under way and writes
        them as one transaction: the store then moves between states the engine was in.
        """
        outbox_put = {k: v for k, v in self.outbox_put.items() if k not in later.outbox_delete}
        outbox_put.update(later.outbox_put)
        uploads_put = {k: v for k, v in self.uploads_put.items() if k not in later.uploads_delete}
        uploads_put.update(later.uploads_put)
        return Changes(
            answers={**self.answers, **later.answers},
            outbox_put=outbox_put,
            outbox_delete=self.outbox_delete.difference(later.outbox_put) | later.outbox_delete,
            receipts={**self.receipts, **later.receipts},
            version_floors={**self.version_floors, **later.version_floors},
            meta={**self.meta, **later.meta},
            uploads_put=uploads_put,
            uploads_delete=self.uploads_delete.difference(later.uploads_put) | later.uploads_delete,
        )

    def apply_to(self, snapshot: Snapshot) -> Snapshot:
        """The snapshot after this change (what a storage must hold once commit returns)."""
        outbox = {k: v for k, v in snapshot.outbox.items() if k not in self.outbox_delete}
        outbox.update(self.outbox_put)
        uploads = {k: v for k, v in snapshot.uploads.items() if k not in self.uploads_delete}
        uploads.update(self.uploads_put)
        return Snapshot(
            answers={**snapshot.answers, **self.answers},
            outbox=outbox,
            receipts={**snapshot.receipts, **self.receipts},
            version_floors={**snapshot.version_floors, **self.version_floors},
            meta={**snapshot.meta, **self.meta},
            uploads=uploads,
        )


@runtime_checkable
class Storage(Protocol):
    """Local durable storage for one candidate in one exam (one plan, one exam code).

    Both methods raise :class:`~examsync.exceptions.StorageError` on failure; a failed
    ``commit`` must leave the stored state exactly as it was.
    """

    def load(self) -> Snapshot:
        """Everything committed so far (an empty :class:`Snapshot` for a new store)."""
        ...

    def commit(self, changes: Changes) -> None:
        """Apply ``changes`` atomically; return only once they would survive a crash."""
        ...


class MemoryStorage:
    """A :class:`Storage` in memory: survives an engine being rebuilt, not the process."""

    def __init__(self, snapshot: Snapshot | None = None) -> None:
        self._snapshot = snapshot if snapshot is not None else Snapshot()
        self.commits = 0  # for tests and benchmarks

    def load(self) -> Snapshot:
        return self._snapshot

    def commit(self, changes: Changes) -> None:
        # Snapshots are immutable, so swapping in the new one is the whole transaction.
        self._snapshot = changes.apply_to(self._snapshot)
        self.commits += 1
