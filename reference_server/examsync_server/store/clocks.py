"""Stage clocks in SQLite: the plan's (a simultaneous exam) or each examinee's (individual).

A clock is the current stage, when it began and its deadline (seconds since the epoch, None
when untimed; stage None: past the last stage). Writes go inside the caller's transaction;
`due_*` read what is committed, for the stage timer.
"""

from __future__ import annotations

from .plans import Row
from .sqlite import Database, Tx


class Clocks:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def set_plan(
        self,
        tx: Tx,
        plan_id: str,
        stage_id: str | None,
        started_at: str | None,
        deadline: float | None,
        now: str,
    ) -> None:
        """The plan's clock; every examinee of the plan is at its stage."""
        await tx.execute(
            "UPDATE exam_plan SET current_stage_id = ?, stage_started_at = ?, stage_deadline = ?,"
            " updated_at = ? WHERE plan_id = ?",
            (stage_id, started_at, deadline, now, plan_id),
        )
        await tx.execute(
            "UPDATE exam_candidate SET current_stage_id = ? WHERE plan_id = ?",
            (stage_id, plan_id),
        )

    async def set_candidate(
        self,
        tx: Tx,
        candidate_id: str,
        status: str,
        stage_id: str | None,
        started_at: str | None,
        deadline: float | None,
        now: str,
        first_start: str | None = None,
    ) -> None:
        """One examinee's clock and status, active now; `first_start` sets their started_at
        unless they already have one."""
        await tx.execute(
            "UPDATE exam_candidate SET status = ?, current_stage_id = ?, stage_started_at = ?,"
            " stage_deadline = ?, started_at = COALESCE(started_at, ?), last_active_time = ?"
            " WHERE candidate_id = ?",
            (status, stage_id, started_at, deadline, first_start, now, candidate_id),
        )

    async def due_plans(self, epoch: float, plan_status: str, conduct_type: str) -> list[Row]:
        """Plans (`plan_id, current_stage_id, stage_deadline`) whose auto-moving stage is over."""
        found = await self.db.fetch_all(
            "SELECT p.plan_id, p.current_stage_id, p.stage_deadline FROM exam_plan p"
            " JOIN exam_stage s ON s.plan_id = p.plan_id AND s.stage_id = p.current_stage_id"
            " WHERE p.status = ? AND p.conduct_type = ?"
            " AND p.stage_deadline <= ? AND s.auto_move_enabled = 1",
            (plan_status, conduct_type, epoch),
        )
        return [dict(r) for r in found]

    async def due_candidates(
        self,
        epoch: float,
        candidate_status: str,
        plan_status: str,
        conduct_type: str,
        limit: int = 1000,
    ) -> list[Row]:
        """Examinees (`plan_id, candidate_id, current_stage_id, stage_deadline`) whose
        auto-moving stage is over, at most `limit`."""
        found = await self.db.fetch_all(
            "SELECT c.plan_id, c.candidate_id, c.current_stage_id, c.stage_deadline"
            " FROM exam_candidate c"
            " JOIN exam_stage s ON s.plan_id = c.plan_id AND s.stage_id = c.current_stage_id"
            " JOIN exam_plan p ON p.plan_id = c.plan_id"
            " WHERE c.stage_deadline <= ? AND c.status = ?"
            " AND s.auto_move_enabled = 1 AND p.status = ?"
            " AND p.conduct_type = ? LIMIT ?",
            (epoch, candidate_status, plan_status, conduct_type, limit),
        )
        return [dict(r) for r in found]
