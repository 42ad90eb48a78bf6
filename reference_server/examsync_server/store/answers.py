"""Answers in SQLite: applying a batch of saves under the rule "the latest edit wins", and
reading them back (a candidate's sheet for restore, every stored edit for history).

Synchronous on purpose: the persister runs `apply_batch` whole, one transaction per batch
(group commit), so a batch of hundreds of answers costs one fsync.

The rule (docs/protocol.md, "Several devices"; judged by `examsync.edits.judge_edit`), per
answer against the stored edit (its version, value digest, edit time and device):
    the first edit, or a later one with another value   accepted    the new latest + history
    a later edit with the same value                    duplicate   the latest takes its stamp
    an earlier edit, or the same edit again             duplicate   nothing (an idempotent repeat)
    an earlier edit with another value                  superseded  history only
An edit's time is its `updated`, but never after the server received it (the stream entry's id).

Values live in `answer_history` only; `answer_latest` names each answer's current history row
and the `answer` view joins the two (migrations 0005, 0006).
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from examsync.edits import StoredEdit, edit_time_ms, judge_edit
from examsync.messages import AckStatus
from examsync.protocol import format_timestamp, value_sha256

from .errors import DamagedAnswer
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

    @property
    def received_ms(self) -> int:
        """When the server received it: the stream id's milliseconds (`<ms>-<seq>`), which
        Redis sets at XADD and never lets go backwards on a stream."""
        return int(self.message_id.partition("-")[0])


class Outcome(NamedTuple):
    """One answer's verdict, as its ack says it (a tuple: one per answer on the hot path)."""

    quiz_code: str
    status: AckStatus
    version: int  # as sent
    kept: StoredEdit  # what the server holds for the answer after this save
    current_value: str | None = None  # the kept value, for a superseded answer


@dataclass
class SheetChange:
    """What one batch changed for one candidate's exam: what the Redis cache must learn."""

    plan_id: str
    candidate_id: str
    exam_code: str
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    navigation: list[dict[str, str]] = field(default_factory=list)
    # The sheet's version (`answer_sheet.version`) before this batch: the cache takes the
    # batch's meta only on top of exactly that one, so its meta proves it missed no commit.
    base_version: int | None = None


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

