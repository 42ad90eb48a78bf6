"""Stage clocks, pure: which stage comes next and when the current one runs out.

A simultaneous exam (동시시험) has one clock for the plan, started by the admin's `start`;
an individual exam (개별시험) has one per candidate, started when that candidate starts. A
stage lasts its `time_limit_seconds` (else its `allocated_exam_time`); an untimed stage has no
deadline. When a timed stage runs out and `auto_move_enabled` is true the server moves on; when
it is false the stage waits for an explicit move (admin, or the candidate in an individual exam).
Past the last stage the candidate is `completed`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ..base.clock import iso
from .plan_status import CandidateStatus

# exam_plan.conduct_type: one clock for the plan, or one per examinee.
SIMULTANEOUS, INDIVIDUAL = "simultaneous", "individual"


@dataclass(frozen=True, slots=True)
class StageClock:
    stage_id: str | None  # None: past the last stage
    started_at: str | None
    deadline: datetime | None

    @property
    def candidate_status(self) -> CandidateStatus:
        """An examinee on this clock is in progress; past the last stage, completed."""
        return CandidateStatus.IN_PROGRESS if self.stage_id else CandidateStatus.COMPLETED

    @property
    def deadline_epoch(self) -> float | None:
        return self.deadline.timestamp() if self.deadline else None

    def as_event(self, stages: Sequence[dict[str, Any]]) -> dict[str, Any]:
        stage = next((s for s in stages if s["stage_id"] == self.stage_id), None)
        return {
            "stageId": self.stage_id,
            "stageName": stage["stage_name"] if stage else None,
            "examCode": stage["exam_code"] if stage else None,
            "startedAt": self.started_at,
            "deadline": iso(self.deadline) if self.deadline else None,
            "autoMove": bool(stage["auto_move_enabled"]) if stage else None,
        }


def duration(stage: dict[str, Any]) -> int | None:
    value = stage["time_limit_seconds"] or stage["allocated_exam_time"]
    return int(value) if value else None


def enter(stages: Sequence[dict[str, Any]], index: int, now: datetime) -> StageClock:
    """The clock on entering stage `index` at `now` (past the end when index == len)."""
    if index >= len(stages):
        return StageClock(None, None, None)
    stage = stages[index]
    seconds = duration(stage)
    deadline = now + timedelta(seconds=seconds) if seconds else None
    return StageClock(stage["stage_id"], iso(now), deadline)


def next_index(stages: Sequence[dict[str, Any]], current: str | None) -> int:
    """Index of the stage after `current` (0 when nothing has started)."""
    if current is None:
        return 0
    for i, stage in enumerate(stages):
        if stage["stage_id"] == current:
            return i + 1
    raise ValueError(f"unknown stage {current!r}")
