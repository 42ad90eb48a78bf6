"""One error type for the API: `{"error": {"code", "message", "details"}}` with an HTTP status.

Codes are stable (clients branch on them); messages are for people.
"""

from __future__ import annotations

import logging
from typing import Any

from redis.exceptions import RedisError

from examsync import frames

log = logging.getLogger(__name__)


class StartupError(Exception):
    """A problem the operator must fix before the server can run (shown without a traceback)."""


class ApiError(Exception):
    def __init__(
        self, status: int, code: str, message: str, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}

    def to_body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}

    def to_frame(self, request_id: str | None = None) -> dict[str, Any]:
        """The socket's `error` frame; answering a save, with its `id` and HTTP status."""
        return frames.error_message(self.to_body(), request_id, self.status)


def error_headers(exc: ApiError) -> list[tuple[str, str]]:
    """A 503 or 429 is temporary: tell clients (the SDK keeps what it sent) when to return."""
    if exc.status == 503:
        return [("Retry-After", "1")]
    if exc.status == 429:
        seconds = exc.details.get("retryAfter", exc.details.get("retryAfterSeconds", 1))
        return [("Retry-After", str(seconds))]
    return []


def error_for(exc: Exception, what: str) -> ApiError:
    """What a request that raised `exc` answers: an ApiError as it is, Redis away as a 503 the
    client retries, anything else as a 500 (logged with its traceback). Shared by the HTTP save
    route and saves over the socket, so both answer a failure with the same code."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, RedisError):
        log.warning("Redis unavailable in %s: %s", what, exc)
        return ApiError(503, "redis_unavailable", "the live-state store is unavailable; retry")
    log.error("unhandled error in %s", what, exc_info=exc)
    return ApiError(500, "internal_error", "an internal error occurred")


def invalid_request(message: str, field: str = "", **details: Any) -> ApiError:
    """A 422 that, like every `invalid_request`, names the field in `details.problems`."""
    return ApiError(
        422,
        "invalid_request",
        message,
        {"problems": [{"field": field, "problem": message}], **details},
    )


def not_found(what: str, **details: Any) -> ApiError:
    return ApiError(404, f"{what}_not_found", f"{what.replace('_', ' ')} not found", details)


def invalid_state(message: str, **details: Any) -> ApiError:
    return ApiError(409, "invalid_state", message, details)
