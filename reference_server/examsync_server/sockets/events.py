"""Messages the socket server sends, built in one place."""

from __future__ import annotations

from typing import Any

from ..errors import ApiError

EXAM_END_MESSAGE = "시험이 종료되었습니다."


def exam_end(plan_id: str, timestamp: str | None) -> dict[str, Any]:
    """Seed 001 §3.3, plus the plan id so a client of several plans can tell them apart."""
    return {
        "type": "exam_end",
        "message": EXAM_END_MESSAGE,
        "timestamp": timestamp,
        "planId": plan_id,
    }


def error_frame(error: ApiError, request_id: str | None = None) -> dict[str, Any]:
    """`{"type": "error", "error": {...}}`; answering a save, with its `id` and HTTP status."""
    frame: dict[str, Any] = {"type": "error", **error.to_body()}
    if request_id is not None:
        frame["id"] = request_id
        frame["status"] = error.status
    return frame
