"""Redis after the commit: the exam room's writes that mirror a committed change.

Every change is one SQLite transaction, with the events it announces in the outbox; Redis is
written after the commit, and a Redis failure there is answered 503 with `committed: true`:
the stage timer's repair rewrites Redis and relays the events once Redis is back.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from ..errors import ApiError
from ..store import outbox
from ..store.candidates import Candidates
from ..store.sqlite import Database
from ..store.state import RedisState
from .plan_status import CandidateStatus
from .stages import StageClock

log = logging.getLogger(__name__)


class LiveState:
    def __init__(
        self, db: Database, redis: Redis, state: RedisState, candidates: Candidates
    ) -> None:
        self.db = db
        self.redis = redis
        self.state = state
        self.candidates = candidates
        # Plans whose active-device records could not reach Redis: the repair copies them.
        self.devices_behind: set[str] = set()

    async def after_commit(self, work: Awaitable[None]) -> None:
        try:
            await work
        except RedisError as exc:
            log.warning("Redis write after commit failed: %s", exc)
            raise ApiError(
                503,
                "redis_unavailable",
                "saved, but Redis could not be updated; it will be repaired when Redis is back",
                {"committed": True},
            ) from None

    async def active_device(self, plan_id: str, candidate_id: str, device: str, since: str) -> None:
        """Mirror a committed active device for the save check. Best effort: a sign-in must
        work while Redis is down (the candidate's answers wait on the device meanwhile), so a
        failed write is left to the repair, and until then the check fails open."""
        try:
            await self.state.set_active_devices(plan_id, {candidate_id: (device, since)})
        except RedisError as exc:
            log.warning("active device of %s not written to Redis: %s", candidate_id, exc)
            self.devices_behind.add(plan_id)

    async def copy_active_devices(self) -> None:
        """The repair's part: every record whose write failed, from SQLite."""
        for plan_id in sorted(self.devices_behind):
            await self.state.set_active_devices(
                plan_id, await self.candidates.active_devices(plan_id)
            )
            self.devices_behind.discard(plan_id)

    async def relay(self) -> None:
        """Publish the outbox's events (the ones just committed among them)."""
        await outbox.relay(self.db, self.redis)

    async def plan_clock(
        self, plan_id: str, fields: dict[str, Any], clock: StageClock | None, now: str
    ) -> None:
        """The plan hash gets `fields` and, on a moved clock, every examinee its stage."""
        if clock is not None:
            fields = {**fields, "current_stage": clock.stage_id}
        await self.state.set_plan_fields(plan_id, fields)
        if clock is not None:
            ids = await self.candidates.ids(plan_id)
            cand_fields: dict[str, Any] = {"current_stage": clock.stage_id}
            cand_fields["status"] = clock.candidate_status
            if clock.stage_id is None:
                cand_fields["last_active_time"] = now
            await self.state.set_candidates(ids, cand_fields)
        await self.relay()

    async def candidate_clock(
        self,
        candidate_id: str,
        status: CandidateStatus,
        clock: StageClock,
        now: str | None = None,
    ) -> None:
        fields: dict[str, Any] = {"status": status, "current_stage": clock.stage_id}
        if now is not None:
            fields["last_active_time"] = now
        await self.state.set_candidates([candidate_id], fields)
        await self.relay()
