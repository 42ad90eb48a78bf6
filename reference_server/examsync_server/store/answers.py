"""Answers in SQLite: applying a batch of saves under the version rules, and reading them back
(a candidate's sheet for restore, every stored version for history).

Synchronous on purpose: the persister runs `apply_batch` whole, one transaction per batch
(group commit), so a batch of hundreds of answers costs one fsync.

Version rules (DESIGN §4, judged by `examsync.messages.judge_version`), per answer against the
stored version v:
    sent > v, or nothing stored          accepted    stored as latest + history
    sent == v with the same value        duplicate   nothing stored (an idempotent repeat)
    sent == v with another value, < v    superseded  history only

Values live in `answer_history` only; `answer_latest` names each answer's current history row
and the `answer` view joins the two (migration 0005).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from examsync.messages import AckStatus, judge_version
from examsync.protocol import value_sha256

from .sqlite import Database, write_transaction


@dataclass(frozen=True, slots=True)
class QueuedSave:
    """One validated save as it travels through the answer stream."""

    message_id: str
    rid: str
    node: str
    plan_id: str
    candidate_id: str
    exam_code: str
    received_at: str
    late: bool
    payload: Mapping[str, Any]  # the seed 002 §4.1 wire form, checksum verified on receipt


@dataclass(frozen=True, slots=True)
class Outcome:
    quiz_code: str
    status: str  # accepted | duplicate | superseded
    version: int
    current_version: int
    value_sha256: str


@dataclass
class SheetChange:
    """What one batch changed for one candidate's exam: what the Redis cache must learn."""

    plan_id: str
    candidate_id: str
    exam_code: str
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    navigation: list[dict[str, str]] = field(default_factory=list)


@dataclass
class BatchResult:
    outcomes: list[list[Outcome]]  # one list per save, in order
    sheets: list[SheetChange]


def apply_batch(
    conn: sqlite3.Connection, saves: Sequence[QueuedSave], server_time: str
) -> BatchResult:
    """Apply every save in one transaction; nothing is visible until the commit."""
    with write_transaction(conn):
        return apply_saves(conn, saves, server_time)


Key = tuple[str, str, str]  # candidate, exam code, quiz code

