"""Saves over the socket: `{"type": "save", "id", "payload"}` → the HTTP save path → an answer.

The payload goes through `SaveService.receive`, exactly what `POST /api/v1/answers` calls:
the same validation, queue and wait for the SQLite commit, so the same edit rule and the
same error codes. The answer carries the request's `id`: `save_ack` with the HTTP 200 body, or
an `error` frame with the HTTP status and error body the same save would have got over HTTP.

Each save waits for its commit in its own task, so a socket keeps reading (pings, other saves)
meanwhile; at most `per_socket` wait at once per socket, and one more is refused with
`429 too_many_saves` (the SDK sends one at a time and retries a refusal with backoff).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from examsync.frames import save_ack_frame

from ..access.tokens import Principal
from ..answers.intake import SaveService
from ..base import fast_json
from ..errors import ApiError, error_for

log = logging.getLogger(__name__)

FEATURE = "save"  # in the welcome's `features`
MAX_ID_CHARS = 100
PER_SOCKET = 8
# What a save frame adds around its payload: the socket takes every save HTTP takes.
ENVELOPE_BYTES = 4096


def request_id(message: Mapping[str, Any]) -> str | None:
    """A save's id when it has a usable one (a non-empty string, not too long)."""
    value = message.get("id")
    if isinstance(value, str) and 0 < len(value) <= MAX_ID_CHARS:
        return value
    return None


class SocketSaves:
    def __init__(self, service: SaveService, per_socket: int = PER_SOCKET) -> None:
        self.service = service
        self.per_socket = per_socket
        self._waiting: dict[ServerConnection, set[asyncio.Task[None]]] = {}

    @property
    def max_frame_bytes(self) -> int:
        return self.service.settings.limits.max_save_bytes + ENVELOPE_BYTES

    def take(
        self, conn: ServerConnection, who: Principal, message: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """Start a save; return a frame to answer at once when it cannot start."""
        rid = request_id(message)
        if rid is None:
            return ApiError(
                400,
                "invalid_message",
                f"a save needs an 'id': a string of 1 to {MAX_ID_CHARS} characters",
            ).to_frame()
        waiting = self._waiting.setdefault(conn, set())
        if len(waiting) >= self.per_socket:
            refusal = ApiError(
                429,
                "too_many_saves",
                f"at most {self.per_socket} saves may wait for their commit per socket",
                {"retryAfter": 1},
            )
            return refusal.to_frame(rid)
        # Parsed strictly with the frame, so validated as parsed, not decoded again; re-encoded
        # compactly, it is the text the size limit and the queue take. No payload: an empty body.
        payload = message.get("payload")
        body = b"" if payload is None else fast_json.dumps(payload)
        task = asyncio.create_task(
            self._save(conn, who, rid, body, payload), name=f"socket-save-{rid}"
        )
        waiting.add(task)
        task.add_done_callback(waiting.discard)
        return None

    def closed(self, conn: ServerConnection) -> None:
        """The socket is gone. Its saves still finish (each is queued or refused already, and
        an answer to nobody is dropped); only the bookkeeping goes."""
        self._waiting.pop(conn, None)

    def in_flight(self, conn: ServerConnection) -> int:
        return len(self._waiting.get(conn, ()))

    async def _save(
        self, conn: ServerConnection, who: Principal, rid: str, body: bytes, payload: object
    ) -> None:
        try:
            text = save_ack_frame(rid, await self.service.receive(who, body, payload))
        except Exception as exc:
            frame = error_for(exc, "a socket save").to_frame(rid)
            text = json.dumps(frame, ensure_ascii=False, separators=(",", ":"))
        try:
            await conn.send(text)
        except ConnectionClosed:
            log.info("save %s committed or refused after its socket closed", rid)
