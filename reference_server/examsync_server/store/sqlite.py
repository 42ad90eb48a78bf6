"""The SQLite durable store: connections, pragmas, migrations, transactions.

One writer connection, guarded by a lock so that concurrent tasks never interleave statements
inside one another's transaction, and one reader connection that only ever sees committed data
(WAL). `synchronous=FULL` makes a commit survive power loss: an acknowledgement is a promise.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from importlib import resources
from pathlib import Path
from typing import Any, TypeAlias

import aiosqlite

from ..base.private import private_file
from ..errors import StartupError

log = logging.getLogger(__name__)

# A broken database (the driver's error) under the store's name, so the rooms above catch it
# without importing the driver (aiosqlite raises the same classes).
DatabaseError = sqlite3.Error

# A write transaction's handle, as `Database.transaction()` yields it: callers outside store/
# only pass it on to the store's functions, so a backend of another kind can yield its own.
Tx: TypeAlias = aiosqlite.Connection

_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=FULL",
    "PRAGMA foreign_keys=ON",
    # Several server processes may share the file; wait for a writer rather than fail.
    "PRAGMA busy_timeout=10000",
    # When the WAL restarts from its beginning, the file is cut back to this size.
    "PRAGMA journal_size_limit=67108864",
)


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every migration shipped in store/migrations, in order."""
    found = []
    for entry in resources.files("examsync_server.store.migrations").iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:4].isdigit():
            found.append((int(name[:4]), name, entry.read_text(encoding="utf-8")))
    return sorted(found)


class Database:
    def __init__(self, writer: aiosqlite.Connection, reader: aiosqlite.Connection) -> None:
        self._writer = writer
        self._reader = reader
        self._write_lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path) -> Database:
        opened: list[aiosqlite.Connection] = []
        private_file(path)  # auth codes, access keys, answers
        try:
            opened.append(await _connect(path))
            await _migrate(opened[0])
            opened.append(await _connect(path))
        except BaseException as exc:
            for conn in opened:  # a failed migration must not leave the writer's thread behind
                await conn.close()
            if isinstance(exc, sqlite3.Error):
                raise StartupError(f"cannot open the SQLite database {path}: {exc}") from exc
            raise
        return cls(*opened)

    async def close(self) -> None:
        await self._reader.close()
        await self._writer.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        """One write transaction; commits on success, rolls back on any exception.

        BEGIN IMMEDIATE takes the write lock up front, so two processes never both read-then-write.
        """
        async with self._write_lock:
            await self._writer.execute("BEGIN IMMEDIATE")
            try:
                yield self._writer
            except BaseException:
                await self._writer.execute("ROLLBACK")
                raise
            else:
                await self._writer.execute("COMMIT")

    async def fetch_all(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        async with self._reader.execute(sql, tuple(params)) as cursor:
            return list(await cursor.fetchall())

    async def fetch_one(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Row | None:
        async with self._reader.execute(sql, tuple(params)) as cursor:
            return await cursor.fetchone()

    async def ping(self) -> None:
        await self.fetch_one("SELECT 1")

    async def schema_version(self) -> int:
        row = await self.fetch_one("PRAGMA user_version")
        assert row is not None
        return int(row[0])


@contextmanager
def write_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A write transaction on a plain sqlite3 connection (autocommit mode, as connect_sync);
    yields the connection."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")  # inside: a failed COMMIT must not leave the transaction open
    except BaseException:
        # SQLite rolls back by itself on some errors (SQLITE_FULL, say); a second ROLLBACK
        # would raise and hide the error that matters.
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def connect_sync(path: Path) -> sqlite3.Connection:
    """A plain sqlite3 connection with the same pragmas, for work run whole in a worker thread.

    The persister applies a batch of hundreds of answers in one thread hop this way, rather
    than one aiosqlite round trip per statement. SQLite's own lock orders it with the others.
    """
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    try:
        for pragma in _PRAGMAS:  # the first fails on a file that is not a database
            conn.execute(pragma)
    except BaseException:
        conn.close()
        raise
    return conn


async def _connect(path: Path) -> aiosqlite.Connection:
    # isolation_level=None: no implicit transactions; `transaction()` says BEGIN itself.
    conn = await aiosqlite.connect(path, isolation_level=None)
    conn.row_factory = sqlite3.Row
    try:
        for pragma in _PRAGMAS:  # the first fails on a file that is not a database
            await conn.execute(pragma)
    except BaseException:
        await conn.close()
        raise
    return conn


async def _migrate(conn: aiosqlite.Connection) -> None:
    await conn.execute("BEGIN IMMEDIATE")
    try:
        async with conn.execute("PRAGMA user_version") as cursor:
            row = await cursor.fetchone()
        current = int(row[0]) if row else 0
        for version, _name, sql in migrations():
            if version > current:
                for statement in _statements(sql):
                    await conn.execute(statement)
                await conn.execute(f"PRAGMA user_version={version:d}")
        await conn.execute("COMMIT")
    except BaseException:
        await conn.execute("ROLLBACK")
        raise


def _statements(sql: str) -> list[str]:
    """Split a migration into statements (executescript would commit our transaction)."""
    statements, buffer = [], ""
    for line in sql.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        statements.append(buffer.strip())
    return [
        s
        for s in statements
        if s and not all(ln.strip().startswith("--") or not ln.strip() for ln in s.splitlines())
    ]
