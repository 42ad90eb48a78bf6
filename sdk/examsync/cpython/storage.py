"""SQLiteStorage: the core's Storage protocol on a local sqlite3 file, one writer at a time.

Durability: WAL with ``synchronous=FULL``, so a commit is fsynced into the WAL before
:meth:`SQLiteStorage.commit` returns; an answer is on disk before ``set_answer`` returns.

One writer per candidate per device: an exclusive ``fcntl.flock`` on ``<db>.lock`` beside the
database, held for the storage's lifetime. A second client on the same store waits up to
``lock_timeout`` and then raises :class:`~examsync.exceptions.StoreLockedError`; it never
interleaves versions with the first. The kernel drops the lock when the holder dies (even by
SIGKILL), so a crashed client never locks out its successor.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import time
from pathlib import Path
from types import TracebackType

from ..exceptions import RemoteProtocolError, StorageError, StoreLockedError
from ..messages import Receipt
from ..protocol import decode_json
from ..storage import Changes, LocalAnswer, OutboxEntry, Snapshot, Upload

__all__ = ["SQLiteStorage"]

# Every statement is idempotent, so a store of any older version is brought up by running
# them all (2: uploads).
_SCHEMA_VERSION = 2
_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    quiz_code TEXT PRIMARY KEY, value TEXT NOT NULL, version INTEGER NOT NULL,
    updated TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    quiz_code TEXT PRIMARY KEY, value TEXT NOT NULL, version INTEGER NOT NULL,
    updated TEXT NOT NULL, queued_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS receipts (quiz_code TEXT PRIMARY KEY, receipt TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS version_floors (quiz_code TEXT PRIMARY KEY, version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS uploads (
    upload_id TEXT PRIMARY KEY, kind TEXT NOT NULL, params TEXT NOT NULL,
    content_type TEXT NOT NULL, body BLOB NOT NULL, created_at REAL NOT NULL);
"""
_POLL = 0.05  # seconds between lock attempts while waiting


class SQLiteStorage:
    """A :class:`~examsync.storage.Storage` in one sqlite3 file (see the module docstring).

    Opening takes the lock (waiting up to ``lock_timeout`` seconds; 0 fails at once). Close it
    (or use it as a context manager) to let the next client in.
    """

    def __init__(self, path: str | os.PathLike[str], *, lock_timeout: float = 0.0) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self._lock_fd: int | None = None
        self._db: sqlite3.Connection | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock_fd = _acquire(self.lock_path, str(self.path), lock_timeout)
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, so nothing is implicit.
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._migrate(self._db)
        except StoreLockedError:
            raise
        except (OSError, sqlite3.Error) as exc:
            self.close()
            raise StorageError(f"cannot open {self.path}: {exc}", operation="open") from exc

    # --- the Storage protocol --------------------------------------------------------------------

    def load(self) -> Snapshot:
        db = self._require_open()
        try:
            answers = {
                code: LocalAnswer(code, value, version, updated)
                for code, value, version, updated in db.execute(
                    "SELECT quiz_code, value, version, updated FROM answers"
                )
            }
            outbox = {
                code: OutboxEntry(code, value, version, updated, queued_at)
                for code, value, version, updated, queued_at in db.execute(
                    "SELECT quiz_code, value, version, updated, queued_at FROM outbox"
                )
            }
            receipts = {
                code: Receipt.from_wire(decode_json(text), f"receipts.{code}")
                for code, text in db.execute("SELECT quiz_code, receipt FROM receipts")
            }
            floors = dict(db.execute("SELECT quiz_code, version FROM version_floors").fetchall())
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
            uploads = {
                upload_id: Upload(upload_id, kind, json.loads(params), ctype, body, created)
                for upload_id, kind, params, ctype, body, created in db.execute(
                    "SELECT upload_id, kind, params, content_type, body, created_at FROM uploads"
                )
            }
        except sqlite3.Error as exc:
            raise StorageError(f"cannot read {self.path}: {exc}", operation="load") from exc
        except RemoteProtocolError as exc:  # a stored receipt no longer parses
            raise StorageError(f"corrupt receipt in {self.path}: {exc}", operation="load") from exc
        return Snapshot(
            answers=answers,
            outbox=outbox,
            receipts=receipts,
            version_floors=floors,
            meta=meta,
            uploads=uploads,
        )

    def commit(self, changes: Changes) -> None:
        db = self._require_open()
        if not changes:
            return
        try:
            # IMMEDIATE takes the write lock up front: the transaction cannot fail half-way on
            # a busy database after some rows were written.
            db.execute("BEGIN IMMEDIATE")
            try:
                self._write(db, changes)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise StorageError(f"cannot write {self.path}: {exc}", operation="commit") from exc

    # --- lifetime --------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._db is None

    def close(self) -> None:
        """Close the database, then release the lock (in that order: the next writer must not
        open the file while our connection could still write)."""
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the last descriptor releases the flock
            self._lock_fd = None

    def __enter__(self) -> SQLiteStorage:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- internals -------------------------------------------------------------------------------

    def _require_open(self) -> sqlite3.Connection:
        if self._db is None:
            raise StorageError(f"{self.path} is closed", operation="use")
        return self._db

    @staticmethod
    def _migrate(db: sqlite3.Connection) -> None:
        (version,) = db.execute("PRAGMA user_version").fetchone()
        if version > _SCHEMA_VERSION:
            raise StorageError(
                f"store schema {version} is newer than this SDK ({_SCHEMA_VERSION})",
                operation="open",
            )
        if version < _SCHEMA_VERSION:
            db.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
            db.execute("COMMIT")

    @staticmethod
    def _write(db: sqlite3.Connection, changes: Changes) -> None:
        db.executemany(
            "INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?)",
            [(a.quiz_code, a.value, a.version, a.updated) for a in changes.answers.values()],
        )
        db.executemany(
            "DELETE FROM outbox WHERE quiz_code = ?", [(c,) for c in changes.outbox_delete]
        )
        db.executemany(
            "INSERT OR REPLACE INTO outbox VALUES (?, ?, ?, ?, ?)",
            [
                (e.quiz_code, e.value, e.version, e.updated, e.queued_at)
                for e in changes.outbox_put.values()
            ],
        )
        db.executemany(
            "INSERT OR REPLACE INTO receipts VALUES (?, ?)",
            [
                (code, json.dumps(r.to_wire(), ensure_ascii=False))
                for code, r in changes.receipts.items()
            ],
        )
        db.executemany(
            "INSERT OR REPLACE INTO version_floors VALUES (?, ?)",
            list(changes.version_floors.items()),
        )
        db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", list(changes.meta.items()))
        db.executemany(
            "DELETE FROM uploads WHERE upload_id = ?", [(u,) for u in changes.uploads_delete]
        )
        db.executemany(
            "INSERT OR REPLACE INTO uploads VALUES (?, ?, ?, ?, ?, ?)",
            [
                (
                    u.upload_id,
                    u.kind,
                    json.dumps(dict(u.params)),
                    u.content_type,
                    u.body,
                    u.created_at,
                )
                for u in changes.uploads_put.values()
            ],
        )


def _acquire(lock_path: Path, store: str, timeout: float) -> int:
    """Open and exclusively flock ``lock_path``, waiting up to ``timeout`` seconds."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise StoreLockedError(store, holder=_holder(fd), timeout=timeout) from None
                time.sleep(_POLL)
        # Who holds it, for the next client's error message (advisory: the flock is the lock).
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _holder(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).decode().strip())
    except (OSError, ValueError):
        return None
