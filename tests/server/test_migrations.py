"""Schema migrations keep what an older database holds (real SQLite files)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from examsync.protocol import value_sha256
from examsync_server.store.sqlite import Database, migrations


def database_at(path: Path, version: int) -> sqlite3.Connection:
    """A database migrated only up to `version`, as an older server left it."""
    conn = sqlite3.connect(path, isolation_level=None)
    for number, _name, sql in migrations():
        if number <= version:
            conn.executescript(sql)
            conn.execute(f"PRAGMA user_version={number:d}")
    return conn


def history_row(
    quiz: str, value: str, version: int, result: str, message: str
) -> tuple[object, ...]:
    return (
        "CAND1", "EX1", quiz, "PLAN1", value, value_sha256(value), version,
        f"2024-01-15T09:00:0{version}.000Z", "2024-01-15T09:00:09.000Z", result, 0, message,
    )  # fmt: skip


async def test_answers_written_before_0005_read_back_the_same(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    old = database_at(path, 4)
    old.executemany(
        "INSERT INTO answer_history (candidate_id, exam_code, quiz_code, plan_id, value,"
        " value_sha256, version, updated, server_time, result, late, message_id)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            history_row("Q1", "first", 1, "accepted", "1-0"),
            history_row("Q1", "second", 2, "accepted", "2-0"),
            history_row("Q1", "stale", 1, "superseded", "3-0"),
        ],
    )
    # Q2's history row is missing (it never should be): the migration makes one.
    for quiz, value, version in (("Q1", "second", 2), ("Q2", "긴 답안 " * 300, 1)):
        old.execute(
            "INSERT INTO answer VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            ("CAND1", "EX1", quiz, "PLAN1", value, value_sha256(value), version,
             f"2024-01-15T09:00:0{version}.000Z", "2024-01-15T09:00:09.000Z", int(quiz == "Q2")),
        )  # fmt: skip
    before = old.execute("SELECT * FROM answer ORDER BY quiz_code").fetchall()
    old.close()

    db = await Database.open(path)
    try:
        assert await db.schema_version() == max(number for number, _, _ in migrations())
        after = await db.fetch_all("SELECT * FROM answer ORDER BY quiz_code")
        assert [tuple(row) for row in after] == before
        history = await db.fetch_all(
            "SELECT quiz_code, version, result FROM answer_history ORDER BY history_id"
        )
        assert [tuple(row) for row in history] == [
            ("Q1", 1, "accepted"),
            ("Q1", 2, "accepted"),
            ("Q1", 1, "superseded"),
            ("Q2", 1, "accepted"),
        ]
        latest = await db.fetch_all("SELECT quiz_code, message_id FROM answer_latest")
        assert dict(tuple(row) for row in latest) == {"Q1": "2-0", "Q2": "0-0:CAND1:EX1"}
    finally:
        await db.close()
