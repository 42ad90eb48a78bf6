"""Examinee rows in SQLite: reads, status changes across a plan, what sign-in checks and the device
it makes active, the operator's list with credentials, the groups whose supervisors hear of an
examinee, and a supervisor's examinees with where each stands.

As in plans.py: methods that take a `tx` work inside the caller's transaction, the others read
what is committed, and statuses are the caller's values. A supervisor without a group
(`group_id` None) oversees the whole plan.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from .plans import Row, select
from .sqlite import Database, Tx


@dataclass(frozen=True, slots=True)
class Credential:
    """Who signs in (a candidate or a supervisor), and the secret they must present."""

    subject_id: str
    group_id: str | None
    secret: str


@dataclass(frozen=True, slots=True)
class Examinee:
    """One row of a supervisor's snapshot, as SQLite holds it."""

    candidate_id: str
    name: str
    group_id: str | None
    status: str
    current_stage: str | None  # the plan's clock in a simultaneous exam
    answered: int  # answers held
    last_save: str | None  # when the last save was committed
    active_device: str | None  # the device signed in last to take the exam
    active_since: str | None


class Candidates:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def find(self, plan_id: str, candidate_id: str, tx: Tx | None = None) -> Row | None:
        found = await select(
            self.db,
            tx,
            "SELECT * FROM exam_candidate WHERE plan_id = ? AND candidate_id = ?",
            (plan_id, candidate_id),
        )
        return found[0] if found else None

    async def ids(self, plan_id: str, group_id: str | None = None) -> list[str]:
        """The plan's examinees, or one group's (a supervisor's examinees)."""
        sql, params = _in_group(plan_id, group_id)
        found = await self.db.fetch_all(f"SELECT candidate_id FROM exam_candidate {sql}", params)
        return [r["candidate_id"] for r in found]

    # -- sign-in ----------------------------------------------------------------------------------

    async def by_auth_code(self, plan_id: str, candidate_id: str) -> Credential | None:
        """The candidate and their auth code (web login)."""
        return await self._credential(
            "SELECT candidate_id, group_id, candidate_auth_code FROM exam_candidate"
            " WHERE candidate_id = ? AND plan_id = ?",
            candidate_id,
            plan_id,
        )

    async def by_key(self, plan_id: str, key: str) -> Credential | None:
        """The candidate holding `key` (key login), with it as their secret."""
        return await self._credential(
            "SELECT candidate_id, group_id, access_key FROM exam_candidate"
            " WHERE access_key = ? AND plan_id = ?",
            key,
            plan_id,
        )

    async def supervisor(self, plan_id: str, supervisor_id: str) -> Credential | None:
        """A supervisor of the plan and their auth code."""
        return await self._credential(
            "SELECT supervisor_id, group_id, supervisor_auth_code FROM exam_supervisor"
            " WHERE supervisor_id = ? AND plan_id = ?",
            supervisor_id,
            plan_id,
        )

    async def _credential(self, sql: str, *params: str) -> Credential | None:
        row = await self.db.fetch_one(sql, params)
        return Credential(*row) if row is not None else None

    async def set_active_device(
        self, tx: Tx, plan_id: str, candidate_id: str, device_id: str, since: str
    ) -> None:
        """From `since` on, `device_id` is the candidate's active device (a takeover)."""
        await tx.execute(
            "UPDATE exam_candidate SET active_device = ?, active_since = ?"
            " WHERE plan_id = ? AND candidate_id = ?",
            (device_id, since, plan_id, candidate_id),
        )

    async def active_devices(self, plan_id: str) -> dict[str, tuple[str, str]]:
        """Candidate → (active device, since) for every candidate of the plan that has one."""
        rows = await self.db.fetch_all(
            "SELECT candidate_id, active_device, active_since FROM exam_candidate"
            " WHERE plan_id = ? AND active_device IS NOT NULL",
            (plan_id,),
        )
        return {r[0]: (r[1], r[2]) for r in rows}

    # -- writes across a plan, inside the caller's transaction ------------------------------------

    async def start_waiting(
        self, tx: Tx, plan_id: str, waiting: str, started: str, now: str
    ) -> None:
        """Every examinee still `waiting` is `started` as of now."""
        await tx.execute(
            "UPDATE exam_candidate SET status = ?, started_at = ? WHERE plan_id = ? AND status = ?",
            (started, now, plan_id, waiting),
        )

    async def finish_working(
        self, tx: Tx, plan_id: str, working: str, finished: str, now: str
    ) -> None:
        """Every examinee still `working` is `finished`, last active now."""
        await tx.execute(
            "UPDATE exam_candidate SET status = ?, last_active_time = ?"
            " WHERE plan_id = ? AND status = ?",
            (finished, now, plan_id, working),
        )

    async def finish_all(self, tx: Tx, plan_id: str, finished: str, now: str) -> None:
        """Every examinee is `finished`, last active now, their stage clocks stopped."""
        await tx.execute(
            "UPDATE exam_candidate SET status = ?, last_active_time = ?,"
            " stage_deadline = NULL WHERE plan_id = ?",
            (finished, now, plan_id),
        )

    # -- the operator's and the supervisors' views ---------------------------------------------

    async def credentials(self, plan_id: str) -> list[dict[str, Any]]:
        """Every candidate of the plan with their credentials, for the operator to hand out."""
        rows = await self.db.fetch_all(
            "SELECT candidate_id, candidate_name, group_id, candidate_auth_code, access_key,"
            " status, current_stage_id FROM exam_candidate WHERE plan_id = ?"
            " ORDER BY candidate_id",
            (plan_id,),
        )
        return [dict(r) for r in rows]

    async def groups(self, candidate_ids: Collection[str]) -> dict[tuple[str, str], str | None]:
        """(plan, candidate) → group of the candidates named, at least one (candidate ids are
        global: no plan is needed to find them)."""
        ids = sorted(candidate_ids)
        rows = await self.db.fetch_all(
            "SELECT plan_id, candidate_id, group_id FROM exam_candidate"
            f" WHERE candidate_id IN ({','.join('?' * len(ids))})",
            ids,
        )
        return {(r["plan_id"], r["candidate_id"]): r["group_id"] for r in rows}

    async def examinees(self, plan_id: str, group_id: str | None) -> list[Examinee]:
        """A supervisor's examinees: status, stage, answers held, last save."""
        sql, params = _in_group(plan_id, group_id, "c.")
        rows = await self.db.fetch_all(
            "SELECT c.candidate_id, c.candidate_name, c.group_id, c.status,"
            " CASE WHEN p.conduct_type = 'simultaneous' THEN p.current_stage_id"
            " ELSE c.current_stage_id END AS current_stage,"
            " (SELECT COUNT(*) FROM answer_latest a WHERE a.candidate_id = c.candidate_id"
            "  AND a.plan_id = c.plan_id) AS answered,"
            " (SELECT MAX(s.last_sync) FROM answer_sheet s WHERE s.candidate_id = c.candidate_id"
            "  AND s.plan_id = c.plan_id) AS last_save, c.active_device, c.active_since"
            f" FROM exam_candidate c JOIN exam_plan p ON p.plan_id = c.plan_id {sql}"
            " ORDER BY c.candidate_id",
            params,
        )
        return [
            Examinee(
                r["candidate_id"],
                r["candidate_name"],
                r["group_id"],
                r["status"],
                r["current_stage"],
                r["answered"],
                r["last_save"],
                r["active_device"],
                r["active_since"],
            )
            for r in rows
        ]


def _in_group(plan_id: str, group_id: str | None, prefix: str = "") -> tuple[str, list[str]]:
    """The WHERE clause for a supervisor's examinees: their group, or the whole plan."""
    if group_id is None:
        return f"WHERE {prefix}plan_id = ?", [plan_id]
    return f"WHERE {prefix}plan_id = ? AND {prefix}group_id = ?", [plan_id, group_id]
