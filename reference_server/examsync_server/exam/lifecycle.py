"""The exam lifecycle of seeds 000 and 001: import, package, prepare, start, stages, end.

Every change is one SQLite transaction (with the events it announces, in the outbox); Redis is
written after the commit, and a Redis failure there is reported as 503 with `committed: true`:
the stage worker's resync repairs Redis and relays the events once Redis is back.

    created ──prepare──▶ ready ──start──▶ in_progress ──end──▶ completed
       ▲                   │
       └──replace / new package (a prepared plan must be prepared again)
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from ..base.clock import iso, utc_now
from ..base.digests import verified_sha256
from ..config import Settings
from ..errors import ApiError, invalid_request
from ..store import keys, outbox, plans
from ..store.files import FileStore
from ..store.sqlite import Database
from ..store.state import RedisState
from . import packages, stages
from .models import PlanImport, parse
from .plan_status import state_error
from .stage_moves import StageMoves
from .views import deadline_iso, public_plan, public_stage

log = logging.getLogger(__name__)


@dataclass
class Lifecycle:
    settings: Settings
    db: Database
    redis: Redis
    files: FileStore

    def __post_init__(self) -> None:
        self.state = RedisState(self.redis)
        self.moves = StageMoves(self)

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
        try:
            async with self.db.transaction() as conn:
                old = await plans.replace_plan(conn, plan_id, data, now)
                await plans.audit(
                    conn,
                    "plan_replaced" if old else "plan_created",
                    plan_id,
                    now,
                    candidates=len(data.candidates),
                    stages=len(data.stages),
                )
        except sqlite3.IntegrityError as exc:
            # Rolled back. What the checks before the insert cannot see: a key this plan
            # already issued (kept on replace) given to another of its candidates.
            column = str(exc).rpartition(".")[2]
            raise ApiError(
                409,
                "id_conflict",
                f"{column} is already in use",
                {"field": column, "ids": []},  # never the values: keys are secrets
            ) from None
        if old is not None:
            await self.after_commit(
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
            "status": "created",
            "counts": {
                "stages": len(data.stages),
                "groups": len(data.groups),
                "candidates": len(data.candidates),
                "supervisors": len(data.supervisors),
            },
        }
        return summary, old is None

    async def upload_package(
        self, plan_id: str, data: bytes, declared_sha256: str | None
    ) -> dict[str, Any]:
        actual = verified_sha256(data, declared_sha256, "package")
        plan = await self.get_plan(plan_id)
        if plan["status"] not in ("created", "ready"):
            raise ApiError(
                409,
                "plan_locked",
                f"plan {plan_id} is {plan['status']}; its package can no longer change",
                {"plan_id": plan_id, "status": plan["status"]},
            )
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
        async with self.db.transaction() as conn:
            plan = await plans.get_plan(conn, plan_id)
            if plan["status"] not in ("created", "ready"):
                raise state_error(plan, "replace the package of")
            await conn.execute(
                "UPDATE exam_plan SET package_sha256 = ?, package_size = ?, status = 'created',"
                " updated_at = ? WHERE plan_id = ?",
                (actual, len(data), now, plan_id),
            )
            await plans.audit(conn, "package_uploaded", plan_id, now, sha256=actual, size=len(data))
        if plan["status"] == "ready":
            await self.after_commit(self.state.set_plan_fields(plan_id, {"status": "created"}))
        return {
            "planId": plan_id,
            "sha256": actual,
            "size": len(data),
            "exams": [
                {"examCode": e.examCode, "questions": len(e.questions)} for e in manifest.exams
            ],
            "status": "created",
        }

    def package_bytes(self, plan: dict[str, Any]) -> bytes | None:
        if not plan["package_sha256"]:
            return None
        path = self.files.package_path(plan["plan_id"], plan["package_sha256"])
        return self.files.read(path) if path.exists() else None

    # -- seed 000: prepare --------------------------------------------------------------------

    async def prepare(self, plan_id: str) -> dict[str, Any]:
        plan = await self.get_plan(plan_id)
        if plan["status"] in ("in_progress", "completed"):
            raise state_error(plan, "prepare")
        await self._check_package(plan)
        now = iso(utc_now())
        async with self.db.transaction() as conn:
            plan = await plans.get_plan(conn, plan_id)
            if plan["status"] in ("in_progress", "completed"):
                raise state_error(plan, "prepare")
            await conn.execute(
                "UPDATE exam_plan SET status = 'ready', updated_at = ? WHERE plan_id = ?",
                (now, plan_id),
            )
            await plans.audit(conn, "plan_prepared", plan_id, now, again=plan["status"] == "ready")
            snap = await plans.snapshot(conn, plan_id)
        await self.after_commit(self.state.sync_plan(snap))
        return {
            "planId": plan_id,
            "status": "ready",
            "message": "prepared",
            "queues": [keys.plan_stream(plan_id, k) for k in keys.PLAN_STREAM_KINDS],
            "counts": {"candidates": len(snap.candidates), "stages": len(snap.stages)},
        }

    async def _check_package(self, plan: dict[str, Any]) -> None:
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
        stage_rows = await self.db.fetch_all(
            "SELECT exam_code FROM exam_stage WHERE plan_id = ? AND exam_code IS NOT NULL",
            (plan_id,),
        )
        missing = sorted({r["exam_code"] for r in stage_rows} - codes)
        if missing:
            raise ApiError(
                409,
                "package_mismatch",
                "the package has no exam for some stages' exam_code",
                {"missing_exam_codes": missing},
            )

    # -- start, stages, end -------------------------------------------------------------------

    async def start(self, plan_id: str) -> dict[str, Any]:
        moment = utc_now()
        now = iso(moment)
        async with self.db.transaction() as conn:
            plan = await plans.get_plan(conn, plan_id)
            if plan["status"] == "in_progress":
                return {"planId": plan_id, "status": "in_progress", "alreadyStarted": True}
            if plan["status"] != "ready":
                raise state_error(plan, "start")
            await conn.execute(
                "UPDATE exam_plan SET status = 'in_progress', started_at = ?,"
                " updated_at = ? WHERE plan_id = ?",
                (now, now, plan_id),
            )
            await plans.audit(conn, "plan_started", plan_id, now)
            clock = None
            if plan["conduct_type"] == "simultaneous":
                stage_rows = await plans.get_stages(conn, plan_id)
                clock = stages.enter(stage_rows, 0, moment)
                await self.moves.set_plan_clock(conn, plan_id, clock, stage_rows, now)
                await conn.execute(
                    "UPDATE exam_candidate SET status = 'in_progress', started_at = ?"
                    " WHERE plan_id = ? AND status = 'ready'",
                    (now, plan_id),
                )
        await self.after_commit(
            self.moves.sync_plan_clock(
                plan_id, {"status": "in_progress", "started_at": now}, clock, now
            )
        )
        return {
            "planId": plan_id,
            "status": "in_progress",
            "startedAt": now,
            "currentStage": clock.stage_id if clock else None,
        }

    async def end(self, plan_id: str) -> dict[str, Any]:
        now = iso(utc_now())
        async with self.db.transaction() as conn:
            plan = await plans.get_plan(conn, plan_id)
            if plan["status"] == "completed":
                return {
                    "planId": plan_id,
                    "status": "completed",
                    "endedAt": plan["ended_at"],
                    "alreadyCompleted": True,
                }
            if plan["status"] != "in_progress":
                raise state_error(plan, "end")
            await conn.execute(
                "UPDATE exam_plan SET status = 'completed', ended_at = ?, stage_deadline = NULL,"
                " updated_at = ? WHERE plan_id = ?",
                (now, now, plan_id),
            )
            await conn.execute(
                "UPDATE exam_candidate SET status = 'completed', last_active_time = ?,"
                " stage_deadline = NULL WHERE plan_id = ?",
                (now, plan_id),
            )
            # Seed 001 §3.2, to the letter.
            await outbox.add(
                conn,
                keys.EXAM_END_STREAM,
                {
                    "type": "exam_end",
                    "examId": plan_id,
                    "status": "completed",
                    "timestamp": now,
                },
                now,
            )
            await plans.audit(conn, "plan_ended", plan_id, now)

        async def propagate() -> None:
            await self.state.set_plan_fields(plan_id, {"status": "completed", "end_datetime": now})
            # exam_end first: every socket should hear it within a second, and the candidate
            # hashes (one per examinee, thousands) can follow it — read after it, too, so that
            # fetching 10,000 ids does not hold up the broadcast.
            await outbox.relay(self.db, self.redis)
            rows = await self.db.fetch_all(
                "SELECT candidate_id FROM exam_candidate WHERE plan_id = ?", (plan_id,)
            )
            await self.state.set_candidates(
                [r["candidate_id"] for r in rows], {"status": "completed", "last_active_time": now}
            )

        await self.after_commit(propagate())
        return {"planId": plan_id, "status": "completed", "endedAt": now}

    async def status(self, plan_id: str) -> dict[str, Any]:
        plan = await self.get_plan(plan_id)
        counts = {
            r["status"]: r["n"]
            for r in await self.db.fetch_all(
                "SELECT status, COUNT(*) AS n FROM exam_candidate"
                " WHERE plan_id = ? GROUP BY status",
                (plan_id,),
            )
        }
        stage_rows = await self.db.fetch_all(
            "SELECT * FROM exam_stage WHERE plan_id = ? ORDER BY stage_order", (plan_id,)
        )
        supervisors = await self.db.fetch_one(
            "SELECT COUNT(*) FROM exam_supervisor WHERE plan_id = ?", (plan_id,)
        )
        body: dict[str, Any] = {
            "planId": plan_id,
            "status": plan["status"],
            "examName": plan["exam_name"],
            "plan": public_plan(plan),
            "startedAt": plan["started_at"],
            "endedAt": plan["ended_at"],
            "currentStage": plan["current_stage_id"],
            "stageDeadline": deadline_iso(plan["stage_deadline"]),
            "stages": [public_stage(dict(s)) for s in stage_rows],
            "package": {"sha256": plan["package_sha256"], "size": plan["package_size"]}
            if plan["package_sha256"]
            else None,
            "counts": {
                "candidates": sum(counts.values()),
                "candidatesByStatus": counts,
                "supervisors": int(supervisors[0]) if supervisors else 0,
            },
            "outboxPending": await outbox.pending_count(self.db),
            "deadLetters": await self._dead_letter_count(plan_id),
        }
        try:
            body["redis"] = {"status": await self.state.plan_status(plan_id)}
            body["queues"] = {
                kind: await self.redis.xlen(keys.plan_stream(plan_id, kind))
                for kind in keys.PLAN_STREAM_KINDS
            }
        except RedisError as exc:
            body["redis"] = {"error": str(exc)}
        return body

    async def candidate_view(self, plan_id: str, candidate_id: str) -> dict[str, Any]:
        row = await self.db.fetch_one(
            "SELECT * FROM exam_candidate WHERE plan_id = ? AND candidate_id = ?",
            (plan_id, candidate_id),
        )
        if row is None:
            raise ApiError(404, "candidate_not_found", "candidate not found")
        plan = await self.get_plan(plan_id)
        simultaneous = plan["conduct_type"] == "simultaneous"
        source = plan if simultaneous else row
        stage_id = source["current_stage_id"]
        return {
            "candidateId": candidate_id,
            "status": row["status"],
            "planStatus": plan["status"],
            "currentStage": stage_id,
            "stageStartedAt": source["stage_started_at"],
            "stageDeadline": deadline_iso(source["stage_deadline"]),
            "serverTime": iso(utc_now()),
        }

    # -- resync ---------------------------------------------------------------------------------

    async def resync(self, plan_id: str) -> None:
        """Rewrite a plan's Redis keys from SQLite (after a Redis loss or a failed write).

        A start or an end committed (and written to Redis) by another request while this
        copied an older snapshot would be overwritten by it: the exam shown `ready` again, or
        `in_progress` after its end, until the next repair. So the status is read again after
        the copy, and a plan that moved on meanwhile is copied again.
        """
        while True:
            async with self.db.transaction() as conn:
                snap = await plans.snapshot(conn, plan_id)
            if snap.plan["status"] != "created":
                await self.state.sync_plan(snap)
            # Ends as soon as the plan held still during one copy: a plan moves a few times.
            if (await self.get_plan(plan_id))["status"] == snap.plan["status"]:
                return

    async def repair(self) -> int:
        """Resync every live plan whose Redis status differs from SQLite's; relay the outbox."""
        repaired = 0
        for row in await self.db.fetch_all(
            # Plans ended more than a week ago are history, not live state.
            "SELECT plan_id, status FROM exam_plan WHERE status IN ('ready', 'in_progress')"
            " OR (status = 'completed' AND ended_at > ?)",
            (iso(utc_now() - timedelta(days=7)),),
        ):
            if await self.state.plan_status(row["plan_id"]) != row["status"]:
                log.warning("Redis is behind SQLite for plan %s; resyncing", row["plan_id"])
                await self.resync(row["plan_id"])
                repaired += 1
        await outbox.relay(self.db, self.redis)
        return repaired

    # -- helpers --------------------------------------------------------------------------------

    async def _dead_letter_count(self, plan_id: str) -> int:
        row = await self.db.fetch_one(
            "SELECT COUNT(*) FROM dead_letter WHERE plan_id = ? AND replayed_at IS NULL",
            (plan_id,),
        )
        return int(row[0]) if row else 0

    async def get_plan(self, plan_id: str) -> dict[str, Any]:
        row = await self.db.fetch_one("SELECT * FROM exam_plan WHERE plan_id = ?", (plan_id,))
        if row is None:
            raise ApiError(404, "plan_not_found", f"no plan {plan_id}", {"plan_id": plan_id})
        return dict(row)

    async def after_commit(self, work: Any) -> None:
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
