"""Examinee rows in SQLite: reads, status changes across a plan, and what sign-in checks.

As in plans.py: methods that take a `tx` work inside the caller's transaction, the others read
what is committed, and statuses are the caller's values.
"""

from __future__ import annotations

from dataclasses import dataclass

from .plans import Row, select
from .sqlite import Database, Tx


@dataclass(frozen=True, slots=True)
class Credential:
    """Who signs in (a candidate or a supervisor), and the secret they must present."""

    subject_id: str
    group_id: str | None
    secret: str


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

    async def ids(self, plan_id: str) -> list[str]:
        found = await self.db.fetch_all(
            "SELECT candidate_id FROM exam_candidate WHERE plan_id = ?", (plan_id,)
        )
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
