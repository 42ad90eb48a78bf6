"""Schema migrations keep what an older database holds (real SQLite files)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from examsync.protocol import format_timestamp, parse_timestamp, value_sha256
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


# What `answer` held before 0005 (0006 adds the kept edit's time and device).
ANSWER_COLUMNS = (
    "candidate_id, exam_code, quiz_code, plan_id, value, value_sha256, version, updated,"
    " server_time, late"
)


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
    before = old.execute(f"SELECT {ANSWER_COLUMNS} FROM answer ORDER BY quiz_code").fetchall()
    old.close()

    db = await Database.open(path)
    try:
        assert await db.schema_version() == max(number for number, _, _ in migrations())
        after = await db.fetch_all(f"SELECT {ANSWER_COLUMNS} FROM answer ORDER BY quiz_code")
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


# An edit's `updated` as devices have sent it, and when the server committed it.
EDITS = [
    ("2024-01-15T09:00:01.123Z", "2024-01-15T09:00:09.000Z"),
    ("2024-01-15T18:00:01.5+09:00", "2024-01-15T09:00:09.000Z"),  # an offset, half a second
    ("2024-01-15T09:00:01Z", "2024-01-15T09:00:09.000Z"),  # no milliseconds
    ("2024-01-14T23:59:59.999-10:30", "2024-01-15T10:31:00.000Z"),  # another day in UTC
    ("2024-01-15T09:00:01.123456Z", "2024-01-15T09:00:09.000Z"),  # microseconds
    ("2024-01-15T09:00:20.000Z", "2024-01-15T09:00:09.250Z"),  # a clock ahead: commit time
]


async def test_0006_gives_each_kept_answer_its_edit_time_as_python_reads_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.sqlite3"
    old = database_at(path, 5)
    for n, (updated, server_time) in enumerate([*EDITS, ("20240115T090001Z", EDITS[0][1])]):
        quiz, message = f"Q{n}", f"{n + 1}-0"
        old.execute(
            "INSERT INTO answer_history (candidate_id, exam_code, quiz_code, plan_id, value,"
            " value_sha256, version, updated, server_time, result, late, message_id)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            ("CAND1", "EX1", quiz, "PLAN1", "v", value_sha256("v"), 1, updated, server_time,
             "accepted", 0, message),
        )  # fmt: skip
        old.execute(
            "INSERT INTO answer_latest VALUES (?, ?, ?, ?, ?, ?, ?)",
            ("CAND1", "EX1", quiz, "PLAN1", 1, value_sha256("v"), message),
        )
    # A latest answer whose history row is gone: any new edit wins over it.
    old.execute("INSERT INTO answer_latest VALUES ('CAND1', 'EX1', 'QX', 'PLAN1', 1, 'ab', 'gone')")
    old.close()

    db = await Database.open(path)
    try:
        rows = await db.fetch_all(
            "SELECT l.quiz_code, l.edited_at, l.device, a.updated FROM answer_latest AS l"
            " JOIN answer AS a USING (candidate_id, exam_code, quiz_code)"
        )
        found = {r["quiz_code"]: (r["edited_at"], r["device"], r["updated"]) for r in rows}
        for n, (updated, server_time) in enumerate(EDITS):
            edited_at = min(
                round(parse_timestamp(updated) * 1000), round(parse_timestamp(server_time) * 1000)
            )
            assert found[f"Q{n}"] == (edited_at, "", format_timestamp(edited_at / 1000)), updated
        # A form SQLite cannot read (ISO 8601's basic format): the commit time stands in.
        assert found[f"Q{len(EDITS)}"][2] == EDITS[0][1]
        assert found["QX"][:2] == (0, "")
        devices = await db.fetch_all("SELECT DISTINCT device FROM answer_history")
        assert [r["device"] for r in devices] == [""]
    finally:
        await db.close()
