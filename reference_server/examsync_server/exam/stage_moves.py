"""Moving stage clocks: on time (the stage timer), by hand (admin), or by the examinee.

Every move is guarded by the stage it expects to leave, so a double move is impossible whether
two ticks, two clicks or two server processes race. See `stages.py` for the rules.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ..base.clock import iso, utc_now
from ..errors import ApiError, invalid_request
from ..store.clocks import Clocks
from ..store.plans import Row
from . import stages
from .live_state import LiveState
from .models import AdvanceRequest, parse
from .plan_status import Action, CandidateStatus, PlanStatus, allows, require
from .stage_clocks import StageClocks
from .stages import INDIVIDUAL, SIMULTANEOUS
from .transactions import transaction
from .views import Views


class StageMoves:
    def __init__(self, views: Views, live: LiveState) -> None:
        self.db = live.db
        self.plans = views.plans
        self.candidates = views.candidates
        self.views = views
        self.live = live
        self.stored_clocks = Clocks(self.db)
        self.stage_clocks = StageClocks(self.db)

    async def advance_plan(
        self, plan_id: str, expected_stage: str | None, at: datetime | None = None
    ) -> bool:
        """Move a simultaneous exam to its next stage, if it is still at `expected_stage`.

        The guard makes a double move impossible, whether two ticks or two processes race.
        """
        moment = at or utc_now()
        now = iso(utc_now())
        async with transaction(self.db) as tx:
            plan = await self.plans.get(tx, plan_id)
            if (
                not allows(plan["status"], Action.MOVE_STAGE)
                or plan["conduct_type"] != SIMULTANEOUS
                or plan["current_stage_id"] != expected_stage
            ):
                return False
            stage_rows = await self.plans.stages(plan_id, tx)
            clock = stages.enter(stage_rows, stages.next_index(stage_rows, expected_stage), moment)
            await self.stage_clocks.set_plan(tx, plan_id, clock, stage_rows, now)
            if clock.stage_id is None:
                await self.candidates.finish_working(
                    tx, plan_id, CandidateStatus.IN_PROGRESS, CandidateStatus.COMPLETED, now
                )
        await self.live.after_commit(self.live.plan_clock(plan_id, {}, clock, now))
        return True

    async def start_candidate(self, plan_id: str, candidate_id: str) -> dict[str, Any]:
        """A candidate starts: in an individual exam their own stage clock begins now."""
        moment = utc_now()
        now = iso(moment)
        async with transaction(self.db) as tx:
            plan = await self.plans.get(tx, plan_id)
            require(Action.START_EXAMINEE, plan_id, plan["status"])
            cand = await self.views.candidate_row(plan_id, candidate_id, tx)
            if plan["conduct_type"] == INDIVIDUAL and cand["status"] == CandidateStatus.READY:
                stage_rows = await self.plans.stages(plan_id, tx)
                clock = stages.enter(stage_rows, 0, moment)
                await self.stage_clocks.set_candidate(tx, cand, clock, stage_rows, now, start=True)
                started = True
            else:
                started = False
        if started:
            await self.live.after_commit(
                self.live.candidate_clock(candidate_id, CandidateStatus.IN_PROGRESS, clock)
            )
        return await self.views.candidate(plan_id, candidate_id)

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
        async with transaction(self.db) as tx:
            plan = await self.plans.get(tx, plan_id)
            cand = await self.views.candidate_row(plan_id, candidate_id, tx)
            if (
                not allows(plan["status"], Action.MOVE_STAGE)
                or plan["conduct_type"] != INDIVIDUAL
                or cand["status"] != CandidateStatus.IN_PROGRESS
                or cand["current_stage_id"] != expected_stage
            ):
                return False
            stage_rows = await self.plans.stages(plan_id, tx)
            clock = stages.enter(stage_rows, stages.next_index(stage_rows, expected_stage), moment)
            await self.stage_clocks.set_candidate(tx, cand, clock, stage_rows, now)
        await self.live.after_commit(
            self.live.candidate_clock(candidate_id, clock.candidate_status, clock, now)
        )
        return True

    async def advance_by_admin(self, plan_id: str, body: Any) -> dict[str, Any]:
        """An explicit move: `{}` moves a simultaneous plan, `{"candidateId"}` one examinee.

        `fromStage`, when given, must be the current stage: a repeated click moves once.
        """
        move = parse(AdvanceRequest, body)
        plan = await self._moving_plan(plan_id)
        if plan["conduct_type"] == SIMULTANEOUS:
            if move.candidateId is not None:
                raise invalid_request("a simultaneous exam moves as a whole; omit candidateId")
            current = self._expect(plan["current_stage_id"], move.fromStage)
            await self.advance_plan(plan_id, current)
            return await self.views.report(plan_id)
        if move.candidateId is None:
            raise invalid_request("an individual exam moves one examinee: give candidateId")
        return await self.advance_by_candidate(plan_id, move.candidateId, move.fromStage)

    async def advance_by_candidate(
        self, plan_id: str, candidate_id: str, from_stage: str | None = None
    ) -> dict[str, Any]:
        plan = await self._moving_plan(plan_id)
        if plan["conduct_type"] != INDIVIDUAL:
            raise ApiError(
                409, "plan_simultaneous", "in a simultaneous exam the whole plan moves together"
            )
        cand = await self.views.candidate_row(plan_id, candidate_id)
        if cand["status"] != CandidateStatus.IN_PROGRESS:
            raise ApiError(
                409,
                f"candidate_{cand['status']}",
                f"the examinee is {cand['status']}",
                {"status": cand["status"]},
            )
        current = self._expect(cand["current_stage_id"], from_stage)
        await self.advance_candidate(plan_id, candidate_id, current)
        return await self.views.candidate(plan_id, candidate_id)

    async def _moving_plan(self, plan_id: str) -> Row:
        """The plan, as committed, if its stages may move now; else the 409 of its status."""
        plan = await self.views.plan(plan_id)
        require(Action.MOVE_STAGE, plan_id, plan["status"])
        return plan

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
        moving = [s for s in PlanStatus if allows(s, Action.MOVE_STAGE)]
        moves = 0
        for status in moving:
            for row in await self.stored_clocks.due_plans(epoch, status, SIMULTANEOUS):
                # The next stage begins at the deadline, not at this (later) tick.
                at = datetime.fromtimestamp(row["stage_deadline"], tz=now.tzinfo)
                moves += await self.advance_plan(row["plan_id"], row["current_stage_id"], at)
        for status in moving:
            for row in await self.stored_clocks.due_candidates(
                epoch, CandidateStatus.IN_PROGRESS, status, INDIVIDUAL
            ):
                at = datetime.fromtimestamp(row["stage_deadline"], tz=now.tzinfo)
                moves += await self.advance_candidate(
                    row["plan_id"], row["candidate_id"], row["current_stage_id"], at
                )
        return moves
