"""Plan rows in SQLite: import/replace, snapshots, status changes, stage clocks, audit.

Functions take an open connection so that a caller composes them inside one transaction.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiosqlite

from ..base.clock import iso
from ..errors import ApiError, not_found

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


async def rows(conn: aiosqlite.Connection, sql: str, params: Iterable[Any] = ()) -> list[Row]:
    async with conn.execute(sql, tuple(params)) as cursor:
        return [dict(r) for r in await cursor.fetchall()]


async def one(conn: aiosqlite.Connection, sql: str, params: Iterable[Any] = ()) -> Row | None:
    found = await rows(conn, sql, params)
    return found[0] if found else None


async def get_plan(conn: aiosqlite.Connection, plan_id: str) -> Row:
    plan = await one(conn, "SELECT * FROM exam_plan WHERE plan_id = ?", (plan_id,))
    if plan is None:
        raise not_found("plan", plan_id=plan_id)
    return plan


async def get_stages(conn: aiosqlite.Connection, plan_id: str) -> list[Row]:
    return await rows(
        conn, "SELECT * FROM exam_stage WHERE plan_id = ? ORDER BY stage_order", (plan_id,)
    )


async def snapshot(conn: aiosqlite.Connection, plan_id: str) -> PlanSnapshot:
    plan = await get_plan(conn, plan_id)
    return PlanSnapshot(
        plan=plan,
        stages=await get_stages(conn, plan_id),
        groups=await rows(conn, "SELECT * FROM exam_group WHERE plan_id = ?", (plan_id,)),
        candidates=await rows(conn, "SELECT * FROM exam_candidate WHERE plan_id = ?", (plan_id,)),
        supervisors=await rows(conn, "SELECT * FROM exam_supervisor WHERE plan_id = ?", (plan_id,)),
    )


async def audit(
    conn: aiosqlite.Connection, action: str, plan_id: str | None, at: str, **details: Any
) -> None:
    await conn.execute(
        "INSERT INTO admin_audit (at, action, plan_id, details) VALUES (?, ?, ?, ?)",
        (at, action, plan_id, json.dumps(details, ensure_ascii=False, sort_keys=True)),
    )


async def replace_plan(
    conn: aiosqlite.Connection, plan_id: str, data: PlanImport, now: str
) -> PlanSnapshot | None:
    """Create or replace a plan with all its rows; returns the previous version's snapshot.

    A plan may be replaced until it starts; replacing a prepared plan sends it back to
    `created`, so it must be prepared again. Ids owned by another plan are refused.
    """
    previous = await one(conn, "SELECT * FROM exam_plan WHERE plan_id = ?", (plan_id,))
    old: PlanSnapshot | None = None
    if previous is not None:
        if previous["status"] not in ("created", "ready"):
            raise ApiError(
                409,
                "plan_locked",
                f"plan {plan_id} is {previous['status']}; it can no longer be replaced",
                {"plan_id": plan_id, "status": previous["status"]},
            )
        old = await snapshot(conn, plan_id)
    await _refuse_foreign_ids(conn, plan_id, data)
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
        "camera_capture_interval": p.camera_capture_interval,
        **{flag: int(getattr(p, flag)) for flag in PLAN_FLAGS},
        "status": "created",
        "updated_at": now,
    }
    columns = ", ".join(values)
    marks = ", ".join("?" for _ in values)
    updates = ", ".join(f"{c} = excluded.{c}" for c in values if c != "plan_id")
    await conn.execute(
        f"INSERT INTO exam_plan ({columns}, created_at) VALUES ({marks}, ?) "
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
    return old


def _keep_key(old: PlanSnapshot | None, candidate_id: str) -> str | None:
    """A replaced plan keeps the keys it already issued, so handed-out keys stay valid."""
    if old is None:
        return None
    for cand in old.candidates:
        if cand["candidate_id"] == candidate_id:
            return str(cand["access_key"])
    return None


async def _refuse_foreign_ids(conn: aiosqlite.Connection, plan_id: str, data: PlanImport) -> None:
    checks: Sequence[tuple[str, str, list[str]]] = (
        ("exam_candidate", "candidate_id", [c.candidate_id for c in data.candidates]),
        ("exam_supervisor", "supervisor_id", [s.supervisor_id for s in data.supervisors]),
        ("exam_group", "group_id", [g.group_id for g in data.groups]),
        ("exam_candidate", "access_key", [c.access_key for c in data.candidates if c.access_key]),
    )
    for table, column, ids in checks:
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ", ".join("?" for _ in chunk)
            taken = await rows(
                conn,
                f"SELECT {column} AS id, plan_id FROM {table}"
                f" WHERE {column} IN ({marks}) AND plan_id != ?",
                (*chunk, plan_id),
            )
            if taken:
                # Keys are secrets: name the field, never echo the values.
                shown = [] if column == "access_key" else [t["id"] for t in taken][:20]
                raise ApiError(
                    409,
                    "id_conflict",
                    f"{column} already belongs to another plan",
                    {"field": column, "ids": shown},
                )