# The value itself is written once, in history; the latest version names its history row
# (migration 0005), so a save writes no second copy of it.
_UPSERT_LATEST = (
    "INSERT INTO answer_latest (candidate_id, exam_code, quiz_code, plan_id, version,"
    " value_sha256, message_id) VALUES (?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (candidate_id, exam_code, quiz_code) DO UPDATE SET"
    " plan_id = excluded.plan_id, version = excluded.version,"
    " value_sha256 = excluded.value_sha256, message_id = excluded.message_id"
)
_INSERT_HISTORY = (
    "INSERT OR IGNORE INTO answer_history (candidate_id, exam_code, quiz_code, plan_id, value,"
    " value_sha256, version, updated, server_time, result, late, message_id)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_LOOKUP_CHUNK = 300  # keys per SELECT: 900 parameters, far below SQLite's limit


def apply_saves(
    conn: sqlite3.Connection, saves: Sequence[QueuedSave], server_time: str
) -> BatchResult:
    """Inside the caller's transaction: decide every answer's outcome in Python against one
    lookup of the stored versions, then write with one statement per table (executemany): a
    save costs a few row writes, not a few statement round trips each."""
    latest = _stored_versions(conn, saves)
    answers: dict[Key, tuple[Any, ...]] = {}  # the last accepted version of each answer
    history: list[tuple[Any, ...]] = []
    sheets: dict[tuple[str, str], SheetChange] = {}
    updates: dict[tuple[str, str], _SheetUpdate] = {}
    outcomes: list[list[Outcome]] = []
    # once, not per answer: an Enum member lookup costs about as much as judging the answer
    accepted, duplicate = AckStatus.ACCEPTED, AckStatus.DUPLICATE
    for save in saves:
        key = (save.candidate_id, save.exam_code)
        sheet = sheets.setdefault(key, SheetChange(save.plan_id, *key))
        results = []
        accepted_any = False
        for quiz_code, entry in save.payload["answers"].items():
            pk = (save.candidate_id, save.exam_code, quiz_code)
            value, version, updated = entry["value"], entry["version"], entry["updated"]
            sha = value_sha256(value)
            judged = judge_version(latest.get(pk), version, sha)
            status = judged.value
            if judged is accepted:
                answers[pk] = (*pk, save.plan_id, version, sha, save.message_id)
                latest[pk] = (version, sha)
                sheet.answers[quiz_code] = {"value": value, "version": version, "updated": updated}
                accepted_any = True
            if judged is not duplicate:
                history.append(
                    (*pk, save.plan_id, value, sha, version, updated, server_time, status)
                    + (int(save.late), save.message_id)
                )
            results.append(Outcome(quiz_code, status, version, latest[pk][0], sha))
        outcomes.append(results)
        updates.setdefault(key, _SheetUpdate(save.plan_id)).add(save, accepted_any)
        sheet.navigation += _add_navigation(conn, save)
    conn.executemany(_INSERT_HISTORY, history)
    conn.executemany(_UPSERT_LATEST, answers.values())
    for key, update in updates.items():
        sheets[key].meta = update.write(conn, *key, server_time)
    return BatchResult(outcomes, list(sheets.values()))


def _stored_versions(
    conn: sqlite3.Connection, saves: Sequence[QueuedSave]
) -> dict[Key, tuple[int, str]]:
    wanted = list(
        dict.fromkeys(
            (save.candidate_id, save.exam_code, quiz)
            for save in saves
            for quiz in save.payload["answers"]
        )
    )
    found: dict[Key, tuple[int, str]] = {}
    for i in range(0, len(wanted), _LOOKUP_CHUNK):
        chunk = wanted[i : i + _LOOKUP_CHUNK]
        # A join on a VALUES list searches the primary key per row; `(…) IN (VALUES …)`
        # would scan the whole table (EXPLAIN QUERY PLAN).
        rows = conn.execute(
            "WITH k(c, e, q) AS (VALUES "
            + ", ".join(["(?, ?, ?)"] * len(chunk))
            + ") SELECT a.candidate_id, a.exam_code, a.quiz_code, a.version, a.value_sha256"
            " FROM k JOIN answer_latest AS a"
            " ON a.candidate_id = k.c AND a.exam_code = k.e AND a.quiz_code = k.q",
            [part for key in chunk for part in key],
        )
        for row in rows:
            found[(row[0], row[1], row[2])] = (row[3], row[4])
    return found


@dataclass
class _SheetUpdate:
    """One batch's saves of one candidate's exam, folded into one write of `answer_sheet`:
    the version counts the saves that accepted something, status and device are the last
    save's, behaviour counters the largest seen (totals since the exam began on the device, so
    a late-arriving older save cannot make them go backwards)."""

    plan_id: str
    accepted: int = 0
    last: QueuedSave | None = None
    focus_time: int = 0
    edit_count: int = 0
    keystrokes: int = 0

    def add(self, save: QueuedSave, accepted: bool) -> None:
        behavior = save.payload["metadata"]["behavior"]
        self.accepted += int(accepted)
        self.last = save
        self.focus_time = max(self.focus_time, behavior["focusTime"])
        self.edit_count = max(self.edit_count, behavior["editCount"])
        self.keystrokes = max(self.keystrokes, behavior["keystrokes"])

    def write(
        self, conn: sqlite3.Connection, candidate_id: str, exam_code: str, server_time: str
    ) -> dict[str, Any]:
        assert self.last is not None
        device = self.last.payload["metadata"]["device"]
        row = conn.execute(
            "INSERT INTO answer_sheet (candidate_id, exam_code, plan_id, last_sync, version,"
            " status, device_type, device_browser, device_os, focus_time, edit_count,"
            " keystrokes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (candidate_id, exam_code) DO UPDATE SET last_sync = excluded.last_sync,"
            " version = answer_sheet.version + excluded.version, status = excluded.status,"
            " device_type = excluded.device_type, device_browser = excluded.device_browser,"
            " device_os = excluded.device_os,"
            " focus_time = MAX(answer_sheet.focus_time, excluded.focus_time),"
            " edit_count = MAX(answer_sheet.edit_count, excluded.edit_count),"
            " keystrokes = MAX(answer_sheet.keystrokes, excluded.keystrokes)"
            " RETURNING version, status, device_type, device_browser, device_os",
            (
                candidate_id,
                exam_code,
                self.plan_id,
                server_time,
                self.accepted,
                self.last.payload["status"],
                device["type"],
                device["browser"],
                device["os"],
                self.focus_time,
                self.edit_count,
                self.keystrokes,
            ),
        ).fetchone()
        return {
            "lastSync": server_time,
            "version": row["version"],
            "status": row["status"],
            "device": {
                "type": row["device_type"],
                "browser": row["device_browser"],
                "os": row["device_os"],
            },
        }


def _add_navigation(conn: sqlite3.Connection, save: QueuedSave) -> list[dict[str, str]]:
    added = []
    for step in save.payload["metadata"]["behavior"]["navigation"]:
        cursor = conn.execute(
            "INSERT OR IGNORE INTO answer_navigation (candidate_id, exam_code, at, from_quiz,"
            " to_quiz) VALUES (?, ?, ?, ?, ?)",
            (save.candidate_id, save.exam_code, step["timestamp"], step["from"], step["to"]),
        )
        if cursor.rowcount:
            added.append({"from": step["from"], "to": step["to"], "timestamp": step["timestamp"]})
    return added


# -- reading back ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredSheet:
    answers: dict[str, dict[str, Any]]
    meta: dict[str, Any] | None
    navigation: list[dict[str, str]]
    damaged: list[str]  # answers whose stored value no longer matches its digest


def read_sheet(rows: Iterable[Any], sheet: Any, navigation: Iterable[Any]) -> StoredSheet:
    """From rows of `answer`, the `answer_sheet` row (or None) and `answer_navigation` rows."""
    answers: dict[str, dict[str, Any]] = {}
    damaged: list[str] = []
    for row in rows:
        if row["value"] is None or value_sha256(row["value"]) != row["value_sha256"]:
            damaged.append(row["quiz_code"])
            continue
        answers[row["quiz_code"]] = {
            "value": row["value"],
            "version": row["version"],
            "updated": row["updated"],
        }
    meta = None
    if sheet is not None:
        meta = {
            "lastSync": sheet["last_sync"],
            "version": sheet["version"],
            "status": sheet["status"],
            "device": {
                "type": sheet["device_type"],
                "browser": sheet["device_browser"],
                "os": sheet["device_os"],
            },
        }
    steps = [{"from": n["from_quiz"], "to": n["to_quiz"], "timestamp": n["at"]} for n in navigation]
    return StoredSheet(answers, meta, steps, sorted(damaged))


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One stored version of an answer, as it arrived."""

    quiz_code: str
    value: str
    version: int
    updated: str
    server_time: str
    result: str  # accepted | superseded
    late: bool


class StoredAnswers:
    """The committed answers, read from SQLite (the reader connection: committed data only)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def sheet(self, candidate_id: str, exam_code: str) -> StoredSheet:
        key = (candidate_id, exam_code)
        answers = await self.db.fetch_all(
            "SELECT quiz_code, value, value_sha256, version, updated FROM answer"
            " WHERE candidate_id = ? AND exam_code = ?",
            key,
        )
        sheet = await self.db.fetch_one(
            "SELECT * FROM answer_sheet WHERE candidate_id = ? AND exam_code = ?", key
        )
        navigation = await self.db.fetch_all(
            "SELECT at, from_quiz, to_quiz FROM answer_navigation WHERE candidate_id = ?"
            " AND exam_code = ? ORDER BY at",
            key,
        )
        return read_sheet(answers, sheet, navigation)

    async def history(
        self, plan_id: str, candidate_id: str, exam_code: str, quiz_code: str | None
    ) -> list[HistoryEntry]:
        """Every stored version of the exam's answers (or of one), oldest first."""
        sql = (
            "SELECT quiz_code, value, version, updated, server_time, result, late"
            " FROM answer_history WHERE plan_id = ? AND candidate_id = ? AND exam_code = ?"
        )
        params: list[Any] = [plan_id, candidate_id, exam_code]
        if quiz_code is not None:
            sql += " AND quiz_code = ?"
            params.append(quiz_code)
        rows = await self.db.fetch_all(sql + " ORDER BY quiz_code, version, history_id", params)
        return [
            HistoryEntry(
                r["quiz_code"],
                r["value"],
                r["version"],
                r["updated"],
                r["server_time"],
                r["result"],
                bool(r["late"]),
            )
            for r in rows
        ]
