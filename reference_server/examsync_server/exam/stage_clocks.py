"""Setting a stage clock inside the caller's transaction, with its `stage_changed` event.

The event goes to the outbox in the same transaction, so it is published (after the commit)
exactly when the move happened. Used by `start` (the first stage's clock) and by stage moves.
"""

from __future__ import annotations

import json

from examsync.frames import stage_changed_message

from ..store import keys, outbox
from ..store.clocks import Clocks
from ..store.plans import Row
from ..store.sqlite import Database, Tx
from .stages import StageClock


class StageClocks:
    def __init__(self, db: Database) -> None:
        self.clocks = Clocks(db)

    async def set_plan(
        self,
        tx: Tx,
        plan_id: str,
        clock: StageClock,
        stage_rows: list[Row],
        now: str,
    ) -> None:
        await self.clocks.set_plan(
            tx, plan_id, clock.stage_id, clock.started_at, clock.deadline_epoch, now
        )
        await self._announce(tx, plan_id, None, None, clock, stage_rows, now)

    async def set_candidate(
        self,
        tx: Tx,
        cand: Row,
        clock: StageClock,
        stage_rows: list[Row],
        now: str,
        start: bool = False,
    ) -> None:
        await self.clocks.set_candidate(
            tx,
            cand["candidate_id"],
            clock.candidate_status,
            clock.stage_id,
            clock.started_at,
            clock.deadline_epoch,
            now,
            first_start=now if start else None,
        )
        await self._announce(
            tx, cand["plan_id"], cand["candidate_id"], cand["group_id"], clock, stage_rows, now
        )

    async def _announce(
        self,
        tx: Tx,
        plan_id: str,
        candidate_id: str | None,
        group_id: str | None,
        clock: StageClock,
        stage_rows: list[Row],
        now: str,
    ) -> None:
        message = stage_changed_message(plan_id, clock.as_event(stage_rows), now, candidate_id)
        await outbox.add(
            tx,
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
