"""The socket server: token auth on the handshake, app-level ping/pong, events out.

Connect to `{socketUrl}?token=<session token>`. The server greets with
`{"type": "welcome", "socketId", "role", "serverTime"}`, answers `{"type": "ping"}` with
`{"type": "pong"}`, and pushes events (exam_end, stage_changed). Bad frames get an
`{"type": "error", "error": {"code", "message"}}` reply; oversized frames close the socket
(1009). Connection-state tracking of seed 004 builds on this.
"""

from __future__ import annotations

import json
import logging
import secrets
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from redis.asyncio import Redis
from redis.exceptions import RedisError
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from ..auth import Principal, Tokens
from ..clock import iso, utc_now
from ..errors import ApiError
from ..store import keys
from . import events
from .registry import Registry

log = logging.getLogger(__name__)

PATH = "/ws"
MAX_FRAME_BYTES = 64 * 1024


def _json_response(status: HTTPStatus, code: str, message: str) -> Response:
    body = json.dumps({"error": {"code": code, "message": message, "details": {}}}).encode()
    headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return Response(status.value, status.phrase, headers, body)


class SocketServer:
    def __init__(
        self,
        tokens: Tokens,
        host: str,
        port: int,
        reuse_port: bool = False,
        redis: Redis | None = None,
    ) -> None:
        self.reuse_port = reuse_port
        self.redis = redis
        self.tokens = tokens
        self.host = host
        self.requested_port = port
        self.registry = Registry()
        self._server: Server | None = None
        self._who: dict[ServerConnection, Principal] = {}

    async def start(self) -> None:
        self._server = await serve(
            self._handle,
            self.host,
            self.requested_port,
            process_request=self._authenticate,
            max_size=MAX_FRAME_BYTES,
            reuse_port=self.reuse_port,
            # Protocol-level keepalive; the app-level ping/pong of seed 004 comes on top.
            ping_interval=20,
            ping_timeout=20,
        )

    @property
    def port(self) -> int:
        assert self._server is not None, "start() first"
        return int(next(iter(self._server.sockets)).getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def _authenticate(self, conn: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        if url.path != PATH:
            return _json_response(HTTPStatus.NOT_FOUND, "not_found", f"connect to {PATH}")
        token = parse_qs(url.query).get("token", [None])[0]
        if not token:
            return _json_response(
                HTTPStatus.UNAUTHORIZED, "missing_token", "pass the session token as ?token="
            )
        try:
            self._who[conn] = self.tokens.require_session(token)
        except ApiError as exc:
            return _json_response(HTTPStatus(exc.status), exc.code, exc.message)
        return None

    async def _handle(self, conn: ServerConnection) -> None:
        who = self._who.pop(conn)
        socket_id = secrets.token_hex(8)
        self.registry.add(conn, who)
        try:
            await conn.send(
                json.dumps(
                    {
                        "type": "welcome",
                        "socketId": socket_id,
                        "role": who.role,
                        "planId": who.plan_id,
                        "serverTime": iso(utc_now()),
                    }
                )
            )
            await self._catch_up(conn, who)
            async for frame in conn:
                reply = self._reply(frame)
                if reply is not None:
                    await conn.send(json.dumps(reply, ensure_ascii=False))
        except ConnectionClosed:
            pass
        finally:
            self.registry.remove(conn)

    async def _catch_up(self, conn: ServerConnection, who: Principal) -> None:
        """A socket that (re)connects after the end hears of it at once: an exam_end broadcast
        while it was away would otherwise never reach it."""
        if self.redis is None:
            return
        try:
            plan: Any = await self.redis.hmget(keys.plan(who.plan_id), ["status", "end_datetime"])
        except RedisError as exc:
            log.warning("socket catch-up skipped: %s", exc)
            return
        if plan[0] == "completed":
            await conn.send(json.dumps(events.exam_end(who.plan_id, plan[1]), ensure_ascii=False))

    def _reply(self, frame: str | bytes) -> dict[str, Any] | None:
        try:
            message = json.loads(frame)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error("invalid_json", "frames must be JSON objects")
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            return _error("invalid_message", "frames must be JSON objects with a string 'type'")
        kind = message["type"]
        if kind == "ping":
            return {"type": "pong", "ts": message.get("ts"), "serverTime": iso(utc_now())}
        if kind == "pong":
            return None
        return _error("unknown_type", f"unknown message type {kind[:40]!r}")


def _error(code: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"code": code, "message": message}}
