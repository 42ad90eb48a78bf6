"""Plan rows in SQLite: import/replace, snapshots, status and package, counts, audit.

A plan's rows are exam_plan and, as imported with it, its stages, groups, candidates and
supervisors. Methods that take a `tx` work inside the caller's transaction, so that a caller
composes them into one; the others read what is committed. Statuses are the caller's values:
the store keeps and compares them, the exam room (exam/plan_status.py) knows what they mean.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..base.clock import iso
from .errors import Conflict, NotFound
from .sqlite import Database, Tx

if TYPE_CHECKING:
    from ..exam.models import PlanImport

Row = dict[str, Any]

PLAN_FLAGS = (
    "requires_supervisor",
    "enables_cheating_detection",
    "requires_camera",
    "enables_ai_monitoring",
    "enables_gaze_tracking",
    "allows_mobile_camera",
    "shuffle_questions",
    "shuffle_answers",
)


@dataclass(frozen=True, slots=True)
class PlanSnapshot:
    plan: Row
    stages: list[Row]
    groups: list[Row] = field(default_factory=list)
    candidates: list[Row] = field(default_factory=list)
    supervisors: list[Row] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class PlanCounts:
    candidates_by_status: dict[str, int]
    supervisors: int
    dead_letters: int  # not yet replayed


async def rows(conn: Tx, sql: str, params: Iterable[Any] = ()) -> list[Row]:
    async with conn.execute(sql, tuple(params)) as cursor:
        return [dict(r) for r in await cursor.fetchall()]


async def one(conn: Tx, sql: str, params: Iterable[Any] = ()) -> Row | None:
    found = await rows(conn, sql, params)
    return found[0] if found else None


async def select(db: Database, tx: Tx | None, sql: str, params: Iterable[Any] = ()) -> list[Row]:
    """Rows inside the caller's transaction (`tx`), else as committed (the reader)."""
    if tx is not None:
        return await rows(tx, sql, params)
    return [dict(r) for r in await db.fetch_all(sql, params)]


def marks(values: Collection[Any]) -> str:
    return ", ".join("?" for _ in values)


