"""The pure stage-clock rules (stages.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from examsync_server.exam import stages

STAGES: list[dict[str, Any]] = [
    {
        "stage_id": "A",
        "stage_name": "a",
        "time_limit_seconds": 300,
        "allocated_exam_time": None,
        "exam_code": None,
        "auto_move_enabled": 1,
    },
    {
        "stage_id": "B",
        "stage_name": "b",
        "time_limit_seconds": None,
        "allocated_exam_time": 7200,
        "exam_code": "E",
        "auto_move_enabled": 1,
    },
    {
        "stage_id": "C",
        "stage_name": "c",
        "time_limit_seconds": None,
        "allocated_exam_time": None,
        "exam_code": None,
        "auto_move_enabled": 0,
    },
]
NOW = datetime(2024, 1, 15, 9, 0, tzinfo=UTC)


def test_duration_is_the_limit_else_the_allocated_exam_time() -> None:
    assert [stages.duration(s) for s in STAGES] == [300, 7200, None]


def test_entering_a_stage_sets_its_deadline() -> None:
    clock = stages.enter(STAGES, 0, NOW)
    assert clock.stage_id == "A" and clock.deadline == NOW + timedelta(seconds=300)
    assert stages.enter(STAGES, 2, NOW).deadline is None  # untimed
    past = stages.enter(STAGES, 3, NOW)
    assert past.stage_id is None and past.deadline is None


def test_next_index_walks_the_order() -> None:
    assert stages.next_index(STAGES, None) == 0
    assert stages.next_index(STAGES, "A") == 1
    assert stages.next_index(STAGES, "C") == 3
    with pytest.raises(ValueError):
        stages.next_index(STAGES, "Z")


def test_stage_event_shape() -> None:
    event = stages.enter(STAGES, 1, NOW).as_event(STAGES)
    assert event == {
        "stageId": "B",
        "stageName": "b",
        "examCode": "E",
        "startedAt": "2024-01-15T09:00:00.000Z",
        "deadline": "2024-01-15T11:00:00.000Z",
        "autoMove": True,
    }