# The value itself is written once, in history; the latest edit names its history row
# (migration 0005), so a save writes no second copy of it.
_UPSERT_LATEST = (
    "INSERT INTO answer_latest (candidate_id, exam_code, quiz_code, plan_id, version,"
    " value_sha256, message_id, edited_at, device) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (candidate_id, exam_code, quiz_code) DO UPDATE SET"
    " plan_id = excluded.plan_id, version = excluded.version,"
    " value_sha256 = excluded.value_sha256, message_id = excluded.message_id,"
    " edited_at = excluded.edited_at, device = excluded.device"
)
# A later edit with the value already kept: the kept edit takes its stamp, nothing else changes.
_RESTAMP_LATEST = (
    "UPDATE answer_latest SET edited_at = ?, device = ?"
    " WHERE candidate_id = ? AND exam_code = ? AND quiz_code = ?"
)
_INSERT_HISTORY = (
    "INSERT OR IGNORE INTO answer_history (candidate_id, exam_code, quiz_code, plan_id, value,"
    " value_sha256, version, updated, server_time, result, late, message_id, device)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_LOOKUP_PARAMETERS = 900  # per SELECT: far below SQLite's limit


def wire_time(edited_at: int) -> str:
    """An edit time (milliseconds) as the wire writes times: what restore and acks say."""
    seconds, millis = divmod(edited_at, 1000)
    return f"{_wire_second(seconds)}.{millis:03d}Z"


@functools.lru_cache(maxsize=4096)
def _wire_second(seconds: int) -> str:
    # Edits come in around now, so a few seconds' texts serve a whole batch: ~0.3 µs an
    # accepted answer instead of ~5.6 µs for a strftime each (Python 3.11).
    return format_timestamp(seconds)[:19]


def apply_saves(
    conn: sqlite3.Connection, saves: Sequence[QueuedSave], server_time: str
) -> BatchResult:
    """Inside the caller's transaction: judge every answer in Python against one lookup of
    the stored edits, then write with one statement per table (executemany): a save costs a
    few row writes, not a few statement round trips each."""
    latest = _stored_edits(conn, saves)
    answers: dict[Key, tuple[Any, ...]] = {}  # the latest row each answer is left with
    restamps: dict[Key, tuple[Any, ...]] = {}  # kept edits that only took a later stamp
    history: list[tuple[Any, ...]] = []
    superseded: list[tuple[int, int, Key]] = []  # (save, answer) positions in `outcomes`
    sheets: dict[tuple[str, str], SheetChange] = {}
    updates: dict[tuple[str, str], _SheetUpdate] = {}
    outcomes: list[list[Outcome]] = []
    # once, not per answer: an Enum member lookup costs about as much as judging the answer
    accepted, duplicate = AckStatus.ACCEPTED, AckStatus.DUPLICATE
    for save in saves:
        key = (save.candidate_id, save.exam_code)
        sheet = sheets.setdefault(key, SheetChange(save.plan_id, *key))
        results: list[Outcome] = []
        accepted_any = False
        plan, mid, received_ms, late = save.plan_id, save.message_id, save.received_ms, save.late
        device = save.payload["metadata"]["device"].get("id", "")
        for quiz_code, entry in save.payload["answers"].items():
            pk = (save.candidate_id, save.exam_code, quiz_code)
            value, version, updated = entry["value"], entry["version"], entry["updated"]
            sha = value_sha256(value)
            stored = latest.get(pk)
            status, kept = judge_edit(
                stored, version, sha, edit_time_ms(updated, received_ms), device
            )
            if status is accepted:
                answers[pk] = (*pk, plan, kept.version, sha, mid, kept.edited_at, device)
                if restamps:
                    restamps.pop(pk, None)
                latest[pk] = kept
                sheet.answers[quiz_code] = {
                    "value": value,
                    "version": kept.version,
                    "updated": wire_time(kept.edited_at),
                }
                accepted_any = True
                history.append(
                    (*pk, plan, value, sha, kept.version, updated, server_time, "accepted")
                    + (late, mid, device)
                )
            elif status is duplicate:
                if kept != stored:  # later, same value: the stamp moves up (examsync.edits)
                    latest[pk] = kept
                    row = answers.get(pk)
                    if row is None:
                        restamps[pk] = (kept.edited_at, device, *pk)
                    else:
                        answers[pk] = row[:-2] + (kept.edited_at, device)
                    sheet.answers[quiz_code] = {
                        "value": value,
                        "version": kept.version,
                        "updated": wire_time(kept.edited_at),
                    }
            else:
                history.append(
                    (*pk, plan, value, sha, version, updated, server_time, "superseded")
                    + (late, mid, device)
                )
                superseded.append((len(outcomes), len(results), pk))
            results.append(Outcome(quiz_code, status, version, kept))
        outcomes.append(results)
        updates.setdefault(key, _SheetUpdate(save.plan_id)).add(save, accepted_any)
        sheet.navigation += _add_navigation(conn, save)
    conn.executemany(_INSERT_HISTORY, history)
    conn.executemany(_UPSERT_LATEST, answers.values())
    if restamps:
        conn.executemany(_RESTAMP_LATEST, restamps.values())
    if superseded:  # rare: the device that lost is told what the server keeps
        _add_kept_values(conn, outcomes, superseded)
    for key, update in updates.items():
        sheets[key].meta = update.write(conn, *key, server_time)
        sheets[key].base_version = sheets[key].meta["version"] - update.accepted
    return BatchResult(outcomes, list(sheets.values()))


def _by_keys(
    conn: sqlite3.Connection, keys: Sequence[tuple[str, ...]], columns: str, query: str
) -> Iterator[tuple[Any, ...]]:
    """The rows of `query` over the table `k(columns)` of `keys`, a chunk at a time. A join on
    a VALUES list searches an index per row; `(…) IN (VALUES …)` would scan the whole table
    (EXPLAIN QUERY PLAN)."""
    if not keys:
        return
    width = len(keys[0])
    row = "(" + ", ".join(["?"] * width) + ")"
    step = _LOOKUP_PARAMETERS // width
    cursor = conn.cursor()
    cursor.row_factory = None  # plain tuples: cheaper than sqlite3.Row, and all we need
    for i in range(0, len(keys), step):
        chunk = keys[i : i + step]
        sql = f"WITH k({columns}) AS (VALUES " + ", ".join([row] * len(chunk)) + ") " + query
        yield from cursor.execute(sql, [part for key in chunk for part in key])


def _stored_edits(conn: sqlite3.Connection, saves: Sequence[QueuedSave]) -> dict[Key, StoredEdit]:
    wanted = list(
        dict.fromkeys(
            (save.candidate_id, save.exam_code, quiz)
            for save in saves
            for quiz in save.payload["answers"]
        )
    )
    rows = _by_keys(
        conn,
        wanted,
        "c, e, q",
        "SELECT a.candidate_id, a.exam_code, a.quiz_code, a.version, a.value_sha256,"
        " a.edited_at, a.device FROM k JOIN answer_latest AS a"
        " ON a.candidate_id = k.c AND a.exam_code = k.e AND a.quiz_code = k.q",
    )
    return {(c, e, q): StoredEdit(v, s, t, d) for c, e, q, v, s, t, d in rows}


def _add_kept_values(
    conn: sqlite3.Connection, outcomes: list[list[Outcome]], superseded: list[tuple[int, int, Key]]
) -> None:
    """Each superseded outcome gets the value the server keeps, read by its digest (history
    holds every value once; any row with that digest holds the same value), in one query."""
    wanted = list(dict.fromkeys((*pk, outcomes[i][j].kept.value_sha256) for i, j, pk in superseded))
    rows = _by_keys(
        conn,
        wanted,
        "c, e, q, s",
        "SELECT k.c, k.e, k.q, k.s, (SELECT h.value FROM answer_history AS h"
        " WHERE h.candidate_id = k.c AND h.exam_code = k.e AND h.quiz_code = k.q"
        " AND h.value_sha256 = k.s LIMIT 1) FROM k",
    )
    values = {(c, e, q, s): value for c, e, q, s, value in rows}
    for i, j, pk in superseded:
        outcome = outcomes[i][j]
        value = values.get((*pk, outcome.kept.value_sha256))
        if value is None or value_sha256(value) != outcome.kept.value_sha256:
            # A damaged store: no ack can say what is kept, so the entry fails (and, failing
            # again, becomes a dead letter an admin is alerted to) rather than ack a guess.
            raise DamagedAnswer(*pk)
        outcomes[i][j] = outcome._replace(current_value=value)


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
    """One stored edit of an answer, as it arrived (the version: the kept one if accepted,
    the sent one if superseded)."""

    quiz_code: str
    value: str
    version: int
    updated: str
    server_time: str
    result: str  # accepted | superseded
    late: bool
    device: str  # the id of the device that made it ("" if it sent none)


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

    async def sheet_version(self, candidate_id: str, exam_code: str) -> int:
        """The sheet's version (0 before its first save): how far a cached copy must reach."""
        row = await self.db.fetch_one(
            "SELECT version FROM answer_sheet WHERE candidate_id = ? AND exam_code = ?",
            (candidate_id, exam_code),
        )
        return 0 if row is None else int(row["version"])

    async def history(
        self, plan_id: str, candidate_id: str, exam_code: str, quiz_code: str | None
    ) -> list[HistoryEntry]:
        """Every stored edit of the exam's answers (or of one), oldest first."""
        sql = (
            "SELECT quiz_code, value, version, updated, server_time, result, late, device"
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
                r["device"],
            )
            for r in rows
        ]
