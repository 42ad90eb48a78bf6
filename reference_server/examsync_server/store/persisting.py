"""What the persister (pipeline/persister.py) needs of SQLite: the write connection its one
writer thread owns, and a transaction per batch on it (group commit).

The sinks write through the connection a batch's transaction yields (`BatchConnection`), with
the statements of store/answers.py and store/media.py.
"""

from __future__ import annotations

import sqlite3
from contextlib import AbstractContextManager
from pathlib import Path

from .sqlite import connect_sync, write_transaction

# What a sink writes through inside a batch's transaction: the driver's type under a store name.
BatchConnection = sqlite3.Connection

# ~2 MB of WAL (4 KiB pages), ~100 saves: checkpoints of a few ms, the WAL stays small.
WAL_PAGES = 500


class BatchWriter:
    """The persister's write connection: synchronous, opened on any thread and then used from
    one thread only (the persister's writer thread); a batch is one transaction on it."""

    def __init__(self, path: Path) -> None:
        self.conn: BatchConnection = connect_sync(path)
        # The writer checkpoints itself, right after the commit that takes the WAL past
        # WAL_PAGES: nothing can commit in between, so the next transaction starts the WAL
        # over; a checkpointer beside it could not (docs/server.md, "Checkpoints").
        self.conn.execute(f"PRAGMA wal_autocheckpoint={WAL_PAGES}")

    def transaction(self) -> AbstractContextManager[BatchConnection]:
        """One batch: commits when the block ends, rolls back if it raises."""
        return write_transaction(self.conn)

    def close(self) -> None:
        self.conn.close()
