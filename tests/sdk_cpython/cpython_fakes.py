"""In-test stand-ins for the reference server: an httpx.MockTransport API and a socket server.

They follow docs/protocol.md (saves, acks, Ed25519 receipts, restore, keys, package, and the
candidate's devices: ``deviceId`` at sign-in, takeover, ``409 device_replaced``) closely
enough to drive the CPython adapter; the real server's own tests live in tests/server and
tests/integration. Mocks are fine here because the transport is a seam we own.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from examsync.devices import ActiveDevice, device_replaced_body, refuses, server_sign_in
from examsync.edits import StoredEdit, edit_time_ms, judge_edit
from examsync.exceptions import RemoteProtocolError
from examsync.frames import (
    Auth,
    auth_refused_message,
    device_active_message,
    error_message,
    pong_frame,
    read_auth,
    save_ack_frame,
    welcome_message,
)
from examsync.messages import (
    AckStatus,
    AnswerResult,
    Receipt,
    ReceiptPayload,
    RestoreAnswer,
    RestoreMetadata,
    RestoreResponse,
    SaveAck,
    SavePayload,
)
from examsync.protocol import (
    b64url_encode,
    canonical_json,
    decode_json,
    format_timestamp,
    value_sha256,
)

PLAN, EXAM, CANDIDATE = "PLAN202401", "EXAM202401", "CAND202301"
AUTH_CODE, KEY = "AUTH01", "KEY-0001"
PACKAGE = b"PK\x05\x06" + bytes(18)  # an empty zip


def raw_public(private: Ed25519PrivateKey) -> bytes:
    return private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )


def error(status: int, code: str, message: str = "refused") -> httpx.Response:
    body = {"error": {"code": code, "message": message, "details": {}}}
    return httpx.Response(status, json=body)


def device_of(token: str) -> str:
    """The device a token carries: ``tok-1.<device id>`` (``tok-1`` alone: none)."""
    return token.partition(".")[2]


@dataclass
class FakeApi:
    """The candidate HTTP API plus the save rules, shared with the fake socket server."""

    socket_url: str = "ws://127.0.0.1:9/ws"
    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    key_id: str = "k1"
    answers: dict[str, tuple[str, int]] = field(default_factory=dict)  # code -> (value, version)
    edits: dict[str, tuple[int, str]] = field(default_factory=dict)  # code -> (ms, device id)
    clock: Callable[[], float] = time.time  # serverTime, and when a save is received
    device_ids: set[str] = field(default_factory=set)  # metadata.device.id of the saves
    tamper: bool = False  # sign receipts, then flip a bit of the signature
    down: bool = False  # every HTTP request fails to connect
    http_saves: int = 0
    socket_saves: int = 0
    key_fetches: int = 0
    package: bytes = PACKAGE
    package_etag: str | None = None  # None: the package's real digest
    package_requests: list[httpx.Request] = field(default_factory=list)
    progress: dict[str, Any] = field(
        default_factory=lambda: {"status": "in_progress", "currentStage": "S1"}
    )
    me_fetches: int = 0
    polls: list[str | None] = field(default_factory=list)  # `after` of each events poll
    poll_answer: dict[str, Any] = field(default_factory=lambda: {"events": [], "position": "1-0"})
    policy: str = "single"
    active: ActiveDevice | None = None
    logins: list[dict[str, Any]] = field(default_factory=list)  # every sign-in's body
    device_frames: list[dict[str, Any]] = field(default_factory=list)  # device_active, queued
    refused: int = 0  # saves refused with device_replaced
    replaced: dict[str, str | None] = field(default_factory=dict)  # device -> replaced since
    expire_next: bool = False  # answer the next authenticated request 401 token_expired
    # Answer 401 session_revoked until a sign-in: every authenticated request ("*"), or one
    # path's.
    revoked: str | None = None
    # The next sign-ins' answers (an exception: the sign-in met it on the way), before any
    # is let through.
    refuse_logins: list[httpx.Response | httpx.TransportError] = field(default_factory=list)
    log: list[str] = field(default_factory=list)  # "sign-in", "restore", "save", in order
    restore_delay: float = 0.0  # seconds a restore takes to answer (the loop runs meanwhile)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle_async)

    async def handle_async(self, request: httpx.Request) -> httpx.Response:
        if self.restore_delay and request.url.path == f"/api/v1/answers/{EXAM}":
            await asyncio.sleep(self.restore_delay)
        return self.handle(request)

    def handle(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        path, method = request.url.path, request.method
        if (method, path) == ("POST", "/api/v1/sessions"):
            if self.refuse_logins:
                refusal = self.refuse_logins.pop(0)
                if isinstance(refusal, httpx.TransportError):
                    raise refusal
                return refusal
            return self.login(json.loads(request.content))
        if (method, path) == ("GET", "/api/v1/keys"):
            self.key_fetches += 1
            return httpx.Response(
                200, json={"keys": {self.key_id: b64url_encode(raw_public(self.key))}}
            )
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if token.partition(".")[0] != "tok-1":
            return error(401, "invalid_token")
        if self.expire_next:
            self.expire_next = False
            return error(401, "token_expired")
        if self.revoked in ("*", path):
            return error(401, "session_revoked")
        if (method, path) == ("POST", "/api/v1/answers"):
            self.http_saves += 1
            status, body = self.save(decode_json(request.content), device_of(token))
            return httpx.Response(status, json=body)
        if (method, path) == ("GET", "/api/v1/events"):
            self.polls.append(request.url.params.get("after"))
            return httpx.Response(200, json=self.poll_answer)
        if (method, path) == ("GET", "/api/v1/me"):
            self.me_fetches += 1
            return httpx.Response(200, json=self.progress)
        if (method, path) == ("GET", f"/api/v1/answers/{EXAM}"):
            self.log.append("restore")
            return httpx.Response(200, json=self.restore())
        if (method, path) == ("GET", f"/api/v1/plans/{PLAN}/package"):
            self.package_requests.append(request)
            digest = hashlib.sha256(self.package).hexdigest()
            etag = self.package_etag or digest
            if request.headers.get("If-None-Match") == f'"{etag}"':
                return httpx.Response(304, headers={"ETag": f'"{etag}"'})
            return httpx.Response(200, content=self.package, headers={"ETag": f'"{etag}"'})
        return error(404, "not_found")

    def login(self, body: dict[str, Any]) -> httpx.Response:
        ok = body.get("key") == KEY or (
            body.get("candidateId") == CANDIDATE and body.get("authCode") == AUTH_CODE
        )
        if body.get("planId") != PLAN or not ok:
            return error(401, "invalid_credentials")
        self.logins.append(body)
        self.log.append("sign-in")
        self.revoked = None
        device = body.get("deviceId")
        session = {
            "token": f"tok-1.{device}" if device else "tok-1",
            "tokenType": "Bearer",
            "role": "candidate",
            "planId": PLAN,
            "candidateId": CANDIDATE,
            "socketUrl": self.socket_url,
            "stages": [],
            "serverTime": self.server_time(),
            "progress": self.progress,
        }
        if device:
            session.update(self.sign_in(device, activate=body.get("activate", True)))
        return httpx.Response(200, json=session)

    def sign_in(self, device: str, *, activate: bool) -> dict[str, Any]:
        """Record a takeover (an activating sign-in from another device than the active one)
        and queue its frame; the device fields of the answer."""
        before = self.active
        active, taken_over = server_sign_in(
            before, self.replaced, device, activate=activate, now=self.clock(), policy=self.policy
        )
        if active is not None and active != before:
            self.active = active
            frame = device_active_message(PLAN, CANDIDATE, None, device, active.since, self.policy)
            self.device_frames.append(frame)
        return {
            "deviceId": device,
            "devicePolicy": self.policy,
            "activeDevice": active and {"deviceId": active.device_id, "since": active.since},
            "replacedDevice": taken_over,
        }

    def save(self, wire: Any, device_of_token: str = "") -> tuple[int, dict[str, Any]]:
        self.log.append("save")
        try:
            payload = SavePayload.from_wire(wire)
        except RemoteProtocolError as exc:
            body = {"error": {"code": "invalid_payload", "message": str(exc), "details": {}}}
            return 422, body
        stamps = [entry.updated for entry in payload.answers.values()]
        replaced_since = self.replaced.get(device_of_token)
        if self.active is not None and refuses(
            self.active, device_of_token, stamps, replaced_since
        ):
            self.refused += 1
            return 409, device_replaced_body(self.active, replaced_since)
        received = self.clock()
        device = payload.metadata.device.id
        self.device_ids.add(device)
        results: dict[str, AnswerResult] = {}
        for code, entry in payload.answers.items():
            stored = None
            if code in self.answers:
                value, version = self.answers[code]
                stored = StoredEdit(version, value_sha256(value), *self.edits[code])
            verdict = judge_edit(
                stored,
                entry.version,
                value_sha256(entry.value),
                edit_time_ms(entry.updated, round(received * 1000)),
                device,
            )
            kept = verdict.kept
            if verdict.status is AckStatus.ACCEPTED:
                self.answers[code] = (entry.value, kept.version)
            self.edits[code] = (kept.edited_at, kept.device)
            value, version = self.answers[code]
            superseded = verdict.status is AckStatus.SUPERSEDED
            results[code] = AnswerResult(
                verdict.status,
                entry.version,
                version,
                self.sign(code, value, version),
                value if superseded else None,
                format_timestamp(kept.edited_at / 1000) if superseded else None,
            )
        return 200, SaveAck(results, format_timestamp(received)).to_wire()

    def server_time(self) -> str:
        return format_timestamp(self.clock())

    def sign(self, code: str, value: str, version: int) -> Receipt:
        payload = ReceiptPayload(
            PLAN, CANDIDATE, EXAM, code, version, value_sha256(value), self.server_time()
        )
        signature = self.key.sign(canonical_json(payload.to_wire()))
        if self.tamper:
            signature = bytes([signature[0] ^ 1]) + signature[1:]
        return Receipt(self.key_id, payload, signature)

    def restore(self) -> dict[str, Any]:
        return RestoreResponse(
            exam_id=PLAN,
            test_code=EXAM,
            user_id=CANDIDATE,
            answers={
                code: RestoreAnswer(value, version, format_timestamp(self.edits[code][0] / 1000))
                for code, (value, version) in self.answers.items()
            },
            metadata=RestoreMetadata(self.server_time(), len(self.answers), "in_progress", None),
            server_time=self.server_time(),
        ).to_wire()


@dataclass
class FakeSocketServer:
    """A websockets server on 127.0.0.1 speaking the socket frames of docs/protocol.md."""

    api: FakeApi
    accepting: bool = True  # False: refuse handshakes with 503
    retry_after: int | None = None  # the Retry-After of those refusals
    features: tuple[str, ...] = ("save",)
    silent: bool = False  # stop answering anything (a dead peer whose TCP stays up)
    connections: int = 0
    refused: int = 0
    paths: list[str] = field(default_factory=list)  # of the accepted handshakes
    auths: list[Auth] = field(default_factory=list)  # the accepted sockets' auth frames
    resume_reply: dict[str, Any] | None = None  # sent after the welcome of a resume
    reports: list[dict[str, Any]] = field(default_factory=list)  # sync_state frames received
    sockets: list[ServerConnection] = field(default_factory=list)
    server: Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        port = next(iter(self.server.sockets)).getsockname()[1]
        return f"ws://127.0.0.1:{port}/ws"

    def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        if not self.accepting:
            self.refused += 1
            response = conn.respond(HTTPStatus.SERVICE_UNAVAILABLE, "down\n")
            if self.retry_after is not None:
                response.headers["Retry-After"] = str(self.retry_after)
            return response
        self.paths.append(request.path)
        return None

    async def _handle(self, conn: ServerConnection) -> None:
        try:  # as the reference server: the token comes in the first frame
            auth = read_auth(await conn.recv())
        except (RemoteProtocolError, ConnectionClosed):
            await conn.close(4401, "missing_token")
            return
        if auth.token.partition(".")[0] != "tok-1":
            refusal = {"error": {"code": "invalid_token", "message": "bad token", "details": {}}}
            await conn.send(json.dumps(auth_refused_message(refusal, 401)))
            await conn.close(4401, "invalid_token")
            return
        self.auths.append(auth)
        self.connections += 1
        self.sockets.append(conn)
        welcome = welcome_message(
            f"S{self.connections}",
            "candidate",
            PLAN,
            self.api.server_time(),
            ping_interval=10.0,
            ping_timeout=5.0,
            features=self.features,
        )
        await conn.send(json.dumps(welcome))
        if self.resume_reply is not None and auth.last_position is not None:
            await conn.send(json.dumps(self.resume_reply))
        try:
            async for data in conn:
                if self.silent:
                    continue
                frame = json.loads(data)
                if frame["type"] == "ping":
                    await conn.send(pong_frame(frame.get("ts")))
                elif frame["type"] == "sync_state":
                    self.reports.append(frame)
                elif frame["type"] == "save":
                    self.api.socket_saves += 1
                    status, body = self.api.save(frame["payload"], device_of(auth.token))
                    if status == 200:
                        await conn.send(save_ack_frame(frame["id"], json.dumps(body).encode()))
                    else:
                        await conn.send(json.dumps(error_message(body, frame["id"], status)))
        except ConnectionClosed:
            pass
        finally:
            self.sockets.remove(conn)

    async def broadcast(self, message: dict[str, Any]) -> None:
        for conn in list(self.sockets):
            await conn.send(json.dumps(message, ensure_ascii=False))


@asynccontextmanager
async def socket_server(api: FakeApi, **options: Any) -> AsyncIterator[FakeSocketServer]:
    fake = FakeSocketServer(api, **options)
    async with serve(
        fake._handle, "127.0.0.1", 0, process_request=fake._process_request, ping_interval=None
    ) as server:
        fake.server = server
        api.socket_url = fake.url
        yield fake
        server.close()
        await asyncio.sleep(0)
