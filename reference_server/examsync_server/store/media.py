"""Capture and log-batch rows in SQLite: written by the media sinks inside the persister's batch
transaction (media/sinks.py), captures read back for admins (api/media.py).

A row names its blob in the file store (`path`); the blob is written before the row.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .sqlite import Database

MediaTable = Literal["capture", "log_batch"]


def insert_new(
    conn: sqlite3.Connection, table: MediaTable, rows: Sequence[Mapping[str, Any]]
) -> list[bool]:
    """Insert each row (column → value) unless its key is stored already, inside the caller's
    transaction; per row, True when it is new (a repeated captureId or batchId is not)."""
    stored = []
    for row in rows:
        cursor = conn.execute(
            f"INSERT OR IGNORE INTO {table} ({', '.join(row)})"
            f" VALUES ({', '.join('?' * len(row))})",
            list(row.values()),
        )
        stored.append(cursor.rowcount == 1)
    return stored


@dataclass(frozen=True, slots=True)
class StoredCapture:
    capture_id: str
    kind: str
    content_type: str
    size: int
    sha256: str
    captured_at: str
    stored_at: str
    late: bool


@dataclass(frozen=True, slots=True)
class CaptureFile:
    content_type: str
    path: str  # relative to the file store's root


class MediaRecords:
    """Reads of the capture rows."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def captures(self, plan_id: str, candidate_id: str, limit: int) -> list[StoredCapture]:
        """A candidate's captures, newest first."""
        rows = await self.db.fetch_all(
            "SELECT capture_id, kind, content_type, size, sha256, captured_at, stored_at, late"
            " FROM capture WHERE plan_id = ? AND candidate_id = ?"
            " ORDER BY captured_at DESC LIMIT ?",
            (plan_id, candidate_id, limit),
        )
        return [
            StoredCapture(
                r["capture_id"],
                r["kind"],
                r["content_type"],
                r["size"],
                r["sha256"],
                r["captured_at"],
                r["stored_at"],
                bool(r["late"]),
            )
            for r in rows
        ]

    async def capture_file(
        self, plan_id: str, candidate_id: str, capture_id: str
    ) -> CaptureFile | None:
        row = await self.db.fetch_one(
            "SELECT content_type, path FROM capture WHERE plan_id = ? AND candidate_id = ?"
            " AND capture_id = ?",
            (plan_id, candidate_id, capture_id),
        )
        return None if row is None else CaptureFile(row["content_type"], row["path"])