class Plans:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- reads ----------------------------------------------------------------------------------

    async def find(self, plan_id: str, tx: Tx | None = None) -> Row | None:
        found = await select(self.db, tx, "SELECT * FROM exam_plan WHERE plan_id = ?", (plan_id,))
        return found[0] if found else None

    async def get(self, tx: Tx, plan_id: str) -> Row:
        """The plan's row inside a transaction; NotFound when there is none."""
        plan = await self.find(plan_id, tx)
        if plan is None:
            raise NotFound("plan", plan_id=plan_id)
        return plan

    async def stages(self, plan_id: str, tx: Tx | None = None) -> list[Row]:
        return await select(
            self.db,
            tx,
            "SELECT * FROM exam_stage WHERE plan_id = ? ORDER BY stage_order",
            (plan_id,),
        )

    async def exam_codes(self, plan_id: str) -> set[str]:
        """The exam codes the plan's stages name."""
        found = await self.db.fetch_all(
            "SELECT exam_code FROM exam_stage WHERE plan_id = ? AND exam_code IS NOT NULL",
            (plan_id,),
        )
        return {r["exam_code"] for r in found}

    async def snapshot(self, tx: Tx, plan_id: str) -> PlanSnapshot:
        plan = await self.get(tx, plan_id)
        return PlanSnapshot(
            plan=plan,
            stages=await self.stages(plan_id, tx),
            groups=await rows(tx, "SELECT * FROM exam_group WHERE plan_id = ?", (plan_id,)),
            candidates=await rows(tx, "SELECT * FROM exam_candidate WHERE plan_id = ?", (plan_id,)),
            supervisors=await rows(
                tx, "SELECT * FROM exam_supervisor WHERE plan_id = ?", (plan_id,)
            ),
        )

    async def counts(self, plan_id: str) -> PlanCounts:
        by_status = await self.db.fetch_all(
            "SELECT status, COUNT(*) AS n FROM exam_candidate WHERE plan_id = ? GROUP BY status",
            (plan_id,),
        )
        supervisors = await self.db.fetch_one(
            "SELECT COUNT(*) FROM exam_supervisor WHERE plan_id = ?", (plan_id,)
        )
        dead = await self.db.fetch_one(
            "SELECT COUNT(*) FROM dead_letter WHERE plan_id = ? AND replayed_at IS NULL",
            (plan_id,),
        )
        return PlanCounts(
            {r["status"]: r["n"] for r in by_status},
            int(supervisors[0]) if supervisors else 0,
            int(dead[0]) if dead else 0,
        )

    async def with_status(
        self, statuses: Collection[str], ended: str, ended_after: str
    ) -> list[tuple[str, str]]:
        """(plan_id, status) of the plans in one of `statuses`, or `ended` after `ended_after`."""
        found = await self.db.fetch_all(
            f"SELECT plan_id, status FROM exam_plan WHERE status IN ({marks(statuses)})"
            " OR (status = ? AND ended_at > ?)",
            (*statuses, ended, ended_after),
        )
        return [(r["plan_id"], r["status"]) for r in found]

    # -- writes, inside the caller's transaction ------------------------------------------------

    async def set_status(self, tx: Tx, plan_id: str, status: str, now: str) -> None:
        await tx.execute(
            "UPDATE exam_plan SET status = ?, updated_at = ? WHERE plan_id = ?",
            (status, now, plan_id),
        )

    async def set_started(self, tx: Tx, plan_id: str, status: str, now: str) -> None:
        await tx.execute(
            "UPDATE exam_plan SET status = ?, started_at = ?, updated_at = ? WHERE plan_id = ?",
            (status, now, now, plan_id),
        )

    async def set_ended(self, tx: Tx, plan_id: str, status: str, now: str) -> None:
        """Ended now: the plan's stage clock stops with it."""
        await tx.execute(
            "UPDATE exam_plan SET status = ?, ended_at = ?, stage_deadline = NULL,"
            " updated_at = ? WHERE plan_id = ?",
            (status, now, now, plan_id),
        )

    async def set_package(
        self, tx: Tx, plan_id: str, sha256: str, size: int, status: str, now: str
    ) -> None:
        await tx.execute(
            "UPDATE exam_plan SET package_sha256 = ?, package_size = ?, status = ?,"
            " updated_at = ? WHERE plan_id = ?",
            (sha256, size, status, now, plan_id),
        )

    async def audit(
        self, tx: Tx, action: str, plan_id: str | None, at: str, **details: Any
    ) -> None:
        await tx.execute(
            "INSERT INTO admin_audit (at, action, plan_id, details) VALUES (?, ?, ?, ?)",
            (at, action, plan_id, json.dumps(details, ensure_ascii=False, sort_keys=True)),
        )

    async def replace(
        self,
        tx: Tx,
        plan_id: str,
        data: PlanImport,
        status: str,
        now: str,
        old: PlanSnapshot | None,
    ) -> None:
        """Create or replace a plan with all its rows, the plan then `status`; `old` is the
        previous version's snapshot (read in the same transaction), None for a new plan.

        Ids owned by another plan are refused (Conflict), and so is what only the insert sees:
        a key this plan already issued (kept on replace) given to another of its candidates.
        """
        await _refuse_foreign_ids(tx, plan_id, data)
        try:
            await _write(tx, plan_id, data, status, now, old)
        except sqlite3.IntegrityError as exc:
            column = str(exc).rpartition(".")[2]
            raise Conflict(column, [], f"{column} is already in use") from None  # keys: secrets


