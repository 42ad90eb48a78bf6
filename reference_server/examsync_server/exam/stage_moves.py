"""Moving stage clocks: on time (the stage timer), by hand (admin), or by the examinee.

Every move is guarded by the stage it expects to leave, so a double move is impossible whether
two ticks, two clicks or two server processes race. See `stages.py` for the rules.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

import aiosqlite

from examsync.frames import stage_changed_message

from ..base.clock import iso, utc_now
from ..errors import ApiError, invalid_request
from ..store import keys, outbox, plans
from . import stages
from .models import AdvanceRequest, parse
from .plan_status import state_error

if TYPE_CHECKING:
    from .lifecycle import Lifecycle


class StageMoves:
    def __init__(self, lifecycle: Lifecycle) -> None:
        self.lifecycle = lifecycle
        self.db = lifecycle.db
        self.state = lifecycle.state

    async def advance_plan(
        self, plan_id: str, expected_stage: str | None, at: datetime | None = None
    ) -> bool:
        """Move a simultaneous exam to its next stage, if it is still at `expected_stage`.

        The guard makes a double move impossible, whether two ticks or two processes race.
        """
        moment = at or utc_now()
        now = iso(utc_now())
        async with self.db.transaction() as conn:
            plan = await plans.get_plan(conn, plan_id)
            if (
                plan["status"] != "in_progress"
                or plan["conduct_type"] != "simultaneous"
                or plan["current_stage_id"] != expected_stage
            ):
                return False
            stage_rows = await plans.get_stages(conn, plan_id)
            clock = stages.enter(stage_rows, stages.next_index(stage_rows, expected_stage), moment)
            await self.set_plan_clock(conn, plan_id, clock, stage_rows, now)
            if clock.stage_id is None:
                await conn.execute(
                    "UPDATE exam_candidate SET status = 'completed', last_active_time = ?"
                    " WHERE plan_id = ? AND status = 'in_progress'",
                    (now, plan_id),
                )
        await self.lifecycle.after_commit(self.sync_plan_clock(plan_id, {}, clock, now))
        return True

    async def start_candidate(self, plan_id: str, candidate_id: str) -> dict[str, Any]:
        """A candidate starts: in an individual exam their own stage clock begins now."""
        moment = utc_now()
        now = iso(moment)
        async with self.db.transaction() as conn:
            plan = await plans.get_plan(conn, plan_id)
            if plan["status"] != "in_progress":
                raise state_error(plan, "start an examinee of")
            cand = await self._candidate(conn, plan_id, candidate_id)
            if plan["conduct_type"] == "individual" and cand["status"] == "ready":
                stage_rows = await plans.get_stages(conn, plan_id)
                clock = stages.enter(stage_rows, 0, moment)
                await self._set_candidate_clock(conn, cand, clock, stage_rows, now, start=True)
                started = True
            else:
                started = False
        if started:
            await self.lifecycle.after_commit(
                self._sync_candidate(candidate_id, "in_progress", clock)
            )
        return await self.lifecycle.candidate_view(plan_id, candidate_id)

    async def advance_candidate(
        self,
        plan_id: str,
        candidate_id: str,
        expected_stage: str | None,
        at: datetime | None = None,
    ) -> bool:
        """Move one examinee of an individual exam to their next stage (guarded as above)."""
        moment = at or utc_now()
        now = iso(utc_now())
        async with self.db.transaction() as conn:
            plan = await plans.get_plan(conn, plan_id)
            cand = await self._candidate(conn, plan_id, candidate_id)
            if (
                plan["status"] != "in_progress"
                or plan["conduct_type"] != "individual"
                or cand["status"] != "in_progress"
                or cand["current_stage_id"] != expected_stage
            ):
                return False
            stage_rows = await plans.get_stages(conn, plan_id)
            clock = stages.enter(stage_rows, stages.next_index(stage_rows, expected_stage), moment)
            await self._set_candidate_clock(conn, cand, clock, stage_rows, now)
        status = "in_progress" if clock.stage_id else "completed"
        await self.lifecycle.after_commit(self._sync_candidate(candidate_id, status, clock, now))
        return True

    async def advance_by_admin(self, plan_id: str, body: Any) -> dict[str, Any]:
        """An explicit move: `{}` moves a simultaneous plan, `{"candidateId"}` one examinee.

        `fromStage`, when given, must be the current stage: a repeated click moves once.
        """
        move = parse(AdvanceRequest, body)
        plan = await self.lifecycle.get_plan(plan_id)
        if plan["status"] != "in_progress":
            raise state_error(plan, "move the stage of")
        if plan["conduct_type"] == "simultaneous":
            if move.candidateId is not None:
                raise invalid_request("a simultaneous exam moves as a whole; omit candidateId")
            current = self._expect(plan["current_stage_id"], move.fromStage)
            await self.advance_plan(plan_id, current)
            return await self.lifecycle.status(plan_id)
        if move.candidateId is None:
            raise invalid_request("an individual exam moves one examinee: give candidateId")
        return await self.advance_by_candidate(plan_id, move.candidateId, move.fromStage)

    async def advance_by_candidate(
        self, plan_id: str, candidate_id: str, from_stage: str | None = None
    ) -> dict[str, Any]:
        plan = await self.lifecycle.get_plan(plan_id)
        if plan["status"] != "in_progress":
            raise state_error(plan, "move the stage of")
        if plan["conduct_type"] != "individual":
            raise ApiError(
                409, "plan_simultaneous", "in a simultaneous exam the whole plan moves together"
            )
        cand = await self._candidate(None, plan_id, candidate_id)
        if cand["status"] != "in_progress":
            raise ApiError(
                409,
                f"candidate_{cand['status']}",
                f"the examinee is {cand['status']}",
                {"status": cand["status"]},
            )
        current = self._expect(cand["current_stage_id"], from_stage)
        await self.advance_candidate(plan_id, candidate_id, current)
        return await self.lifecycle.candidate_view(plan_id, candidate_id)

    @staticmethod
    def _expect(current: str | None, from_stage: str | None) -> str:
        if current is None:
            raise ApiError(409, "no_next_stage", "every stage is already over")
        if from_stage is not None and from_stage != current:
            raise ApiError(
                409, "stage_changed", "the stage has already moved", {"currentStage": current}
            )
        return current

    async def due_moves(self, now: datetime) -> int:
        """Advance every stage clock whose auto-moving stage has run out; returns moves made."""
        epoch = now.timestamp()
        moves = 0
        for row in await self.db.fetch_all(
            "SELECT p.plan_id, p.current_stage_id, p.stage_deadline FROM exam_plan p"
            " JOIN exam_stage s ON s.plan_id = p.plan_id AND s.stage_id = p.current_stage_id"
            " WHERE p.status = 'in_progress' AND p.conduct_type = 'simultaneous'"
            " AND p.stage_deadline <= ? AND s.auto_move_enabled = 1",
            (epoch,),
        ):
            # The next stage begins at the deadline, not at this (later) tick.
            at = datetime.fromtimestamp(row["stage_deadline"], tz=now.tzinfo)
            moves += await self.advance_plan(row["plan_id"], row["current_stage_id"], at)
        for row in await self.db.fetch_all(
            "SELECT c.plan_id, c.candidate_id, c.current_stage_id, c.stage_deadline"
            " FROM exam_candidate c"
            " JOIN exam_stage s ON s.plan_id = c.plan_id AND s.stage_id = c.current_stage_id"
            " JOIN exam_plan p ON p.plan_id = c.plan_id"
            " WHERE c.stage_deadline <= ? AND c.status = 'in_progress'"
            " AND s.auto_move_enabled = 1 AND p.status = 'in_progress'"
            " AND p.conduct_type = 'individual' LIMIT 1000",
            (epoch,),
        ):
            at = datetime.fromtimestamp(row["stage_deadline"], tz=now.tzinfo)
            moves += await self.advance_candidate(
                row["plan_id"], row["candidate_id"], row["current_stage_id"], at
            )
        return moves

    # -- reading --------------------------------------------------------------------------------

    async def _candidate(
        self, conn: aiosqlite.Connection | None, plan_id: str, candidate_id: str
    ) -> dict[str, Any]:
        """One examinee's row, inside the caller's transaction or (conn None) as committed."""
        sql = "SELECT * FROM exam_candidate WHERE plan_id = ? AND candidate_id = ?"
        if conn is None:
            row = await self.db.fetch_one(sql, (plan_id, candidate_id))
            cand = dict(row) if row is not None else None
        else:
            cand = await plans.one(conn, sql, (plan_id, candidate_id))
        if cand is None:
            raise ApiError(404, "candidate_not_found", "candidate not found")
        return cand

    async def set_plan_clock(
        self,
        conn: aiosqlite.Connection,
        plan_id: str,
        clock: stages.StageClock,
        stage_rows: list[dict[str, Any]],
        now: str,
    ) -> None:
        await conn.execute(
            "UPDATE exam_plan SET current_stage_id = ?, stage_started_at = ?, stage_deadline = ?,"
            " updated_at = ? WHERE plan_id = ?",
            (clock.stage_id, clock.started_at, clock.deadline_epoch, now, plan_id),
        )
        await conn.execute(
            "UPDATE exam_candidate SET current_stage_id = ? WHERE plan_id = ?",
            (clock.stage_id, plan_id),
        )
        await self._announce_stage(conn, plan_id, None, None, clock, stage_rows, now)

    async def _set_candidate_clock(
        self,
        conn: aiosqlite.Connection,
        cand: dict[str, Any],
        clock: stages.StageClock,
        stage_rows: list[dict[str, Any]],
        now: str,
        start: bool = False,
    ) -> None:
        status = "in_progress" if clock.stage_id else "completed"
        await conn.execute(
            "UPDATE exam_candidate SET status = ?, current_stage_id = ?, stage_started_at = ?,"
            " stage_deadline = ?, started_at = COALESCE(started_at, ?), last_active_time = ?"
            " WHERE candidate_id = ?",
            (
                status,
                clock.stage_id,
                clock.started_at,
                clock.deadline_epoch,
                now if start else None,
                now,
                cand["candidate_id"],
            ),
        )
        await self._announce_stage(
            conn, cand["plan_id"], cand["candidate_id"], cand["group_id"], clock, stage_rows, now
        )

    async def _announce_stage(
        self,
        conn: aiosqlite.Connection,
        plan_id: str,
        candidate_id: str | None,
        group_id: str | None,
        clock: stages.StageClock,
        stage_rows: list[dict[str, Any]],
        now: str,
    ) -> None:
        message = stage_changed_message(plan_id, clock.as_event(stage_rows), now, candidate_id)
        await outbox.add(
            conn,
            keys.SOCKET_STREAM,
            {
                "type": "stage_changed",
                "planId": plan_id,
                "candidateId": candidate_id or "",
                "groupId": group_id or "",
                "data": json.dumps(message, ensure_ascii=False),
            },
            now,
        )

    async def sync_plan_clock(
        self, plan_id: str, fields: dict[str, Any], clock: stages.StageClock | None, now: str
    ) -> None:
        if clock is not None:
            fields = {**fields, "current_stage": clock.stage_id}
        await self.state.set_plan_fields(plan_id, fields)
        if clock is not None:
            ids = [
                r["candidate_id"]
                for r in await self.db.fetch_all(
                    "SELECT candidate_id FROM exam_candidate WHERE plan_id = ?", (plan_id,)
                )
            ]
            cand_fields: dict[str, Any] = {"current_stage": clock.stage_id}
            cand_fields["status"] = "in_progress" if clock.stage_id else "completed"
            if clock.stage_id is None:
                cand_fields["last_active_time"] = now
            await self.state.set_candidates(ids, cand_fields)
        await outbox.relay(self.db, self.lifecycle.redis)

    async def _sync_candidate(
        self, candidate_id: str, status: str, clock: stages.StageClock, now: str | None = None
    ) -> None:
        fields: dict[str, Any] = {"status": status, "current_stage": clock.stage_id}
        if now is not None:
            fields["last_active_time"] = now
        await self.state.set_candidates([candidate_id], fields)
        await outbox.relay(self.db, self.lifecycle.redis)
