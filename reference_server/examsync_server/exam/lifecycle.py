"""The exam lifecycle of seeds 000 and 001: import, package, prepare, start, stages, end.

Which action a plan's status allows, and what it leads to, is plan_status.py's table. Every
change is one SQLite transaction (with the events it announces, in the outbox); Redis is
written after the commit (live_state.py), and a Redis failure there is reported as 503 with
`committed: true`: the stage worker's resync repairs Redis and relays the events once Redis is
back.

    created ──prepare──▶ ready ──start──▶ in_progress ──end──▶ completed
       ▲                   │
       └──replace / new package (a prepared plan must be prepared again)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from redis.asyncio import Redis

from ..base.clock import iso, utc_now
from ..base.digests import verified_sha256
from ..config import Settings
from ..errors import ApiError, invalid_request
from ..store import keys, outbox
from ..store import revocations as revocation_records
from ..store.candidates import Candidates
from ..store.files import FileStore
from ..store.plans import Plans, PlanSnapshot, Row
from ..store.revocations import Revocation
from ..store.sqlite import Database, DatabaseError
from ..store.state import RedisState
from . import packages, revocation, stages
from .live_state import LiveState
from .models import EndRequest, PlanImport, RevokeRequest, parse
from .plan_status import Action, CandidateStatus, PlanStatus, Repeat, require, transition
from .stage_clocks import StageClocks
from .transactions import transaction
from .views import Views

log = logging.getLogger(__name__)

# Plans whose Redis keys the repair keeps in line: from prepared until a week after the end.
_LIVE = (PlanStatus.READY, PlanStatus.IN_PROGRESS)
_ENDED_LIVE_FOR = timedelta(days=7)


async def _nobody_told(revocations: list[Revocation]) -> None:
    """The default `on_revoke`: a Lifecycle outside a Runtime has no sessions to refuse."""


@dataclass
class Lifecycle:
    settings: Settings
    db: Database
    redis: Redis
    files: FileStore
    # After a commit that revoked sessions: refuse them here and tell the other processes
    # (access/revocations.py, wired by the runtime).
    on_revoke: Callable[[list[Revocation]], Awaitable[None]] = field(default=_nobody_told)

    def __post_init__(self) -> None:
        self.state = RedisState(self.redis)
        self.plans = Plans(self.db)
        self.candidates = Candidates(self.db)
        self.views = Views(self.db, self.plans, self.candidates, self.state, self.redis)
        self.live = LiveState(self.db, self.redis, self.state, self.candidates)
        self.stage_clocks = StageClocks(self.db)

    # -- import and package -------------------------------------------------------------------

    async def import_plan(self, plan_id: str, body: Any) -> tuple[dict[str, Any], bool]:
        """Create or replace a plan; returns (summary, created)."""
        data = parse(PlanImport, body)
        if data.exam_plan.plan_id not in (None, plan_id):
            raise invalid_request(
                "exam_plan.plan_id differs from the plan id in the path",
                "exam_plan.plan_id",
                path=plan_id,
                body=data.exam_plan.plan_id,
            )
        now = iso(utc_now())
        to = PlanStatus.CREATED  # a new plan
        old: PlanSnapshot | None = None
        revoked: list[Revocation] = []
        async with transaction(self.db) as tx:
            previous = await self.plans.find(plan_id, tx)
            if previous is not None:
                to = transition(Action.REPLACE, plan_id, previous["status"])
                old = await self.plans.snapshot(tx, plan_id)
                revoked = revocation.replaced(old, data, time.time())
            await self.plans.replace(tx, plan_id, data, to, now, old)
            await revocation_records.record(tx, revoked, "plan_replaced", now)
            await self.plans.audit(
                tx,
                "plan_replaced" if old else "plan_created",
                plan_id,
                now,
                candidates=len(data.candidates),
                stages=len(data.stages),
                **({"revoked": revocation.summary(revoked)} if revoked else {}),
            )
        await self._revoked(revoked, "plan_replaced", now)
        if old is not None:
            await self.live.after_commit(
                self.state.forget_plan(
                    plan_id,
                    [s["stage_id"] for s in old.stages],
                    [c["candidate_id"] for c in old.candidates],
                    [s["supervisor_id"] for s in old.supervisors],
                    [g["group_id"] for g in old.groups],
                )
            )
        summary = {
            "planId": plan_id,
            "status": to,
            "counts": {
                "stages": len(data.stages),
                "groups": len(data.groups),
                "candidates": len(data.candidates),
                "supervisors": len(data.supervisors),
            },
            "revokedSessions": revocation.summary(revoked),
        }
        return summary, old is None

    async def upload_package(
        self, plan_id: str, data: bytes, declared_sha256: str | None
    ) -> dict[str, Any]:
        actual = verified_sha256(data, declared_sha256, "package")
        plan = await self.get_plan(plan_id)
        require(Action.UPLOAD_PACKAGE, plan_id, plan["status"])
        limits = packages.PackageLimits(
            self.settings.limits.max_package_members,
            self.settings.limits.max_package_unpacked_bytes,
        )
        manifest = await asyncio.to_thread(packages.validate_package, data, limits)
        # docs/package-format.md: checked at upload, and again at prepare (the plan may change)
        await self._check_exam_codes(plan_id, {e.examCode for e in manifest.exams})
        # Stored under its digest: the row switches to the new file in one commit, so a reader
        # never sees a half-written package or a row pointing at the wrong bytes.
        await asyncio.to_thread(self.files.put, self.files.package_path(plan_id, actual), data)
        now = iso(utc_now())
        async with transaction(self.db) as tx:
            plan = await self.plans.get(tx, plan_id)
            to = transition(Action.UPLOAD_PACKAGE, plan_id, plan["status"])
            await self.plans.set_package(tx, plan_id, actual, len(data), to, now)
            await self.plans.audit(
                tx, "package_uploaded", plan_id, now, sha256=actual, size=len(data)
            )
        if plan["status"] != to:
            await self.live.after_commit(self.state.set_plan_fields(plan_id, {"status": to}))
        return {
            "planId": plan_id,
            "sha256": actual,
            "size": len(data),
            "exams": [
                {"examCode": e.examCode, "questions": len(e.questions)} for e in manifest.exams
            ],
            "status": to,
        }

    def package_bytes(self, plan: Row) -> bytes | None:
        if not plan["package_sha256"]:
            return None
        path = self.files.package_path(plan["plan_id"], plan["package_sha256"])
        return self.files.read(path) if path.exists() else None

    # -- seed 000: prepare --------------------------------------------------------------------

    async def prepare(self, plan_id: str) -> dict[str, Any]:
        plan = await self.get_plan(plan_id)
        require(Action.PREPARE, plan_id, plan["status"])
        await self._check_package(plan)
        now = iso(utc_now())
        async with transaction(self.db) as tx:
            plan = await self.plans.get(tx, plan_id)
            to = transition(Action.PREPARE, plan_id, plan["status"])
            await self.plans.set_status(tx, plan_id, to, now)
            await self.plans.audit(tx, "plan_prepared", plan_id, now, again=plan["status"] == to)
            snap = await self.plans.snapshot(tx, plan_id)
        await self.live.after_commit(self.state.sync_plan(snap))
        return {
            "planId": plan_id,
            "status": to,
            "message": "prepared",
            "queues": [keys.plan_stream(plan_id, k) for k in keys.PLAN_STREAM_KINDS],
            "counts": {"candidates": len(snap.candidates), "stages": len(snap.stages)},
        }

    async def _check_package(self, plan: Row) -> None:
        data = await asyncio.to_thread(self.package_bytes, plan)
        if data is None:
            raise ApiError(
                409,
                "package_missing",
                "upload the exam package before preparing",
                {"plan_id": plan["plan_id"]},
            )
        manifest = packages.read_manifest(data)
        await self._check_exam_codes(plan["plan_id"], {e["examCode"] for e in manifest["exams"]})

    async def _check_exam_codes(self, plan_id: str, codes: set[str]) -> None:
        """Every stage's exam_code must name an exam of the package."""
        missing = sorted(await self.plans.exam_codes(plan_id) - codes)
        if missing:
            raise ApiError(
                409,
                "package_mismatch",
                "the package has no exam for some stages' exam_code",
                {"missing_exam_codes": missing},
            )

    # -- start, end -----------------------------------------------------------------------------

    async def start(self, plan_id: str) -> dict[str, Any]:
        moment = utc_now()
        now = iso(moment)
        async with transaction(self.db) as tx:
            plan = await self.plans.get(tx, plan_id)
            found = require(Action.START, plan_id, plan["status"])
            if isinstance(found, Repeat):
                return {"planId": plan_id, "status": plan["status"], found.flag: True}
            await self.plans.set_started(tx, plan_id, found.to, now)
            await self.plans.audit(tx, "plan_started", plan_id, now)
            clock = None
            if plan["conduct_type"] == stages.SIMULTANEOUS:
                stage_rows = await self.plans.stages(plan_id, tx)
                clock = stages.enter(stage_rows, 0, moment)
                await self.stage_clocks.set_plan(tx, plan_id, clock, stage_rows, now)
                await self.candidates.start_waiting(
                    tx, plan_id, CandidateStatus.READY, CandidateStatus.IN_PROGRESS, now
                )
        await self.live.after_commit(
            self.live.plan_clock(plan_id, {"status": found.to, "started_at": now}, clock, now)
        )
        return {
            "planId": plan_id,
            "status": found.to,
            "startedAt": now,
            "currentStage": clock.stage_id if clock else None,
        }

    async def end(self, plan_id: str, body: Any = None) -> dict[str, Any]:
        """End the exam; `{"revokeSessions": true}` also revokes every candidate's session
        (supervisors keep theirs, to watch the end through)."""
        options = parse(EndRequest, {} if body is None else body)
        now = iso(utc_now())
        revoked: list[Revocation] = []
        async with transaction(self.db) as tx:
            plan = await self.plans.get(tx, plan_id)
            found = require(Action.END, plan_id, plan["status"])
            if isinstance(found, Repeat):
                return {
                    "planId": plan_id,
                    "status": plan["status"],
                    "endedAt": plan["ended_at"],
                    found.flag: True,
                }
            await self.plans.set_ended(tx, plan_id, found.to, now)
            await self.candidates.finish_all(tx, plan_id, CandidateStatus.COMPLETED, now)
            # Seed 001 §3.2, to the letter.
            await outbox.add(
                tx,
                keys.EXAM_END_STREAM,
                {
                    "type": "exam_end",
                    "examId": plan_id,
                    "status": found.to,
                    "timestamp": now,
                },
                now,
            )
            if options.revokeSessions:
                revoked = [revocation.everyone_of(plan_id, revocation.CANDIDATE, time.time())]
                await revocation_records.record(tx, revoked, "plan_ended", now)
            await self.plans.audit(
                tx, "plan_ended", plan_id, now, revoke_sessions=options.revokeSessions
            )

        async def propagate() -> None:
            await self.state.set_plan_fields(plan_id, {"status": found.to, "end_datetime": now})
            # exam_end first, so every socket hears it within a second; the examinees' hashes
            # (thousands) follow, their ids read only after it so as not to hold it up.
            await self.live.relay()
            await self.state.set_candidates(
                await self.candidates.ids(plan_id),
                {"status": CandidateStatus.COMPLETED, "last_active_time": now},
            )

        try:
            await self.live.after_commit(propagate())
        finally:
            # After Redis says `completed`: a socket closed for the revocation is told of the
            # end first (sockets/server.py). Announced even when Redis failed (committed).
            await self._revoked(revoked, "plan_ended", now)
        return {
            "planId": plan_id,
            "status": found.to,
            "endedAt": now,
            "revokedSessions": revocation.summary(revoked),
        }

    # -- sessions -------------------------------------------------------------------------------

    async def revoke_sessions(self, plan_id: str, body: Any) -> dict[str, Any]:
        """The admin revokes named people's sessions, or the whole plan's, in any status."""
        request = parse(RevokeRequest, body)
        now = iso(utc_now())
        async with transaction(self.db) as tx:
            await self.plans.get(tx, plan_id)
            revoked = revocation.requested(plan_id, request, time.time())
            await revocation_records.record(tx, revoked, "admin", now)
            await self.plans.audit(
                tx, "sessions_revoked", plan_id, now, **revocation.summary(revoked)
            )
        await self._revoked(revoked, "admin", now)
        return {"planId": plan_id, "revokedAt": now, "revokedSessions": revocation.summary(revoked)}

    async def _revoked(self, revoked: list[Revocation], reason: str, at: str) -> None:
        """After the commit that revoked: the time taken again and written again (the later one
        is kept), then announced. A sign-in whose read came before the commit began before now,
        so its token is refused, however long the transaction took (docs/server.md)."""
        if not revoked:
            return
        revoked = revocation.restamped(revoked, time.time())
        try:
            async with self.db.transaction() as tx:
                await revocation_records.record(tx, revoked, reason, at)
        except DatabaseError as exc:  # refused here and announced all the same
            log.warning("revocation time not moved past the commit in SQLite: %s", exc)
        await self.on_revoke(revoked)

    # -- reads ----------------------------------------------------------------------------------

    async def get_plan(self, plan_id: str) -> Row:
        return await self.views.plan(plan_id)

    async def status(self, plan_id: str) -> dict[str, Any]:
        return await self.views.report(plan_id)

    async def candidate_view(self, plan_id: str, candidate_id: str) -> dict[str, Any]:
        return await self.views.candidate(plan_id, candidate_id)

    # -- resync ---------------------------------------------------------------------------------

    async def resync(self, plan_id: str) -> None:
        """Rewrite a plan's Redis keys from SQLite (after a Redis loss or a failed write).

        A start or an end committed (and written to Redis) by another request while this
        copied an older snapshot would be overwritten by it: the exam shown `ready` again, or
        `in_progress` after its end, until the next repair. So the status is read again after
        the copy, and a plan that moved on meanwhile is copied again.
        """
        while True:
            async with transaction(self.db) as tx:
                snap = await self.plans.snapshot(tx, plan_id)
            # A plan not yet prepared has no live keys to write.
            if snap.plan["status"] != PlanStatus.CREATED:
                await self.state.sync_plan(snap)
            # Ends as soon as the plan held still during one copy: a plan moves a few times.
            if (await self.get_plan(plan_id))["status"] == snap.plan["status"]:
                return

    async def repair(self) -> int:
        """Resync every live plan whose Redis status differs from SQLite's, copy the active
        devices whose write failed; relay the outbox."""
        repaired = 0
        since = iso(utc_now() - _ENDED_LIVE_FOR)
        for plan_id, status in await self.plans.with_status(_LIVE, PlanStatus.COMPLETED, since):
            if await self.state.plan_status(plan_id) != status:
                log.warning("Redis is behind SQLite for plan %s; resyncing", plan_id)
                await self.resync(plan_id)
                repaired += 1
        await self.live.copy_active_devices()
        await self.live.relay()
        return repaired
