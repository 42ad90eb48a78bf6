"""What the API shows of plans, stages and examinees: the public fields of each (pure), and
`Views`, the committed reads behind the plan report, an examinee's progress and sign-in."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from ..base.clock import iso, utc_now
from ..errors import ApiError
from ..store import keys, outbox
from ..store.candidates import Candidates
from ..store.plans import Plans, Row
from ..store.sqlite import Database, Tx
from ..store.state import RedisState
from . import stages


def deadline_iso(epoch: float | None) -> str | None:
    return iso(datetime.fromtimestamp(epoch, UTC)) if epoch is not None else None


def public_plan(plan: dict[str, Any]) -> dict[str, Any]:
    """The plan config a candidate's page needs (every seed 003 flag), no secrets."""
    return {
        "planId": plan["plan_id"],
        "examName": plan["exam_name"],
        "startDatetime": plan["start_datetime"],
        "endDatetime": plan["end_datetime"],
        "loginMethod": plan["login_method"],
        "conductType": plan["conduct_type"],
        "devicePolicy": plan["device_policy"],
        "requiresSupervisor": bool(plan["requires_supervisor"]),
        "enablesCheatingDetection": bool(plan["enables_cheating_detection"]),
        "requiresCamera": bool(plan["requires_camera"]),
        "cameraCaptureInterval": plan["camera_capture_interval"],
        "enablesAiMonitoring": bool(plan["enables_ai_monitoring"]),
        "enablesGazeTracking": bool(plan["enables_gaze_tracking"]),
        "allowsMobileCamera": bool(plan["allows_mobile_camera"]),
        "shuffleQuestions": bool(plan["shuffle_questions"]),
        "shuffleAnswers": bool(plan["shuffle_answers"]),
        "status": plan["status"],
    }


def public_stage(stage: dict[str, Any]) -> dict[str, Any]:
    return {
        "stageId": stage["stage_id"],
        "stageName": stage["stage_name"],
        "order": stage["stage_order"],
        "timeLimitSeconds": stage["time_limit_seconds"],
        "autoMoveEnabled": bool(stage["auto_move_enabled"]),
        "examCode": stage["exam_code"],
        "allocatedExamTime": stage["allocated_exam_time"],
        "durationSeconds": stages.duration(stage),
    }


class Views:
    def __init__(
        self,
        db: Database,
        plans: Plans,
        candidates: Candidates,
        state: RedisState,
        redis: Redis,
    ) -> None:
        self.db = db
        self.plans = plans
        self.candidates = candidates
        self.state = state
        self.redis = redis

    async def plan(self, plan_id: str) -> Row:
        """The plan's row as committed; 404 when there is none."""
        plan = await self.plans.find(plan_id)
        if plan is None:
            raise ApiError(404, "plan_not_found", f"no plan {plan_id}", {"plan_id": plan_id})
        return plan

    async def candidate_row(self, plan_id: str, candidate_id: str, tx: Tx | None = None) -> Row:
        """One examinee's row, inside the caller's transaction or (tx None) as committed."""
        row = await self.candidates.find(plan_id, candidate_id, tx)
        if row is None:
            raise ApiError(404, "candidate_not_found", "candidate not found")
        return row

    async def candidate(self, plan_id: str, candidate_id: str) -> dict[str, Any]:
        """An examinee's progress: their status, and the stage clock they follow."""
        row = await self.candidate_row(plan_id, candidate_id)
        plan = await self.plan(plan_id)
        simultaneous = plan["conduct_type"] == stages.SIMULTANEOUS
        source = plan if simultaneous else row
        return {
            "candidateId": candidate_id,
            "status": row["status"],
            "planStatus": plan["status"],
            "currentStage": source["current_stage_id"],
            "stageStartedAt": source["stage_started_at"],
            "stageDeadline": deadline_iso(source["stage_deadline"]),
            "serverTime": iso(utc_now()),
        }

    async def report(self, plan_id: str) -> dict[str, Any]:
        """The admin's view of a plan: status, counts, and how Redis and the queues stand."""
        plan = await self.plan(plan_id)
        counts = await self.plans.counts(plan_id)
        body: dict[str, Any] = {
            "planId": plan_id,
            "status": plan["status"],
            "examName": plan["exam_name"],
            "plan": public_plan(plan),
            "startedAt": plan["started_at"],
            "endedAt": plan["ended_at"],
            "currentStage": plan["current_stage_id"],
            "stageDeadline": deadline_iso(plan["stage_deadline"]),
            "stages": [public_stage(s) for s in await self.plans.stages(plan_id)],
            "package": {"sha256": plan["package_sha256"], "size": plan["package_size"]}
            if plan["package_sha256"]
            else None,
            "counts": {
                "candidates": sum(counts.candidates_by_status.values()),
                "candidatesByStatus": counts.candidates_by_status,
                "supervisors": counts.supervisors,
            },
            "outboxPending": await outbox.pending_count(self.db),
            "deadLetters": counts.dead_letters,
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
