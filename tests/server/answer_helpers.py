"""Building saves the way the SDK does (examsync.messages), for server tests."""

from __future__ import annotations

from typing import Any

from examsync.messages import AnswerEntry, Behavior, Device, Metadata, NavigationStep, SavePayload
from examsync.protocol import canonical_json, format_timestamp, parse_timestamp
from examsync_server.demo.sample import EXAM_CODE, PLAN_ID

T0 = "2024-01-15T09:00:00.000Z"


def at(seconds: float) -> str:
    """A wire timestamp `seconds` after T0: when an edit was made (the latest edit wins)."""
    return format_timestamp(parse_timestamp(T0) + seconds)


def save_body(
    answers: dict[str, tuple[str, int]],
    candidate: str = "CAND202301",
    plan: str = PLAN_ID,
    exam: str = EXAM_CODE,
    updated: str = T0,
    navigation: tuple[tuple[str, str, str], ...] = (),
    keystrokes: int = 0,
    device: str = "",
) -> dict[str, Any]:
    payload = SavePayload(
        exam_id=plan,
        test_code=exam,
        user_id=candidate,
        timestamp=updated,
        answers={
            q: AnswerEntry(value, version, updated) for q, (value, version) in answers.items()
        },
        metadata=Metadata(
            device=Device("PC", "Chrome 120", "Windows 11", device),
            behavior=Behavior(
                focus_time=1000,
                edit_count=len(answers),
                keystrokes=keystrokes,
                navigation=tuple(NavigationStep(f, t, ts) for f, t, ts in navigation),
            ),
        ),
        status="in_progress",
    )
    return payload.to_wire()


def encoded(body: dict[str, Any]) -> bytes:
    return canonical_json(body)
