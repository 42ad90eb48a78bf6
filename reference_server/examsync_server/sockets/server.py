"""The socket server: first-frame authentication, app-level heartbeat, events out.

Connect to `{socketUrl}` (nothing secret in the URL: browsers print it when a connection fails,
proxies log it) and send `{"type": "auth", "token", "lastPosition"?}` first, within
`auth_timeout`; a bad or missing token gets an `error` frame and the close code 4000 + the HTTP
status the same token would get (4401, 4403; 4408 when nothing came in time). Older SDKs' token
in the query (`?token=`, deprecated: docs/protocol.md, "Authentication") is still checked on
the handshake and refused with an HTTP answer, as before. Either way `_admit` is where the
socket's principal becomes known. The server greets with `{"type": "welcome",
"socketId", "role", "planId", "serverTime", "pingInterval", "pingTimeout", "features"}`, pings
every socket every `ping_interval` (`{"type": "ping", "ts"}`, answered with `{"type": "pong",
"ts"}`) and drops one that stays silent `ping_timeout` longer (close code 4408), answers a
client's `{"type": "ping"}` with a pong, and pushes events (exam_end, stage_changed, device_active,
examinee_connected/disconnected), each with its stream `position`; a socket that connects with
`lastPosition` first gets what it missed (replay.py). A candidate's `{"type": "save", "id",
"payload"}` takes the HTTP save path (answers/intake.py), answered with `save_ack` or an `error`
frame carrying its `id`. Bad frames get an `{"type": "error", "error": {"code", "message",
"details"}}` reply; oversized frames close the socket (1009).

A candidate's socket publishes seed 004's `connection_status` when it opens (CONNECTED, with
clientInfo) and when it closes (DISCONNECTED, reason SOCKET_CLOSED or PING_TIMEOUT), and again
CONNECTED, for every open one, when Redis turns out to have lost its data; the state manager
(presence/state_manager.py) takes it from there.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from redis.asyncio import Redis
from redis.exceptions import RedisError
from websockets.asyncio.server import Server, ServerConnection, broadcast, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from examsync import frames
from examsync.exceptions import RemoteProtocolError
from examsync.protocol import decode_json

from ..access.revocations import session_revoked
from ..access.tokens import Principal, Tokens
from ..answers.intake import SaveService
from ..base.clock import iso, utc_now
from ..errors import ApiError
from ..exam.plan_status import PlanStatus
from ..presence.status import (
    CONNECTED,
    DISCONNECTED,
    PING_TIMEOUT,
    SOCKET_CLOSED,
    ConnectionStatus,
    StatusPublisher,
)
from ..store import keys
from . import replay, sync_reports
from .admission import HandshakeGate
from .client_info import client_info
from .heartbeat import Heartbeat
from .registry import Registry
from .saves import FEATURE as SAVE_FEATURE
from .saves import SocketSaves
from .saves import request_id as saves_request_id

log = logging.getLogger(__name__)

PATH = "/ws"
MAX_FRAME_BYTES = 64 * 1024
PING_TIMEOUT_CLOSE = 4408  # ours (4000-4999 are the application's): "you did not answer"
SESSION_REVOKED_CLOSE = 4401  # ours: "your session was revoked; sign in again"
AUTH_TIMEOUT = 5.0  # seconds a new socket has to send its auth frame


LISTEN_BACKLOG = 4096  # pending connections the kernel queues for accept()


@dataclass(slots=True)
class _Socket:
    socket_id: str
    who: Principal
    gone: bool = False  # its DISCONNECTED is published
    info: dict[str, Any] | None = None  # its CONNECTED's clientInfo, to re-assert it


def _json_response(
    status: HTTPStatus, code: str, message: str, retry_after: int | None = None
) -> Response:
    details = {} if retry_after is None else {"retryAfter": retry_after}
    error = {"error": {"code": code, "message": message, "details": details}}
    body = json.dumps(error).encode()
    headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    return Response(status.value, status.phrase, headers, body)


class SocketServer:
    def __init__(
        self,
        tokens: Tokens,
        host: str,
        port: int,
        reuse_port: bool = False,
        redis: Redis | None = None,
        *,
        node_id: str = "",
        ping_interval: float = 10.0,
        ping_timeout: float = 5.0,
        saves: SaveService | None = None,
        handshake_limit: int = 200,
        handshake_window: float = 1.0,
        auth_timeout: float = AUTH_TIMEOUT,
    ) -> None:
        self.reuse_port = reuse_port
        self.redis = redis
        self.tokens = tokens
        self.host = host
        self.requested_port = port
        self.node_id = node_id or secrets.token_hex(4)
        self.registry = Registry()
        self._open_plans: set[str] = set()  # Redis said "not ended" while fan-out ran
        self.heartbeat: Heartbeat[ServerConnection] = Heartbeat(ping_interval, ping_timeout)
        self.gate = HandshakeGate(handshake_limit, handshake_window)
        self.auth_timeout = auth_timeout
        self.refused = 0  # handshakes turned away by the gate, for logs and tests
        self.publisher: StatusPublisher | None = None
        if redis is not None:
            self.publisher = StatusPublisher(
                redis,
                self.node_id,
                presence_ttl=3 * ping_interval + ping_timeout,
                on_lost=self._reassert,
            )
        # Candidates' saves over the socket, offered in the welcome when given.
        self.saves = SocketSaves(saves) if saves is not None else None
        self.sync_reports = sync_reports.SyncReports(redis) if redis is not None else None
        self._server: Server | None = None
        # principal and lastPosition of a deprecated `?token=` handshake, for the handler
        self._who: dict[ServerConnection, tuple[Principal, str | None]] = {}
        self._sockets: dict[ServerConnection, _Socket] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        # Two INFO lines per connection cost a connect burst CPU (docs/server.md, "Socket
        # performance") and say nothing the connection_status messages do not.
        logging.getLogger("websockets.server").setLevel(logging.WARNING)
        self._server = await serve(
            self._handle,
            self.host,
            self.requested_port,
            process_request=self._handshake,
            max_size=max(MAX_FRAME_BYTES, self.saves.max_frame_bytes if self.saves else 0),
            reuse_port=self.reuse_port,
            # The app-level heartbeat below decides when a peer is dead (and reports why);
            # the protocol's own pings would only race it.
            ping_interval=None,
            # No permessage-deflate, though browsers offer it: its zlib state weighs more than
            # the rest of a socket, and broadcast() would compress once per socket, for frames
            # of a few hundred bytes (docs/server.md, "Socket performance").
            compression=None,
            # A room reconnecting at once: past asyncio's default of 100 the kernel drops SYNs
            # and clients retry seconds later (docs/server.md, "Reconnect storms"). The kernel
            # caps it at net.core.somaxconn.
            backlog=LISTEN_BACKLOG,
        )
        self._spawn(self._beat(), "heartbeat")
        if self.publisher is not None:
            self._spawn(self.publisher.run(), "status-publisher")
        if self.sync_reports is not None:
            self._spawn(self.sync_reports.run(), "sync-reports")

    @property
    def port(self) -> int:
        assert self._server is not None, "start() first"
        return int(next(iter(self._server.sockets)).getsockname()[1])

    async def stop(self) -> None:
        """Close every socket (each publishes its DISCONNECTED), publish what is left, stop."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        if self.publisher is not None:
            await self.publisher.flush(timeout=2.0)
            await self.publisher.leave()
        if self.sync_reports is not None:
            await self.sync_reports.flush()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _handshake(self, conn: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        if url.path != PATH:
            return _json_response(HTTPStatus.NOT_FOUND, "not_found", f"connect to {PATH}")
        # Before the token check: a storm is turned away at the least cost.
        wait = self.gate.admit(asyncio.get_running_loop().time())
        if wait is not None:
            self.refused += 1
            return _json_response(
                HTTPStatus.SERVICE_UNAVAILABLE,
                "too_many_connections",
                "too many connections at once; retry after the given seconds",
                retry_after=wait,
            )
        query = parse_qs(url.query)
        token = query.get("token", [None])[0]
        if token is None:
            return None  # the token comes in the first frame (_first_frame)
        # Deprecated: SDKs before first-frame auth put the token in the URL. Refused as they
        # expect (an HTTP answer); the log says who, never the token.
        try:
            who = self._admit(token)
        except ApiError as exc:
            return _json_response(HTTPStatus(exc.status), exc.code, exc.message)
        log.warning(
            "%s %s of %s authenticated a socket with ?token= in its URL (deprecated:"
            " docs/protocol.md, Authentication); upgrade the client",
            who.role,
            who.subject_id,
            who.plan_id,
        )
        self._who[conn] = (who, query.get("lastPosition", [None])[0])
        return None

    def _admit(self, token: str) -> Principal:
        """Where a socket's principal becomes known, for both ways of authenticating: the one
        place to refuse a session (raises ApiError)."""
        return self.tokens.require_session(token)

    async def _first_frame(self, conn: ServerConnection) -> tuple[Principal, str | None] | None:
        """Read the auth frame (`auth_timeout` at most); the principal and lastPosition, or None
        when the socket was refused (an error frame, then closed with 4000 + the status)."""
        try:
            async with asyncio.timeout(self.auth_timeout):
                data = await conn.recv()
        except TimeoutError:
            wait = f"{self.auth_timeout:g}"
            refusal = ApiError(408, "auth_timeout", f"send the auth frame within {wait} s")
            await self._refuse(conn, refusal)
            return None
        except ConnectionClosed:
            return None
        try:
            auth = frames.read_auth(data)
            return self._admit(auth.token), auth.last_position
        except RemoteProtocolError as exc:
            await self._refuse(conn, ApiError(401, "missing_token", str(exc)))
        except ApiError as exc:
            await self._refuse(conn, exc)
        return None

    @staticmethod
    async def _refuse(conn: ServerConnection, exc: ApiError) -> None:
        with contextlib.suppress(ConnectionClosed):
            await conn.send(json.dumps(frames.auth_refused_message(exc.to_body(), exc.status)))
            await conn.close(4000 + exc.status, exc.code)

    async def _handle(self, conn: ServerConnection) -> None:
        admitted = self._who.pop(conn, None) or await self._first_frame(conn)
        if admitted is None:
            return
        who, last_position = admitted
        sock = _Socket(f"{self.node_id}-{secrets.token_hex(6)}", who)
        self._sockets[conn] = sock
        server_time = iso(utc_now())
        position = None
        if last_position is None:
            # Live from here: the welcome says from which position, for a later resume.
            self.registry.add(conn, who)
            position = self.registry.delivered.get(replay.STREAM)
        welcome = frames.welcome_message(
            sock.socket_id,
            who.role,
            who.plan_id,
            server_time,
            ping_interval=self.heartbeat.interval,
            ping_timeout=self.heartbeat.timeout,
            features=self._features(who),
            position=position,
            resume=last_position is not None,
        )
        self.heartbeat.add(conn, asyncio.get_running_loop().time())
        sock.info = client_info(conn)
        self._publish(sock, CONNECTED, info=sock.info)
        try:
            if self.tokens.revoked.revoked(who):  # revoked since the handshake was admitted
                await self._close_revoked(conn, who)
                return
            await conn.send(json.dumps(welcome))
            await self._catch_up(conn, who)
            if last_position is not None:
                await self._resume(conn, sock, last_position)
            async for frame in conn:
                self.heartbeat.seen(conn)
                if self.tokens.revoked.revoked(who):  # a save must not outrun the close
                    await self._close_revoked(conn, who)
                    break
                reply = self._reply(conn, who, frame)
                if reply is not None:
                    await conn.send(json.dumps(reply, ensure_ascii=False))
        except ConnectionClosed:
            pass
        finally:
            self.registry.remove(conn)
            self.heartbeat.remove(conn)
            del self._sockets[conn]
            if self.saves is not None:
                self.saves.closed(conn)
            self._publish(sock, DISCONNECTED, reason=SOCKET_CLOSED)

    def close_revoked(self) -> None:
        """Close the sockets whose sessions a revocation now refuses (told by `Revoked`)."""
        for conn, sock in list(self._sockets.items()):
            if self.tokens.revoked.revoked(sock.who):
                self._spawn(self._close_revoked(conn, sock.who), "close")

    async def _close_revoked(self, conn: ServerConnection, who: Principal) -> None:
        """Close code 4401, reason `session_revoked` (no error frame: the SDK would alert on it,
        while the reconnect's handshake answers 401 session_revoked and it signs in again).
        An end that revoked the candidates must not close their sockets before they hear of
        it, so an ended plan's `exam_end` goes first (a second one is ignored by clients)."""
        if self.redis is not None:
            try:
                plan: Any = await self.redis.hmget(
                    keys.plan(who.plan_id), ["status", "end_datetime"]
                )
                if plan[0] == PlanStatus.COMPLETED:
                    await self._send_end(conn, who.plan_id, plan[1])
            except (RedisError, ConnectionClosed) as exc:
                log.info("no exam_end before a revoked socket's close: %s", exc)
        await conn.close(SESSION_REVOKED_CLOSE, session_revoked().code)

    async def _beat(self) -> None:
        """Ping what is due (one encoded frame for all), drop what stayed silent."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.heartbeat.tick)
            ping, dead = self.heartbeat.due(loop.time())
            if ping:
                broadcast(ping, frames.ping_frame(int(time.time() * 1000)))
            for conn in dead:
                sock = self._sockets.get(conn)
                if sock is None:
                    continue
                # Reported now, not when the close is done: a dead peer never answers the
                # closing handshake, and the supervisors should not wait for its timeout.
                self._publish(sock, DISCONNECTED, reason=PING_TIMEOUT)
                self.registry.remove(conn)
                self._spawn(conn.close(PING_TIMEOUT_CLOSE, "ping timeout"), "close")

    def _publish(
        self,
        sock: _Socket,
        status: str,
        reason: str | None = None,
        info: dict[str, Any] | None = None,
    ) -> None:
        """Seed 004 tracks examinees' sockets: a candidate's, once each way."""
        if self.publisher is None or sock.who.role != "candidate" or sock.gone:
            return
        sock.gone = status == DISCONNECTED
        self.publisher.publish(
            ConnectionStatus(
                sock.who.plan_id,
                sock.who.subject_id,
                sock.socket_id,
                status,
                iso(utc_now()),
                reason=reason,
                client_info=info,
            )
        )

    def _reassert(self) -> None:
        """Redis lost what it held of our sockets (presence/status.py): each open one says
        CONNECTED again, so supervisors see it and its close is reported later."""
        for sock in list(self._sockets.values()):
            if not sock.gone:
                self._publish(sock, CONNECTED, info=sock.info)

    async def _resume(self, conn: ServerConnection, sock: _Socket, last: str) -> None:
        """Send what the socket missed after `last`, then deliver to it live: each step ends
        where fan-out has got to, and the socket joins the registry in the same step as the
        last one ends, so nothing falls between the replay and live delivery, nor comes twice.
        Ends with `resumed` (all sent) or `reload_state` (fetch the state afresh)."""
        reason: str | None = None
        sent = 0
        deadline = asyncio.get_running_loop().time() + 2.0
        try:
            replay.position(last)
            if self.redis is None:
                raise replay.CannotReplay(replay.UNKNOWN)
            await replay.check(self.redis, last)
            while True:
                upto = self.registry.delivered.get(replay.STREAM)
                if upto is None:
                    raise replay.CannotReplay(replay.UNKNOWN)  # fan-out not started yet
                if replay.position(last) == replay.position(upto):
                    break
                if replay.position(last) > replay.position(upto):
                    # The client heard it from a process whose fan-out is ahead of ours.
                    if asyncio.get_running_loop().time() > deadline:
                        raise replay.CannotReplay(replay.UNKNOWN)
                    await asyncio.sleep(0.02)
                    continue
                for frame in await replay.missed(self.redis, sock.who, last, upto):
                    await conn.send(json.dumps(frame, ensure_ascii=False))
                    sent += 1
                last = upto
        except ValueError as exc:
            await conn.send(json.dumps(_error("invalid_position", str(exc))))
            reason = replay.UNKNOWN
        except replay.CannotReplay as exc:
            reason = exc.reason
        except RedisError as exc:
            log.warning("replay for %s failed: %s", sock.socket_id, exc)
            reason = replay.UNKNOWN
        if sock.gone:  # dropped by the heartbeat meanwhile
            return
        self.registry.add(conn, sock.who)
        await self._ended_since(conn, sock.who)
        if reason is None:
            await conn.send(json.dumps(frames.resumed_message(last, sent)))
        else:
            now = self.registry.delivered.get(replay.STREAM)
            await conn.send(json.dumps(frames.reload_state_message(reason, now)))

    async def _catch_up(self, conn: ServerConnection, who: Principal) -> None:
        """A socket that (re)connects after the end hears of it at once: an exam_end broadcast
        while it was away would otherwise never reach it.

        Redis is asked once per plan, not once per socket of a reconnect storm: once it said
        "not ended" while fan-out runs, an end after that comes through this process's fan-out,
        which notes it in `registry.ended` before broadcasting it. A socket registered before
        that broadcast gets the broadcast; one registered after finds the note (see
        `_ended_since`)."""
        plan_id = who.plan_id
        if plan_id in self.registry.ended:
            await self._send_end(conn, plan_id, self.registry.ended[plan_id])
            return
        if self.redis is None or plan_id in self._open_plans:
            return
        fanout_running = keys.EXAM_END_STREAM in self.registry.delivered
        try:
            plan: Any = await self.redis.hmget(keys.plan(plan_id), ["status", "end_datetime"])
        except RedisError as exc:
            log.warning("socket catch-up skipped: %s", exc)
            return
        if plan[0] == PlanStatus.COMPLETED:
            await self._send_end(conn, plan_id, plan[1])
        elif fanout_running:
            self._open_plans.add(plan_id)

    async def _ended_since(self, conn: ServerConnection, who: Principal) -> None:
        """Right after a resumed socket joins live delivery: an end broadcast while it was
        replaying missed it; fan-out's note did not."""
        if who.plan_id in self.registry.ended:
            await self._send_end(conn, who.plan_id, self.registry.ended[who.plan_id])

    @staticmethod
    async def _send_end(conn: ServerConnection, plan_id: str, ended_at: str | None) -> None:
        await conn.send(json.dumps(frames.exam_end_message(plan_id, ended_at), ensure_ascii=False))

    def _features(self, who: Principal) -> list[str]:
        """What the welcome offers: saves and sync reports are a candidate's."""
        if who.role != "candidate":
            return []
        offered = [SAVE_FEATURE] if self.saves is not None else []
        return offered + ([sync_reports.FEATURE] if self.sync_reports is not None else [])

    def _sync_state(self, who: Principal, message: dict[str, Any]) -> dict[str, Any] | None:
        """Note a candidate's report (written with others shortly); nothing is answered."""
        assert self.sync_reports is not None
        try:
            if who.role != "candidate":
                raise ApiError(403, "candidates_only", "only candidates report their sync state")
            self.sync_reports.note(who, *sync_reports.parse(message))
        except ApiError as exc:
            return exc.to_frame()
        return None

    def _reply(
        self, conn: ServerConnection, who: Principal, frame: str | bytes
    ) -> dict[str, Any] | None:
        try:
            # Strict (no NaN, no duplicate keys): a save's payload is read as HTTP reads it.
            message = decode_json(frame)
        except RemoteProtocolError:
            return _unreadable(frame)
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            return _error("invalid_message", "frames must be JSON objects with a string 'type'")
        kind = message["type"]
        if kind == "ping":
            return frames.pong_message(message.get("ts"), iso(utc_now()))
        if kind == "pong":
            return None
        if kind == "save" and self.saves is not None:
            return self.saves.take(conn, who, message)
        if kind == "sync_state" and self.sync_reports is not None:
            return self._sync_state(who, message)
        return _error("unknown_type", f"unknown message type {kind[:40]!r}")


def _error(code: str, message: str) -> dict[str, Any]:
    return ApiError(400, code, message).to_frame()


def _unreadable(frame: str | bytes) -> dict[str, Any]:
    """`invalid_json`; for a save, with its id when a lenient read finds one, so the client
    hears which save was refused (HTTP answers the same body with a 400)."""
    error = ApiError(
        400, "invalid_json", "frames must be JSON objects (strict: no NaN, no duplicate keys)"
    )
    try:
        message = json.loads(frame)
    except (ValueError, RecursionError):
        return error.to_frame()
    if isinstance(message, dict) and message.get("type") == "save":
        return error.to_frame(saves_request_id(message))
    return error.to_frame()
