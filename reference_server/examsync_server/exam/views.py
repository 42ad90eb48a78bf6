"""What the API shows of plans and stages to people with a session: public fields only."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ..base.clock import iso
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