async def _write(
    conn: Tx, plan_id: str, data: PlanImport, status: str, now: str, old: PlanSnapshot | None
) -> None:
    if old is not None:
        for table in ("exam_candidate", "exam_supervisor", "exam_group", "exam_stage"):
            await conn.execute(f"DELETE FROM {table} WHERE plan_id = ?", (plan_id,))

    p = data.exam_plan
    values = {
        "plan_id": plan_id,
        "exam_name": p.exam_name,
        "start_datetime": iso(p.start_datetime),
        "end_datetime": iso(p.end_datetime),
        "login_method": p.login_method,
        "conduct_type": p.conduct_type,
        "device_policy": p.device_policy,
        "camera_capture_interval": p.camera_capture_interval,
        **{flag: int(getattr(p, flag)) for flag in PLAN_FLAGS},
        "status": status,
        "updated_at": now,
    }
    columns = ", ".join(values)
    updates = ", ".join(f"{c} = excluded.{c}" for c in values if c != "plan_id")
    await conn.execute(
        f"INSERT INTO exam_plan ({columns}, created_at) VALUES ({marks(values)}, ?) "
        f"ON CONFLICT (plan_id) DO UPDATE SET {updates}",
        (*values.values(), now),
    )
    await conn.executemany(
        "INSERT INTO exam_stage (plan_id, stage_id, stage_order, stage_name, time_limit_seconds,"
        " auto_move_enabled, exam_code, allocated_exam_time) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                plan_id,
                s.stage_id,
                i,
                s.stage_name,
                s.time_limit_seconds,
                int(s.auto_move_enabled),
                s.exam_code,
                s.allocated_exam_time,
            )
            for i, s in enumerate(data.stages)
        ],
    )
    await conn.executemany(
        "INSERT INTO exam_group (group_id, plan_id, group_name, group_description,"
        " start_datetime, end_datetime) VALUES (?, ?, ?, ?, ?, ?)",
        [
            (
                g.group_id,
                plan_id,
                g.group_name,
                g.group_description,
                iso(g.start_datetime) if g.start_datetime else None,
                iso(g.end_datetime) if g.end_datetime else None,
            )
            for g in data.groups
        ],
    )
    await conn.executemany(
        "INSERT INTO exam_candidate (candidate_id, plan_id, candidate_name, candidate_auth_code,"
        " grade_level, email_address, additional_info, group_id, temp_answer_file_path,"
        " final_answer_file_path, capture_file_path, access_key)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                c.candidate_id,
                plan_id,
                c.candidate_name,
                c.candidate_auth_code,
                c.grade_level,
                c.email_address,
                json.dumps(c.additional_info, ensure_ascii=False)
                if c.additional_info is not None
                else None,
                c.group_id,
                c.temp_answer_file_path or f"/temp/{plan_id}/{c.candidate_id}",
                c.final_answer_file_path or f"/final/{plan_id}/{c.candidate_id}",
                c.capture_file_path or f"/capture/{plan_id}/{c.candidate_id}",
                c.access_key or _keep_key(old, c.candidate_id) or secrets.token_urlsafe(12),
            )
            for c in data.candidates
        ],
    )
    await conn.executemany(
        "INSERT INTO exam_supervisor (supervisor_id, plan_id, supervisor_name, group_id,"
        " supervisor_auth_code) VALUES (?, ?, ?, ?, ?)",
        [
            (s.supervisor_id, plan_id, s.supervisor_name, s.group_id, s.supervisor_auth_code)
            for s in data.supervisors
        ],
    )


def _keep_key(old: PlanSnapshot | None, candidate_id: str) -> str | None:
    """A replaced plan keeps the keys it already issued, so handed-out keys stay valid."""
    if old is None:
        return None
    for cand in old.candidates:
        if cand["candidate_id"] == candidate_id:
            return str(cand["access_key"])
    return None


async def _refuse_foreign_ids(conn: Tx, plan_id: str, data: PlanImport) -> None:
    checks: Sequence[tuple[str, str, list[str]]] = (
        ("exam_candidate", "candidate_id", [c.candidate_id for c in data.candidates]),
        ("exam_supervisor", "supervisor_id", [s.supervisor_id for s in data.supervisors]),
        ("exam_group", "group_id", [g.group_id for g in data.groups]),
        ("exam_candidate", "access_key", [c.access_key for c in data.candidates if c.access_key]),
    )
    for table, column, ids in checks:
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            taken = await rows(
                conn,
                f"SELECT {column} AS id, plan_id FROM {table}"
                f" WHERE {column} IN ({marks(chunk)}) AND plan_id != ?",
                (*chunk, plan_id),
            )
            if taken:
                # Keys are secrets: name the field, never echo the values.
                shown = [] if column == "access_key" else [t["id"] for t in taken][:20]
                raise Conflict(column, shown, f"{column} already belongs to another plan")
